# -*- coding: utf-8 -*-
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Resolve a perf-probe spec into ``uprobe_events`` lines with pyelftools.

Follows ``perf probe --definition`` (perf 6.1) where perf is right: same
addresses, fetch args, types, group and event names; see
docs/uprobe.md and PERF-PROBE-NOTES.md for where we deliberately differ
(globals, multi-op expressions, entry values, bitfields, separate debug
files).  Speed: the compile unit is found through the symbol table and
.debug_aranges, and only that unit is parsed.

A perf-like command line is in ``dwarf_cli``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import bisect
import os
import re
import struct
import sys
import types

from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import probe_spec
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import debuginfo as dwarf_debuginfo
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import location as dwarf_location
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import typeinfo as dwarf_types
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.location import LocationError, OptimizedOut

_SCOPE_TAGS = ("DW_TAG_lexical_block", "DW_TAG_inlined_subroutine")
_FUNCTION_TAGS = ("DW_TAG_subprogram", "DW_TAG_inlined_subroutine")
_VARIABLE_TAGS = ("DW_TAG_formal_parameter", "DW_TAG_variable")


class ResolveError(Exception):
    """The spec cannot be resolved; the message says why and what to try."""


default_group = probe_spec.default_group


class VariableNote:
    """What became of one requested variable at one probe address."""

    def __init__(self, expression, name, address, fetcharg=None, type_name=None, location=None,
                 reason=None, kernel_type=None):
        self.expression = expression
        self.name = name
        self.address = address
        self.fetcharg = fetcharg
        self.type_name = type_name
        self.location = location
        self.reason = reason
        self.kernel_type = kernel_type
        self.value = None

    @property
    def available(self):
        return self.reason is None

    def as_dict(self):
        return {"expression": self.expression, "name": self.name, "address": "0x%x" % self.address,
                "fetcharg": self.fetcharg, "type": self.type_name, "kernel_type": self.kernel_type,
                "location": self.location, "available": self.available, "reason": self.reason}


class Resolution:
    """The result: one definition line per probe address."""

    def __init__(self, binary, build_id, group, event, kind, probes, notes, debuginfo):
        self.binary = binary
        self.build_id = build_id
        self.group = group
        self.event = event
        self.kind = kind
        self.probes = probes      # list of (vaddr, file_offset, [fetch args])
        self.notes = notes
        self.debuginfo = debuginfo

    @property
    def event_names(self):
        """One name per probe: shared when the kernel can append them to one event.

        The kernel appends a probe to an existing event only when its
        arguments have the same names and types; otherwise perf-style
        suffixes (_1, _2, ...) keep the names apart.
        """
        signatures = set(tuple(_arg_signature(a) for a in args) for _v, _o, args in self.probes)
        if len(signatures) <= 1:
            return [self.event] * len(self.probes)
        return [self.event if i == 0 else "%s_%d" % (self.event, i) for i in range(len(self.probes))]

    @property
    def definitions(self):
        lines = []
        for (_vaddr, offset, args), event in zip(self.probes, self.event_names):
            lines.append(" ".join(["%s:%s/%s" % (self.kind, self.group, event),
                                   "%s:0x%x" % (self.binary, offset)] + args))
        return lines

    def as_dict(self):
        return {"binary": self.binary, "build_id": self.build_id, "group": self.group,
                "events": _unique(self.event_names), "event": self.event, "definitions": self.definitions,
                "addresses": ["0x%x" % p[0] for p in self.probes],
                "variables": [n.as_dict() for n in self.notes], "debuginfo": self.debuginfo}


# -- symbol table ---------------------------------------------------------------
class SymbolTable:
    """Symbols of an ELF, looked up by name without decoding every name.

    The string table is searched for the name first; only entries pointing
    at one of its offsets are decoded (pyelftools builds all symbols, which
    takes long on big libraries).
    """

    def __init__(self, headers):
        self.headers = headers
        self._tables = None
        self._starts = None

    def _load(self):
        if self._tables is None:
            self._tables = []
            headers = self.headers
            fmt = headers.endian + ("IBBHQQ" if headers.is64 else "IIIBBH")
            size = struct.calcsize(fmt)
            for table, strings in ((".symtab", ".strtab"), (".dynsym", ".dynstr")):
                data = headers.section_bytes(table)
                names = headers.section_bytes(strings)
                if data and names:
                    data = data[:len(data) - len(data) % size]
                    if headers.is64:
                        entries = struct.iter_unpack(fmt, data)
                    else:                   # to the 64-bit field order
                        entries = [(n, i, o, x, v, sz) for n, v, sz, i, o, x in struct.iter_unpack(fmt, data)]
                    self._tables.append(((fmt, data) if headers.is64 else entries, names))
        return self._tables

    def _lookup(self, name, kinds):
        wanted = name.encode("utf-8") + b"\0"
        places = []
        for entries, names in self._load():
            offsets = set()
            position = names.find(wanted)
            while position >= 0:
                offsets.add(position)
                position = names.find(wanted, position + 1)
            if not offsets:
                continue
            if isinstance(entries, tuple):
                entries = struct.iter_unpack(*entries)
            for st_name, st_info, _other, shndx, value, sym_size in entries:
                if st_name in offsets and (st_info & 0xf) in kinds and shndx != 0:
                    if (value, sym_size) not in places:
                        places.append((value, sym_size))
            if places:
                break
        return places

    def function(self, name):
        """[(vaddr, size)] of FUNC symbols named ``name``."""
        return self._lookup(name, (2, 10))       # STT_FUNC, STT_GNU_IFUNC

    def data_object(self, name):
        return self._lookup(name, (1,))           # STT_OBJECT

    def has_functions(self):
        return any(entries for entries, _names in self._load())   # (fmt, bytes) or a list: both truthy when non-empty

    def is_function_start(self, address):
        if self._starts is None:
            self._starts = sorted(set(e[4] for entries, _n in self._load()
                                      for e in (struct.iter_unpack(*entries) if isinstance(entries, tuple) else entries)
                                      if (e[1] & 0xf) == 2 and e[3] != 0))
        index = bisect.bisect_left(self._starts, address)
        return index < len(self._starts) and self._starts[index] == address


