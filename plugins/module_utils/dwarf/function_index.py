# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Function index of one binary's DWARF, built in one pass and cached on disk by build-id.

A function that is not in the symbol table (inline-only, or static in a
stripped binary) used to cost a skim of every compile unit's top level plus
a full pyelftools parse of each unit holding it, to find its inlined copies:
over a second on libpython.  This index is one raw pass over ``.debug_info``
(its own abbreviation and unit-header parsing, no pyelftools objects) that
records:

* ``names``: name -> ``[(cu_offset, die_offset, flags)]`` of every top-level
  ``DW_TAG_subprogram`` with its own ``DW_AT_name``, in DIE order (the
  order of the walk it replaces); ``flags`` say whether it has a pc range
  attribute and whether it has ``DW_AT_inline``;
* ``copies``: abstract DIE offset -> offsets of the ``DW_TAG_inlined_subroutine``
  DIEs whose ``DW_AT_abstract_origin`` names it, in DIE order.

Only offsets are stored: the caller opens those DIEs with pyelftools as
before, so results stay those of the walk.  Anything unexpected raises
``IndexBuildError`` and the caller walks as before.  (libpython has no
``.debug_names``, and ``.debug_aranges`` has no names: neither can replace
this pass.)  ``dwarf/functions.py`` asks this index first; ``dwarf/index.py``'s byte
search is what it does when there is none.

