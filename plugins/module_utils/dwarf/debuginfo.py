# -*- coding: utf-8 -*-
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ELF facts (build-id, sections, segments) and the search for debug info.

The header reader here uses only ``struct`` so that a cached resolution can
be answered without importing pyelftools.  The search follows what
distributions and gdb do: the binary itself, ``/usr/lib/debug/<path>.debug``,
``/usr/lib/debug/.build-id/xx/rest.debug``, ``.gnu_debuglink``; an explicit
path wins over all of them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import struct


class DebugInfoError(Exception):
    """No usable ELF or debug info; the message says where we looked."""


SHT_NOBITS = 8
SHT_NOTE = 7
PT_LOAD = 1
NT_GNU_BUILD_ID = 3
DEBUG_ROOT = "/usr/lib/debug"


class ElfHeaders:
    """Section and program headers of one ELF file, read with ``struct``."""

    def __init__(self, path):
        self.path = path
        try:
            with open(path, "rb") as handle:
                ident = handle.read(64)
                if len(ident) < 64 or ident[:4] != b"\x7fELF":
                    raise DebugInfoError("%s is not an ELF file (no ELF magic): give the path of the "
                                         "executable or shared library itself, not a script or link" % path)
                self.is64 = ident[4] == 2
                self.endian = "<" if ident[5] == 1 else ">"
                self._read(handle, ident)
        except (IOError, OSError) as exc:
            raise DebugInfoError("cannot read %s: %s" % (path, exc.strerror or exc))

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
        raw = handle.read(phentsize * phnum)
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
        raw = handle.read(shentsize * shnum)
        headers = []
        for i in range(shnum):
            chunk = raw[i * shentsize:(i + 1) * shentsize]
            if self.is64:
                name, sh_type, _fl, addr, offset, size = struct.unpack(e + "IIQQQQ", chunk[:40])
            else:
                name, sh_type, _fl, addr, offset, size = struct.unpack(e + "IIIIII", chunk[:24])
            headers.append((name, sh_type, addr, offset, size))
        strtab = headers[shstrndx]
        handle.seek(strtab[3])
        names = handle.read(strtab[4])
        for name, sh_type, addr, offset, size in headers:
            text = names[name:names.index(b"\0", name)].decode("ascii", "replace")
            self.sections[text] = (sh_type, addr, offset, size)
        self._handle_path = self.path

    def section_bytes(self, name):
        entry = self.sections.get(name)
        if entry is None or entry[0] == SHT_NOBITS:
            return None
        with open(self.path, "rb") as handle:
            handle.seek(entry[2])
            return handle.read(entry[3])

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
                desc_start = name_start + ((namesz + 3) & ~3)
                if note_type == NT_GNU_BUILD_ID and data[name_start:name_start + namesz].rstrip(b"\0") == b"GNU":
                    return data[desc_start:desc_start + descsz].hex()
                position = desc_start + ((descsz + 3) & ~3)
        return None

    @property
    def debuglink(self):
        data = self.section_bytes(".gnu_debuglink")
        if not data:
            return None
        return data[:data.index(b"\0")].decode("utf-8", "replace")

    @property
    def is_shared_object(self):
        return self.e_type == 3

    def vaddr_to_file_offset(self, vaddr):
        """File offset of a virtual address, through the PT_LOAD that maps it."""
        for p_type, p_offset, p_vaddr, p_filesz, _memsz in self.segments:
            if p_type == PT_LOAD and p_vaddr <= vaddr < p_vaddr + p_filesz:
                return vaddr - p_vaddr + p_offset
        return None


def read_build_id(path):
    return ElfHeaders(path).build_id


def candidate_paths(binary, headers):
    """Where a distribution puts the debug info of ``binary``, in search order."""
    real = os.path.realpath(binary)
    directory, name = os.path.split(real)
    found = [real]
    for path in (real, os.path.abspath(binary)):
        found.append(DEBUG_ROOT + path + ".debug")
        found.append(DEBUG_ROOT + path)
    found.append(os.path.join(directory, ".debug", name))
    build_id = headers.build_id
    if build_id and len(build_id) > 2:
        found.append(os.path.join(DEBUG_ROOT, ".build-id", build_id[:2], build_id[2:] + ".debug"))
    link = headers.debuglink
    if link:
        found += [os.path.join(directory, link), os.path.join(directory, ".debug", link),
                  DEBUG_ROOT + os.path.join(directory, link)]
    unique = []
    for path in found:
        if path not in unique:
            unique.append(path)
    return unique


class DebugInfo:
    """Where the DWARF of a binary lives.

    ``binary``: ELF headers of the probed file; ``debug``: ELF headers of the
    file holding .debug_info (may be the binary); ``cfi``: headers of the file
    whose .eh_frame/.debug_frame is used (the binary when the debug file's
    .eh_frame is NOBITS, as objcopy --only-keep-debug leaves it).
    """

    def __init__(self, binary, debug, looked_at):
        self.binary = binary
        self.debug = debug
        self.looked_at = looked_at

    @property
    def build_id(self):
        return self.binary.build_id


def package_hint(binary):
    """Which package usually provides the debug info, for error messages."""
    real = os.path.realpath(binary)
    if real.startswith("/usr/") or real.startswith("/lib"):
        return ("install the matching debug symbols, e.g. on Debian 'apt-get install <package>-dbgsym' "
                "from the debian-debug archive (find <package> with 'dpkg -S %s'), or set 'debuginfo' to "
                "a file with DWARF for build-id" % real)
    return "rebuild it with -g, or set 'debuginfo' to a file with its DWARF (objcopy --only-keep-debug)"


def find_debuginfo(binary, explicit=None, expected_build_id=None):
    """Return ``DebugInfo`` for ``binary`` or raise ``DebugInfoError``."""
    if not os.path.exists(binary):
        raise DebugInfoError("binary %s does not exist: give the absolute path of the program or library "
                             "to probe" % binary)
    if not os.path.isabs(binary):
        raise DebugInfoError("binary %r must be an absolute path (uprobe_events needs one)" % binary)
    headers = ElfHeaders(binary)
    build_id = headers.build_id
    if expected_build_id and build_id != expected_build_id.lower():
        raise DebugInfoError("build-id of %s is %s, not the expected %s: this is a different build; "
                             "resolve the probe again for this binary" % (binary, build_id, expected_build_id))
    candidates = [explicit] if explicit else candidate_paths(binary, headers)
    looked_at = []
    for path in candidates:
        if not os.path.isfile(path):
            looked_at.append("%s (missing)" % path)
            continue
        try:
            debug = headers if os.path.realpath(path) == os.path.realpath(binary) else ElfHeaders(path)
        except DebugInfoError as exc:
            looked_at.append("%s (%s)" % (path, exc))
            continue
        if not debug.has_debug_info:
            looked_at.append("%s (no .debug_info)" % path)
            continue
        if debug is not headers and build_id and debug.build_id and debug.build_id != build_id:
            looked_at.append("%s (build-id %s, binary has %s)" % (path, debug.build_id, build_id))
            if explicit:
                raise DebugInfoError("debuginfo %s has build-id %s but %s has %s: they are from different "
                                     "builds" % (path, debug.build_id, binary, build_id))
            continue
        return DebugInfo(headers, debug, looked_at + [path])
    raise DebugInfoError("no debug info for %s (build-id %s); looked at: %s. To fix: %s"
                         % (binary, build_id or "none", "; ".join(looked_at), package_hint(binary)))
