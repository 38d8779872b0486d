# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Line tables: the addresses of a source line, the line at an address, the
end of a prologue, the lines of a function (perf's rules; see docs/uprobe.md).

Every function takes a ``context.DwarfContext`` first; tables are cached in it.
"""


import bisect
import operator
import os
import struct

from ansible_collections.fleettrace.tracefs.plugins.module_utils import bounded
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import scopes
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import typeinfo as dwarf_types

# DWARF 5 numbers files and directories from 0, with the CU's own at 0; earlier versions from 1.
DWARF5 = 5


class LineRow(tuple):
    """One row of the line-number matrix: ``LineRow(tuple_of_six)``.

    ``order`` sorts end_sequence rows (0) before others (1) at the same address, as perf
    reads them.  A tuple with named fields, written out: collections.namedtuple builds
    its class with exec at import, which a cold resolution pays for.
    """

    __slots__ = ()
    _fields = ("address", "order", "line", "file", "is_stmt", "end_sequence")
    address = property(operator.itemgetter(0))
    order = property(operator.itemgetter(1))
    line = property(operator.itemgetter(2))
    file = property(operator.itemgetter(3))
    is_stmt = property(operator.itemgetter(4))
    end_sequence = property(operator.itemgetter(5))

    def __repr__(self):
        return "LineRow(%s)" % ", ".join("%s=%r" % pair for pair in zip(self._fields, self))


class LineTable:
    """The line-number matrix of one CU, sorted by (address, order).

    ``rows`` holds plain tuples in ``LineRow``'s field order, and scans over them unpack
    each into named locals: a CU of libpython has ~8000 rows, and building a LineRow for
    each, or unpacking a tuple subclass, costs more than a millisecond per table.  The
    lookups of single rows (``first_stmt_row_at``, ``rows_between``) return ``LineRow``s.
    """

    def __init__(self, program, rows, version):
        self.program = program
        self.rows = rows
        self.version = version
        self._addresses = [address for address, _o, _l, _f, _s, _e in rows]
        self._names = {}

    def file_indexes(self):
        if self.program is None:
            return []
        count = len(self.program.header["file_entry"])
        return range(count) if self.version >= DWARF5 else range(1, count + 1)

    def file_name(self, index):
        cached = self._names.get(index)
        if cached is not None:
            return cached
        header = self.program.header
        position = index if self.version >= DWARF5 else index - 1
        try:
            entry = header["file_entry"][position]
        except (IndexError, TypeError):
            return ""
        name = entry.name.decode("utf-8", "replace")
        directories = header["include_directory"]
        dir_index = entry.dir_index
        directory = ""
        if self.version >= DWARF5:
            if dir_index < len(directories):
                directory = directories[dir_index].decode("utf-8", "replace")
        elif dir_index > 0 and dir_index - 1 < len(directories):
            directory = directories[dir_index - 1].decode("utf-8", "replace")
        full = os.path.join(directory, name) if directory else name
        self._names[index] = full
        return full

    def row(self, index):
        return LineRow(self.rows[index])

    def has_address(self, address):
        index = bisect.bisect_left(self._addresses, address)
        return index < len(self._addresses) and self._addresses[index] == address and not self.row(index).end_sequence

    def first_stmt_row_at(self, address):
        index = bisect.bisect_left(self._addresses, address)
        while index < len(self.rows) and self._addresses[index] == address:
            row = self.row(index)
            if row.is_stmt and not row.end_sequence:
                return row
            index += 1
        return None

    def rows_between(self, low, high):
        index = bisect.bisect_left(self._addresses, low)
        while index < len(self.rows) and self._addresses[index] < high:
            row = self.row(index)
            if not row.end_sequence:
                yield row
            index += 1


def line_table(ctx, cu):
    """The CU's ``LineTable`` (cached in the context)."""
    cached = ctx.line_tables.get(cu.cu_offset)
    if cached is not None:
        return cached
    program = ctx.dwarf.line_program_for_CU(cu)
    rows = []
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import skim as dwarf_skim
    try:
        rows = dwarf_skim.decode_line_rows(program, cu["version"]) if program is not None else []
        fast = True
    except (dwarf_skim.SkimError, IndexError, KeyError, struct.error):
        rows, fast = [], False
    if program is not None and not fast:
        for entry in program.get_entries():
            state = entry.state
            if state is None:
                continue
            rows.append((state.address, 0 if state.end_sequence else 1, state.line, state.file,
                         state.is_stmt, state.end_sequence))
        rows.sort(key=lambda r: (r[0], r[1]))   # decode_line_rows returns its rows sorted already
    table = LineTable(program, rows, cu["version"])
    ctx.line_tables[cu.cu_offset] = table
    return table


def decl_file_name(ctx, die):
    """The file ``die`` (or the DIE it completes) is declared in, by name: DW_AT_decl_file numbers a
    file of the unit holding the attribute, which with LTO is not the unit of ``die``."""
    attr, holder = dwarf_types.origin_attr(die, "DW_AT_decl_file")
    return line_table(ctx, holder.cu).file_name(attr.value) if attr is not None else None


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
    table = line_table(ctx, cu)
    addresses = set()
    for address, _order, row_line, file_index, is_stmt, end in table.rows:
        if end or not is_stmt or row_line != line:
            continue
        if file_matches(table.file_name(file_index)):
            addresses.add(address)
    # Entry rows: perf adds (decl_line, entry pc) for each function and
    # (call_line, entry pc) for each inlined call in the CU.
    infos = ctx.top_level(cu)
    if infos is None:
        subprograms = [(die, None) for die in scopes.iter_subprograms(cu)]
    else:
        subprograms = [(None, info) for info in infos if info["tag"] == "DW_TAG_subprogram"
                       and (info["range"] is not None or "DW_AT_ranges" in info)]
    for die, info in subprograms:
        if info is not None and "DW_AT_decl_line" in info and "DW_AT_decl_file" in info:
            if info["DW_AT_decl_line"][0] != line or not file_matches(table.file_name(info["DW_AT_decl_file"][0])):
                continue
        elif info is not None and "DW_AT_abstract_origin" not in info and "DW_AT_specification" not in info:
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
        inlined = []
        scopes.inlined_entries(ctx, die, inlined)
        for pc_inline, child in inlined:
            call_line = child.attributes.get("DW_AT_call_line")
            call_file = child.attributes.get("DW_AT_call_file")
            if call_line is not None and call_line.value == line and call_file is not None \
                    and file_matches(table.file_name(call_file.value)):
                addresses.add(pc_inline)
    return sorted(addresses)


def line_at(ctx, cu, address):
    """(file name, line) perf sees at an address: inline call / function entry / first row."""
    chain = scopes.scope_chain(ctx, cu, address)
    table = line_table(ctx, cu)
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
    table = line_table(ctx, cu)
    ranges = ctx.die_ranges(die)
    if table.first_stmt_row_at(entry) is None or not ranges:
        return entry
    for row in table.rows_between(entry + 1, max(high for _low, high in ranges)):
        if row.is_stmt and any(low <= row.address < high for low, high in ranges):
            return row.address
    return entry


def function_lines(ctx, cu, die):
    """Absolute line numbers with is_stmt rows inside the function's ranges (declaring file)."""
    table = line_table(ctx, cu)
    file_name = decl_file_name(ctx, die)
    ranges = ctx.die_ranges(die)
    # Rows inside inlined bodies belong to the inlined function's source, as in perf -L.
    inlined = []
    scopes.inlined_entries(ctx, die, inlined)
    inlined_ranges = [r for _pc, child in inlined for r in ctx.die_ranges(child)]
    lines = set()
    for address, _o, line, file_index, is_stmt, end in table.rows:
        if end or not is_stmt or not any(low <= address < high for low, high in ranges):
            continue
        if any(low <= address < high for low, high in inlined_ranges):
            continue
        if file_name is None or table.file_name(file_index) == file_name:
            lines.add(line)
    return sorted(lines)


def cus_for_source(ctx, source):
    """CUs whose line table names the source file (CU name match first)."""
    matched = [cu for cu in ctx.dwarf.iter_CUs() if scopes.cu_matches(cu, source)]
    if matched:
        return matched
    found = []
    for cu in ctx.dwarf.iter_CUs():
        table = line_table(ctx, cu)
        if any(file_matcher(source, suffix=True)(table.file_name(i)) for i in table.file_indexes()):
            found.append(cu)
    return found