# -- the resolver -----------------------------------------------------------------
class Resolver:
    """Everything about one binary; resolve() may be called for many specs."""

    def __init__(self, binary, debuginfo=None, expected_build_id=None):
        self.binary = os.path.abspath(binary)
        self.info = dwarf_debuginfo.find_debuginfo(self.binary, explicit=debuginfo,
                                                   expected_build_id=expected_build_id)
        if self.info.binary.e_machine != 62:
            raise ResolveError("%s is not an x86_64 binary (ELF machine %d): the resolver knows only x86_64's "
                               "DWARF registers; resolve on an x86_64 host is not enough, the target must be x86_64"
                               % (self.binary, self.info.binary.e_machine))
        self._files = []
        self.dwarf = open_dwarf(self.info.debug, self._open)
        self._symbols = None
        self._aranges = None
        self._cfa = None
        self._cu_cache = {}
        from elftools.dwarf.dwarf_expr import DWARFExprParser
        from elftools.dwarf.locationlists import LocationParser
        self._expr_parser = DWARFExprParser(self.dwarf.structs)
        self._loc_parser = LocationParser(self.dwarf.location_lists())

    def _open(self, path):
        handle = open(path, "rb")
        self._files.append(handle)
        return handle

    def close(self):
        for handle in self._files:
            handle.close()
        self._files = []

    @property
    def build_id(self):
        return self.info.build_id

    # -- lookups ------------------------------------------------------------------
    @property
    def symbols(self):
        if self._symbols is None:
            self._symbols = SymbolTable(self.info.binary)
            if not self._symbols.has_functions() and self.info.debug is not self.info.binary:
                self._symbols = SymbolTable(self.info.debug)
        return self._symbols

    def cfa_at(self, address):
        from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.cfi import CfaFinder, CfiError
        if self._cfa is None:
            finders = []
            if self.info.debug is not self.info.binary:
                # objcopy --only-keep-debug leaves .eh_frame NOBITS: the binary holds the CFI.
                finders.append(CfaFinder(self.info.binary, self.dwarf.structs))
            if self.info.debug.has_section_data(".eh_frame") or self.info.debug.has_section_data(".debug_frame"):
                finders.append(CfaFinder(self.info.debug, self.dwarf.structs))
            self._cfa = finders
        errors = []
        for finder in self._cfa:
            try:
                return finder.cfa_at(address)
            except CfiError as exc:
                errors.append(str(exc))
        raise LocationError("the frame base needs the CFA, but " + ("; ".join(errors) or "there is no call frame information"))

    def cu_offset_for_address(self, address):
        if self._aranges is None:
            from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import skim as dwarf_skim
            try:
                self._aranges = dwarf_skim.parse_aranges(self._section(".debug_aranges"))
            except (dwarf_skim.SkimError, struct.error):
                self._aranges = []
            self._arange_starts = [r[0] for r in self._aranges]
        index = bisect.bisect_right(self._arange_starts, address) - 1
        while index >= 0 and self._aranges[index][0] <= address:
            start, end, offset = self._aranges[index]
            if address < end:
                return offset
            index -= 1
            if address - start > 1 << 24:   # ranges do not nest: stop looking far back
                break
        # No .debug_aranges entry: check each CU's top DIE ranges (no full parse).
        for cu in self.dwarf.iter_CUs():
            if self.die_contains(cu.get_top_DIE(), address):
                return cu.cu_offset
        return None

    def cu_at(self, offset):
        cu = self._cu_cache.get(offset)
        if cu is None:
            cu = self.dwarf.get_CU_at(offset)
            self._cu_cache[offset] = cu
        return cu

    def die_ranges(self, die):
        """List of (low, high) of a DIE with code."""
        attrs = die.attributes
        if "DW_AT_low_pc" in attrs and "DW_AT_high_pc" in attrs:
            low = attrs["DW_AT_low_pc"].value
            high_attr = attrs["DW_AT_high_pc"]
            high = high_attr.value
            if high_attr.form not in ("DW_FORM_addr", "DW_FORM_addrx"):
                high = low + high
            return [(low, high)]
        if "DW_AT_ranges" in attrs:
            rangelists = self.dwarf.range_lists()
            if rangelists is None:
                return []
            cu = die.cu
            top = cu.get_top_DIE()
            base = top.attributes["DW_AT_low_pc"].value if "DW_AT_low_pc" in top.attributes else 0
            result = []
            try:
                entries = rangelists.get_range_list_at_offset(attrs["DW_AT_ranges"].value, cu=cu)
            except Exception:  # noqa: BLE001 - forms pyelftools cannot read: treat as no ranges
                return []
            for entry in entries:
                if hasattr(entry, "base_address"):
                    base = entry.base_address
                    continue
                if entry.is_absolute:
                    low, high = entry.begin_offset, entry.end_offset
                else:
                    low, high = base + entry.begin_offset, base + entry.end_offset
                if high > low:
                    result.append((low, high))
            return result
        if "DW_AT_low_pc" in attrs:
            low = attrs["DW_AT_low_pc"].value
            return [(low, low + 1)]
        return []

    def die_contains(self, die, address):
        return any(low <= address < high for low, high in self.die_ranges(die))

    def entry_pc(self, die):
        if "DW_AT_entry_pc" in die.attributes and die.attributes["DW_AT_entry_pc"].form == "DW_FORM_addr":
            return die.attributes["DW_AT_entry_pc"].value
        if "DW_AT_low_pc" in die.attributes:
            return die.attributes["DW_AT_low_pc"].value
        ranges = self.die_ranges(die)
        return ranges[0][0] if ranges else None

    # -- functions -------------------------------------------------------------------
    def find_function(self, name, source=None):
        """``(cu, subprogram_die)`` list of concrete (out-of-line) copies of ``name``."""
        found = []
        for vaddr, _size in self.symbols.function(name):
            offset = self.cu_offset_for_address(vaddr)
            if offset is None:
                continue
            cu = self.cu_at(offset)
            if source and not self._cu_matches(cu, source):
                continue
            die = self.subprogram_at(cu, vaddr)
            if die is not None and dwarf_types.name_of(die) == name:
                if all(d.offset != die.offset for _c, d in found):
                    found.append((cu, die))
        if found:
            return found
        # Not in the symbol table (static in a stripped binary, or inlined only): search the
        # CUs' top-level DIEs, but only when the name is in the string tables at all.
        if not self._name_in_debug_strings(name):
            return found
        inlined_only = []
        for cu in self.dwarf.iter_CUs():
            if source and not self._cu_matches(cu, source):
                continue
            for info in self.top_level(cu) or []:
                if info["tag"] != "DW_TAG_subprogram" or (info.get("DW_AT_name") or (None,))[0] != name:
                    continue
                die = self.die_at(cu, info["offset"])
                if self.die_ranges(die):
                    found.append((cu, die))
                elif "DW_AT_inline" in info:
                    inlined_only.append((cu, die))
        # An inline-only function: its abstract DIE stands for all its inlined copies.
        return found or inlined_only

    def _name_in_debug_strings(self, name):
        wanted = name.encode("utf-8") + b"\0"
        for section in (".debug_str", ".debug_info"):
            data = self._section(section)
            if data and wanted in data:
                return True
        return False

    def _section(self, name):
        key = ("section", name)
        if key not in self._cu_cache:
            self._cu_cache[key] = self.info.debug.section_bytes(name) or b""
        return self._cu_cache[key]

    def top_level(self, cu):
        """Skimmed top-level DIEs of a CU (see dwarf_skim), or None when skimming failed."""
        key = ("top", cu.cu_offset)
        if key not in self._cu_cache:
            from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import skim as dwarf_skim
            try:
                skimmer = dwarf_skim.TopLevelSkimmer(self.dwarf, cu, self._section(".debug_str"),
                                                     self._section(".debug_line_str"))
                infos = list(skimmer.top_level())
                for info in infos:
                    info["range"] = dwarf_skim.die_range(info)
            except (dwarf_skim.SkimError, IndexError, KeyError, ValueError, struct.error):
                infos = None
            self._cu_cache[key] = infos
        return self._cu_cache[key]

    def die_at(self, cu, offset):
        return self.dwarf.get_DIE_from_refaddr(offset, cu)

    def subprogram_at(self, cu, address):
        """The top-level subprogram DIE whose code contains ``address``."""
        infos = self.top_level(cu)
        if infos is None:
            for die in self._iter_subprograms(cu):
                if self.die_contains(die, address):
                    return die
            return None
        for info in infos:
            if info["tag"] != "DW_TAG_subprogram":
                continue
            rng = info["range"]
            if rng is not None and rng[0] <= address < rng[1]:
                return self.die_at(cu, info["offset"])
            if rng is None and "DW_AT_ranges" in info:
                die = self.die_at(cu, info["offset"])
                if self.die_contains(die, address):
                    return die
        return None

    def _cu_matches(self, cu, source):
        name = dwarf_types.name_of(cu.get_top_DIE()) or ""
        return name.endswith(source) or os.path.basename(name) == os.path.basename(source)

    def _iter_subprograms(self, cu):
        top = cu.get_top_DIE()
        stack = list(top.iter_children())
        stack.reverse()
        while stack:
            die = stack.pop()
            if die.tag == "DW_TAG_subprogram":
                yield die
            elif die.tag in ("DW_TAG_namespace", "DW_TAG_class_type", "DW_TAG_structure_type"):
                children = list(die.iter_children())
                children.reverse()
                stack.extend(children)

    # -- line table --------------------------------------------------------------------
    def line_table(self, cu):
        key = ("lines", cu.cu_offset)
        cached = self._cu_cache.get(key)
        if cached is not None:
            return cached
        program = self.dwarf.line_program_for_CU(cu)
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
        self._cu_cache[key] = table
        return table

    def _scope_chain(self, cu, address):
        """DIEs from the subprogram down to the innermost block containing ``address``."""
        chain = []
        subprogram = self.subprogram_at(cu, address)
        if subprogram is not None:
            chain.append(subprogram)
        if not chain:
            return chain
        descended = True
        while descended:
            descended = False
            for child in chain[-1].iter_children():
                if child.tag in _SCOPE_TAGS and self.die_contains(child, address):
                    chain.append(child)
                    descended = True
                    break
        return chain

    def _inlined_entries(self, die, out):
        for child in die.iter_children():
            if child.tag == "DW_TAG_inlined_subroutine":
                pc = self.entry_pc(child)
                if pc is not None:
                    out.append((pc, child))
            if child.tag in _SCOPE_TAGS or child.tag == "DW_TAG_subprogram":
                self._inlined_entries(child, out)

    def line_addresses(self, cu, file_matches, line, function_die=None):
        """Distinct addresses of ``line`` (perf rules: is_stmt rows + entry rows)."""
        table = self.line_table(cu)
        addresses = set()
        for address, _order, row_line, file_index, is_stmt, end in table.rows:
            if end or not is_stmt or row_line != line:
                continue
            if file_matches(table.file_name(file_index)):
                addresses.add(address)
        # Entry rows: perf adds (decl_line, entry pc) for each function and
        # (call_line, entry pc) for each inlined call in the CU.
        infos = self.top_level(cu)
        if infos is None:
            subprograms = [(die, None) for die in self._iter_subprograms(cu)]
        else:
            subprograms = [(None, info) for info in infos if info["tag"] == "DW_TAG_subprogram"
                           and (info["range"] is not None or "DW_AT_ranges" in info)]
        for die, info in subprograms:
            if info is not None and "DW_AT_decl_line" in info and "DW_AT_decl_file" in info:
                if info["DW_AT_decl_line"][0] != line or not file_matches(table.file_name(info["DW_AT_decl_file"][0])):
                    continue
            elif info is not None and "DW_AT_abstract_origin" not in info and "DW_AT_specification" not in info:
                continue
            die = die if die is not None else self.die_at(cu, info["offset"])
            decl_line = dwarf_types.origin_attr(die, "DW_AT_decl_line")[0]
            decl_file = dwarf_types.origin_attr(die, "DW_AT_decl_file")[0]
            pc = self.entry_pc(die)
            if pc is not None and decl_line is not None and decl_line.value == line and decl_file is not None \
                    and file_matches(table.file_name(decl_file.value)):
                addresses.add(pc)
        # Inlined calls can only name this line inside the functions that hold its code.
        scopes = {}
        for address in list(addresses) + ([self.entry_pc(function_die)] if function_die is not None else []):
            die = self.subprogram_at(cu, address) if address is not None else None
            if die is not None:
                scopes[die.offset] = die
        if function_die is not None:
            scopes[function_die.offset] = function_die
        for die in scopes.values():
            inlined = []
            self._inlined_entries(die, inlined)
            for pc_inline, child in inlined:
                call_line = child.attributes.get("DW_AT_call_line")
                call_file = child.attributes.get("DW_AT_call_file")
                if call_line is not None and call_line.value == line and call_file is not None \
                        and file_matches(table.file_name(call_file.value)):
                    addresses.add(pc_inline)
        return sorted(addresses)

    def line_at(self, cu, address):
        """(file name, line) perf sees at an address: inline call / function entry / first row."""
        chain = self._scope_chain(cu, address)
        table = self.line_table(cu)
        # perf (cu_find_lineinfo): a real function's entry maps to its declaration line;
        # anything else, inlined entries included, to the first is_stmt row there.
        if chain and self.entry_pc(chain[0]) == address:
            decl_line = dwarf_types.origin_attr(chain[0], "DW_AT_decl_line")[0]
            decl_file = dwarf_types.origin_attr(chain[0], "DW_AT_decl_file")[0]
            if decl_line is not None and decl_file is not None:
                return table.file_name(decl_file.value), decl_line.value
        row = table.first_stmt_row_at(address)
        if row is None:
            return None, None
        return table.file_name(row[3]), row[2]

    # -- variables ------------------------------------------------------------------------
    def _location_ops(self, die, attr_name, address, cu):
        """Parsed ops of the location of ``die`` at ``address``; raises OptimizedOut."""
        attr = die.attributes.get(attr_name)
        if attr is None:
            raise OptimizedOut("it has no location (optimized out)")
        try:
            location = self._loc_parser.parse_from_attribute(attr, cu["version"], die)
        except NotImplementedError as exc:
            raise LocationError("its location list uses a form pyelftools cannot read (%s)" % exc)
        except (ValueError, AssertionError):
            raise LocationError("its %s has a form that is not a location" % attr_name)
        if hasattr(location, "loc_expr"):
            return self._expr_parser.parse_expr(location.loc_expr)
        base = self._cu_base(cu)
        for entry in location:
            if hasattr(entry, "base_address"):
                base = entry.base_address
                continue
            if not hasattr(entry, "loc_expr"):
                continue
            low = entry.begin_offset if entry.is_absolute else base + entry.begin_offset
            high = entry.end_offset if entry.is_absolute else base + entry.end_offset
            if low <= address < high:
                return self._expr_parser.parse_expr(entry.loc_expr)
        raise OptimizedOut("it is optimized out at this address")

    def _cu_base(self, cu):
        top = cu.get_top_DIE()
        return top.attributes["DW_AT_low_pc"].value if "DW_AT_low_pc" in top.attributes else 0

    def available_ranges(self, die, cu):
        """(low, high, expression) ranges where a location-list variable has a location."""
        attr = die.attributes.get("DW_AT_location")
        if attr is None:
            return []
        try:
            location = self._loc_parser.parse_from_attribute(attr, cu["version"], die)
        except Exception:  # noqa: BLE001 - only used for a hint in an error message
            return []
        if hasattr(location, "loc_expr"):
            return []
        base, ranges = self._cu_base(cu), []
        for entry in location:
            if hasattr(entry, "base_address"):
                base = entry.base_address
            elif hasattr(entry, "loc_expr"):
                low = entry.begin_offset if entry.is_absolute else base + entry.begin_offset
                high = entry.end_offset if entry.is_absolute else base + entry.end_offset
                if high > low:
                    ranges.append((low, high, entry.loc_expr))
        return ranges

    def _frame_base(self, function_die, cu):
        def base(address):
            ops = self._location_ops(function_die, "DW_AT_frame_base", address, cu)
            return dwarf_location.frame_base_value(ops, self.cfa_at, address)
        return base

    def variable_value(self, die, cu, address, subprogram):
        """Fetch value of a variable DIE at ``address``; raises LocationError."""
        if "DW_AT_location" not in die.attributes:
            const = dwarf_types.origin_attr(die, "DW_AT_const_value")[0]
            if const is not None and isinstance(const.value, int):
                return ("imm", const.value)
            if "DW_AT_const_value" in die.attributes:
                raise LocationError("it is a constant the kernel cannot hold as an immediate")
            # Globals declared here but defined elsewhere get their address from the
            # symbol table in fetch_arg (global_value).
            raise OptimizedOut("it has no location (optimized out)")
        ops = self._location_ops(die, "DW_AT_location", address, cu)
        return dwarf_location.translate(ops, self._frame_base(subprogram, cu), address)

    def _walk_visible(self, scope, address):
        """Pre-order walk of ``scope``'s children, descending only into DIEs whose code holds ``address``.

        This is perf's order (die_find_child with DIE_FIND_CB_CONTINUE/SIBLING):
        a function's own parameters come before those of blocks and inlined
        calls nested inside it.
        """
        for child in scope.iter_children():
            yield child
            if child.has_children and child.tag in _SCOPE_TAGS and self.die_contains(child, address):
                yield from self._walk_visible(child, address)

    def find_variable(self, name, cu, chain, address):
        """(die, kind) of a variable visible at address: locals first (perf's order), then CU globals."""
        if chain:
            fallback = None
            for die in self._walk_visible(chain[0], address):
                if die.tag not in _VARIABLE_TAGS or dwarf_types.name_of(die) != name:
                    continue
                attrs = die.attributes
                if "DW_AT_location" in attrs or "DW_AT_const_value" in attrs or "DW_AT_external" in attrs:
                    return die, "local"
                fallback = fallback or die
            if fallback is not None:
                return fallback, "local"
        infos = self.top_level(cu)
        if infos is None:
            for child in cu.get_top_DIE().iter_children():
                if child.tag == "DW_TAG_variable" and dwarf_types.name_of(child) == name:
                    return child, "global"
            return None, None
        found = None
        for info in infos:
            if info["tag"] == "DW_TAG_variable" and (info.get("DW_AT_name") or (None,))[0] == name:
                found = self.die_at(cu, info["offset"])
                if "DW_AT_location" in info:        # prefer the definition over a declaration
                    break
        return (found, "global") if found is not None else (None, None)

    def scope_variables(self, chain, address, params_only=False):
        """Parameters (and locals) visible at ``address``, in perf's order, first of each name."""
        if not chain:
            return []
        found, names = [], set()
        for die in self._walk_visible(chain[0], address):
            if die.tag == "DW_TAG_formal_parameter" or (die.tag == "DW_TAG_variable" and not params_only):
                name = dwarf_types.name_of(die)
                if name and name not in names:
                    names.add(name)
                    found.append(die)
        return found

    def global_value(self, die):
        """A global defined elsewhere (extern): take its address from the symbol table."""
        name = dwarf_types.name_of(die)
        places = self.symbols.data_object(name)
        if len(places) == 1:
            return ("global", places[0][0])
        return None

    def fetch_arg(self, arg, cu, chain, address, table):
        """ProbeArg -> VariableNote (available or with the reason)."""
        note = VariableNote(arg.text, arg.default_name(), address)
        die, kind = self.find_variable(arg.variable, cu, chain, address)
        if die is None:
            scope = dwarf_types.name_of(chain[-1]) if chain else "?"
            visible = [dwarf_types.name_of(d) for d in self.scope_variables(chain, address)]
            note.reason = ("variable %s is not visible at 0x%x (in %s); visible here: %s"
                           % (arg.variable, address, scope, ", ".join(visible) or "none"))
            return note
        subprogram = chain[0] if chain else None
        type_die = dwarf_types.type_of(die)
        try:
            if kind == "abstract":
                raise OptimizedOut("it is optimized out in this inlined copy")
            try:
                value = self.variable_value(die, cu, address, subprogram)
            except OptimizedOut:
                if kind == "global":
                    value = self.global_value(die)
                    if value is None:
                        raise
                else:
                    raise
            value, type_die, kernel_type = self._apply_accesses(arg, value, type_die)
        except LocationError as exc:
            reason = str(exc)
            stripped = dwarf_types.strip(dwarf_types.type_of(die))
            if stripped is None or stripped.tag != "DW_TAG_pointer_type":
                reason = reason.split(" Its members (", 1)[0]      # only pointers have members to follow
            note.reason = "%s: %s" % (arg.variable if not arg.accesses else arg.text.split(":")[0], reason)
            if isinstance(exc, OptimizedOut) and kind != "global":
                hint = self._availability_hint(die, cu, table, chain)
                if hint:
                    note.reason += "; " + hint
            return note
        note.type_name = dwarf_types.c_name(type_die)
        note.kernel_type = kernel_type
        note.location = dwarf_location.describe(value)
        note.value = value
        return note

    def _availability_hint(self, die, cu, table, chain):
        """Where the variable can be traced instead: its lines, absolute and as FUNC:N."""
        table = table or self.line_table(cu)
        subprogram = chain[0] if chain else None
        lines = set()
        for low, high, expr in self.available_ranges(die, cu):
            try:
                dwarf_location.translate(self._expr_parser.parse_expr(expr), self._frame_base(subprogram, cu), low)
            except LocationError:
                continue            # has a location there, but not one uprobes can read
            for row in table.rows_between(low, high):
                if row[4]:
                    lines.add(row[2])
        if not lines:
            return "it is not traceable anywhere in this function"
        ordered = sorted(lines)
        text = "it is available at line%s %s" % ("s" if len(ordered) > 1 else "", _compress_lines(ordered))
        decl = dwarf_types.origin_attr(subprogram, "DW_AT_decl_line")[0] if subprogram is not None else None
        if decl is not None:
            text += " (%s:%s)" % (dwarf_types.name_of(subprogram),
                                  _compress_lines([l - decl.value for l in ordered]).replace(", ", ", :"))
        return text

    def _apply_accesses(self, arg, value, type_die):
        """Members, array elements, casts: (value, type_die, kernel type)."""
        kernel_type = None
        for op, operand in arg.accesses:
            stripped = dwarf_types.strip(type_die)
            if stripped is None:
                raise LocationError("it has no type information")
            if op == "->":
                if stripped.tag != "DW_TAG_pointer_type":
                    raise LocationError("'->%s' needs a pointer, but %s is %s; use '.%s'"
                                        % (operand, arg.variable, dwarf_types.c_name(type_die), operand))
                target = dwarf_types.strip(dwarf_types.type_of(stripped))
                member, offset = self._member(target, operand, type_die)
                value = dwarf_location.deref(dwarf_location.add(value, offset))
            elif op == ".":
                if stripped.tag == "DW_TAG_pointer_type":
                    raise LocationError("'.%s' needs a struct, but %s is a pointer (%s); use '->%s'"
                                        % (operand, arg.variable, dwarf_types.c_name(type_die), operand))
                member, offset = self._member(stripped, operand, type_die)
                value = _add_offset(value, offset, operand)
            else:
                if stripped.tag == "DW_TAG_array_type":
                    element = dwarf_types.type_of(stripped)
                    value = _add_offset(value, operand * (dwarf_types.byte_size(element) or 0), "[%d]" % operand)
                elif stripped.tag == "DW_TAG_pointer_type":
                    element = dwarf_types.type_of(stripped)
                    value = dwarf_location.deref(dwarf_location.add(value, operand * (dwarf_types.byte_size(element) or 0)))
                else:
                    raise LocationError("'[%d]' needs an array or pointer, not %s" % (operand, dwarf_types.c_name(type_die)))
                type_die = element
                continue
            bit = dwarf_types.bitfield(member, offset)
            type_die = dwarf_types.type_of(member)
            if bit is not None:
                value = _add_offset(value, bit[0] - offset, "a bitfield")
                kernel_type = bit[1]
        stripped = dwarf_types.strip(type_die)
        cast = arg.type_cast
        if cast not in ("string", "ustring") or (stripped is not None and stripped.tag != "DW_TAG_pointer_type"):
            dwarf_location.check_fetchable(value, arg.variable)
        if cast in ("string", "ustring"):
            if stripped is not None and stripped.tag == "DW_TAG_pointer_type":
                value = dwarf_location.deref(value)
            elif stripped is not None and stripped.tag == "DW_TAG_array_type":
                if value[0] not in ("mem", "global"):
                    raise LocationError("it is an array not in memory, so it cannot be read as a string")
            else:
                raise LocationError("':string' needs a char pointer or array, not %s" % dwarf_types.c_name(type_die))
            return value, type_die, cast
        if cast:
            return value, type_die, cast
        if kernel_type:
            return value, type_die, kernel_type
        kernel_type = dwarf_types.suffix(type_die)
        if kernel_type is None:
            raise LocationError("it is a %s; name a member (.field / ->field), an element ([i]) or cast it "
                                "(:string for char arrays)" % dwarf_types.c_name(type_die))
        if value[0] == "imm" and kernel_type.startswith("s") and value[1] >= 1 << 63:
            value = ("imm", value[1] - (1 << 64))
        return value, type_die, kernel_type

    def _member(self, struct_die, field, type_die):
        if struct_die is None or struct_die.tag not in ("DW_TAG_structure_type", "DW_TAG_union_type", "DW_TAG_class_type"):
            raise LocationError("'%s' is not a member: %s is not a struct or union" % (field, dwarf_types.c_name(type_die)))
        found = dwarf_types.find_member(struct_die, field)
        if found is None:
            raise LocationError("%s has no member '%s' (members: %s)"
                                % (dwarf_types.c_name(struct_die), field, ", ".join(dwarf_types.member_names(struct_die))))
        return found

    # -- whole specs ------------------------------------------------------------------------
    def resolve(self, spec_text, group=None, event=None, force=False, allow_unavailable=False):
        """Spec text -> ``Resolution``; raises ResolveError / ProbeSpecError."""
        spec = probe_spec.parse(spec_text)
        point = spec.point
        group = group or point.group or default_group(self.binary)
        kind = "r" if point.is_return else "p"
        if point.is_return:
            places = self.symbols.function(point.function)
            if not places:
                raise ResolveError("function %s is not in the symbol table of %s; a %%return probe needs its "
                                   "ELF symbol" % (point.function, self.binary))
            vaddr = places[0][0]
            event = event or point.event or point.function + "__return"
            args = [a.raw if not a.name else "%s=%s" % (a.name, a.raw) for a in spec.args]
            return Resolution(self.binary, self.build_id, group, event, kind,
                              [(vaddr, self._file_offset(vaddr), args)], [], self.info.debug.path)
        targets = self._addresses(point, spec, force)    # [(vaddr, cu)]
        event = event or point.event or targets[0][2]
        probes, notes = [], []
        for vaddr, cu, _name in targets:
            offset = self._file_offset(vaddr)
            args, address_notes = self._args_at(spec, cu, vaddr, allow_unavailable)
            probes.append((vaddr, offset, args))
            notes.extend(address_notes)
        return Resolution(self.binary, self.build_id, group, event, kind, probes, notes, self.info.debug.path)

    def _file_offset(self, vaddr):
        offset = self.info.binary.vaddr_to_file_offset(vaddr)
        if offset is None:
            raise ResolveError("address 0x%x is in no loadable segment of %s" % (vaddr, self.binary))
        return offset

    def _addresses(self, point, spec, force):
        """[(vaddr, cu, default event name)] for the probe point."""
        if point.function is None:
            return self._file_line_addresses(point)
        functions = self.find_function(point.function, point.source)
        if not functions:
            where = " (in %s)" % point.source if point.source else ""
            raise ResolveError("function %s not found in the debug info of %s%s; is it spelled right and "
                               "compiled into this binary?" % (point.function, self.binary, where))
        if point.relative_line == 0:
            point.relative_line = None      # perf: FUNC:0 is FUNC itself (name, prologue rule)
        results = []
        for cu, die in functions:
            entry = self.entry_pc(die)
            if entry is None and point.relative_line is None:
                # Inline-only: like perf, one probe at the entry of every inlined copy.
                if point.offset is not None:
                    raise ResolveError("%s exists only as inlined copies; FUNC+OFFSET needs out-of-line code. "
                                       "Use %s or %s:N instead" % (point.function, point.function, point.function))
                copies = self.inlined_copies(cu, die)
                if not copies:
                    raise ResolveError("%s is declared inline but no inlined copy has code in %s"
                                       % (point.function, self.binary))
                results += [(address, cu, point.function) for address in copies]
                continue
            if point.offset is not None:
                address = entry + point.offset
                table = self.line_table(cu)
                if not force and not table.has_address(address) and not self.symbols.is_function_start(address):
                    starts = ["+%d" % n for n in sorted(set(r[0] - entry for r in table.rows
                                                            if entry <= r[0] < entry + 256 and not r[5]))]
                    raise ResolveError("%s+%d (0x%x) is not an address the line table or symbol table names, so it "
                                       "may be inside an instruction and would corrupt the program; known "
                                       "instruction starts near it: %s. Set force: true only if you know it is "
                                       "an instruction boundary." % (point.function, point.offset, address,
                                                                     ", ".join(starts[:16])))
                results.append((address, cu, point.function))
            elif point.relative_line is not None:
                results += self._function_line_addresses(point, cu, die)
            else:
                address = entry
                if any(not a.is_raw for a in spec.args) and not self._is_optimized(cu):
                    address = self._skip_prologue(cu, die, entry)
                results.append((address, cu, point.function))
        return results

    def _in_inlined_copy(self, cu, abstract, address):
        for die in self._scope_chain(cu, address):
            attr = die.attributes.get("DW_AT_abstract_origin")
            if die.tag == "DW_TAG_inlined_subroutine" and attr is not None and \
                    (attr.value if attr.form == "DW_FORM_ref_addr" else attr.value + cu.cu_offset) == abstract.offset:
                return True
        return False

    def inlined_copies(self, cu, abstract):
        """Entry addresses of every inlined copy of ``abstract`` in its CU, in DIE order as perf lists them."""
        addresses = []
        for die in cu.iter_DIEs():
            if die.tag != "DW_TAG_inlined_subroutine" or "DW_AT_abstract_origin" not in die.attributes:
                continue
            attr = die.attributes["DW_AT_abstract_origin"]
            target = attr.value if attr.form == "DW_FORM_ref_addr" else attr.value + cu.cu_offset
            if target == abstract.offset:
                pc = self.entry_pc(die)
                if pc is not None and pc not in addresses:
                    addresses.append(pc)
        return addresses

    def _is_optimized(self, cu):
        producer = cu.get_top_DIE().attributes.get("DW_AT_producer")
        text = producer.value.decode("utf-8", "replace") if producer is not None else ""
        match = re.findall(r"(?:^|\s)-O(\S*)", text)
        return bool(match) and match[-1] != "0"

    def _skip_prologue(self, cu, die, entry):
        table = self.line_table(cu)
        ranges = self.die_ranges(die)
        entry_row = table.first_stmt_row_at(entry)
        if entry_row is None:
            return entry
        for row in table.rows:
            if row[0] <= entry or row[5] or not row[4]:
                continue
            if not any(low <= row[0] < high for low, high in ranges):
                break
            if row[2] != entry_row[2]:
                return row[0]
        return entry

    def _function_line_addresses(self, point, cu, die):
        table = self.line_table(cu)
        decl_line = dwarf_types.origin_attr(die, "DW_AT_decl_line")[0]
        decl_file = dwarf_types.origin_attr(die, "DW_AT_decl_file")[0]
        if decl_line is None or decl_file is None:
            raise ResolveError("function %s has no declaration line in the debug info" % point.function)
        file_name = table.file_name(decl_file.value)
        line = decl_line.value + point.relative_line
        same_file = _file_matcher(file_name)
        addresses = self.line_addresses(cu, same_file, line, die)
        if not addresses and not self.die_ranges(die):
            raise ResolveError("%s:%d (%s:%d) has no code in any inlined copy of %s (it has no out-of-line copy)"
                               % (point.function, point.relative_line, os.path.basename(file_name), line,
                                  point.function))
        if not addresses:
            lines = self.function_lines(cu, die)
            relative = sorted(set(l - decl_line.value for l in lines))
            raise ResolveError("%s:%d (%s:%d) has no code: no probe-able address. Probe-able lines of %s: %s"
                               % (point.function, point.relative_line, os.path.basename(file_name), line,
                                  point.function, _compress_lines(relative)))
        for address in addresses:
            found_file, found_line = self.line_at(cu, address)
            if found_line is not None and found_line != line and same_file(found_file or ""):
                if self.die_contains(die, address) or self._in_inlined_copy(cu, die, address):
                    instead = "%s:%d" % (point.function, found_line - decl_line.value)
                else:       # the line lies outside the function: only a file line names it
                    instead = "%s:%d" % (found_file, found_line)
                raise ResolveError("%s:%d (%s:%d) is sharing the address 0x%x with other lines. Please try to "
                                   "probe at %s instead."
                                   % (point.function, point.relative_line, os.path.basename(file_name), line,
                                      address, instead))
        return [(a, cu, "%s_L%d" % (point.function, point.relative_line)) for a in addresses]

    def _file_line_addresses(self, point):
        matcher = _file_matcher(point.source, suffix=True)
        results = []
        for cu in self._cus_for_source(point.source):
            addresses = self.line_addresses(cu, matcher, point.absolute_line)
            for address in addresses:
                found_file, found_line = self.line_at(cu, address)
                if found_line is not None and found_line != point.absolute_line and matcher(found_file or ""):
                    raise ResolveError("%s:%d is sharing the address 0x%x with other lines. Please try to probe at "
                                       "%s:%d instead." % (point.source, point.absolute_line, address,
                                                           point.source, found_line))
                chain = self._scope_chain(cu, address)
                name = dwarf_types.name_of(chain[0]) if chain else None
                results.append((address, cu, name or "L%d" % point.absolute_line))
        if not results:
            raise ResolveError("%s:%d has no code in %s (no line-table row for it); pick a line with a statement"
                               % (point.source, point.absolute_line, self.binary))
        return results

    def _cus_for_source(self, source):
        """CUs whose line table names the source file (CU name match first)."""
        matched = [cu for cu in self.dwarf.iter_CUs() if self._cu_matches(cu, source)]
        if matched:
            return matched
        found = []
        for cu in self.dwarf.iter_CUs():
            table = self.line_table(cu)
            if any(_file_matcher(source, suffix=True)(table.file_name(i)) for i in table.file_indexes()):
                found.append(cu)
        return found

    def function_lines(self, cu, die):
        """Absolute line numbers with is_stmt rows inside the function's ranges (declaring file)."""
        table = self.line_table(cu)
        decl_file = dwarf_types.origin_attr(die, "DW_AT_decl_file")[0]
        file_name = table.file_name(decl_file.value) if decl_file is not None else None
        ranges = self.die_ranges(die)
        # Rows inside inlined bodies belong to the inlined function's source, as in perf -L.
        inlined = []
        self._inlined_entries(die, inlined)
        inlined_ranges = [r for _pc, child in inlined for r in self.die_ranges(child)]
        lines = set()
        for address, _o, line, file_index, is_stmt, end in table.rows:
            if end or not is_stmt or not any(low <= address < high for low, high in ranges):
                continue
            if any(low <= address < high for low, high in inlined_ranges):
                continue
            if file_name is None or table.file_name(file_index) == file_name:
                lines.add(line)
        return sorted(lines)

    def _args_at(self, spec, cu, address, allow_unavailable):
        chain = self._scope_chain(cu, address)
        table = None        # the line table is only needed for hints in error messages
        delta = address - self._file_offset(address)
        args, notes, failures = [], [], []
        for arg in spec.args:
            if arg.is_raw:
                args.append("%s=%s" % (arg.name, arg.raw) if arg.name else arg.raw)
                continue
            if arg.is_special:
                for die in self.scope_variables(chain, address, params_only=arg.variable == "$params"):
                    name = dwarf_types.name_of(die)
                    sub = probe_spec.ProbeArg(name, variable=name)
                    note = self.fetch_arg(sub, cu, chain, address, table)
                    notes.append(note)
                    if note.available:
                        note.fetcharg = "%s=%s:%s" % (note.name, dwarf_location.render(note.value, delta), note.kernel_type)
                        args.append(note.fetcharg)
                continue
            note = self.fetch_arg(arg, cu, chain, address, table)
            notes.append(note)
            if note.available:
                note.fetcharg = "%s=%s:%s" % (note.name, dwarf_location.render(note.value, delta), note.kernel_type)
                args.append(note.fetcharg)
            else:
                failures.append(note)
        if failures and not allow_unavailable:
            raise ResolveError("cannot trace %s at 0x%x: %s" % (
                ", ".join(n.expression for n in failures), address, "; ".join(n.reason for n in failures)))
        return args, notes

    # -- probe_info -----------------------------------------------------------------------
    def probeable_lines(self, function, source=None):
        """Like ``perf probe -L FUNC``: [{line, relative_line, addresses, source}]."""
        functions = self.find_function(function, source)
        if not functions:
            raise ResolveError("function %s not found in the debug info of %s" % (function, self.binary))
        cu, die = functions[0]
        table = self.line_table(cu)
        decl_line = dwarf_types.origin_attr(die, "DW_AT_decl_line")[0].value
        decl_file = dwarf_types.origin_attr(die, "DW_AT_decl_file")[0].value
        file_name = table.file_name(decl_file)
        source_lines = _read_source(file_name, cu)
        lines = []
        same_file = _file_matcher(file_name)
        for line in sorted(set(self.function_lines(cu, die)) | set([decl_line])):
            addresses = [a for a in self.line_addresses(cu, same_file, line, die) if self.die_contains(die, a)]
            # perf -L lists a line when one of its addresses maps back to it;
            # FUNC:N is accepted only when all of them do.
            reversible = []
            for address in addresses:
                found_file, found_line = self.line_at(cu, address)
                if found_line is None or found_line == line or not same_file(found_file or ""):
                    reversible.append(address)
            if not reversible:
                continue
            lines.append({"line": line, "relative_line": line - decl_line,
                          "addresses": ["0x%x" % a for a in addresses],
                          "address": "0x%x" % reversible[0],
                          "probeable": len(reversible) == len(addresses),
                          "source": source_lines[line - 1].rstrip("\n") if source_lines and line <= len(source_lines) else None})
        return {"function": function, "file": file_name, "decl_line": decl_line, "lines": lines,
                "build_id": self.build_id}

    def variables_at(self, spec_text):
        """Like ``perf probe -V``: every variable visible at each address of the spec."""
        spec = probe_spec.parse(spec_text)
        if spec.point.is_return:
            raise ResolveError("a %return probe sees no C variables")
        targets = self._addresses(spec.point, spec, force=True)
        result = []
        for address, cu, _name in targets:
            chain = self._scope_chain(cu, address)
            table = self.line_table(cu)
            delta = address - self._file_offset(address)
            for die in self.scope_variables(chain, address):
                name = dwarf_types.name_of(die)
                note = self.fetch_arg(probe_spec.ProbeArg(name, variable=name), cu, chain, address, table)
                entry = {"name": name, "address": "0x%x" % address,
                         "type": dwarf_types.c_name(dwarf_types.type_of(die)),
                         "kind": "parameter" if die.tag == "DW_TAG_formal_parameter" else "local",
                         "available": note.available, "location": note.location, "reason": note.reason,
                         "fetcharg": None}
                if not note.available and note.reason and "name a member" in note.reason:
                    # A char array reads as a string; other aggregates need a member named.
                    as_string = self.fetch_arg(probe_spec.ProbeArg(name + ":string", variable=name, type_cast="string"),
                                               cu, chain, address, table)
                    if as_string.available:
                        note = as_string
                if note.available:
                    entry["fetcharg"] = "%s=%s:%s" % (name, dwarf_location.render(note.value, delta), note.kernel_type)
                    entry["location"] = note.location
                    entry["available"], entry["reason"] = True, None
                result.append(entry)
        return result


