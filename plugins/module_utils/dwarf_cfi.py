# -*- coding: utf-8 -*-
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Canonical frame address (CFA) rule at one address, from .eh_frame or .debug_frame.

``DW_OP_fbreg`` locations are relative to the frame base, which gcc sets to
``DW_OP_call_frame_cfa``; the CFA itself is a register plus an offset that
changes through the prologue.  Parsing a whole .eh_frame takes long on big
libraries, so the FDE is found through the binary-search table in
.eh_frame_hdr and only that FDE is decoded.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import bisect
import struct


class CfiError(Exception):
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
    """CFA rules of one ELF (pyelftools ``ELFFile``)."""

    def __init__(self, elffile):
        self.elffile = elffile
        self._table = None
        self._all_fdes = None
        self._cfi = None

    def _hdr_table(self):
        if self._table is not None:
            return self._table
        self._table = ([], [])
        hdr = self.elffile.get_section_by_name(".eh_frame_hdr")
        if hdr is None or hdr["sh_type"] == "SHT_NOBITS":
            return self._table
        data = hdr.data()
        addr = hdr["sh_addr"]
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

    def _eh_cfi(self):
        from elftools.dwarf.callframe import CallFrameInfo
        if self._cfi is None:
            section = self.elffile.get_section_by_name(".eh_frame")
            if section is None or section["sh_type"] == "SHT_NOBITS":
                return None
            dwarf = self.elffile.get_dwarf_info(relocate_dwarf_sections=False)
            self._cfi = (CallFrameInfo(stream=section.stream, size=section["sh_size"], address=section["sh_addr"],
                                       base_structs=dwarf.structs, for_eh_frame=True), section["sh_addr"])
        return self._cfi

    def _fde_at(self, address):
        starts, fdes = self._hdr_table()
        cfi = self._eh_cfi()
        if starts and cfi is not None:
            index = bisect.bisect_right(starts, address) - 1
            if index >= 0:
                try:
                    fde = cfi[0]._parse_entry_at(fdes[index] - cfi[1])
                    if fde["initial_location"] <= address < fde["initial_location"] + fde["address_range"]:
                        return fde
                except Exception:  # private pyelftools API: fall back to the full walk below
                    pass
        if self._all_fdes is None:
            self._all_fdes = []
            dwarf = self.elffile.get_dwarf_info(relocate_dwarf_sections=False)
            entries = []
            if dwarf.has_EH_CFI():
                entries += dwarf.EH_CFI_entries()
            if dwarf.has_CFI():
                entries += dwarf.CFI_entries()
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
