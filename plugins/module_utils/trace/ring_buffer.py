# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Binary events from ``per_cpu/cpuN/trace_pipe_raw``.

Reading text from ``trace_pipe`` costs the kernel a printf per event and us a
regex per line; at 100k scheduler events per second that is more than one
core.  The raw pages are what the ring buffer holds: a page header
(``events/header_page``), then events with a 32-bit header
(``events/header_event``: type_len:5, time_delta:27) and the payload laid out
as each event's ``format`` file says.  We unpack only the fields we need, at
the offsets the kernel publishes, so nothing here hard-codes a layout.

Pages also tell when the writer overwrote events we had not read yet
(commit flags ``MISSED_EVENTS``/``MISSED_STORED``); the per-CPU ``stats``
file counts overruns.  Both are reported, never ignored.
"""


import re
import struct


TYPE_PADDING = 29
TYPE_TIME_EXTEND = 30
TYPE_TIME_STAMP = 31
TS_SHIFT = 27
MISSED_EVENTS = 1 << 31
MISSED_STORED = 1 << 30
COMMIT_MASK = (1 << 27) - 1
# Absolute time stamps carry 59 bits; the top bits come from the page.
TS_MSB = 0xf8 << 56

_FIELD = re.compile(r"field:(?P<decl>[^;]+);\s*offset:(?P<offset>\d+);\s*size:(?P<size>\d+);\s*signed:(?P<signed>\d)")

_INT_CODES = {(1, False): "B", (1, True): "b", (2, False): "H", (2, True): "h",
              (4, False): "I", (4, True): "i", (8, False): "Q", (8, True): "q"}


class EventFormat:
    """One event's ``format`` file: id, and field name -> (offset, size, signed)."""

    def __init__(self, name, event_id, fields):
        self.name = name
        self.id = event_id
        self.fields = fields

    @classmethod
    def parse(cls, text):
        name = None
        event_id = None
        fields = {}
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("name:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("ID:"):
                event_id = int(line.split(":", 1)[1])
            else:
                match = _FIELD.search(line)
                if match:
                    decl = match.group("decl").strip()
                    field = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\s*(\[[^\]]*\])?$", decl).group(1)
                    fields[field] = (int(match.group("offset")), int(match.group("size")),
                                     match.group("signed") == "1")
        if name is None or event_id is None:
            raise ValueError("not an event format file (no name/ID line)")
        return cls(name, event_id, fields)

    def struct_for(self, names, blank=()):
        """A ``struct.Struct`` unpacking ``names`` (in that order) from the payload.

        Integers are native-endian (trace_pipe_raw is the machine's layout);
        ``char x[N]`` fields come back as bytes.  Fields in ``blank`` keep
        their place but come back as ``b""`` without being read (cheaper).
        """
        wanted = []
        for field in names:
            if field not in self.fields:
                raise ValueError("event %s has no field %r (has: %s)"
                                 % (self.name, field, ", ".join(sorted(self.fields))))
            offset, size, signed = self.fields[field]
            wanted.append((offset, size, signed, field))
        order = sorted(wanted)
        fmt = "="
        position = 0
        for offset, size, signed, field in order:
            if field in blank:
                fmt += "0s"
                continue
            if offset > position:
                fmt += "%dx" % (offset - position)
            code = _INT_CODES.get((size, signed))
            fmt += code if code and not _is_char_array(self, field) else "%ds" % size
            position = offset + size
        unpacker = struct.Struct(fmt)
        # Reorder from offset order back to the order asked for.
        index = [order.index(item) for item in wanted]
        if index == list(range(len(index))):
            index = None
        return unpacker, index


def _is_char_array(fmt, field):
    return fmt.fields[field][1] > 8 or field.endswith("comm")


class PageLayout:
    """``events/header_page``: where the commit word and the data start."""

    def __init__(self, commit_offset=8, commit_size=8, data_offset=16):
        self.commit_offset = commit_offset
        self.commit_size = commit_size
        self.data_offset = data_offset
        self.header = struct.Struct("=Q" + ("Q" if commit_size == 8 else "I"))

    @classmethod
    def parse(cls, text):
        fields = {}
        for line in text.splitlines():
            match = re.search(r"field:\s*[^;]*?(\w+);\s*offset:(\d+);\s*size:(\d+)", line)
            if match:
                fields.setdefault(match.group(1), (int(match.group(2)), int(match.group(3))))
        commit = fields.get("commit", (8, 8))
        data = fields.get("data", (16, 4080))
        return cls(commit[0], commit[1], data[0])