class SectionStream:
    """A file-like window on one section, read on demand.

    pyelftools wants one stream per section; reading every DWARF section of
    a 23 MB library into memory first costs more than resolving a probe.
    """

    BLOCK = 8192    # pyelftools reads a few bytes at a time: one file read serves many of them

    def __init__(self, handle, offset, size):
        self.handle = handle
        self.offset = offset
        self.size = size
        self.position = 0
        self._start = 0         # section offset of self._block
        self._block = b""

    def seek(self, position, whence=0):
        if whence == 1:
            position += self.position
        elif whence == 2:
            position += self.size
        self.position = position
        return position

    def tell(self):
        return self.position

    def read(self, count=-1):
        if count is None or count < 0 or self.position + count > self.size:
            count = max(0, self.size - self.position)
            if not count:
                return b""
        position = self.position
        start = position - self._start
        if start < 0 or start + count > len(self._block):
            if count >= self.BLOCK:
                self.handle.seek(self.offset + position)
                data = self.handle.read(count)
                self.position += len(data)
                return data
            self.handle.seek(self.offset + position)
            self._block = self.handle.read(min(self.BLOCK, self.size - position))
            self._start = position
            start = 0
        data = self._block[start:start + count]
        self.position += len(data)
        return data


_DWARF_SECTIONS = ("debug_info", "debug_aranges", "debug_abbrev", "debug_str", "debug_loc", "debug_ranges",
                   "debug_line", "debug_addr", "debug_str_offsets", "debug_line_str", "debug_loclists",
                   "debug_rnglists")


