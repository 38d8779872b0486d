# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ELF facts read with ``struct`` only: headers, sections, segments, build-id, symbol entries.

The one ELF reader of the collection (the resolver, the debug-info search,
user-stack symbolization).  It imports no pyelftools, so a cached resolution
and a build-id check cost little more than starting Python.
"""


import os
import struct

from ansible_collections.fleettrace.tracefs.plugins.module_utils import bounded
from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError

# ELF constants (elf.h).
ELF_MAGIC = b"\x7fELF"
ELF_IDENT_SIZE = 64             # e_ident plus the 64-bit header: enough to read either class
ELFCLASS64 = 2
ELFDATA2LSB = 1
ET_EXEC = 2
ET_DYN = 3
EM_X86_64 = 62
SHT_NOTE = 7
SHT_NOBITS = 8
PT_LOAD = 1
NT_GNU_BUILD_ID = 3
SHN_UNDEF = 0
STT_OBJECT = 1
STT_FUNC = 2
STT_GNU_IFUNC = 10
STT_TYPE_MASK = 0xf             # st_info: binding << 4 | type
NOTE_ALIGN = 4
# (symbol table, its string table), in lookup order: the full table before the dynamic one.
SYMBOL_TABLES = ((".symtab", ".strtab"), (".dynsym", ".dynstr"))
SYMBOL_FORMAT_64 = "IBBHQQ"     # st_name, st_info, st_other, st_shndx, st_value, st_size
SYMBOL_FORMAT_32 = "IIIBBH"     # st_name, st_value, st_size, st_info, st_other, st_shndx


class ElfError(FleettraceError):
    """Not an ELF file, or it cannot be read; the message names the file."""


def _open(path):
    """The ELF file for reading; a FIFO or device is refused (it could block or never end)."""
    try:
        return bounded.open_regular(path, "ELF file")
    except bounded.FileRefused as exc:
        raise ElfError(str(exc))


class ElfHeaders:
    """Section and program headers of one ELF file.

    ``sections``: name -> (sh_type, sh_addr, sh_offset, sh_size);
    ``segments``: [(p_type, p_offset, p_vaddr, p_filesz, p_memsz)].
    """

    def __init__(self, path):
        self.path = path
        try:
            with _open(path) as handle:
                self.file_size = os.fstat(handle.fileno()).st_size
                ident = handle.read(ELF_IDENT_SIZE)
                if len(ident) < ELF_IDENT_SIZE or ident[:4] != ELF_MAGIC:
                    raise ElfError("%s is not an ELF file (no ELF magic): give the path of the "
                                   "executable or shared library itself, not a script or link" % path)
                self.is64 = ident[4] == ELFCLASS64
                self.endian = "<" if ident[5] == ELFDATA2LSB else ">"
                self._read(handle, ident)
        except OSError as exc:
            raise ElfError("cannot read %s: %s" % (path, exc.strerror or exc))
        except struct.error:
            raise ElfError("%s is not a valid ELF file (its headers are cut short)" % path)

    def _read(self, handle, ident):
        e = self.endian
        if self.is64:
            (self.e_type, self.e_machine, _v, _entry, phoff, shoff, _flags, _ehsize, phentsize, phnum,
             shentsize, shnum, shstrndx) = struct.unpack(e + "HHIQQQIHHHHHH", ident[16:64])
        else:
            (self.e_type, self.e_machine, _v, _entry, phoff, shoff, _flags, _ehsize, phentsize, phnum,
             shentsize, shnum, shstrndx) = struct.unpack(e + "HHIIIIIHHHHHH", ident[16:52])
        self.segments = []
        handle.seek(phoff)
        raw = handle.read(self._bounded(phoff, phentsize * phnum, "program headers"))
        for i in range(phnum):
            chunk = raw[i * phentsize:(i + 1) * phentsize]
            if self.is64:
                p_type, _f, p_offset, p_vaddr, _pa, p_filesz, p_memsz, _al = struct.unpack(e + "IIQQQQQQ", chunk[:56])
            else:
                p_type, p_offset, p_vaddr, _pa, p_filesz, p_memsz, _f, _al = struct.unpack(e + "IIIIIIII", chunk[:32])
            self.segments.append((p_type, p_offset, p_vaddr, p_filesz, p_memsz))
        self.sections = {}
        if not shoff or not shnum:
            return
        handle.seek(shoff)
        raw = handle.read(self._bounded(shoff, shentsize * shnum, "section headers"))
        headers = []
        for i in range(shnum):
            chunk = raw[i * shentsize:(i + 1) * shentsize]
            if self.is64:
                name, sh_type, _fl, addr, offset, size = struct.unpack(e + "IIQQQQ", chunk[:40])
            else:
                name, sh_type, _fl, addr, offset, size = struct.unpack(e + "IIIIII", chunk[:24])
            headers.append((name, sh_type, addr, offset, size))
        if shstrndx >= len(headers):
            raise ElfError("%s is not a valid ELF file (its section name table is missing)" % self.path)
        strtab = headers[shstrndx]
        handle.seek(strtab[3])
        names = handle.read(self._bounded(strtab[3], strtab[4], "section names"))
        for name, sh_type, addr, offset, size in headers:
            text = names[name:names.index(b"\0", name)].decode("ascii", "replace")
            self.sections[text] = (sh_type, addr, offset, size)

    def section_bytes(self, name):
        entry = self.sections.get(name)
        if entry is None or entry[0] == SHT_NOBITS:
            return None
        with _open(self.path) as handle:
            handle.seek(entry[2])
            return handle.read(self._bounded(entry[2], entry[3], "section %s" % name))

    def _bounded(self, offset, size, what):
        """``size`` when [offset, offset + size) lies in the file: a corrupt header never makes a huge read."""
        if offset + size > self.file_size:
            raise ElfError("%s is not a valid ELF file: its %s (%d bytes at 0x%x) end past its %d bytes"
                           % (self.path, what, size, offset, self.file_size))
        return size

    def has_section_data(self, name):
        entry = self.sections.get(name)
        return entry is not None and entry[0] != SHT_NOBITS and entry[3] > 0

    @property
    def has_debug_info(self):
        return self.has_section_data(".debug_info")

    @property
    def build_id(self):
        for name, (sh_type, _addr, _offset, _size) in self.sections.items():
            if sh_type != SHT_NOTE:
                continue
            data = self.section_bytes(name) or b""
            position = 0
            while position + 12 <= len(data):
                namesz, descsz, note_type = struct.unpack(self.endian + "III", data[position:position + 12])
                name_start = position + 12
                desc_start = name_start + _align(namesz)
                if note_type == NT_GNU_BUILD_ID and data[name_start:name_start + namesz].rstrip(b"\0") == b"GNU":
                    return data[desc_start:desc_start + descsz].hex()
                position = desc_start + _align(descsz)
        return None

    @property
    def debuglink(self):
        data = self.section_bytes(".gnu_debuglink")
        if not data:
            return None
        return data[:data.index(b"\0")].decode("utf-8", "replace")

    def vaddr_to_file_offset(self, vaddr):
        """File offset of a virtual address, through the PT_LOAD that maps it."""
        for p_type, p_offset, p_vaddr, p_filesz, _memsz in self.segments:
            if p_type == PT_LOAD and p_vaddr <= vaddr < p_vaddr + p_filesz:
                return vaddr - p_vaddr + p_offset
        return None

    def file_offset_to_vaddr(self, file_offset):
        """Virtual address of a file offset, through the PT_LOAD holding it (first match)."""
        for p_type, p_offset, p_vaddr, p_filesz, _memsz in self.segments:
            if p_type == PT_LOAD and p_offset <= file_offset < p_offset + p_filesz:
                return file_offset - p_offset + p_vaddr
        return None

    def symbol_tables(self):
        """[(entries, string table bytes)] of .symtab then .dynsym, those present.

        ``entries`` of a 64-bit file is ``(format, bytes)`` for ``struct.iter_unpack``
        (decoded again on each pass: cheaper than keeping tuples of a big library);
        of a 32-bit file a list of tuples in the 64-bit field order.  Use ``iter_symbols``.
        """
        fmt = self.endian + (SYMBOL_FORMAT_64 if self.is64 else SYMBOL_FORMAT_32)
        size = struct.calcsize(fmt)
        tables = []
        for table, strings in SYMBOL_TABLES:
            data = self.section_bytes(table)
            names = self.section_bytes(strings)
            if data and names:
                data = data[:len(data) - len(data) % size]
                if self.is64:
                    tables.append(((fmt, data), names))
                else:                       # to the 64-bit field order
                    tables.append(([(n, i, o, x, v, sz) for n, v, sz, i, o, x in struct.iter_unpack(fmt, data)],
                                   names))
        return tables


def iter_symbols(entries):
    """(st_name, st_info, st_other, st_shndx, st_value, st_size) of one ``symbol_tables`` entry."""
    if isinstance(entries, tuple):
        return struct.iter_unpack(*entries)
    return entries


def symbol_type(st_info):
    return st_info & STT_TYPE_MASK


def symbol_name(names, offset):
    """The NUL-terminated name at ``offset`` of a string table."""
    end = names.find(b"\0", offset)
    return names[offset:end if end >= 0 else len(names)].decode("utf-8", "replace")


def _align(size):
    return (size + NOTE_ALIGN - 1) & ~(NOTE_ALIGN - 1)


def read_build_id(path):
    """GNU build-id of ``path`` as hex, or None; raises ElfError."""
    return ElfHeaders(path).build_id
