# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The line-number matrix of one unit, decoded once per build-id.

Decoding a unit's line program runs a Python state machine over every opcode:
~8000 rows and ~10 ms for a unit of libpython, 237,000 rows and ~160 ms for
the sqlite3 amalgamation (perf reads it in C; ``decode_line_rows`` is that state machine,
the header's fields read by pyelftools).  A decoded matrix is stored in
columns (addresses, lines, files, flags: ``array`` bytes) next to the function
index, under ``<index dir>/BUILD_ID/lines/UNIT.bin``, and loaded in ~2 ms the
next time; the rows of one line are then found by a byte search of the line
column.  Like the function index it is a cache of the DWARF keyed by build-id
(written in check mode too), used only when its stamp matches.
"""


import array
import bisect
import marshal
import operator
import os
import struct
import sys

from ansible_collections.fleettrace.tracefs.plugins.module_utils import bounded
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.cache_dirs import index_dir
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.skim import UNSIGNED, SkimError, read_sleb, read_uleb

LINES_VERSION = 1
# DWARF 5 numbers files and directories from 0, with the CU's own at 0; earlier versions from 1.
DWARF5 = 5
IS_STMT, END_SEQUENCE = 1, 2        # bits of the flags column
_LINE = struct.Struct("<I")


class LineRow(tuple):
    """One row of the line-number matrix: ``LineRow((address, order, line, file, is_stmt, end_sequence))``.

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
    """The line-number matrix of one unit in columns, sorted by (address, order); ``names`` maps
    the unit's file numbers to paths."""

    def __init__(self, addresses, lines, files, flags, names):
        self.addresses = addresses      # array('Q')
        self.lines = lines              # array('I')
        self.files = files              # array('I')
        self.flags = flags              # bytes: IS_STMT | END_SEQUENCE
        self.names = names

    @classmethod
    def from_rows(cls, rows, names):
        """From ``(address, order, line, file, is_stmt, end_sequence)`` rows sorted by (address, order)."""
        return cls(array.array("Q", [r[0] for r in rows]), array.array("I", [r[2] for r in rows]),
                   array.array("I", [r[3] for r in rows]),
                   bytes((IS_STMT if r[4] else 0) | (END_SEQUENCE if r[5] else 0) for r in rows), names)

    def __len__(self):
        return len(self.addresses)

    def file_indexes(self):
        return sorted(self.names)

    def file_name(self, index):
        return self.names.get(index, "")

    def row(self, index):
        flags = self.flags[index]
        end = bool(flags & END_SEQUENCE)
        return LineRow((self.addresses[index], 0 if end else 1, self.lines[index], self.files[index],
                        bool(flags & IS_STMT), end))

    def has_address(self, address):
        index = bisect.bisect_left(self.addresses, address)
        while index < len(self.addresses) and self.addresses[index] == address:
            if not self.flags[index] & END_SEQUENCE:
                return True
            index += 1
        return False

    def first_stmt_row_at(self, address):
        index = bisect.bisect_left(self.addresses, address)
        while index < len(self.addresses) and self.addresses[index] == address:
            if self.flags[index] == IS_STMT:
                return self.row(index)
            index += 1
        return None

    def rows_between(self, low, high):
        """Rows (not end_sequence) with low <= address < high."""
        index = bisect.bisect_left(self.addresses, low)
        while index < len(self.addresses) and self.addresses[index] < high:
            if not self.flags[index] & END_SEQUENCE:
                yield self.row(index)
            index += 1

    def stmt_rows_of_line(self, line):
        """Rows of ``line`` that are is_stmt (not end_sequence): the line column searched as bytes."""
        column = self.lines.tobytes()
        needle = _LINE.pack(line) if sys.byteorder == "little" else struct.pack("=I", line)
        found = []
        position = column.find(needle)
        while position >= 0:
            if position % 4 == 0 and self.flags[position // 4] == IS_STMT:
                found.append(self.row(position // 4))
            position = column.find(needle, position + 1)
        return found


_row_order = operator.itemgetter(0, 1)     # line rows: address, then end_sequence rows first


def decode_line_rows(program, version):
    """Rows ``(address, order, line, file, is_stmt, end_sequence)`` of a line program.

    ``order`` sorts end_sequence rows first at equal addresses (perf's order).
    """
    header = program.header
    stream = program.stream
    stream.seek(program.program_start_offset)
    data = stream.read(program.program_end_offset - program.program_start_offset)
    min_len = header["minimum_instruction_length"]
    default_is_stmt = bool(header["default_is_stmt"])
    line_base = header["line_base"]
    line_range = header["line_range"]
    opcode_base = header["opcode_base"]
    lengths = list(header["standard_opcode_lengths"])
    address_size = header.get("address_size") if hasattr(header, "get") else None
    rows = []
    append = rows.append
    pos = 0
    end = len(data)
    const_add = ((255 - opcode_base) // line_range) * min_len
    column_operand = len(lengths) > 4 and lengths[4] == 1
    # The state lives in locals (address, file, line, is_stmt): this loop runs once per opcode.
    address, file_index, line, is_stmt = 0, 1, 1, default_is_stmt
    while pos < end:
        opcode = data[pos]
        pos += 1
        if opcode >= opcode_base:
            adjusted = opcode - opcode_base
            address += (adjusted // line_range) * min_len
            line += line_base + adjusted % line_range
            append((address, 1, line, file_index, is_stmt, False))
        elif opcode == 5 and column_operand:   # set_column (the most frequent): skip its ULEB
            if data[pos] < 0x80:
                pos += 1
            else:
                _v, pos = read_uleb(data, pos)
        elif opcode == 6:       # negate_stmt
            is_stmt = not is_stmt
        elif opcode == 1:       # copy
            append((address, 1, line, file_index, is_stmt, False))
        elif opcode == 0:
            length, pos = read_uleb(data, pos)
            if length == 0:
                continue
            sub = data[pos]
            body = pos + 1
            pos += length
            if sub == 1:        # end_sequence
                append((address, 0, line, file_index, is_stmt, True))
                address, file_index, line, is_stmt = 0, 1, 1, default_is_stmt
            elif sub == 2:      # set_address
                size = length - 1
                if size not in UNSIGNED:
                    raise SkimError("set_address of %d bytes" % size)
                address = struct.unpack_from("<" + UNSIGNED[size], data, body)[0]
            # define_file (3), set_discriminator (4), vendor ops: nothing we use.
        elif opcode == 2:       # advance_pc
            value = data[pos]
            if value < 0x80:
                pos += 1
            else:
                value, pos = read_uleb(data, pos)
            address += value * min_len
        elif opcode == 3:       # advance_line
            value = data[pos]
            if value < 0x40:    # one-byte SLEB, positive
                pos += 1
            else:
                value, pos = read_sleb(data, pos)
            line += value
        elif opcode == 4:       # set_file
            file_index, pos = read_uleb(data, pos)
        elif opcode == 8:       # const_add_pc
            address += const_add
        elif opcode == 9:       # fixed_advance_pc
            address += struct.unpack_from("<H", data, pos)[0]
            pos += 2
        elif opcode in (7, 10, 11):
            pass
        else:                   # set_column, set_isa, unknown: skip their ULEB operands
            for _i in range(lengths[opcode - 1] if opcode - 1 < len(lengths) else 0):
                _v, pos = read_uleb(data, pos)
    del address_size, version
    rows.sort(key=_row_order)
    return rows


def decode(ctx, cu):
    """The unit's LineTable from its line program (pyelftools' header, ``decode_line_rows``)."""
    program = ctx.dwarf.line_program_for_CU(cu)
    if program is None:
        return LineTable(array.array("Q"), array.array("I"), array.array("I"), b"", {})
    try:
        rows = decode_line_rows(program, cu["version"])
    except (SkimError, IndexError, KeyError, struct.error):
        rows = []
        for entry in program.get_entries():
            state = entry.state
            if state is not None:
                rows.append((state.address, 0 if state.end_sequence else 1, state.line, state.file,
                             state.is_stmt, state.end_sequence))
        rows.sort(key=lambda r: (r[0], r[1]))
    return LineTable.from_rows(rows, _file_names(program, cu["version"]))


def _file_names(program, version):
    """{file number: path} of a line program's header (directory joined)."""
    header = program.header
    directories = header["include_directory"]
    names = {}
    for position, entry in enumerate(header["file_entry"]):
        name = entry.name.decode("utf-8", "replace")
        dir_index = entry.dir_index
        directory = ""
        if version >= DWARF5:
            if dir_index < len(directories):
                directory = directories[dir_index].decode("utf-8", "replace")
        elif 0 < dir_index <= len(directories):
            directory = directories[dir_index - 1].decode("utf-8", "replace")
        names[position if version >= DWARF5 else position + 1] = os.path.join(directory, name) if directory else name
    return names


def _path(build_id, unit):
    return os.path.join(index_dir(), build_id, "lines", "%x.bin" % unit)


def _stamp(ctx):
    return (LINES_VERSION, tuple(sys.version_info[:2]), ctx.section_size(".debug_line"),
            ctx.section_size(".debug_line_str"))


def load(ctx, cu):
    """The stored LineTable of ``cu`` when its stamp matches, else None."""
    if not ctx.build_id:
        return None
    path = _path(ctx.build_id, cu.cu_offset)
    try:
        with bounded.open_regular(path, "line table") as handle:
            stamp, columns, names = marshal.load(handle)
    except (bounded.FileRefused, OSError, ValueError, EOFError, TypeError, MemoryError):
        return None
    if stamp != _stamp(ctx):
        return None
    try:
        addresses, lines, files = array.array("Q"), array.array("I"), array.array("I")
        addresses.frombytes(columns[0])
        lines.frombytes(columns[1])
        files.frombytes(columns[2])
        flags = columns[3]
    except (ValueError, TypeError, IndexError):
        return None
    if not len(addresses) == len(lines) == len(files) == len(flags):
        return None
    return LineTable(addresses, lines, files, flags, names)


def store(ctx, cu, table):
    """Keep ``table`` for the next run (a table that cannot be written only costs time)."""
    if not ctx.build_id:
        return
    path = _path(ctx.build_id, cu.cu_offset)
    temp = "%s.%d.tmp" % (path, os.getpid())
    try:
        if not os.path.isdir(os.path.dirname(path)):
            os.makedirs(os.path.dirname(path))
        with bounded.open_new(temp, "line table", binary=True) as out:
            marshal.dump((_stamp(ctx), (table.addresses.tobytes(), table.lines.tobytes(), table.files.tobytes(),
                                        bytes(table.flags)), table.names), out)
        os.rename(temp, path)   # atomic: concurrent runs never see half a file
    except (OSError, ValueError, bounded.FileRefused):
        try:
            os.unlink(temp)
        except OSError:
            pass


def line_table(ctx, cu):
    """The unit's ``LineTable``: cached in the context, else stored by build-id, else decoded (and stored)."""
    table = ctx.line_tables.get(cu.cu_offset)
    if table is None:
        table = load(ctx, cu)
        if table is None:
            table = decode(ctx, cu)
            store(ctx, cu, table)
        ctx.line_tables[cu.cu_offset] = table
    return table