class _DeferredModule(types.ModuleType):
    """Stands in for a standard module while pyelftools is imported; the real one loads on first use."""

    def __init__(self, name, functions):
        super(_DeferredModule, self).__init__(name)
        for function in functions:       # names pyelftools takes with ``from X import name``
            setattr(self, function, self._forward(function))

    def _forward(self, function):
        def forward(*args, **kwargs):
            return getattr(self._real(), function)(*args, **kwargs)
        forward.__name__ = function
        return forward

    def _real(self):
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        __import__(name)
        return sys.modules[name]

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(self._real(), attr)


# Modules pyelftools imports at start-up but uses only to print or debug constructs: pprint
# (with dataclasses and inspect, ~10 ms), pdb (~4 ms), inspect, traceback.
_DEFERRED_MODULES = (("pprint", ("pformat",)), ("pdb", ()), ("inspect", ()), ("traceback", ()))


def _import_dwarfinfo():
    """``elftools.dwarf.dwarfinfo`` without paying for the debugging modules pyelftools imports.

    Only modules not imported yet are deferred, and only during this import: afterwards a plain
    ``import pprint`` anywhere gets the real module, and pyelftools' own references load it on use.
    """
    if "elftools.dwarf.dwarfinfo" in sys.modules:
        return sys.modules["elftools.dwarf.dwarfinfo"]
    placed = []
    for name, functions in _DEFERRED_MODULES:
        if name not in sys.modules:
            sys.modules[name] = _DeferredModule(name, functions)
            placed.append(sys.modules[name])
    try:
        from elftools.dwarf import dwarfinfo
    finally:
        for module in placed:
            if sys.modules.get(module.__name__) is module:
                del sys.modules[module.__name__]
    return dwarfinfo


