# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fast paths over raw DWARF bytes where pyelftools' generic parsing is too slow.

* ``TopLevelSkimmer`` walks only the top-level DIEs of one CU, decoding just
  the tag, name, address range and sibling of each, so that the subprogram
  for an address (or a name) is found without building thousands of DIE
  objects.  The found offset is then opened with pyelftools as usual.
* ``parse_aranges`` reads .debug_aranges (address -> unit) without pyelftools.

(The line program's decoder, ``decode_line_rows``, is in dwarf/line_table.py.)

Both raise ``SkimError`` on anything unexpected; callers then fall back to
plain pyelftools, which is slower but complete.
"""


import struct

from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.errors import DwarfError


class SkimError(DwarfError):
    pass


def read_uleb(data, pos):
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7f) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def read_sleb(data, pos):
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7f) << shift
        shift += 7
        if byte < 0x80:
            if byte & 0x40:
                result -= 1 << shift
            return result, pos


_FIXED = {"DW_FORM_data1": 1, "DW_FORM_ref1": 1, "DW_FORM_flag": 1, "DW_FORM_strx1": 1, "DW_FORM_addrx1": 1,
          "DW_FORM_data2": 2, "DW_FORM_ref2": 2, "DW_FORM_strx2": 2, "DW_FORM_addrx2": 2,
          "DW_FORM_strx3": 3, "DW_FORM_addrx3": 3,
          "DW_FORM_data4": 4, "DW_FORM_ref4": 4, "DW_FORM_strx4": 4, "DW_FORM_addrx4": 4, "DW_FORM_ref_sup4": 4,
          "DW_FORM_data8": 8, "DW_FORM_ref8": 8, "DW_FORM_ref_sig8": 8, "DW_FORM_ref_sup8": 8,
          "DW_FORM_data16": 16, "DW_FORM_flag_present": 0, "DW_FORM_implicit_const": 0}
_LEB = ("DW_FORM_sdata", "DW_FORM_udata", "DW_FORM_ref_udata", "DW_FORM_strx", "DW_FORM_addrx",
        "DW_FORM_loclistx", "DW_FORM_rnglistx")
_OFFSET = ("DW_FORM_strp", "DW_FORM_line_strp", "DW_FORM_sec_offset", "DW_FORM_ref_addr", "DW_FORM_strp_sup",
           "DW_FORM_GNU_ref_alt", "DW_FORM_GNU_strp_alt")
UNSIGNED = {1: "B", 2: "H", 4: "I", 8: "Q"}
_STRING_ATTRIBUTES = ("DW_AT_name", "DW_AT_linkage_name")


class TopLevelSkimmer:
    """Top-level DIEs of one CU as dicts: offset, tag and the attributes in ``WANTED`` as (value, form)."""

    WANTED = ("DW_AT_name", "DW_AT_low_pc", "DW_AT_high_pc", "DW_AT_ranges", "DW_AT_specification",
              "DW_AT_abstract_origin", "DW_AT_declaration", "DW_AT_inline", "DW_AT_decl_file", "DW_AT_decl_line",
              "DW_AT_location", "DW_AT_linkage_name", "DW_AT_export_symbols", "DW_AT_call_line", "DW_AT_call_file")
    # Names are decoded only for these tags (types are most of the top level and never looked up by name).
    NAMED_TAGS = ("DW_TAG_subprogram", "DW_TAG_variable")
    # C++ nests functions in these: their names qualify the functions inside (nested mode).
    NESTING_TAGS = ("DW_TAG_namespace", "DW_TAG_class_type", "DW_TAG_structure_type", "DW_TAG_union_type")

    def __init__(self, dwarfinfo, cu, debug_str, debug_line_str, nested=False):
        self.cu = cu
        self.debug_str = debug_str
        self.debug_line_str = debug_line_str
        stream = dwarfinfo.debug_info_sec.stream
        stream.seek(cu.cu_offset)
        self.data = stream.read(cu.size)
        self.base = cu.cu_offset
        self.address_size = cu["address_size"]
        self.offset_size = 8 if cu.dwarf_format() == 64 else 4
        self.abbrevs = cu.get_abbrev_table()
        self._plans = {}
        self.nested = nested
        self.named_tags = self.NAMED_TAGS + (self.NESTING_TAGS if nested else ())

    def _plan(self, code):
        """Steps to walk one DIE of this abbreviation: runs of fixed-size attributes become one skip."""
        plan = self._plans.get(code)
        if plan is not None:
            return plan
        decl = self.abbrevs.get_abbrev(code)
        tag = decl["tag"]
        steps = []
        sibling_is_addr = False
        for spec in decl["attr_spec"]:
            name, form = spec.name, spec.form
            if name == "DW_AT_sibling":
                sibling_is_addr = form == "DW_FORM_ref_addr"
                keep = "sibling"
            elif name in self.WANTED and (name not in ("DW_AT_name", "DW_AT_linkage_name")
                                          or tag in self.named_tags):
                keep = name
            else:
                keep = None
            if form == "DW_FORM_implicit_const":
                steps.append(("implicit", getattr(spec, "value", None), keep, form))
                continue
            if form == "DW_FORM_flag_present":
                steps.append(("implicit", True, keep, form))
                continue
            size = self.address_size if form == "DW_FORM_addr" else _FIXED.get(form)
            if size is None and form in _OFFSET:
                size = self.offset_size
            if size is not None:
                if keep is None:
                    if steps and steps[-1][0] == "skip":
                        steps[-1] = ("skip", steps[-1][1] + size, None, None)
                    else:
                        steps.append(("skip", size, None, None))
                elif size in UNSIGNED:
                    steps.append(("fixed", size, keep, form))
                else:
                    raise SkimError("form %s for %s" % (form, name))
            elif form in _LEB:
                steps.append(("leb", form == "DW_FORM_sdata", keep, form))
            elif form == "DW_FORM_string":
                steps.append(("cstr", None, keep, form))
            elif form in ("DW_FORM_exprloc", "DW_FORM_block"):
                steps.append(("block", 0, keep, form))
            elif form in ("DW_FORM_block1", "DW_FORM_block2", "DW_FORM_block4"):
                steps.append(("block", int(form[-1]), keep, form))
            else:
                raise SkimError("form %s" % form)
        plan = (tag, decl.has_children(), steps, sibling_is_addr)
        self._plans[code] = plan
        return plan

    def _string(self, table, offset):
        end = table.index(b"\0", offset)
        return table[offset:end].decode("utf-8", "replace")

    def _walk(self, steps, pos, info):
        """Move past one DIE's attributes; fill ``info`` (when given) and return (pos, sibling)."""
        data = self.data
        sibling = None
        for kind, arg, keep, form in steps:
            if kind == "skip":
                pos += arg
                continue
            if kind == "fixed":
                value = struct.unpack_from("<" + UNSIGNED[arg], data, pos)[0]
                pos += arg
                if keep in _STRING_ATTRIBUTES:
                    if form == "DW_FORM_strp":
                        value = self._string(self.debug_str, value)
                    elif form == "DW_FORM_line_strp":
                        value = self._string(self.debug_line_str, value)
                    elif form.startswith("DW_FORM_strx"):
                        raise SkimError("form %s" % form)
            elif kind == "implicit":
                value = arg
            elif kind == "leb":
                value, pos = (read_sleb if arg else read_uleb)(data, pos)
                if keep is not None and form in ("DW_FORM_strx", "DW_FORM_addrx"):
                    raise SkimError("form %s" % form)
            elif kind == "cstr":
                end = data.index(b"\0", pos)
                value = data[pos:end].decode("utf-8", "replace") if keep is not None else None
                pos = end + 1
            else:       # block: a length (ULEB or 1/2/4 bytes) and that many bytes
                if arg:
                    length = struct.unpack_from("<" + UNSIGNED[arg], data, pos)[0]
                    pos += arg
                else:
                    length, pos = read_uleb(data, pos)
                pos += length
                value = None
            if keep == "sibling":
                sibling = value
            elif keep is not None and info is not None:
                info[keep] = (value, form)
        return pos, sibling

    def top_level(self):
        """Yield dicts for the CU's top-level DIEs, skipping subtrees by DW_AT_sibling.

        In ``nested`` mode (C++ units) also the DIEs inside namespaces, classes, structures and
        unions (methods, functions of a namespace), each with ``scope``: the names of the
        namespaces and classes around it (``leveldb::DBImpl``; anonymous and inline namespaces
        left out, as a C++ name leaves them out).  Function bodies are never entered."""
        data = self.data
        pos = self.cu.cu_die_offset - self.base
        code, pos = read_uleb(data, pos)
        _tag, has_children, steps, _sib = self._plan(code)
        pos, _sibling = self._walk(steps, pos, None)
        if not has_children:
            return
        levels = [""]       # per open DIE with children: the qualifier of its children, None when skipped
        end = len(data)
        nesting = self.NESTING_TAGS if self.nested else ()
        while pos < end:
            offset = pos
            code, pos = read_uleb(data, pos)
            if code == 0:
                levels.pop()
                if not levels:
                    return
                continue
            tag, has_children, steps, sibling_is_addr = self._plan(code)
            qualifier = levels[-1]
            info = {"offset": offset + self.base, "tag": tag} if qualifier is not None else None
            pos, sibling = self._walk(steps, pos, info)
            if info is not None:
                if self.nested:
                    info["scope"] = qualifier
                yield info
            if not has_children:
                continue
            if info is not None and tag in nesting:
                name = (info.get("DW_AT_name") or (None,))[0]
                if name and "DW_AT_export_symbols" not in info:
                    qualifier = "%s::%s" % (qualifier, name) if qualifier else name
                levels.append(qualifier)
            elif sibling is not None and info is not None:
                # CU-relative for DW_FORM_refN; DW_FORM_ref_addr is section-relative.
                pos = sibling - self.base if sibling_is_addr else sibling
            else:
                levels.append(None)


def subtree(skimmer, offset):
    """Yield (section offset, tag, attributes) of the DIE at ``offset`` and of every DIE below it.

    Attributes are those of ``TopLevelSkimmer.WANTED`` as (value, form), as ``top_level`` gives
    them; used to find inlined copies without building a pyelftools DIE per node."""
    data = skimmer.data
    position = offset - skimmer.base
    depth = 0
    while position < len(data):
        start = position
        code, position = read_uleb(data, position)
        if code == 0:
            depth -= 1
            if depth <= 0:
                return
            continue
        tag, has_children, steps, _sibling_is_addr = skimmer._plan(code)
        info = {}
        position, _sibling = skimmer._walk(steps, position, info)
        yield start + skimmer.base, tag, info
        if has_children:
            depth += 1
        elif depth == 0:
            return


def die_range(info):
    """(low, high) from a skimmed DIE's low_pc/high_pc, or None."""
    low = info.get("DW_AT_low_pc")
    high = info.get("DW_AT_high_pc")
    if low is None or high is None or low[0] is None or high[0] is None:
        return None
    if high[1] == "DW_FORM_addr":
        return low[0], high[0]
    return low[0], low[0] + high[0]


def parse_aranges(data):
    """.debug_aranges bytes -> sorted [(start, end, cu_offset)] (32-bit DWARF, 8-byte addresses)."""
    ranges = []
    pos = 0
    while pos + 12 <= len(data):
        length, version, cu_offset, address_size, _segment = struct.unpack_from("<IHIBB", data, pos)
        if length == 0xffffffff or address_size not in (4, 8):
            raise SkimError("64-bit DWARF or unusual address size in .debug_aranges")
        end = pos + 4 + length
        tuple_size = 2 * address_size
        entry = pos + 12
        entry += (-entry + pos) % tuple_size        # tuples are aligned to their size from the set start
        fmt = "<QQ" if address_size == 8 else "<II"
        while entry + tuple_size <= end:
            start, size = struct.unpack_from(fmt, data, entry)
            entry += tuple_size
            if start == 0 and size == 0:
                break
            if size:
                ranges.append((start, start + size, cu_offset))
        pos = end
    ranges.sort()
    return ranges
