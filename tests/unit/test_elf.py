"""elf/: the struct-only reader and symbolizers against pyelftools and readelf (the references)."""

import os
import subprocess
import sys
import sysconfig

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils.elf import reader as elf_reader
from ansible_collections.fleettrace.tracefs.plugins.module_utils.elf import symbols as elf_symbols


def elf_files():
    """This Python's executable and shared library, plus the libc it runs on."""
    found = [os.path.realpath(sys.executable)]
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    ldlibrary = sysconfig.get_config_var("LDLIBRARY") or ""
    if os.path.isfile(os.path.join(libdir, ldlibrary)):
        found.append(os.path.realpath(os.path.join(libdir, ldlibrary)))
    with open("/proc/self/maps") as handle:
        for line in handle:
            path = line.split()[-1]
            if "/libc.so" in path or "/libc-" in path:
                found.append(os.path.realpath(path))
                break
    return sorted({p for p in found if open(p, "rb").read(4) == b"\x7fELF"})


def pyelftools_functions(path):
    from elftools.elf.elffile import ELFFile
    found, seen = [], set()
    with open(path, "rb") as handle:
        elf = ELFFile(handle)
        for name in (".symtab", ".dynsym"):
            section = elf.get_section_by_name(name)
            for symbol in (section.iter_symbols() if section is not None else []):
                # pyelftools names type 10 (STT_GNU_IFUNC) STT_LOOS: by address only STT_FUNC counts.
                if symbol["st_info"]["type"] == "STT_FUNC" and symbol["st_value"] \
                        and (symbol["st_value"], symbol.name) not in seen:
                    seen.add((symbol["st_value"], symbol.name))
                    found.append((symbol["st_value"], symbol["st_size"], symbol.name))
    return sorted(found)


@pytest.mark.parametrize("path", elf_files())
def test_function_symbols_are_pyelftools_ones(path):
    symbols = elf_symbols.ElfSymbols(path)
    assert symbols.symbols == pyelftools_functions(path)
    assert symbols.symbols


@pytest.mark.parametrize("path", elf_files())
def test_build_id_and_machine_are_what_readelf_prints(path):
    headers = elf_reader.ElfHeaders(path)
    out = subprocess.run(["readelf", "-nh", path], stdout=subprocess.PIPE, text=True,
                         check=True).stdout
    build_ids = [line.split(":", 1)[1].strip() for line in out.splitlines() if "Build ID:" in line]
    assert headers.build_id == (build_ids[0] if build_ids else None)
    assert (headers.e_machine == elf_reader.EM_X86_64) == ("Advanced Micro Devices X86-64" in out)


def test_name_and_address_lookups_agree():
    path = [p for p in elf_files() if "libc" in p or "libpython" in p][0]
    by_address = elf_symbols.ElfSymbols(path)
    by_name = elf_symbols.SymbolTable(elf_reader.ElfHeaders(path))
    start, size, name = [s for s in by_address.symbols if s[1] > 16][len(by_address.symbols) // 2]
    assert (start, size) in by_name.function(name)
    assert by_name.is_function_start(start) or by_name.function(name)
    offset = by_address.headers.vaddr_to_file_offset(start + 8)
    assert by_address.headers.file_offset_to_vaddr(offset) == start + 8
    found = elf_symbols.file_symbol(path, offset)
    assert found is not None and found.endswith("+0x8")
    assert by_address.lookup(by_address.symbols[0][0] - 1) is None or by_address.symbols[0][0] == 0


def test_not_an_elf_file_is_a_clear_error_and_no_symbol(tmp_path):
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(elf_reader.ElfError) as info:
        elf_reader.ElfHeaders(str(script))
    assert "not an ELF file" in str(info.value) and str(script) in str(info.value)
    assert elf_symbols.file_symbol(str(script), 0) is None
    assert elf_symbols.file_symbol(str(tmp_path / "missing"), 0) is None


def test_kernel_symbols_read_kallsyms_text_symbols_only(tmp_path):
    path = tmp_path / "kallsyms"
    path.write_text("ffffffff81000000 T _stext\nffffffff81000100 t schedule\nffffffff81000180 d data\n"
                    "0000000000000000 T hidden\n")
    symbols = elf_symbols.KernelSymbols(str(path))
    assert symbols.name(0xffffffff81000190) == "schedule+0x90"
    assert symbols.name(0x10) == "0x10"
