# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every DIE that stands for a function, and every copy of its code (perf's rules).

A C function ``f`` may appear in the DWARF as:

* one DIE with a name and code (the plain case);
* an abstract DIE (``DW_AT_inline``, name, no code) with instances: inlined copies
  (``DW_TAG_inlined_subroutine``) and out-of-line copies or clones (``f``,
  ``f.constprop.0``, ``f.isra.0``, ``f.part.0``: subprograms naming the abstract
  DIE through ``DW_AT_abstract_origin``);
* a definition without code (an exported alias whose code is another function's):
  only the symbol table knows the address;
* several of these in different units (static functions of the same name).

``find_function`` returns the DIEs in unit and DIE order, ``instances`` the
copies of an abstract DIE.  Units come from the symbol table and .debug_aranges
when ``f`` is a symbol, else from a byte search of the DWARF (dwarf/byte_search.py),
never from a walk of every unit.  Every function takes a ``context.DwarfContext``.
"""


import struct

from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import byte_search
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import line_table as dwarf_line_table
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import names
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import skim as dwarf_skim
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import scopes
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import typeinfo as dwarf_types

SUBPROGRAM = "DW_TAG_subprogram"
INLINED = "DW_TAG_inlined_subroutine"


def ref_offset(cu, value, form):
    """Section offset of a reference attribute's value."""
    return value if form == "DW_FORM_ref_addr" else value + cu.cu_offset


def find_function(ctx, name, source=None):
    """``(cu, die)`` of every DIE standing for ``name`` (a C name, a C++ name such as ``ns::Class::method``
    or a linkage name: dwarf/names.py), in unit and DIE order.

    Named DIEs (with code, abstract, or without code) and clones naming one of
    them through DW_AT_abstract_origin / DW_AT_specification.  A static function
    may have namesakes in other units: those are searched too.  With LTO the DIE
    naming a function is in the early debug info of its source file, without code:
    its copies (instances()) are in the units the link-time compilation made."""
    units = []
    for vaddr, _size in ctx.symbols.function(name):
        offset = ctx.cu_offset_for_address(vaddr)
        if offset is not None and offset not in units:
            units.append(offset)
    searched = not units
    if searched:
        units = units_naming(ctx, name)
    found = _dies_in(ctx, units, name, source)
    if not searched and not any(_is_external(die) for _cu, die in found):
        more = [offset for offset in units_naming(ctx, name) if offset not in units]
        found += _dies_in(ctx, more, name, source)
        found.sort(key=lambda pair: pair[0].cu_offset)     # stable: DIE order within a unit
    return found


def _dies_in(ctx, units, name, source):
    found = []
    for offset in sorted(units):
        cu = ctx.cu_at(offset)
        if not source or scopes.cu_matches(cu, source):
            found += function_dies(ctx, cu, name)
    return found


def _is_external(die):
    _attr, holder = dwarf_types.origin_attr(die, "DW_AT_external")
    return holder is not None


def units_naming(ctx, name):
    """Offsets of the units that may define ``name``: the stored function index (dwarf/function_index.py)
    when it names some, else a byte search (every unit when it cannot search)."""
    indexed = ctx.indexed_units(names.FunctionName(name))
    if indexed:
        return indexed
    name = names.lookup_key(name)
    if ctx.unit_starts is None:
        ctx.unit_starts = byte_search.unit_starts(ctx.section(".debug_info")) or []
    units = None
    if ctx.unit_starts and not ctx.section(".debug_str_offsets"):    # names through strx: not searchable
        units = byte_search.units_naming(ctx.section(".debug_info"), ctx.section(".debug_str"), name,
                                         ctx.unit_starts)
    if units is None:
        if not scopes.name_in_debug_strings(ctx, name):
            return []
        units = [cu.cu_offset for cu in ctx.dwarf.iter_CUs()]
    return units


def function_dies(ctx, cu, name):
    """DIEs of ``cu`` for function ``name`` (see names.FunctionName), in DIE order: the ones with that
    name, and those completing one of them through DW_AT_specification (a C++ method's definition
    outside its class) or DW_AT_abstract_origin (clones, out-of-line copies); declarations left out."""
    wanted = names.FunctionName(name)
    indexed = ctx.indexed_function_dies(cu, wanted)
    if indexed is not None:
        return [(cu, ctx.die_at(cu, offset)) for offset in indexed]
    infos = ctx.top_level(cu)
    if infos is None:
        return [(cu, die) for die in scopes.iter_subprograms(cu)
                if "DW_AT_declaration" not in die.attributes and wanted.matches(
                    names.qualifier_of(die), dwarf_types.name_of(die), names.linkage_name_of(die))]
    subprograms = [info for info in infos if info["tag"] == SUBPROGRAM]
    named = {info["offset"] for info in subprograms
             if wanted.matches(info.get("scope", ""), (info.get("DW_AT_name") or (None,))[0],
                               (info.get("DW_AT_linkage_name") or (None,))[0])}
    # A definition completes a declaration (specification), a copy its abstract DIE (origin), and an
    # abstract DIE may itself complete a declaration: two rounds reach every one whatever the order.
    for _round in range(2):
        for info in subprograms:
            origin = info.get("DW_AT_abstract_origin") or info.get("DW_AT_specification")
            if origin is not None and ref_offset(cu, *origin) in named:
                named.add(info["offset"])
    return [(cu, ctx.die_at(cu, info["offset"])) for info in subprograms
            if info["offset"] in named and "DW_AT_declaration" not in info]


def identity(die):
    """Offset of the DIE that names the function ``die`` stands for (its declaration, else its abstract
    DIE, else itself): C++ overloads and methods of several classes with one name are distinct
    functions, each probed by perf's per-unit rule on its own."""
    seen = 0
    while seen < 8:
        for link in ("DW_AT_specification", "DW_AT_abstract_origin"):
            if link in die.attributes:
                die = die.get_DIE_from_attribute(link)
                break
        else:
            return die.offset
        seen += 1
    return die.offset


def is_self_copy(ctx, die):
    """An inlined copy whose call site is its own function's declaration line.

    gcc describes the out-of-line copy's body this way (its variables mostly
    without locations); it is not a call.  perf skips it (__die_walk_instances_cb).
    The files are compared by name when the declaration is in another unit (LTO)."""
    if die.tag != INLINED:
        return False
    call_line, call_file = die.attributes.get("DW_AT_call_line"), die.attributes.get("DW_AT_call_file")
    decl_line = dwarf_types.origin_attr(die, "DW_AT_decl_line")[0]
    decl_file, holder = dwarf_types.origin_attr(die, "DW_AT_decl_file")
    if None in (call_line, call_file, decl_line, decl_file) or call_line.value != decl_line.value:
        return False
    if holder.cu.cu_offset == die.cu.cu_offset:
        return call_file.value == decl_file.value
    return dwarf_line_table.line_table(ctx, die.cu).file_name(call_file.value) == \
        dwarf_line_table.line_table(ctx, holder.cu).file_name(decl_file.value)


def instances(ctx, cu, abstract):
    """``(entry pc, DIE)`` of every instance of an abstract DIE, in DIE order (perf's
    die_walk_instances): inlined copies, then out-of-line copies and clones where
    they come; self copies left out; each entry address once.  Those in other units
    (LTO: the abstract DIE is in the early debug info of its source file, the copies
    in the units the link-time compilation made) come after those of its own unit;
    perf does not search them."""
    found = [(die.offset, die) for _pc, die in inlined_copies(ctx, cu, abstract) if not is_self_copy(ctx, die)]
    copies = ctx.indexed_copies(abstract.offset, stored_only=True)
    if copies is not None:          # the stored index lists the out-of-line copies: no skim of the unit
        outlines = [ctx.die_at(cu, offset) for offset in copies[1] if cu.cu_offset <= offset < cu.cu_offset + cu.size]
    else:
        outlines = [ctx.die_at(cu, info["offset"]) for info in ctx.top_level(cu) or []
                    if info["tag"] == SUBPROGRAM and info.get("DW_AT_abstract_origin") is not None
                    and ref_offset(cu, *info["DW_AT_abstract_origin"]) == abstract.offset]
    found += [(die.offset, die) for die in outlines
              if die.tag == SUBPROGRAM and "DW_AT_abstract_origin" in die.attributes and ctx.die_ranges(die)]
    elsewhere = []
    inlined, out_of_line = ctx.indexed_copies(abstract.offset) or ((), ())
    for offset in sorted(inlined + out_of_line):
        if not cu.cu_offset <= offset < cu.cu_offset + cu.size:
            die = ctx.die_at(None, offset)
            if (die.tag == SUBPROGRAM and ctx.die_ranges(die)) or (die.tag == INLINED and not is_self_copy(ctx, die)):
                elsewhere.append((die.offset, die))
    result, seen = [], set()
    for _offset, die in sorted(found, key=lambda item: item[0]) + elsewhere:
        pc = ctx.entry_pc(die)
        if pc is not None and pc not in seen:
            seen.add(pc)
            result.append((pc, die))
    return result


def inlined_copies(ctx, cu, abstract):
    """``(entry pc, DIE)`` of every inlined copy of ``abstract`` in its CU, in DIE order, each address once."""
    copies, seen = [], set()
    for die in _inlined_copy_dies(ctx, cu, abstract):
        pc = ctx.entry_pc(die)
        if pc is not None and pc not in seen:
            seen.add(pc)
            copies.append((pc, die))
    return copies


def _skimmed_copies(ctx, cu, abstract, holders):
    """Offsets of the inlined copies of ``abstract`` below ``holders``, from raw bytes (dwarf/skim.py)."""
    skimmer = ctx.skimmer(cu)
    found = []
    for holder in holders:
        for offset, tag, info in dwarf_skim.subtree(skimmer, holder):
            origin = info.get("DW_AT_abstract_origin")
            if tag == INLINED and origin is not None and ref_offset(cu, *origin) == abstract.offset:
                found.append(offset)
    return found


def _inlined_copy_dies(ctx, cu, abstract):
    """From the stored function index (dwarf/function_index.py); without one, walk only the
    top-level DIEs whose bytes refer to ``abstract`` (dwarf/byte_search.py); the whole unit when its
    inlined copies use another reference form."""
    indexed = ctx.indexed_inlined_copies(cu, abstract.offset)
    if indexed is not None:
        for offset in indexed:
            yield ctx.die_at(cu, offset)
        return
    infos = ctx.top_level(cu)
    holders = None
    if infos is not None:
        try:
            forms = byte_search.origin_forms(cu.get_abbrev_table()._abbrev_map)
        except AttributeError:      # another pyelftools: walk
            forms = None
        if forms is not None and forms <= {"DW_FORM_ref4"}:
            data = ctx.section(".debug_info")[cu.cu_offset:cu.cu_offset + cu.size]
            holders = byte_search.holders(data, cu.cu_offset, abstract.offset - cu.cu_offset,
                                          [info["offset"] for info in infos])
    if holders is not None:
        try:
            found = _skimmed_copies(ctx, cu, abstract, holders)
        except (dwarf_skim.SkimError, IndexError, KeyError, ValueError, struct.error):
            found = None        # forms the skimmer does not decode: walk with pyelftools
        if found is not None:
            for offset in found:
                yield ctx.die_at(cu, offset)
            return
    roots = [cu.get_top_DIE()] if holders is None else [ctx.die_at(cu, offset) for offset in holders]
    for root in roots:
        stack = [root]
        while stack:
            die = stack.pop()
            attr = die.attributes.get("DW_AT_abstract_origin")
            if die.tag == INLINED and attr is not None and ref_offset(cu, attr.value, attr.form) == abstract.offset:
                yield die
            if die.has_children:
                stack.extend(reversed(list(die.iter_children())))
