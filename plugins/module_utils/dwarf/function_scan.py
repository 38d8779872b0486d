# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one raw pass over ``.debug_info`` behind the function index (dwarf/function_index.py).

Its own abbreviation and unit-header decoding, no pyelftools objects: every DIE is
walked once, types of C units are skipped through ``DW_AT_sibling``, and two things
are recorded (see function_index.py): the subprograms with a name (at the top level
of a unit, or inside C++ namespaces and classes, with their qualifier) and the
copies of each abstract DIE, inlined or out of line, in any unit.  Anything unexpected raises ``IndexBuildError``:
the caller then searches without an index.
"""


import struct

from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import names as dwarf_names
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.errors import DwarfError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.skim import read_sleb, read_uleb

HAS_RANGE = 1       # flags: DW_AT_low_pc or DW_AT_ranges present
HAS_INLINE = 2      # flags: DW_AT_inline present
IS_DECLARATION = 4  # flags: DW_AT_declaration present (a prototype; the definition completes it)
OUT_OF_LINE = 1 << 31   # in a copy's offset: an out-of-line copy (a subprogram), not an inlined one

# DWARF constants (DWARF 5 section 7).
TAG_SUBPROGRAM = 0x2e
TAG_INLINED_SUBROUTINE = 0x1d
TAG_COMPILE_UNIT, TAG_PARTIAL_UNIT, TAG_NAMESPACE = 0x11, 0x3c, 0x39
AT_SIBLING, AT_NAME, AT_LOW_PC, AT_INLINE, AT_ABSTRACT_ORIGIN, AT_RANGES = 0x01, 0x03, 0x11, 0x20, 0x31, 0x55
AT_LANGUAGE, AT_EXPORT_SYMBOLS, AT_DECLARATION, AT_SPECIFICATION = 0x13, 0x89, 0x3c, 0x47
# Tags whose subtrees never hold code (types): skipped through DW_AT_sibling when it is there.
TYPE_TAGS = frozenset((0x01, 0x02, 0x04, 0x13, 0x15, 0x17))   # array, class, enumeration, structure, subroutine, union
# In C++ units classes, structures and unions hold method declarations: entered, like namespaces.
CLASS_TAGS = frozenset((0x02, 0x13, 0x17))
CXX_LANGUAGES = frozenset((0x04, 0x19, 0x1a, 0x21))      # DW_LANG_C_plus_plus, _03, _11, _14
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


class IndexBuildError(DwarfError):
    pass


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
        wanted = (AT_NAME, AT_LOW_PC, AT_RANGES, AT_INLINE, AT_ABSTRACT_ORIGIN, AT_DECLARATION, AT_SPECIFICATION)
    elif tag == TAG_INLINED_SUBROUTINE:
        wanted = (AT_ABSTRACT_ORIGIN,)
    elif tag == TAG_NAMESPACE or tag in CLASS_TAGS:
        wanted = (AT_NAME, AT_EXPORT_SYMBOLS)
    elif tag in (TAG_COMPILE_UNIT, TAG_PARTIAL_UNIT):
        wanted = (AT_LANGUAGE,)
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
            if form in (FORM_IMPLICIT_CONST, FORM_FLAG_PRESENT) or attr in (AT_LOW_PC, AT_RANGES, AT_INLINE,
                                                                            AT_EXPORT_SYMBOLS, AT_DECLARATION):
                # Presence is all we need of these (values are read by pyelftools later).
                steps.append((READ, None, attr, form, const))
                if size:
                    steps.append((SKIP, size, None, None, None))
                elif size is None:
                    steps.append(_skip_step(form))
                continue
            if attr in (AT_ABSTRACT_ORIGIN, AT_SPECIFICATION) and form not in _REF_FORMS:
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
    """``(names, copies, functions)`` from the raw sections (bytes); raises IndexBuildError.
    ``functions``: unit offset -> sorted offsets of its subprograms with code (which function a DIE is in)."""
    names, copies, functions = {}, {}, {}
    unpack_from = struct.unpack_from
    pos = 0
    end_all = len(debug_info)
    if end_all >= OUT_OF_LINE:
        raise IndexBuildError(".debug_info of %d bytes: offsets do not fit the index's records" % end_all)
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
            _walk_unit(debug_info, debug_str, debug_line_str, unit, pos, end, plans, names, copies,
                       functions.setdefault(unit, []))
            pos = end
    except (IndexError, KeyError, ValueError, struct.error) as exc:
        raise IndexBuildError("unexpected DWARF near 0x%x: %s" % (pos, exc))
    return names, copies, functions


def _name_text(value, debug_str, debug_line_str):
    if isinstance(value, tuple):
        if value[1] == FORM_STRP:
            return _string(debug_str, value[0])
        if value[1] == FORM_LINE_STRP:
            return _string(debug_line_str, value[0])
        raise IndexBuildError("DW_AT_name in form 0x%x" % value[1])
    return value


def _walk_unit(data, debug_str, debug_line_str, unit, pos, end, plans, names, copies, functions):
    """Every DIE of one unit.  ``levels`` holds, per open DIE with children, the qualifier of the
    functions found among its children ('' under the unit, 'ns::Class' inside a C++ namespace and
    class), or None inside anything else (a function's body, a type of a C unit)."""
    unpack_from = struct.unpack_from
    levels = []
    cxx = False
    while pos < end:
        offset = pos
        code = data[pos]
        pos += 1
        if code >= 0x80:
            code, pos = read_uleb(data, offset)
        if code == 0:
            levels.pop()
            if not levels:
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
        if not levels:                          # the unit's own DIE
            cxx = values is not None and (values.get(AT_LANGUAGE) or (None,))[0] in CXX_LANGUAGES
            if not has_children:
                return
            levels.append("")
            continue
        qualifier = levels[-1]
        if values is not None:
            origin = values.get(AT_ABSTRACT_ORIGIN) or (values.get(AT_SPECIFICATION) if tag == TAG_SUBPROGRAM else None)
            if origin is not None and tag in (TAG_INLINED_SUBROUTINE, TAG_SUBPROGRAM):
                # Copies of an abstract DIE, in this unit or (LTO: DW_FORM_ref_addr) in another one; a
                # definition completing a declaration (DW_AT_specification) counts as its out-of-line copy.
                target = origin[0] if origin[1] == FORM_REF_ADDR else origin[0] + unit
                copies.setdefault(target, []).append(offset if tag == TAG_INLINED_SUBROUTINE else offset | OUT_OF_LINE)
            if tag == TAG_SUBPROGRAM and (AT_LOW_PC in values or AT_RANGES in values):
                functions.append(offset)
            if tag == TAG_SUBPROGRAM and qualifier is not None and AT_NAME in values:
                name = _name_text(values[AT_NAME], debug_str, debug_line_str)
                flags = (HAS_RANGE if AT_LOW_PC in values or AT_RANGES in values else 0) | \
                    (HAS_INLINE if AT_INLINE in values else 0) | (IS_DECLARATION if AT_DECLARATION in values else 0)
                names.setdefault(dwarf_names.lookup_key(name), []).append((unit, offset, flags, qualifier))
        if not has_children:
            continue
        if qualifier is not None and (tag == TAG_NAMESPACE or (cxx and tag in CLASS_TAGS)):
            name = values.get(AT_NAME) if values is not None else None
            if name is not None and AT_EXPORT_SYMBOLS not in values:     # anonymous, inline: left out
                name = _name_text(name, debug_str, debug_line_str)
                qualifier = "%s::%s" % (qualifier, name) if qualifier else name
            levels.append(qualifier)
        elif values is not None and AT_SIBLING in values and tag in TYPE_TAGS:
            ref = values[AT_SIBLING]
            pos = ref[0] if ref[1] == FORM_REF_ADDR else ref[0] + unit
        else:
            levels.append(None)