def open_dwarf(headers, open_file):
    """pyelftools DWARFInfo over the sections that ``headers`` (ElfHeaders) lists.

    Builds the DWARFInfo directly instead of through ELFFile: importing and
    setting up elftools.elf costs more than a whole small resolution.  Files
    that need more (dwz supplementary files, relocations) go through ELFFile.
    """
    dwarfinfo = _import_dwarfinfo()
    DebugSectionDescriptor, DWARFInfo, DwarfConfig = (dwarfinfo.DebugSectionDescriptor, dwarfinfo.DWARFInfo,
                                                      dwarfinfo.DwarfConfig)
    simple = headers.e_machine == 62 and headers.e_type in (2, 3) and ".gnu_debugaltlink" not in headers.sections \
        and ".debug_types" not in headers.sections
    if simple:
        sections = {}
        handle = None
        for name in _DWARF_SECTIONS:
            if headers.has_section_data("." + name):
                handle = handle or open_file(headers.path)
                entry = headers.sections["." + name]
                stream = SectionStream(handle, entry[2], entry[3])
                sections[name + "_sec"] = DebugSectionDescriptor(stream, "." + name, entry[2], entry[3], entry[1])
        try:
            return DWARFInfo(config=DwarfConfig(little_endian=headers.endian == "<", machine_arch="x64",
                                                default_address_size=8 if headers.is64 else 4),
                             debug_frame_sec=None, eh_frame_sec=None, debug_pubtypes_sec=None,
                             debug_pubnames_sec=None, debug_sup_sec=None, gnu_debugaltlink_sec=None,
                             debug_types_sec=None,
                             **dict((n + "_sec", sections.get(n + "_sec")) for n in _DWARF_SECTIONS))
        except TypeError:   # another pyelftools version: its ELFFile knows its own signature
            pass
    from elftools.elf.elffile import ELFFile
    return ELFFile(open_file(headers.path)).get_dwarf_info(relocate_dwarf_sections=False)