_U16 = struct.Struct("=H")
_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")
# Event header word + the two bytes of a short event's common_type, as bytes: a byte is a cached
# small int, while an id such as 372 would be a new int object for every event.
_HEAD = struct.Struct("=IBB")
_TYPE_BYTES = struct.Struct("=BB")
_HEAD_PAD = b"\0" * _HEAD.size


def parse_page(page, layout, decoders, cpu, out):
    """Append ``(ts, cpu, event_id, fields)`` for every wanted event of one page.

    ``decoders``: event id -> (struct, reorder index or None, tail offset or
    None); with a tail offset the payload from there to the event's end is
    appended to ``fields`` as bytes (variable arrays such as kernel_stack's
    ``caller``).  Other events are skipped by their length.  Returns the number of events the writer
    overwrote before this page (-1: some, count unknown; 0: none).
    """
    return decode_page(page, layout, compile_decoders(decoders), cpu, out)


def compile_decoders(decoders):
    """The tables ``decode_page`` uses: (plain, other).

    ``plain[second][first]``, indexed by the two bytes of an event's ``common_type`` as they lie
    in the page: (unpack_from, size, event id) of the decoders whose fields come back as unpacked
    (the hot path: two list subscripts, no int made per event, no checks for reordering or a
    tail); None for every other type.  ``other``: id -> (unpack_from, size, index, tail) of the rest.
    """
    none = [None] * 256
    plain = [none] * 256
    other = {}
    for event_id, (unpacker, index, tail) in decoders.items():
        if index is None and tail is None:
            first, second = struct.pack("=H", event_id)
            if plain[second] is none:
                plain[second] = [None] * 256
            plain[second][first] = (unpacker.unpack_from, unpacker.size, event_id)
        else:
            other[event_id] = (unpacker.unpack_from, unpacker.size, index, tail)
    return plain, other


def decode_page(page, layout, table, cpu, out):
    """``parse_page`` with a ``compile_decoders`` table (built once per window, not per page)."""
    ts, commit = layout.header.unpack_from(page, 0)
    size = commit & COMMIT_MASK
    missed = 0
    if commit & MISSED_EVENTS:
        missed = -1
        if commit & MISSED_STORED and layout.data_offset + size + 8 <= len(page):
            missed = _U64.unpack_from(page, layout.data_offset + size)[0]
    pos = layout.data_offset
    end = min(layout.data_offset + size, len(page))
    if end + _HEAD.size > len(page):
        page += _HEAD_PAD  # so the combined unpack below may read past the last word
    plain, other = table
    unpack_u32 = _U32.unpack_from
    unpack_head = _HEAD.unpack_from
    append = out.append
    while pos < end:
        # Header word and, for the usual short event, its type's two bytes in one unpack.
        word, first, second = unpack_head(page, pos)
        type_len = word & 31
        if 0 < type_len <= 28:
            ts += word >> 5
            data = pos + 4
            pos = data + (type_len << 2)
        elif type_len == 0:
            ts += word >> 5
            length = ((unpack_u32(page, pos + 4)[0] - 4) + 3) & ~3
            data = pos + 8
            pos = data + length
            first, second = _TYPE_BYTES.unpack_from(page, data)
        elif type_len == TYPE_PADDING:
            if word >> 5 == 0:
                break  # the rest of the page is padding
            # A discarded event: skip it; its delta is only a marker.
            pos += 4 + unpack_u32(page, pos + 4)[0]
            continue
        elif type_len == TYPE_TIME_EXTEND:
            ts += (unpack_u32(page, pos + 4)[0] << TS_SHIFT) + (word >> 5)
            pos += 8
            continue
        else:  # TYPE_TIME_STAMP: absolute
            ts = ((unpack_u32(page, pos + 4)[0] << TS_SHIFT) + (word >> 5)) | (ts & TS_MSB)
            pos += 8
            continue
        decoder = plain[second][first]
        if decoder is None:
            if other:
                event_id = _U16.unpack_from(page, data)[0]
                _decode_other(page, data, pos, other.get(event_id), ts, cpu, event_id, append)
            continue
        unpack, need, event_id = decoder
        if need <= pos - data:
            append((ts, cpu, event_id, unpack(page, data)))
    return missed


def _decode_other(page, data, end, decoder, ts, cpu, event_id, append):
    """An event whose fields are reordered or end with a variable array (kernel_stack); None: skipped."""
    if decoder is None:
        return  # an event we do not decode
    unpack, need, index, tail = decoder
    if need > end - data:
        return
    fields = unpack(page, data)
    if index is not None:
        fields = tuple(fields[i] for i in index)
    if tail is not None:
        fields = fields + (page[data + tail:end],)
    append((ts, cpu, event_id, fields))
