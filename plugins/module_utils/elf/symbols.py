# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Symbol lookup: by name in an ELF (the resolver), by address in an ELF (user
stacks) and by address in /proc/kallsyms (kernel stacks).

Stdlib only: the ELF side reads through ``elf.reader``.
"""


import bisect
import struct

from ansible_collections.fleettrace.tracefs.plugins.module_utils.elf import reader as elf_reader
from ansible_collections.fleettrace.tracefs.plugins.module_utils.elf.reader import (
    SHN_UNDEF, STT_FUNC, STT_GNU_IFUNC, STT_OBJECT, iter_symbols, symbol_type)

FUNCTION_TYPES = (STT_FUNC, STT_GNU_IFUNC)
# By address only STT_FUNC: an STT_GNU_IFUNC symbol's value is its resolver, which picks the code
# actually called at load time (that code has its own STT_FUNC symbol, e.g. __memchr_avx2).
ADDRESS_TYPES = (STT_FUNC,)
# A symbol without a size ends nowhere: look no further back than this for one holding an address.
MAX_SYMBOL_DISTANCE = 1 << 20
KALLSYMS = "/proc/kallsyms"
KALLSYMS_TEXT_TYPES = "tTwW"    # code symbols (weak ones included) in nm's letters


class SymbolTable:
    """Symbols of an ELF, looked up by name without decoding every name.

    The string table is searched for the name first; only entries pointing
    at one of its offsets are decoded (pyelftools builds all symbols, which
    takes long on big libraries).  ``headers`` is an ``elf.reader.ElfHeaders``.
    """

    def __init__(self, headers):
        self.headers = headers
        self._tables = None
        self._starts = None

    def _load(self):
        if self._tables is None:
            self._tables = self.headers.symbol_tables()
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
            for st_name, st_info, _other, shndx, value, sym_size in _entries_naming(entries, offsets):
                if st_name in offsets and symbol_type(st_info) in kinds and shndx != SHN_UNDEF:
                    if (value, sym_size) not in places:
                        places.append((value, sym_size))
            if places:
                break
        return places

    def function(self, name):
        """[(vaddr, size)] of FUNC symbols named ``name``."""
        return self._lookup(name, FUNCTION_TYPES)

    def data_object(self, name):
        return self._lookup(name, (STT_OBJECT,))

    def has_functions(self):
        return any(entries for entries, _names in self._load())   # (fmt, bytes) or a list: both truthy when non-empty

    def is_function_start(self, address):
        if self._starts is None:
            self._starts = sorted({e[4] for entries, _n in self._load() for e in iter_symbols(entries)
                                   if symbol_type(e[1]) == STT_FUNC and e[3] != SHN_UNDEF})
        index = bisect.bisect_left(self._starts, address)
        return index < len(self._starts) and self._starts[index] == address


def _entries_naming(entries, offsets):
    """The symbols whose st_name is one of ``offsets``: of a 64-bit table, found by searching its bytes
    for the 4-byte offset at entry starts (st_name is an entry's first field), without decoding the
    other entries (libpython has 20000)."""
    if not isinstance(entries, tuple):
        return entries
    fmt, data = entries
    size = struct.calcsize(fmt)
    found = []
    for offset in offsets:
        needle = struct.pack(fmt[0] + "I", offset)
        position = data.find(needle)
        while position >= 0:
            if position % size == 0:
                found.append(struct.unpack_from(fmt, data, position))
            position = data.find(needle, position + 1)
    return found


class ElfSymbols:
    """Function symbols of one ELF file (symtab and dynsym), by address."""

    def __init__(self, path):
        headers = elf_reader.ElfHeaders(path)
        self.path = path
        self.headers = headers
        symbols = []
        seen = set()
        for entries, names in headers.symbol_tables():
            for st_name, st_info, _other, _shndx, value, size in iter_symbols(entries):
                if symbol_type(st_info) not in ADDRESS_TYPES or not value:
                    continue
                name = elf_reader.symbol_name(names, st_name)
                if (value, name) not in seen:
                    seen.add((value, name))
                    symbols.append((value, size, name))
        symbols.sort()
        self.symbols = symbols

    def vaddr_of_offset(self, file_offset):
        return self.headers.file_offset_to_vaddr(file_offset)

    def lookup(self, vaddr):
        """(name, offset) of the function holding ``vaddr``, or None."""
        index = bisect.bisect_right(self.symbols, (vaddr, float("inf"))) - 1   # last one starting at or before
        while index >= 0:
            start, size, name = self.symbols[index]
            if start <= vaddr < start + max(size, 1):
                return (name, vaddr - start)
            if size and start + size <= vaddr and vaddr - start > MAX_SYMBOL_DISTANCE:
                break
            index -= 1
        return None


def file_symbol(path, file_offset, cache=None):
    """'func+0x12' for a file offset inside ELF file ``path``, or None.

    Works without the process (option sym-userobj prints 'path[+0xoffset]').
    ``cache`` (path -> ElfSymbols or None) may be shared between calls.
    """
    cache = {} if cache is None else cache
    if path not in cache:
        try:
            cache[path] = ElfSymbols(path)
        except Exception:  # noqa: BLE001 - not an ELF file, unreadable, truncated: no symbol
            cache[path] = None
    symbols = cache[path]
    if symbols is None:
        return None
    vaddr = symbols.vaddr_of_offset(file_offset)
    found = symbols.lookup(vaddr) if vaddr is not None else None
    if not found:
        return None
    return "%s+0x%x" % found if found[1] else found[0]


class KernelSymbols:
    """Address -> ``function+0xoff`` from /proc/kallsyms (root sees real addresses)."""

    def __init__(self, path=KALLSYMS):
        addresses = []
        names = []
        try:
            with open(path) as handle:
                for line in handle:
                    parts = line.split()
                    if len(parts) >= 3 and parts[1] in KALLSYMS_TEXT_TYPES:
                        address = int(parts[0], 16)
                        if address:
                            addresses.append(address)
                            names.append(parts[2])
        except OSError:
            pass
        order = sorted(range(len(addresses)), key=addresses.__getitem__)
        self.addresses = [addresses[i] for i in order]
        self.names = [names[i] for i in order]

    def name(self, address):
        index = bisect.bisect_right(self.addresses, address) - 1
        if index < 0:
            return "0x%x" % address
        return "%s+0x%x" % (self.names[index], address - self.addresses[index])