class LineTable:
    """Rows of one CU: (address, order, line, file, is_stmt, end_sequence), sorted."""

    def __init__(self, program, rows, version):
        self.program = program
        self.rows = rows
        self.version = version
        self._addresses = [r[0] for r in rows]
        self._names = {}

    def file_indexes(self):
        if self.program is None:
            return []
        count = len(self.program.header["file_entry"])
        return range(count) if self.version >= 5 else range(1, count + 1)

    def file_name(self, index):
        cached = self._names.get(index)
        if cached is not None:
            return cached
        header = self.program.header
        position = index if self.version >= 5 else index - 1
        try:
            entry = header["file_entry"][position]
        except (IndexError, TypeError):
            return ""
        name = entry.name.decode("utf-8", "replace")
        directories = header["include_directory"]
        dir_index = entry.dir_index
        directory = ""
        if self.version >= 5:
            if dir_index < len(directories):
                directory = directories[dir_index].decode("utf-8", "replace")
        elif dir_index > 0 and dir_index - 1 < len(directories):
            directory = directories[dir_index - 1].decode("utf-8", "replace")
        full = os.path.join(directory, name) if directory else name
        self._names[index] = full
        return full

    def has_address(self, address):
        index = bisect.bisect_left(self._addresses, address)
        return index < len(self._addresses) and self._addresses[index] == address and not self.rows[index][5]

    def first_stmt_row_at(self, address):
        index = bisect.bisect_left(self._addresses, address)
        while index < len(self.rows) and self.rows[index][0] == address:
            row = self.rows[index]
            if row[4] and not row[5]:
                return row
            index += 1
        return None

    def rows_between(self, low, high):
        index = bisect.bisect_left(self._addresses, low)
        while index < len(self.rows) and self.rows[index][0] < high:
            if not self.rows[index][5]:
                yield self.rows[index]
            index += 1