The index is stored with ``marshal`` under ``index_dir()/BUILD_ID/``; the
file holds the build-id, the sizes of the DWARF sections, the format version
and index.py's stamp, and is used only when all match, so a rebuilt binary (new build-id)
never reads an old index.  Binaries without a build-id are indexed in memory only.
"""


import contextlib
import marshal
import os
import struct
import sys
import zlib

from ansible_collections.fleettrace.tracefs.plugins.module_utils import bounded
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.errors import DwarfError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.skim import read_sleb, read_uleb

INDEX_VERSION = 1
HAS_RANGE = 1       # flags: DW_AT_low_pc or DW_AT_ranges present
HAS_INLINE = 2      # flags: DW_AT_inline present

# DWARF constants (DWARF 5 section 7).
TAG_SUBPROGRAM = 0x2e
TAG_INLINED_SUBROUTINE = 0x1d
AT_SIBLING, AT_NAME, AT_LOW_PC, AT_INLINE, AT_ABSTRACT_ORIGIN, AT_RANGES = 0x01, 0x03, 0x11, 0x20, 0x31, 0x55
# Tags whose subtrees never hold code (types): skipped through DW_AT_sibling when it is there.
TYPE_TAGS = frozenset((0x01, 0x04, 0x13, 0x15, 0x17))    # array, enumeration, structure, subroutine type, union
UNIT_TYPE_SKELETON, UNIT_TYPE_SPLIT_COMPILE = 0x04, 0x05
UNIT_TYPE_TYPE, UNIT_TYPE_SPLIT_TYPE = 0x02, 0x06

FORM_ADDR, FORM_STRING, FORM_STRP, FORM_LINE_STRP = 0x01, 0x08, 0x0e, 0x1f
FORM_REF_ADDR, FORM_IMPLICIT_CONST, FORM_FLAG_PRESENT, FORM_INDIRECT = 0x10, 0x21, 0x19, 0x16
FORM_REF1, FORM_REF2, FORM_REF4, FORM_REF8, FORM_REF_UDATA = 0x11, 0x12, 0x13, 0x14, 0x15
_REF_FORMS = (FORM_REF1, FORM_REF2, FORM_REF4, FORM_REF8, FORM_REF_UDATA, FORM_REF_ADDR)
_FIXED_SIZE = {0x0b: 1, 0x0c: 1, 0x11: 1, 0x25: 1, 0x29: 1,            # data1 flag ref1 strx1 addrx1
               0x05: 2, 0x12: 2, 0x26: 2, 0x2a: 2,                      # data2 ref2 strx2 addrx2
               0x27: 3, 0x2b: 3,                                        # strx3 addrx3
               0x06: 4, 0x13: 4, 0x1c: 4, 0x28: 4, 0x2c: 4,             # data4 ref4 ref_sup4 strx4 addrx4
               0x07: 8, 0x14: 8, 0x20: 8, 0x24: 8,                      # data8 ref8 ref_sig8 ref_sup8
               0x1e: 16, FORM_FLAG_PRESENT: 0, FORM_IMPLICIT_CONST: 0}  # data16
_OFFSET_FORMS = (FORM_STRP, FORM_LINE_STRP, 0x17, 0x1d, 0x1f20, 0x1f21)   # + sec_offset strp_sup GNU alt
_LEB_FORMS = (0x0d, 0x0f, FORM_REF_UDATA, 0x1a, 0x1b, 0x22, 0x23, 0x1f01, 0x1f02)
_BLOCK_FORMS = {0x18: 0, 0x09: 0, 0x0a: 1, 0x03: 2, 0x04: 4}            # exprloc block block1 block2 block4
_UNSIGNED = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}

# Steps of an abbreviation's plan: skip N bytes, skip a LEB128, skip a C string, skip a block
# (length ULEB or N bytes), or read a value we keep.
SKIP, LEB, CSTR, BLOCK, READ = 0, 1, 2, 3, 4


_READ_ONLY = []    # non-empty while read_only() is active (check mode)


class IndexBuildError(DwarfError):
    pass


@contextlib.contextmanager
def read_only():
    """``with read_only():`` indexes are read from disk but never written (Ansible's check mode)."""
    _READ_ONLY.append(True)
    try:
        yield
    finally:
        _READ_ONLY.pop()


def index_dir():
    """``FLEETTRACE_DWARF_INDEX``, else ``index/`` in the resolver's result cache (dwarf.cache)."""
    base = os.environ.get("FLEETTRACE_DWARF_INDEX")
    if base:
        return base
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import cache as dwarf_cache
    return os.path.join(dwarf_cache.cache_dir(), "index")


def parse_abbrevs(data, offset):
    """One abbreviation table: {code: (tag, has_children, [(attr, form, implicit_const)])}."""
    table = {}
    pos = offset
    while True:
        code, pos = read_uleb(data, pos)
        if code == 0:
            return table
        tag, pos = read_uleb(data, pos)
        has_children = data[pos] != 0
        pos += 1
        specs = []
        while True:
            attr, pos = read_uleb(data, pos)
            form, pos = read_uleb(data, pos)
            if attr == 0 and form == 0:
                break
            const = None
            if form == FORM_IMPLICIT_CONST:
                const, pos = read_sleb(data, pos)
            specs.append((attr, form, const))
        table[code] = (tag, has_children, specs)


def _plan(tag, has_children, specs, address_size, offset_size, ref_addr_size):
    """(tag, has_children, steps, kept attributes) for one abbreviation."""
    if tag == TAG_SUBPROGRAM:
        wanted = (AT_NAME, AT_LOW_PC, AT_RANGES, AT_INLINE)
    elif tag == TAG_INLINED_SUBROUTINE:
        wanted = (AT_ABSTRACT_ORIGIN,)
    else:
        wanted = ()
    if tag in TYPE_TAGS and has_children:
        wanted += (AT_SIBLING,)
    steps = []
    for attr, form, const in specs:
        if form == FORM_INDIRECT:
            raise IndexBuildError("DW_FORM_indirect")
        keep = attr in wanted
        if form == FORM_ADDR:
            size = address_size
        elif form == FORM_REF_ADDR:
            size = ref_addr_size
        elif form in _OFFSET_FORMS:
            size = offset_size
        else:
            size = _FIXED_SIZE.get(form)
        if keep:
            if form in (FORM_IMPLICIT_CONST, FORM_FLAG_PRESENT) or attr in (AT_LOW_PC, AT_RANGES, AT_INLINE):
                # Presence is all we need of these (values are read by pyelftools later).
                steps.append((READ, None, attr, form, const))
                if size:
                    steps.append((SKIP, size, None, None, None))
                elif size is None:
                    steps.append(_skip_step(form))
                continue
            if attr == AT_ABSTRACT_ORIGIN and form not in _REF_FORMS:
                raise IndexBuildError("DW_AT_abstract_origin in form 0x%x" % form)
            if form == FORM_STRING or (size in (1, 2, 4, 8) and form not in (0x25, 0x26, 0x28)) \
                    or form == FORM_REF_UDATA:
                steps.append((READ, size, attr, form, None))
                continue
            raise IndexBuildError("form 0x%x for attribute 0x%x" % (form, attr))
        if size is not None:
            if steps and steps[-1][0] == SKIP:
                steps[-1] = (SKIP, steps[-1][1] + size, None, None, None)
            elif size:
                steps.append((SKIP, size, None, None, None))
        else:
            steps.append(_skip_step(form))
    return tag, has_children, tuple(steps)


def _skip_step(form):
    if form in _LEB_FORMS:
        return (LEB, None, None, None, None)
    if form == FORM_STRING:
        return (CSTR, None, None, None, None)
    if form in _BLOCK_FORMS:
        return (BLOCK, _BLOCK_FORMS[form], None, None, None)
    raise IndexBuildError("form 0x%x" % form)


def _string(table, offset):
    return table[offset:table.index(b"\0", offset)].decode("utf-8", "replace")


def build(debug_info, debug_abbrev, debug_str, debug_line_str):
    """``(names, copies)`` from the raw sections (bytes); raises IndexBuildError."""
    names, copies = {}, {}
    unpack_from = struct.unpack_from
    pos = 0
    end_all = len(debug_info)
    abbrev_cache = {}
    try:
        while pos + 11 <= end_all:
            unit = pos
            length = unpack_from("<I", debug_info, pos)[0]
            if length >= 0xfffffff0:
                raise IndexBuildError("64-bit DWARF unit at 0x%x" % unit)
            end = pos + 4 + length
            version = unpack_from("<H", debug_info, pos + 4)[0]
            if version >= 5:
                unit_type, address_size = debug_info[pos + 6], debug_info[pos + 7]
                abbrev_offset = unpack_from("<I", debug_info, pos + 8)[0]
                pos += 12
                if unit_type in (UNIT_TYPE_SKELETON, UNIT_TYPE_SPLIT_COMPILE):
                    pos += 8
                elif unit_type in (UNIT_TYPE_TYPE, UNIT_TYPE_SPLIT_TYPE):
                    pos += 12
            elif version >= 2:
                abbrev_offset = unpack_from("<I", debug_info, pos + 6)[0]
                address_size = debug_info[pos + 10]
                pos += 11
            else:
                raise IndexBuildError("DWARF version %d at 0x%x" % (version, unit))
            ref_addr_size = address_size if version == 2 else 4
            key = (abbrev_offset, address_size, ref_addr_size)
            plans = abbrev_cache.get(key)
            if plans is None:
                plans = abbrev_cache[key] = {
                    code: _plan(tag, children, specs, address_size, 4, ref_addr_size)
                    for code, (tag, children, specs) in parse_abbrevs(debug_abbrev, abbrev_offset).items()}
            _walk_unit(debug_info, debug_str, debug_line_str, unit, pos, end, plans, names, copies)
            pos = end
    except (IndexError, KeyError, ValueError, struct.error) as exc:
        raise IndexBuildError("unexpected DWARF near 0x%x: %s" % (pos, exc))
    return names, copies


def _walk_unit(data, debug_str, debug_line_str, unit, pos, end, plans, names, copies):
    """Every DIE of one unit; depth 1 is the unit's children (the top level)."""
    unpack_from = struct.unpack_from
    depth = 0
    while pos < end:
        offset = pos
        code = data[pos]
        pos += 1
        if code >= 0x80:
            code, pos = read_uleb(data, offset)
        if code == 0:
            depth -= 1
            if depth <= 0:
                return
            continue
        tag, has_children, steps = plans[code]
        values = None
        for step in steps:
            kind = step[0]
            if kind == SKIP:
                pos += step[1]
            elif kind == LEB:
                while data[pos] >= 0x80:
                    pos += 1
                pos += 1
            elif kind == CSTR:
                pos = data.index(b"\0", pos) + 1
            elif kind == BLOCK:
                size = step[1]
                if size:
                    length = unpack_from(_UNSIGNED[size], data, pos)[0]
                    pos += size
                else:
                    length, pos = read_uleb(data, pos)
                pos += length
            else:
                _k, size, attr, form, const = step
                if values is None:
                    values = {}
                if size is None:
                    if form == FORM_STRING:
                        stop = data.index(b"\0", pos)
                        values[attr] = data[pos:stop].decode("utf-8", "replace")
                        pos = stop + 1
                    elif form == FORM_REF_UDATA:
                        values[attr], pos = read_uleb(data, pos)
                    else:
                        values[attr] = const
                else:
                    values[attr] = (unpack_from(_UNSIGNED[size], data, pos)[0], form)
                    pos += size
        if values is not None:
            if tag == TAG_INLINED_SUBROUTINE and AT_ABSTRACT_ORIGIN in values:
                ref = values[AT_ABSTRACT_ORIGIN]
                target = ref[0] if ref[1] == FORM_REF_ADDR else ref[0] + unit
                copies.setdefault(target, []).append(offset)
            elif tag == TAG_SUBPROGRAM and depth == 1 and AT_NAME in values:
                name = values[AT_NAME]
                if isinstance(name, tuple):
                    if name[1] == FORM_STRP:
                        name = _string(debug_str, name[0])
                    elif name[1] == FORM_LINE_STRP:
                        name = _string(debug_line_str, name[0])
                    else:
                        raise IndexBuildError("DW_AT_name in form 0x%x" % name[1])
                flags = (HAS_RANGE if AT_LOW_PC in values or AT_RANGES in values else 0) | \
                    (HAS_INLINE if AT_INLINE in values else 0)
                names.setdefault(name, []).append((unit, offset, flags))
            elif AT_SIBLING in values and has_children:
                ref = values[AT_SIBLING]
                pos = ref[0] if ref[1] == FORM_REF_ADDR else ref[0] + unit
                continue
        if has_children:
            depth += 1
        elif depth == 0:
            return      # a unit DIE without children


SHARDS = 64         # a stored index is read one shard at a time: a lookup reads ~1/64 of it
_HEADER = struct.Struct("<8sQ")   # magic, length of the marshalled header that follows it
_MAGIC = b"FTINDEX%d" % INDEX_VERSION


def name_shard(name):
    return zlib.crc32(name.encode("utf-8")) % SHARDS


def offset_shard(offset):
    return offset % SHARDS


class FunctionIndex:
    """``names`` and ``copies`` (see the module docstring) of one binary, in ``SHARDS`` shards each.

    Records are packed (one bytes value per name or abstract DIE, little-endian ``<IIB`` / ``<I``)
    so that a shard loads as few objects.  ``load_shard(kind, number)`` fills a shard not held yet
    (a stored index reads only the shards its lookups need).
    """

    NAME_RECORD = struct.Struct("<IIB")
    COPY_RECORD = struct.Struct("<I")

    def __init__(self, names, copies, load_shard=None, cached=False, handle=None):
        self.names = names      # [shard: {name: packed [(cu_offset, die_offset, flags)]} or None]
        self.copies = copies    # [shard: {abstract offset: packed [die_offset]} or None]
        self.load_shard = load_shard
        self.cached = cached
        self._handle = handle

    def close(self):
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    @classmethod
    def from_lists(cls, names, copies):
        pack_name, pack_copy = cls.NAME_RECORD.pack, cls.COPY_RECORD.pack
        name_shards = [{} for _i in range(SHARDS)]
        copy_shards = [{} for _i in range(SHARDS)]
        for name, entries in names.items():
            name_shards[name_shard(name)][name] = b"".join(pack_name(*e) for e in entries)
        for target, offsets in copies.items():
            copy_shards[offset_shard(target)][target] = b"".join(pack_copy(o) for o in offsets)
        return cls(name_shards, copy_shards)

    def _shard(self, shards, kind, number):
        if shards[number] is None:
            shards[number] = self.load_shard(kind, number)
        return shards[number]

    def all_names(self):
        """Every indexed name (reads every shard)."""
        return [n for i in range(SHARDS) for n in self._shard(self.names, "names", i)]

    def subprograms(self, name):
        """[(cu_offset, die_offset, has DW_AT_inline)] of top-level subprograms named ``name``."""
        packed = self._shard(self.names, "names", name_shard(name)).get(name, b"")
        return [(cu, offset, bool(flags & HAS_INLINE)) for cu, offset, flags in self.NAME_RECORD.iter_unpack(packed)]

    def inlined_copies(self, abstract_offset, cu_start, cu_end):
        """Offsets of the inlined copies of an abstract DIE that lie in the unit [cu_start, cu_end)."""
        packed = self._shard(self.copies, "copies", offset_shard(abstract_offset)).get(abstract_offset, b"")
        return [o for (o,) in self.COPY_RECORD.iter_unpack(packed) if cu_start <= o < cu_end]


def _stamp(sizes):
    # marshal's format depends on the Python version; a changed index.py may index differently
    # (inside an AnsiballZ zip it cannot be stat'ed: the version constant then stands alone).
    try:
        source = os.stat(os.path.abspath(__file__))
        code = (int(source.st_mtime), source.st_size)
    except OSError:
        code = None
    return (INDEX_VERSION, SHARDS, code, tuple(sys.version_info[:2]), sizes)


def index_path(build_id):
    return os.path.join(index_dir(), build_id, "functions.idx")


def load(build_id, sizes):
    """The stored index for ``build_id`` when its stamp matches, else None.

    File layout: 8 bytes of magic, an 8-byte length, a marshalled header ``(build_id, stamp, {kind: [(start, length)]})``,
    then one marshalled dict per shard; only the header is read here.
    """
    path = index_path(build_id)
    try:
        handle = bounded.open_regular(path, "function index")
    except bounded.FileRefused:
        return None
    try:
        magic, length = _HEADER.unpack(handle.read(_HEADER.size))
        if magic != _MAGIC:
            raise ValueError("not a function index")
        stored_id, stamp, spans = marshal.loads(handle.read(length))
    except (OSError, ValueError, EOFError, TypeError, MemoryError, struct.error):
        stored_id = stamp = length = None
    if stored_id != build_id or stamp != _stamp(sizes):
        handle.close()
        return None
    base = _HEADER.size + length

    def load_shard(kind, number):
        # The handle stays open: a run that replaces the file (rename) does not change what we read.
        start, size = spans[kind][number]
        try:
            handle.seek(base + start)
            shard = marshal.loads(handle.read(size))
        except (OSError, ValueError, EOFError, TypeError, MemoryError):
            shard = None
        if not isinstance(shard, dict):
            raise IndexBuildError("the stored function index %s is damaged; remove it" % path)
        return shard

    return FunctionIndex([None] * SHARDS, [None] * SHARDS, load_shard, cached=True, handle=handle)


def store(build_id, sizes, index):
    path = index_path(build_id)
    temp = "%s.%d.tmp" % (path, os.getpid())
    blobs, spans, position = [], {}, 0
    for kind, shards in (("names", index.names), ("copies", index.copies)):
        spans[kind] = []
        for shard in shards:
            blob = marshal.dumps(shard)
            blobs.append(blob)
            spans[kind].append((position, len(blob)))
            position += len(blob)
    header = marshal.dumps((build_id, _stamp(sizes), spans))
    try:
        if not os.path.isdir(os.path.dirname(path)):
            os.makedirs(os.path.dirname(path))
        with bounded.open_new(temp, "function index", binary=True) as out:
            out.write(_HEADER.pack(_MAGIC, len(header)))
            out.write(header)
            for blob in blobs:
                out.write(blob)
        os.rename(temp, path)   # atomic: concurrent runs never see half a file
    except (OSError, ValueError):
        try:
            os.unlink(temp)
        except OSError:
            pass                # an index that cannot be written only costs time


INDEXED_SECTIONS = (".debug_info", ".debug_abbrev", ".debug_str", ".debug_line_str")


def function_index(build_id, section, section_size, use_disk=True):
    """The index of the DWARF whose sections ``section(name)`` returns (bytes, b"" when absent).

    ``section_size(name)`` gives a section's size without reading it (a stored index is used
    without reading ``.debug_info``).  None in check mode (read_only) when none is stored.  Raises
    IndexBuildError when the DWARF has something the one-pass skim does not read.
    """
    sizes = tuple(section_size(name) for name in INDEXED_SECTIONS)
    if build_id and use_disk:
        found = load(build_id, sizes)
        if found is not None:
            return found
    if build_id and use_disk and _READ_ONLY:
        return None     # check mode: a build that cannot be kept costs more than the byte search
    index = FunctionIndex.from_lists(*build(*[section(name) for name in INDEXED_SECTIONS]))
    if build_id and use_disk:
        store(build_id, sizes, index)
    return index
