# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Line tables: the addresses of a source line, the line at an address, the
end of a prologue, the lines of a function (perf's rules; see docs/uprobe.md).

Every function takes a ``context.DwarfContext`` first; tables are cached in it.
"""


import os
import struct

from ansible_collections.fleettrace.tracefs.plugins.module_utils import bounded
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import line_table as dwarf_line_table
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import scopes
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import typeinfo as dwarf_types


def decl_file_name(ctx, die):
    """The file ``die`` (or the DIE it completes) is declared in, by name: DW_AT_decl_file numbers a
    file of the unit holding the attribute, which with LTO is not the unit of ``die``."""
    attr, holder = dwarf_types.origin_attr(die, "DW_AT_decl_file")
    return dwarf_line_table.line_table(ctx, holder.cu).file_name(attr.value) if attr is not None else None


def instruction_starts(ctx):
    """Every address where a row of a line table says an instruction starts (all units)."""
    starts = set()
    for cu in ctx.dwarf.iter_CUs():
        table = dwarf_line_table.line_table(ctx, cu)
        starts.update(address for address, flags in zip(table.addresses, table.flags)
                      if not flags & dwarf_line_table.END_SEQUENCE)
    return starts


def file_matcher(name, suffix=True):
    """perf compares source files by suffix: 'demo.c' matches '/src/demo.c' and the other way round."""
    def matches(candidate):
        if not candidate:
            return False
        if candidate == name:
            return True
        return suffix and (candidate.endswith("/" + name) or name.endswith("/" + candidate))
    return matches


def compress_lines(numbers):
    """[1, 2, 3, 7] -> '1-3, 7'."""
    groups = []
    for number in numbers:
        if groups and number == groups[-1][1] + 1:
            groups[-1][1] = number
        else:
            groups.append([number, number])
    return ", ".join(str(a) if a == b else "%d-%d" % (a, b) for a, b in groups)


def read_source(file_name, cu):
    """Lines of a source file (relative names against the CU's DW_AT_comp_dir), or None."""
    candidates = [file_name]
    comp_dir = cu.get_top_DIE().attributes.get("DW_AT_comp_dir")
    if comp_dir is not None and not os.path.isabs(file_name):
        candidates.insert(0, os.path.join(comp_dir.value.decode("utf-8", "replace"), file_name))
    for path in candidates:
        try:
            # The path comes from the DWARF: a FIFO or /dev/zero there must not hang or flood us.
            with bounded.open_regular(path, "source file", bounded.SOURCE_MAX) as handle:
                return handle.read().decode("utf-8", "replace").splitlines(True)
        except (OSError, bounded.FileRefused):
            continue
    return None


def line_addresses(ctx, cu, file_matches, line, function_die=None):
    """Distinct addresses of ``line`` (perf rules: is_stmt rows + entry rows); ``function_die`` (one DIE or
    a list: the copies of an inline function) adds the inlined calls at that line inside it."""
    table = dwarf_line_table.line_table(ctx, cu)
    addresses = {row.address for row in table.stmt_rows_of_line(line) if file_matches(table.file_name(row.file))}
    # Entry rows: perf adds (decl_line, entry pc) for each function and
    # (call_line, entry pc) for each inlined call in the CU.
    infos = ctx.top_level(cu)
    if infos is None:
        subprograms = [(die, None) for die in scopes.iter_subprograms(cu)]
    else:
        subprograms = [(None, info) for info in infos if info["tag"] == "DW_TAG_subprogram"
                       and (info["range"] is not None or "DW_AT_ranges" in info)]
    by_offset = {info["offset"]: info for info in infos} if infos is not None else {}
    for die, info in subprograms:
        if info is not None and "DW_AT_decl_line" in info and "DW_AT_decl_file" in info:
            if info["DW_AT_decl_line"][0] != line or not file_matches(table.file_name(info["DW_AT_decl_file"][0])):
                continue
        elif info is not None and "DW_AT_abstract_origin" not in info and "DW_AT_specification" not in info:
            continue
        elif info is not None:
            # A copy or a definition: its declaration line is on the DIE it names, skimmed too when that
            # DIE is in this unit's top level (no pyelftools DIE for each of a big unit's copies).
            link = info.get("DW_AT_abstract_origin") or info.get("DW_AT_specification")
            target = by_offset.get(link[0] if link[1] == "DW_FORM_ref_addr" else link[0] + cu.cu_offset)
            if target is not None and "DW_AT_decl_line" in target and target["DW_AT_decl_line"][0] != line:
                continue
        die = die if die is not None else ctx.die_at(cu, info["offset"])
        decl_line = dwarf_types.origin_attr(die, "DW_AT_decl_line")[0]
        pc = ctx.entry_pc(die)
        if pc is not None and decl_line is not None and decl_line.value == line \
                and file_matches(decl_file_name(ctx, die) or ""):
            addresses.add(pc)
    # Inlined calls can only name this line inside the functions that hold its code.
    function_dies = [] if function_die is None else function_die if isinstance(function_die, list) else [function_die]
    holders = {}
    for address in list(addresses) + [ctx.entry_pc(die) for die in function_dies]:
        die = scopes.subprogram_at(ctx, cu, address) if address is not None else None
        if die is not None:
            holders[die.offset] = die
    for die in function_dies:
        holders[die.offset] = die
    for die in holders.values():
        for call_file, pc_inline in _inlined_calls_at(ctx, die, line):
            if pc_inline is not None and file_matches(table.file_name(call_file)):
                addresses.add(pc_inline)
    return sorted(addresses)


def _inlined_calls_at(ctx, die, line):
    """(call file, entry pc) of the inlined calls below ``die`` whose call site is ``line``.  The subtree
    is walked in raw bytes (dwarf/skim.py): a big function holds thousands of DIEs, and only the calls at
    the line are opened with pyelftools."""
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import skim as dwarf_skim
    try:
        found = [(offset, info["DW_AT_call_file"][0])
                 for offset, tag, info in dwarf_skim.subtree(ctx.skimmer(die.cu), die.offset)
                 if tag == "DW_TAG_inlined_subroutine" and offset != die.offset
                 and (info.get("DW_AT_call_line") or (None,))[0] == line and "DW_AT_call_file" in info]
        return [(call_file, ctx.entry_pc(ctx.die_at(die.cu, offset))) for offset, call_file in found]
    except (dwarf_skim.SkimError, IndexError, KeyError, ValueError, struct.error):
        inlined = []
        scopes.inlined_entries(ctx, die, inlined)
        return [(child.attributes["DW_AT_call_file"].value, pc) for pc, child in inlined
                if "DW_AT_call_file" in child.attributes and "DW_AT_call_line" in child.attributes
                and child.attributes["DW_AT_call_line"].value == line]


def line_at(ctx, cu, address):
    """(file name, line) perf sees at an address: inline call / function entry / first row."""
    chain = scopes.scope_chain(ctx, cu, address)
    table = dwarf_line_table.line_table(ctx, cu)
    # perf (cu_find_lineinfo): a real function's entry maps to its declaration line;
    # anything else, inlined entries included, to the first is_stmt row there.
    if chain and ctx.entry_pc(chain[0]) == address:
        decl_line = dwarf_types.origin_attr(chain[0], "DW_AT_decl_line")[0]
        decl_file = decl_file_name(ctx, chain[0])
        if decl_line is not None and decl_file is not None:
            return decl_file, decl_line.value
    row = table.first_stmt_row_at(address)
    if row is None:
        return None, None
    return table.file_name(row.file), row.line


def prologue_end(ctx, cu, die, entry):
    """perf's prologue rule (die_skip_prologue) for -O0: the first is_stmt row after ``entry``.

    gcc -O0 starts a new row once the arguments are stored in their stack slots, often
    on the same line (one-line functions, `{` on the declaration line, the stack
    protector's set-up): the row's line does not matter, only that it comes after the
    entry and inside the function.  Probing earlier reads unwritten slots."""
    table = dwarf_line_table.line_table(ctx, cu)
    ranges = ctx.die_ranges(die)
    if table.first_stmt_row_at(entry) is None or not ranges:
        return entry
    for row in table.rows_between(entry + 1, max(high for _low, high in ranges)):
        if row.is_stmt and any(low <= row.address < high for low, high in ranges):
            return row.address
    return entry


def function_lines(ctx, cu, die):
    """Absolute line numbers with is_stmt rows inside the function's ranges (declaring file)."""
    table = dwarf_line_table.line_table(ctx, cu)
    file_name = decl_file_name(ctx, die)
    ranges = ctx.die_ranges(die)
    # Rows inside inlined bodies belong to the inlined function's source, as in perf -L.
    inlined = []
    scopes.inlined_entries(ctx, die, inlined)
    inlined_ranges = [r for _pc, child in inlined for r in ctx.die_ranges(child)]
    lines = set()
    for low, high in ranges:
        for row in table.rows_between(low, high):
            if not row.is_stmt or any(start <= row.address < end for start, end in inlined_ranges):
                continue
            if file_name is None or table.file_name(row.file) == file_name:
                lines.add(row.line)
    return sorted(lines)


def cus_for_source(ctx, source):
    """CUs whose line table names the source file (CU name match first)."""
    matched = [cu for cu in ctx.dwarf.iter_CUs() if scopes.cu_matches(cu, source)]
    if matched:
        return matched
    found = []
    for cu in ctx.dwarf.iter_CUs():
        table = dwarf_line_table.line_table(ctx, cu)
        if any(file_matcher(source, suffix=True)(table.file_name(i)) for i in table.file_indexes()):
            found.append(cu)
    return found
