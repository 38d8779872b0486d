# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Find DIEs by searching raw DWARF bytes instead of walking every unit.

A function that is not in the symbol table (inline-only, static in a stripped
binary, a clone named ``f.constprop.0``) used to cost a skim of every unit's
top level, and its inlined copies a pyelftools walk of its whole unit: over a
second on libpython.  perf reads an index (libdw's); gcc writes none we can
rely on (no .debug_names, .debug_pubnames only with -gpubnames), so the index
here is the bytes themselves:

* ``units_naming``: a DIE names ``f`` either by an offset into .debug_str
  (DW_FORM_strp, 4 bytes) or inline (DW_FORM_string).  Every offset where
  ``f\\0`` sits in .debug_str (tail-merged strings included) is searched for
  in .debug_info; the units holding a hit are the only ones to skim.
* ``holders``: an inlined copy refers to its abstract DIE by a unit-relative
  DW_FORM_ref4.  The top-level DIEs (functions) whose bytes hold that 4-byte
  value are the only ones that can contain a copy; callers walk just those.

Callers walk everything, as before, when the layout cannot be searched (DWARF 64,
names through .debug_str_offsets, origins in another form).
"""


import bisect
import struct

_UNIT_HEADER = struct.Struct("<I")
_REF4 = struct.Struct("<I")
# Unit lengths from here up are DWARF 64 escapes (0xffffffff) or reserved.
_UNIT_LENGTH_RESERVED = 0xfffffff0


def unit_starts(debug_info):
    """Offsets of every unit header in .debug_info, or None for DWARF 64 units."""
    starts, position, end = [], 0, len(debug_info)
    while position + 4 <= end:
        length = _UNIT_HEADER.unpack_from(debug_info, position)[0]
        if length >= _UNIT_LENGTH_RESERVED:
            return None
        starts.append(position)
        position += 4 + length
    return starts


def _find_all(data, needle):
    found, position = [], data.find(needle)
    while position >= 0:
        found.append(position)
        position = data.find(needle, position + 1)
    return found


def units_naming(debug_info, debug_str, name, starts):
    """Sorted offsets of the units whose bytes may name ``name`` (a superset; never misses strp/string names)."""
    if starts is None:
        return None
    wanted = name.encode("utf-8") + b"\0"
    hits = []
    for offset in _find_all(debug_str, wanted) if debug_str else []:
        hits += _find_all(debug_info, _REF4.pack(offset))
    hits += _find_all(debug_info, wanted)
    units = set()
    for hit in hits:
        index = bisect.bisect_right(starts, hit) - 1
        if index >= 0:
            units.add(starts[index])
    return sorted(units)


def origin_forms(abbrevs):
    """Forms of DW_AT_abstract_origin in the unit's inlined-copy abbreviations."""
    forms = set()
    for decl in abbrevs.values():
        if decl["tag"] == "DW_TAG_inlined_subroutine":
            forms.update(spec.form for spec in decl["attr_spec"] if spec.name == "DW_AT_abstract_origin")
    return forms


def holders(unit_data, unit_offset, abstract_relative, top_level_offsets):
    """Offsets of the top-level DIEs whose bytes hold the unit-relative reference ``abstract_relative``.

    A superset of those holding an inlined copy of it (the 4 bytes may occur by chance):
    callers walk each one and keep only real copies."""
    found = set()
    for hit in _find_all(unit_data, _REF4.pack(abstract_relative)):
        index = bisect.bisect_right(top_level_offsets, unit_offset + hit) - 1
        if index >= 0:
            found.add(top_level_offsets[index])
    return sorted(found)