def _arg_signature(arg):
    name, _sep, fetch = arg.partition("=")
    return (name, fetch.rsplit(":", 1)[-1]) if _sep else (arg,)


def _unique(items):
    seen = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def _add_offset(value, offset, what):
    if value[0] == "mem":
        return ("mem", value[1] + offset, value[2])
    if value[0] == "global":
        return ("global", value[1] + offset)
    raise LocationError("%s is held in a register here, not in memory, so %s cannot be addressed" % ("it", what))


def _file_matcher(name, suffix=True):
    """perf compares source files by suffix: 'demo.c' matches '/src/demo.c' and the other way round."""
    def matches(candidate):
        if not candidate:
            return False
        if candidate == name:
            return True
        return suffix and (candidate.endswith("/" + name) or name.endswith("/" + candidate))
    return matches


def _compress_lines(numbers):
    """[1, 2, 3, 7] -> '1-3, 7'."""
    groups = []
    for number in numbers:
        if groups and number == groups[-1][1] + 1:
            groups[-1][1] = number
        else:
            groups.append([number, number])
    return ", ".join(str(a) if a == b else "%d-%d" % (a, b) for a, b in groups)


def _read_source(file_name, cu):
    candidates = [file_name]
    comp_dir = cu.get_top_DIE().attributes.get("DW_AT_comp_dir")
    if comp_dir is not None and not os.path.isabs(file_name):
        candidates.insert(0, os.path.join(comp_dir.value.decode("utf-8", "replace"), file_name))
    for path in candidates:
        try:
            with open(path, "r", errors="replace") as handle:
                return handle.readlines()
        except (IOError, OSError):
            continue
    return None


def resolve(binary, spec, group=None, event=None, debuginfo=None, build_id=None, force=False,
            allow_unavailable=False):
    """One-shot: resolve ``spec`` in ``binary`` and return ``Resolution.as_dict()``."""
    resolver = Resolver(binary, debuginfo=debuginfo, expected_build_id=build_id)
    try:
        return resolver.resolve(spec, group=group, event=event, force=force,
                                allow_unavailable=allow_unavailable).as_dict()
    finally:
        resolver.close()
