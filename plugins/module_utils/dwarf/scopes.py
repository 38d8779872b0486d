# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Functions and scopes in the DIE tree: which function holds an address, the
blocks and inlined calls nested there, the copies of a function.

Every function takes a ``context.DwarfContext`` first.
"""


import os
import re

from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import names
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


def _origin_offset_of(die):
    """Offset of the abstract DIE a concrete copy stands for, else the DIE's own."""
    attr = die.attributes.get("DW_AT_abstract_origin")
    return _origin_offset(die.cu, attr) if attr is not None else die.offset


def is_own_body(ctx, chain, index):
    """Whether ``chain[index]`` is gcc's inlined copy of a function inside an out-of-line copy of
    that same function, at its declaration line (no call: the body itself, its variables mostly
    without locations; perf's __die_walk_instances_cb skips these).

    The same shape inside another function (libpython's ``rlock__at_fork_reinit`` folded into
    ``lock__at_fork_reinit``) is a real copy: its variables, with or without locations, are the
    ones at those addresses."""
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import functions
    die = chain[index]
    if not functions.is_self_copy(ctx, die):
        return False
    for outer in reversed(chain[:index]):
        if outer.tag in FUNCTION_TAGS:
            return _origin_offset_of(outer) == _origin_offset_of(die)
    return False


def probe_scope(ctx, chain, point, address, scope=None):
    """``chain`` as a ScopeChain whose scope is the DIE that owns the variables at the probe.

    DWARF rule: a variable of an inlined copy is a child of that copy's
    DW_TAG_inlined_subroutine, so the lookup starts there, not at the subprogram the
    copy was inlined into (whose blocks may hold other variables of the same name):

    * ``scope`` given (the copy or function a FUNC probe was placed for): that DIE, added
      at the end when it holds no range (a copy described by its entry pc only);
    * FUNC:N: the innermost copy of FUNC holding the address (the subprogram itself when it
      is FUNC); when none holds it (N past FUNC's end), the innermost function there, as perf;
    * FILE:LINE: the innermost function or copy declared in FILE before LINE, skipping
      inlined calls whose call site is the line itself (the line belongs to the caller).

    gcc's copy of a function inside its own out-of-line copy (is_own_body) never scopes anything."""
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import lines as dwarf_lines
    chain = ScopeChain(chain)
    if not chain:
        return chain
    if scope is not None:
        for index, die in enumerate(chain):
            if die.offset == scope.offset:
                chain.scope = index
                return chain
        if scope.tag == "DW_TAG_inlined_subroutine":
            chain.append(scope)
            chain.scope = len(chain) - 1
            return chain
    if point.function is not None:

        wanted = names.FunctionName(point.function)
        for index in range(len(chain) - 1, -1, -1):
            die = chain[index]
            if die.tag in FUNCTION_TAGS and not is_own_body(ctx, chain, index) and wanted.matches(
                    names.qualifier_of(die) if wanted.qualified else "", dwarf_types.name_of(die),
                    names.linkage_name_of(die) if wanted.mangled else None):
                chain.scope = index
                return chain
        # perf (find_inner_scope_cb): the line lies outside FUNC (N past its end), in the innermost
        # function there, which owns the variables at that address.
        chain.scope = [index for index, die in enumerate(chain)
                       if die.tag in FUNCTION_TAGS and not is_own_body(ctx, chain, index)][-1]
        return chain
    for index in range(len(chain) - 1, 0, -1):
        die = chain[index]
        if die.tag not in FUNCTION_TAGS or is_own_body(ctx, chain, index):
            continue
        call_line = die.attributes.get("DW_AT_call_line")
        if call_line is not None and call_line.value == point.absolute_line and ctx.entry_pc(die) == address:
            continue
        decl_line = dwarf_types.origin_attr(die, "DW_AT_decl_line")[0]
        decl_file = dwarf_lines.decl_file_name(ctx, die)
        if decl_line is None or decl_file is None or decl_line.value > point.absolute_line:
            continue
        if dwarf_lines.file_matcher(point.source)(decl_file):
            chain.scope = index
            break
    return chain


def chain_for(ctx, cu, address, point, scope=None):
    """The ScopeChain for a probe at ``address`` (see probe_scope).

    For an inlined copy the probe was placed for, the blocks between the subprogram and the copy
    are not searched (variables are looked up in the copy, the frame base is the subprogram's):
    [subprogram, copy], without descending through the subprogram's blocks at every copy."""
    if scope is not None and scope.tag == "DW_TAG_inlined_subroutine":
        subprogram = ctx.enclosing_function(cu, scope)
        if subprogram is None or not ctx.die_contains(subprogram, address):
            subprogram = subprogram_at(ctx, cu, address)
        chain = ScopeChain([subprogram, scope] if subprogram is not None else [scope])
        chain.scope = len(chain) - 1
        return chain
    # A FUNC probe at an out-of-line copy's entry: that copy is the subprogram (no search for it).
    known = scope if scope is not None and scope.tag == "DW_TAG_subprogram" and ctx.die_contains(scope, address) \
        else None
    return probe_scope(ctx, scope_chain(ctx, cu, address, known), point, address, scope)


def inlined_entries(ctx, die, out):
    """Append (entry pc, DIE) of every inlined call below ``die`` to ``out``."""
    for child in die.iter_children():
        if child.tag == "DW_TAG_inlined_subroutine":
            pc = ctx.entry_pc(child)
            if pc is not None:
                out.append((pc, child))
        if child.tag in SCOPE_TAGS or child.tag == "DW_TAG_subprogram":
            inlined_entries(ctx, child, out)


def _origin_offset(cu, attr):
    return attr.value if attr.form == "DW_FORM_ref_addr" else attr.value + cu.cu_offset


def in_inlined_copy(ctx, cu, abstract, address):
    for die in scope_chain(ctx, cu, address):
        attr = die.attributes.get("DW_AT_abstract_origin")
        if die.tag == "DW_TAG_inlined_subroutine" and attr is not None and _origin_offset(cu, attr) == abstract.offset:
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
