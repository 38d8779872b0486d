# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the resolver knows about one binary, shared by its pieces.

``DwarfContext`` holds the DWARF (pyelftools' DWARFInfo), the ELF symbols,
the call frame information and one typed cache per kind of fact (compile
units, section bytes, skimmed top-level DIEs, line tables), as perf's
``debuginfo`` and pyelftools' ``DWARFInfo`` do.  The pieces (scopes, lines,
variables, points) are functions taking the context; ``resolver.Resolver``
is the facade over them.
"""


import bisect
import struct

from ansible_collections.fleettrace.tracefs.plugins.module_utils import bounded
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import loader as dwarf_loader
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import names
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import typeinfo as dwarf_types
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.errors import ResolveError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.location import LocationError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.elf.symbols import SymbolTable

# .debug_aranges ranges do not nest: an address this far past a range start is in none before it.
ARANGE_LOOKBACK = 1 << 24
ADDRESS_FORMS = ("DW_FORM_addr", "DW_FORM_addrx")   # DW_AT_high_pc in these is an address, else a length
CXX_LANGUAGES = (0x04, 0x19, 0x1a, 0x21)    # DW_LANG_C_plus_plus, _03, _11, _14


class DwarfContext:
    """One binary's DWARF, symbols and CFI, with typed caches; ``close()`` when done.

    ``info`` is a ``debuginfo.DebugInfo`` (the binary's and the debug file's ELF headers).
    """

    def __init__(self, binary, info):
        self.binary = binary
        self.info = info
        self._files = []
        self.dwarf = dwarf_loader.open_dwarf(info.debug, self._open)
        self.cus = {}               # CU offset -> pyelftools CompileUnit
        self.sections = {}          # section name -> bytes (b"" when absent)
        self.top_levels = {}        # CU offset -> [skimmed top-level DIE dict] or None (skim failed)
        self.line_tables = {}       # CU offset -> lines.LineTable
        self.piece_ranges = {}      # DIE offset -> ranges of a subprogram described by DW_AT_ranges
        self.skimmers = {}          # CU offset -> dwarf.skim.TopLevelSkimmer
        self.unit_starts = None     # .debug_info offsets of every unit (functions.units_naming)
        self._symbols = None
        self._aranges = None
        self._arange_starts = None
        self._cfa = None
        self._index = None          # dwarf.function_index.FunctionIndex, or False when the DWARF cannot be indexed
        from elftools.dwarf.dwarf_expr import DWARFExprParser
        from elftools.dwarf.locationlists import LocationParser
        self.expr_parser = DWARFExprParser(self.dwarf.structs)
        self.loc_parser = LocationParser(self.dwarf.location_lists())

    def _open(self, path):
        handle = bounded.open_regular(path, "debug info file")
        self._files.append(handle)
        return handle

    def close(self):
        for handle in self._files:
            handle.close()
        self._files = []
        if self._index:
            self._index.close()

    @property
    def build_id(self):
        return self.info.build_id

    # -- ELF -------------------------------------------------------------------------
    @property
    def symbols(self):
        """Symbol table of the binary, or of the debug file when the binary is stripped."""
        if self._symbols is None:
            self._symbols = SymbolTable(self.info.binary)
            if not self._symbols.has_functions() and self.info.debug is not self.info.binary:
                self._symbols = SymbolTable(self.info.debug)
        return self._symbols

    def section(self, name):
        """Bytes of a section of the debug file (b"" when it has none)."""
        data = self.sections.get(name)
        if data is None:
            data = self.sections[name] = self.info.debug.section_bytes(name) or b""
        return data

    def section_size(self, name):
        entry = self.info.debug.sections.get(name)
        return entry[3] if entry is not None and self.info.debug.has_section_data(name) else 0

    def file_offset(self, vaddr):
        offset = self.info.binary.vaddr_to_file_offset(vaddr)
        if offset is None:
            raise ResolveError("address 0x%x is in no loadable segment of %s" % (vaddr, self.binary))
        return offset

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

    # -- compile units and DIEs -----------------------------------------------------------
    def cu_offset_for_address(self, address):
        if self._aranges is None:
            from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import skim as dwarf_skim
            try:
                self._aranges = dwarf_skim.parse_aranges(self.section(".debug_aranges"))
            except (dwarf_skim.SkimError, struct.error):
                self._aranges = []
            self._arange_starts = [r[0] for r in self._aranges]
        index = bisect.bisect_right(self._arange_starts, address) - 1
        while index >= 0 and self._aranges[index][0] <= address:
            start, end, offset = self._aranges[index]
            if address < end:
                return offset
            index -= 1
            if address - start > ARANGE_LOOKBACK:
                break
        # No .debug_aranges entry: check each CU's top DIE ranges (no full parse).
        for cu in self.dwarf.iter_CUs():
            if self.die_contains(cu.get_top_DIE(), address):
                return cu.cu_offset
        return None

    @property
    def function_index(self):
        """dwarf.function_index.FunctionIndex (cached on disk by build-id), or None when the DWARF has
        something the one-pass skim does not read (callers then walk the compile units)."""
        if self._index is None and not self.build_id:
            self._index = False     # cannot be stored: the byte search (dwarf/byte_search.py) costs less than a build
        if self._index is None:
            from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import function_index as dwarf_function_index
            try:
                self._index = dwarf_function_index.function_index(self.build_id, self.section,
                                                                  self.section_size) or False
            except dwarf_function_index.IndexBuildError:
                self._index = False
        return self._index or None

    @property
    def stored_function_index(self):
        """The function index when one is stored for this build-id (or was built by this run), else
        None; never builds one (a lookup that the symbol table and .debug_aranges can answer is
        cheaper than a first build)."""
        if self._index is None and self.build_id:
            from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import function_index as dwarf_function_index
            sizes = tuple(self.section_size(name) for name in dwarf_function_index.INDEXED_SECTIONS)
            self._index = dwarf_function_index.load(self.build_id, sizes)
        return self._index or None

    def _from_index(self, lookup, stored_only=False):
        """``lookup(index)``, or None when there is no index (with ``stored_only``: none stored) or its
        stored copy turns out damaged."""
        index = self.stored_function_index if stored_only else self.function_index
        if index is None:
            return None
        from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import function_index as dwarf_function_index
        try:
            return lookup(index)
        except dwarf_function_index.IndexBuildError:
            index.close()
            self._index = False
            return None

    def indexed_units(self, wanted):
        """Sorted offsets of the units with a subprogram DIE that is function ``wanted`` (a
        names.FunctionName; its qualifier too when it has one), from the function index; None
        without one (callers search the bytes, dwarf/byte_search.py)."""
        entries = self._from_index(lambda index: index.qualified(wanted.key))
        if entries is None:
            return None
        return sorted({cu_offset for cu_offset, _o, _i, qualifier in entries
                       if wanted.mangled or wanted.matches(qualifier, wanted.parts[-1])})

    def indexed_function_dies(self, cu, wanted):
        """Offsets of the DIEs of ``cu`` that are function ``wanted`` (names.FunctionName), in DIE order,
        from a stored function index (functions.function_dies' answer without skimming the unit);
        None without one.  Declarations are left out, definitions completing them and clones kept."""
        def lookup(index):
            end = cu.cu_offset + cu.size
            named = [offset for unit, offset, _i, qualifier in index.qualified(wanted.key)
                     if unit == cu.cu_offset and (wanted.mangled or wanted.matches(qualifier, wanted.parts[-1]))]
            if names.base(wanted.parts[-1]) != wanted.parts[-1]:
                # One template instantiation: the index files them all under the name without arguments.
                last = names.FunctionName(wanted.parts[-1])
                named = [offset for offset in named if last.matches("", dwarf_types.name_of(self.die_at(cu, offset)))]
            found = {offset for unit, offset, _i, _q in index.qualified(wanted.key, declarations=False)
                     if offset in named}
            pending = list(named)
            while pending:          # definitions of declarations, clones of abstract DIEs, their clones
                for copy in index.out_of_line_copies(pending.pop()):
                    if cu.cu_offset <= copy < end and copy not in found:
                        found.add(copy)
                        pending.append(copy)
            return sorted(found)
        if wanted.mangled:
            return None             # linkage names are not filed in the index
        return self._from_index(lookup, stored_only=True)

    def indexed_copies(self, abstract_offset, stored_only=False):
        """``(inlined, out_of_line)`` offsets of the copies of an abstract DIE in every unit, from the
        function index (LTO puts them in other units than the abstract DIE); None without one."""
        return self._from_index(lambda index: (index.inlined_copies(abstract_offset),
                                               index.out_of_line_copies(abstract_offset)), stored_only)

    def enclosing_function(self, cu, die):
        """The subprogram with code whose subtree holds ``die`` (an inlined copy), from a stored function
        index; None without one (callers look the function up by address)."""
        offset = self._from_index(lambda index: index.function_at_or_before(cu.cu_offset, die.offset), stored_only=True)
        return self.die_at(cu, offset) if offset is not None else None

    def unit_of(self, offset):
        """The unit holding the DIE at section offset ``offset``."""
        if self.unit_starts is None:
            from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import byte_search
            self.unit_starts = byte_search.unit_starts(self.section(".debug_info")) or []
        position = bisect.bisect_right(self.unit_starts, offset) - 1
        if position < 0:
            raise ResolveError("DIE offset 0x%x is before the first unit of %s" % (offset, self.binary))
        return self.cu_at(self.unit_starts[position])

    def indexed_inlined_copies(self, cu, abstract_offset):
        """Offsets of the DW_TAG_inlined_subroutine DIEs of ``cu`` whose abstract origin is
        ``abstract_offset``, in DIE order, from the function index; None without one."""
        return self._from_index(
            lambda index: index.inlined_copies(abstract_offset, cu.cu_offset, cu.cu_offset + cu.size))

    def cu_at(self, offset):
        cu = self.cus.get(offset)
        if cu is None:
            cu = self.cus[offset] = self.dwarf.get_CU_at(offset)
        return cu

    def die_at(self, cu, offset):
        """The DIE at section offset ``offset``, in ``cu`` or (a DW_FORM_ref_addr target) another unit."""
        if cu is None or not cu.cu_offset <= offset < cu.cu_offset + cu.size:
            cu = self.unit_of(offset)
        return self.dwarf.get_DIE_from_refaddr(offset, cu)

    def top_level(self, cu):
        """Skimmed top-level DIEs of a CU (see dwarf.skim), or None when skimming failed; in a C++ unit
        also those inside namespaces and classes (their ``scope`` is the qualifier)."""
        key = cu.cu_offset
        if key not in self.top_levels:
            from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import skim as dwarf_skim
            try:
                infos = list(self.skimmer(cu).top_level())
                for info in infos:
                    info["range"] = dwarf_skim.die_range(info)
            except (dwarf_skim.SkimError, IndexError, KeyError, ValueError, struct.error):
                infos = None
            self.top_levels[key] = infos
        return self.top_levels[key]

    def skimmer(self, cu):
        """The unit's dwarf.skim.TopLevelSkimmer (its bytes read once per run)."""
        skimmer = self.skimmers.get(cu.cu_offset)
        if skimmer is None:
            from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import skim as dwarf_skim
            skimmer = self.skimmers[cu.cu_offset] = dwarf_skim.TopLevelSkimmer(
                self.dwarf, cu, self.section(".debug_str"), self.section(".debug_line_str"), nested=is_cxx(cu))
        return skimmer

    def die_ranges(self, die, keep_empty=False):
        """List of (low, high) of a DIE with code (empty ranges too when ``keep_empty``)."""
        attrs = die.attributes
        if "DW_AT_low_pc" in attrs and "DW_AT_high_pc" in attrs:
            low = attrs["DW_AT_low_pc"].value
            high_attr = attrs["DW_AT_high_pc"]
            high = high_attr.value
            if high_attr.form not in ADDRESS_FORMS:
                high = low + high
            return [(low, high)]
        if "DW_AT_ranges" in attrs:
            rangelists = self.dwarf.range_lists()
            if rangelists is None:
                return []
            cu = die.cu
            base = cu_base(cu)
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
                if high > low or keep_empty:
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
        # perf (die_entrypc): the first range's start, also when gcc made that range empty (the
        # entry view of an inlined copy, DWARF 4): it is the copy's entry row in the line table.
        ranges = self.die_ranges(die, keep_empty=True)
        return ranges[0][0] if ranges else None


def is_cxx(cu):
    """Whether the unit is C++ (its DW_AT_language): functions then nest in namespaces and classes."""
    language = cu.get_top_DIE().attributes.get("DW_AT_language")
    return language is not None and language.value in CXX_LANGUAGES


def cu_base(cu):
    """Base address of a CU's range and location lists (its DW_AT_low_pc, else 0)."""
    top = cu.get_top_DIE()
    return top.attributes["DW_AT_low_pc"].value if "DW_AT_low_pc" in top.attributes else 0
