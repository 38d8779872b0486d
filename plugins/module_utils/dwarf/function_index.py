# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Function index of one binary's DWARF, built in one pass and cached on disk by build-id.

A function that is not in the symbol table (inline-only, or static in a
stripped binary) used to cost a skim of every compile unit's top level plus
a full pyelftools parse of each unit holding it, to find its inlined copies:
over a second on libpython.  This index is one raw pass over ``.debug_info``
(its own abbreviation and unit-header parsing, no pyelftools objects) that
records:

* ``names``: name -> ``[(cu_offset, die_offset, flags, qualifier)]`` of every
  ``DW_TAG_subprogram`` with its own ``DW_AT_name`` at the top level of its unit
  or (C++) inside namespaces and classes, in DIE order (the order of the walk it
  replaces); the name is filed without template arguments (names.lookup_key),
  ``qualifier`` is ``'ns::Class'`` ('' at the top); ``flags`` say whether it has a pc range
  attribute and whether it has ``DW_AT_inline``;
* ``copies``: abstract DIE offset -> offsets of the ``DW_TAG_inlined_subroutine``
  and ``DW_TAG_subprogram`` DIEs whose ``DW_AT_abstract_origin`` names it (and the
  definitions whose ``DW_AT_specification`` does), in DIE order and in any unit (LTO
  puts the copies in other units than the abstract DIE; out-of-line copies carry
  ``OUT_OF_LINE`` in their offset).

Only offsets are stored: the caller opens those DIEs with pyelftools as
before, so results stay those of the walk.  The pass itself is in
dwarf/function_scan.py; anything unexpected raises ``IndexBuildError`` and the
caller walks as before.  (libpython has no
``.debug_names``, and ``.debug_aranges`` has no names: neither can replace
this pass.)  ``dwarf/functions.py`` asks this index first; ``dwarf/byte_search.py``'s byte
search is what it does when there is none.

