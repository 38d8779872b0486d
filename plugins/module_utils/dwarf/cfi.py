# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Canonical frame address (CFA) rule at one address, from .eh_frame or .debug_frame.

``DW_OP_fbreg`` locations are relative to the frame base, which gcc sets to
``DW_OP_call_frame_cfa``; the CFA itself is a register plus an offset that
changes through the prologue.  Parsing a whole .eh_frame takes long on big
libraries, so the FDE is found through the binary-search table in
.eh_frame_hdr and only that FDE is decoded.
"""


import bisect
import io
import struct

from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.errors import DwarfError


class CfiError(DwarfError):
    pass


# DW_EH_PE pointer encodings used in .eh_frame_hdr tables.
_EH_PE_FORMATS = {0x00: "Q", 0x02: "H", 0x03: "I", 0x04: "Q", 0x0a: "h", 0x0b: "i", 0x0c: "q"}


def _read_encoded(data, position, encoding, section_addr):
    fmt = _EH_PE_FORMATS.get(encoding & 0x0f)
    if fmt is None or encoding == 0xff:
        raise CfiError("unsupported .eh_frame_hdr encoding 0x%x" % encoding)
    size = struct.calcsize(fmt)
    value = struct.unpack("<" + fmt, data[position:position + size])[0]
    application = encoding & 0x70
    if application == 0x10:        # pcrel
        value += section_addr + position
    elif application == 0x30:      # datarel: relative to .eh_frame_hdr start
        value += section_addr
    return value, position + size


class CfaFinder:
    """CFA rules of one ELF: ``headers`` is a dwarf_debuginfo.ElfHeaders, ``structs`` pyelftools DWARFStructs."""

    def __init__(self, headers, structs):
        self.headers = headers
        self.structs = structs
        self._table = None
        self._all_fdes = None
        self._cfi = None

    def _section(self, name):
        entry = self.headers.sections.get(name)
        data = self.headers.section_bytes(name)
        if entry is None or not data:
            return None, None
        return data, entry[1]

    def _hdr_table(self):
        if self._table is not None:
            return self._table
        self._table = ([], [])
        data, addr = self._section(".eh_frame_hdr")
        if not data:
            return self._table
        version, _ptr_enc, count_enc, table_enc = struct.unpack("BBBB", data[:4])
        if version != 1:
            return self._table
        _eh_frame_ptr, position = _read_encoded(data, 4, _ptr_enc, addr)
        count, position = _read_encoded(data, position, count_enc, addr)
        starts, fdes = [], []
        if table_enc == 0x3b and count:    # datarel sdata4: the usual case, unpacked in one go
            pairs = struct.unpack("<%di" % (2 * count), data[position:position + 8 * count])
            starts = [p + addr for p in pairs[0::2]]
            fdes = [p + addr for p in pairs[1::2]]
        else:
            for _i in range(count):
                start, position = _read_encoded(data, position, table_enc, addr)
                fde, position = _read_encoded(data, position, table_enc, addr)
                starts.append(start)
                fdes.append(fde)
        self._table = (starts, fdes)
        return self._table

    def _call_frame_info(self, name):
        from elftools.dwarf.callframe import CallFrameInfo
        data, addr = self._section(name)
        if not data:
            return None
        return CallFrameInfo(stream=io.BytesIO(data), size=len(data), address=addr, base_structs=self.structs,
                             for_eh_frame=name == ".eh_frame")

    def _fde_at(self, address):
        starts, fdes = self._hdr_table()
        if self._cfi is None:
            self._cfi = self._call_frame_info(".eh_frame") or False
        if starts and self._cfi:
            index = bisect.bisect_right(starts, address) - 1
            if index >= 0:
                try:
                    fde = self._cfi._parse_entry_at(fdes[index] - self._cfi.address)
                    if fde["initial_location"] <= address < fde["initial_location"] + fde["address_range"]:
                        return fde
                except Exception:  # private pyelftools API: fall back to the full walk below
                    pass
        if self._all_fdes is None:
            entries = []
            for name in (".eh_frame", ".debug_frame"):
                cfi = self._call_frame_info(name)
                if cfi is not None:
                    entries += cfi.get_entries()
            self._all_fdes = [e for e in entries if hasattr(e, "header") and "initial_location" in e.header]
        for fde in self._all_fdes:
            if fde["initial_location"] <= address < fde["initial_location"] + fde["address_range"]:
                return fde
        return None

    def cfa_at(self, address):
        """``(dwarf_register, offset)`` with CFA = register + offset at ``address``."""
        fde = self._fde_at(address)
        if fde is None:
            raise CfiError("no call frame information (.eh_frame/.debug_frame) covers address 0x%x" % address)
        rule = None
        for row in fde.get_decoded().table:
            if row["pc"] > address:
                break
            rule = row["cfa"]
        if rule is None or rule.reg is None:
            raise CfiError("the call frame information at 0x%x gives the CFA as an expression" % address)
        return rule.reg, rule.offset
