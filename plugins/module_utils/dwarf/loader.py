# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pyelftools' ``DWARFInfo`` over the DWARF sections of one ELF, opened cheaply.

Each section is a window on the file read on demand (no section is read
whole), and the DWARFInfo is built directly instead of through ``ELFFile``.
"""


import operator
import sys
import types

from ansible_collections.fleettrace.tracefs.plugins.module_utils.elf.reader import EM_X86_64, ET_DYN, ET_EXEC


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
        super().__init__(name)
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
# (with dataclasses and inspect, ~10 ms), pdb (~4 ms), inspect, traceback.  And the parts of
# pyelftools a resolution rarely needs, which DWARFInfo only calls: line programs (decoded once per
# build-id into line_table's store; with copy, weakref and the DWARF constants ~4 ms), call frames
# (only a CFA-based variable needs them: cfi.py imports them then), .debug_aranges, pubnames and type
# units (~2 ms together).
_DEFERRED_MODULES = (("pprint", ("pformat",)), ("pdb", ()), ("inspect", ()), ("traceback", ()),
                     ("elftools.dwarf.lineprogram", ("LineProgram",)),
                     ("elftools.dwarf.callframe", ("CallFrameInfo",)),
                     ("elftools.dwarf.aranges", ("ARanges",)),
                     ("elftools.dwarf.namelut", ("NameLUT",)),
                     ("elftools.dwarf.typeunit", ("TypeUnit",)))


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
    """pyelftools DWARFInfo over the sections that ``headers`` (elf.reader.ElfHeaders) lists.

    Builds the DWARFInfo directly instead of through ELFFile: importing and
    setting up elftools.elf costs more than a whole small resolution.  Files
    that need more (dwz supplementary files, relocations) go through ELFFile.
    """
    dwarfinfo = _import_dwarfinfo()
    DebugSectionDescriptor, DWARFInfo, DwarfConfig = (dwarfinfo.DebugSectionDescriptor, dwarfinfo.DWARFInfo,
                                                      dwarfinfo.DwarfConfig)
    simple = (headers.e_machine == EM_X86_64 and headers.e_type in (ET_EXEC, ET_DYN)
              and ".gnu_debugaltlink" not in headers.sections and ".debug_types" not in headers.sections)
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
            info = DWARFInfo(config=DwarfConfig(little_endian=headers.endian == "<", machine_arch="x64",
                                                default_address_size=8 if headers.is64 else 4),
                             debug_frame_sec=None, eh_frame_sec=None, debug_pubtypes_sec=None,
                             debug_pubnames_sec=None, debug_sup_sec=None, gnu_debugaltlink_sec=None,
                             debug_types_sec=None,
                             **{n + "_sec": sections.get(n + "_sec") for n in _DWARF_SECTIONS})
        except TypeError:   # another pyelftools version: its ELFFile knows its own signature
            info = None
        if info is not None:
            _read_abbreviations_directly(info)
            return info
    from elftools.elf.elffile import ELFFile
    return ELFFile(open_file(headers.path)).get_dwarf_info(relocate_dwarf_sections=False)


class _AttributeSpec(tuple):
    """(name, form, value) of one attribute of an abbreviation, as pyelftools' construct parse gives it."""

    __slots__ = ()
    name = property(operator.itemgetter(0))
    form = property(operator.itemgetter(1))
    value = property(operator.itemgetter(2))


class _Declarations(dict):
    """An abbreviation table's {code: AbbrevDecl}, each made on first use (a resolution uses a few
    dozen of a unit's hundreds of declarations)."""

    def __init__(self, decoded, names, make):
        super().__init__()
        self._decoded, self._names, self._make = decoded, names, make

    def __missing__(self, code):
        tag, children, specs = self._decoded[code]
        tags, attributes, forms = self._names
        decl = self[code] = self._make(code, {
            "tag": tags.get(tag, tag), "children_flag": "DW_CHILDREN_yes" if children else "DW_CHILDREN_no",
            "attr_spec": [_AttributeSpec((attributes.get(attr, attr), forms.get(form, form), const))
                          for attr, form, const in specs]})
        return decl

    def _complete(self):
        for code in self._decoded:
            self[code]      # noqa: B018 - made on access

    def values(self):
        self._complete()
        return super().values()

    def items(self):
        self._complete()
        return super().items()

    def __iter__(self):
        return iter(self._decoded)

    def __len__(self):
        return len(self._decoded)

    def __contains__(self, code):
        return code in self._decoded


def _read_abbreviations_directly(info):
    """Give ``info`` abbreviation tables decoded from raw bytes (dwarf/function_scan.py) instead of
    pyelftools' construct parse, which took ~40 % of a resolution on libpython (a unit's table has
    a few hundred declarations, each attribute specification built as construct containers).

    The tables are pyelftools' own classes filled with the same values, so every DIE pyelftools
    parses afterwards is unchanged; a table the raw decoder cannot read is parsed by pyelftools."""
    from elftools.dwarf import abbrevtable, enums
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import function_scan
    parse = info.get_abbrev_table
    names = [{number: name for name, number in table.items() if not name.startswith("_")}
             for table in (enums.ENUM_DW_TAG, enums.ENUM_DW_AT, enums.ENUM_DW_FORM)]
    section = []

    def get_abbrev_table(offset):
        table = info._abbrevtable_cache.get(offset)
        if table is not None:
            return table
        if not section:
            stream = info.debug_abbrev_sec.stream
            stream.seek(0)
            section.append(stream.read(info.debug_abbrev_sec.size))
        try:
            decoded = function_scan.parse_abbrevs(section[0], offset)
        except (IndexError, KeyError, ValueError, function_scan.IndexBuildError):
            return parse(offset)
        table = object.__new__(abbrevtable.AbbrevTable)
        table.structs, table.stream, table.offset = info.structs, info.debug_abbrev_sec.stream, offset
        table._abbrev_map = _Declarations(decoded, names, abbrevtable.AbbrevDecl)
        info._abbrevtable_cache[offset] = table
        return table

    if hasattr(info, "_abbrevtable_cache") and hasattr(abbrevtable, "AbbrevDecl"):
        info.get_abbrev_table = get_abbrev_table