The index is stored with ``marshal`` under ``cache_dirs.index_dir()/BUILD_ID/``; the
file holds the build-id, the sizes of the DWARF sections, the format version
and the stamp of this file and function_scan.py, and is used only when all match, so a rebuilt binary (new build-id)
never reads an old index.  Binaries without a build-id are indexed in memory only.
"""


import bisect
import marshal
import os
import struct
import sys
import zlib

from ansible_collections.fleettrace.tracefs.plugins.module_utils import bounded
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import function_scan
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.cache_dirs import index_dir
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.function_scan import (
    HAS_INLINE, IS_DECLARATION, OUT_OF_LINE, IndexBuildError)

__all__ = ["FunctionIndex", "IndexBuildError", "function_index"]

INDEX_VERSION = 5


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

    def __init__(self, names, copies, functions, load_shard=None, cached=False, handle=None):
        # [shard: {name: (packed [(cu_offset, die_offset, flags)], qualifiers or None when all '')} or None]
        self.names = names
        self.copies = copies    # [shard: {abstract offset: packed [die_offset]} or None]
        self.functions = functions      # [shard: {unit offset: packed sorted [DIE offset of a subprogram with code]}]
        self.load_shard = load_shard
        self.cached = cached
        self._handle = handle

    def close(self):
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    @classmethod
    def from_lists(cls, names, copies, functions):
        pack_name, pack_copy = cls.NAME_RECORD.pack, cls.COPY_RECORD.pack
        name_shards = [{} for _i in range(SHARDS)]
        copy_shards = [{} for _i in range(SHARDS)]
        function_shards = [{} for _i in range(SHARDS)]
        for unit, offsets in functions.items():
            function_shards[offset_shard(unit)][unit] = b"".join(pack_copy(o) for o in offsets)
        for name, entries in names.items():
            qualifiers = tuple(e[3] for e in entries)
            name_shards[name_shard(name)][name] = (b"".join(pack_name(*e[:3]) for e in entries),
                                                   qualifiers if any(qualifiers) else None)
        for target, offsets in copies.items():
            copy_shards[offset_shard(target)][target] = b"".join(pack_copy(o) for o in offsets)
        return cls(name_shards, copy_shards, function_shards)

    def _shard(self, shards, kind, number):
        if shards[number] is None:
            shards[number] = self.load_shard(kind, number)
        return shards[number]

    def all_names(self):
        """Every indexed name (reads every shard)."""
        return [n for i in range(SHARDS) for n in self._shard(self.names, "names", i)]

    def subprograms(self, name):
        """[(cu_offset, die_offset, has DW_AT_inline)] of the subprograms filed under ``name``."""
        return [entry[:3] for entry in self.qualified(name)]

    def qualified(self, name, declarations=True):
        """[(cu_offset, die_offset, has DW_AT_inline, qualifier)] of the subprograms filed under ``name``
        (names.lookup_key: no template arguments); ``qualifier`` is '' for C."""
        packed, qualifiers = self._shard(self.names, "names", name_shard(name)).get(name, (b"", None))
        records = self.NAME_RECORD.iter_unpack(packed)
        return [(cu, offset, bool(flags & HAS_INLINE), qualifiers[i] if qualifiers else "")
                for i, (cu, offset, flags) in enumerate(records) if declarations or not flags & IS_DECLARATION]

    def _copies(self, abstract_offset):
        packed = self._shard(self.copies, "copies", offset_shard(abstract_offset)).get(abstract_offset, b"")
        return [o for (o,) in self.COPY_RECORD.iter_unpack(packed)]

    def inlined_copies(self, abstract_offset, cu_start=0, cu_end=OUT_OF_LINE):
        """Offsets of the inlined copies of an abstract DIE that lie in the unit [cu_start, cu_end)
        (by default in any unit)."""
        return [o for o in self._copies(abstract_offset) if cu_start <= o < cu_end]

    def function_at_or_before(self, unit_offset, die_offset):
        """The last DIE of a subprogram with code of the unit at or before ``die_offset`` (for a DIE inside
        a function: that function; callers check), or None."""
        packed = self._shard(self.functions, "functions", offset_shard(unit_offset)).get(unit_offset, b"")
        offsets = memoryview(packed).cast("I") if packed else ()
        position = bisect.bisect_right(offsets, die_offset) - 1
        return offsets[position] if position >= 0 else None

    def out_of_line_copies(self, abstract_offset):
        """Offsets of the out-of-line copies (subprograms naming it as their origin) of an abstract
        DIE, in any unit."""
        return [o & ~OUT_OF_LINE for o in self._copies(abstract_offset) if o & OUT_OF_LINE]


def _stamp(sizes):
    # marshal's format depends on the Python version; a changed pass may index differently
    # (inside an AnsiballZ zip it cannot be stat'ed: the version constant then stands alone).
    try:
        code = tuple((int(stat.st_mtime), stat.st_size) for stat in
                     (os.stat(os.path.abspath(path)) for path in (__file__, function_scan.__file__)))
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

    return FunctionIndex([None] * SHARDS, [None] * SHARDS, [None] * SHARDS, load_shard, cached=True, handle=handle)


def store(build_id, sizes, index):
    path = index_path(build_id)
    temp = "%s.%d.tmp" % (path, os.getpid())
    blobs, spans, position = [], {}, 0
    for kind, shards in (("names", index.names), ("copies", index.copies), ("functions", index.functions)):
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
    without reading ``.debug_info``).  Raises
    IndexBuildError when the DWARF has something the one-pass skim does not read.
    """
    sizes = tuple(section_size(name) for name in INDEXED_SECTIONS)
    if build_id and use_disk:
        found = load(build_id, sizes)
        if found is not None:
            return found
    index = FunctionIndex.from_lists(*function_scan.build(*[section(name) for name in INDEXED_SECTIONS]))
    if build_id and use_disk:
        store(build_id, sizes, index)
    return index
