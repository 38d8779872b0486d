# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Functions and scopes in the DIE tree: which function holds an address, the
blocks and inlined calls nested there, the copies of a function.

Every function takes a ``context.DwarfContext`` first.
"""


import os
import re

from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import typeinfo as dwarf_types

SCOPE_TAGS = ("DW_TAG_lexical_block", "DW_TAG_inlined_subroutine")
FUNCTION_TAGS = ("DW_TAG_subprogram", "DW_TAG_inlined_subroutine")
VARIABLE_TAGS = ("DW_TAG_formal_parameter", "DW_TAG_variable")
# Where C++ nests functions below the CU.
NESTING_TAGS = ("DW_TAG_namespace", "DW_TAG_class_type", "DW_TAG_structure_type")
_OPTIMIZE_FLAG = r"(?:^|\s)-O(\S*)"     # compiled on first use (re caches it), not at import


def name_in_debug_strings(ctx, name):
    wanted = name.encode("utf-8") + b"\0"
    for section in (".debug_str", ".debug_info"):
        data = ctx.section(section)
        if data and wanted in data:
            return True
    return False


def cu_matches(cu, source):
    name = dwarf_types.name_of(cu.get_top_DIE()) or ""
    return name.endswith(source) or os.path.basename(name) == os.path.basename(source)


def is_optimized(cu):
    """Whether the CU was compiled with -O other than -O0 (its DW_AT_producer says)."""
    producer = cu.get_top_DIE().attributes.get("DW_AT_producer")
    text = producer.value.decode("utf-8", "replace") if producer is not None else ""
    match = re.findall(_OPTIMIZE_FLAG, text)
    return bool(match) and match[-1] != "0"


def iter_subprograms(cu):
    """Subprogram DIEs of a CU, also inside namespaces and classes (the full parse)."""
    top = cu.get_top_DIE()
    stack = list(top.iter_children())
    stack.reverse()
    while stack:
        die = stack.pop()
        if die.tag == "DW_TAG_subprogram":
            yield die
        elif die.tag in NESTING_TAGS:
            children = list(die.iter_children())
            children.reverse()
            stack.extend(children)


def subprogram_at(ctx, cu, address):
    """The top-level subprogram DIE whose code contains ``address``."""
    infos = ctx.top_level(cu)
    if infos is None:
        for die in iter_subprograms(cu):
            if ctx.die_contains(die, address):
                return die
        return None
    split = []
    for info in infos:
        if info["tag"] != "DW_TAG_subprogram":
            continue
        rng = info["range"]
        if rng is not None and rng[0] <= address < rng[1]:
            return ctx.die_at(cu, info["offset"])
        if rng is None and "DW_AT_ranges" in info:
            split.append(info["offset"])
    # Functions in several pieces (hot and cold parts): their range lists are parsed only when no
    # one-piece function holds the address, each once per run.
    for offset in split:
        ranges = ctx.piece_ranges.get(offset)
        if ranges is None:
            ranges = ctx.piece_ranges[offset] = ctx.die_ranges(ctx.die_at(cu, offset))
        if any(low <= address < high for low, high in ranges):
            return ctx.die_at(cu, offset)
    return None


def scope_chain(ctx, cu, address, subprogram=None):
    """DIEs from the subprogram (found when not given) down to the innermost block containing ``address``."""
    chain = []
    if subprogram is None:
        subprogram = subprogram_at(ctx, cu, address)
    if subprogram is not None:
        chain.append(subprogram)
    if not chain:
        return chain
    descended = True
    while descended:
        descended = False
        for child in chain[-1].iter_children():
            if child.tag in SCOPE_TAGS and ctx.die_contains(child, address):
                chain.append(child)
                descended = True
                break
    return chain


class ScopeChain(list):
    """DIEs from the subprogram (index 0: its frame base serves every variable) down to the
    innermost block at an address; ``scope`` indexes the DIE where variable lookup starts."""

    scope = 0


def scope_of(chain):
    """The DIE where variables are looked up (perf's scope DIE); the subprogram for a plain list."""
    return chain[getattr(chain, "scope", 0)]


def inlined_entries(ctx, die, out):
    """Append (entry pc, DIE) of every inlined call below ``die`` to ``out``."""
    for child in die.iter_children():
        if child.tag == "DW_TAG_inlined_subroutine":
            pc = ctx.entry_pc(child)
            if pc is not None:
                out.append((pc, child))
        if child.tag in SCOPE_TAGS or child.tag == "DW_TAG_subprogram":
            inlined_entries(ctx, child, out)


def origin_offset(cu, attr):
    return attr.value if attr.form == "DW_FORM_ref_addr" else attr.value + cu.cu_offset


def in_inlined_copy(ctx, cu, abstract, address):
    for die in scope_chain(ctx, cu, address):
        attr = die.attributes.get("DW_AT_abstract_origin")
        if die.tag == "DW_TAG_inlined_subroutine" and attr is not None and origin_offset(cu, attr) == abstract.offset:
            return True
    return False


def walk_visible(ctx, scope, address):
    """Pre-order walk of ``scope``'s children, descending only into lexical blocks whose code holds
    ``address``: the variables that ``scope``'s function owns there.

    This is perf's order (die_find_child with DIE_FIND_CB_CONTINUE/SIBLING): a function's own
    parameters come before the locals of its blocks.  Unlike perf, inlined calls nested in the
    scope are not entered: their parameters and locals belong to the callee (another function,
    whose variable of the same name is another variable).
    """
    if scope is None:
        return
    for child in scope.iter_children():
        yield child
        if child.has_children and child.tag == "DW_TAG_lexical_block" and ctx.die_contains(child, address):
            yield from walk_visible(ctx, child, address)


def scope_variables(ctx, chain, address, params_only=False):
    """Variables of the probed function visible at ``address``, in perf's order, first of each name:
    with ``params_only`` its own parameters (the scope DIE's formal parameters), else those and the
    locals of the scope and of its blocks holding the address."""
    scope = scope_of(chain) if chain else None
    if scope is None:
        return []
    found, names = [], set()
    candidates = scope.iter_children() if params_only else walk_visible(ctx, scope, address)
    for die in candidates:
        if die.tag == "DW_TAG_formal_parameter" or (die.tag == "DW_TAG_variable" and not params_only):
            name = dwarf_types.name_of(die)
            if name and name not in names:
                names.add(name)
                found.append(die)
    return found
