"""The raw-byte fast paths (dwarf_skim) agree with pyelftools' generic parsing."""

import os
import sys

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import resolver as dwarf_resolver

from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import skim as dwarf_skim

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "programs", "resolver"))
import resolver_programs as programs  # noqa: E402

LIBPYTHON = "/root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0"


@pytest.fixture(scope="module")
def binaries(cc, tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("skim"))
    found = [programs.build(cc, directory, name) for name in sorted(programs.VARIANTS)]
    if os.path.exists(LIBPYTHON):
        found.append(LIBPYTHON)
    return found


def comparable(rows):
    # is_stmt of end_sequence rows means nothing (pyelftools clears it); they are never probed.
    return [(a, o, l, f, bool(s) and not e, e) for a, o, l, f, s, e in rows]


def pyelftools_rows(program):
    rows = []
    for entry in program.get_entries():
        state = entry.state
        if state is not None:
            rows.append((state.address, 0 if state.end_sequence else 1, state.line, state.file,
                         bool(state.is_stmt), state.end_sequence))
    rows.sort(key=lambda r: (r[0], r[1]))
    return rows


def some_cus(resolver, binary):
    if binary == LIBPYTHON:     # one big CU is enough (all of them would take minutes)
        address = resolver.symbols.function("PyList_Append")[0][0]
        return [resolver.cu_at(resolver.cu_offset_for_address(address))]
    return list(resolver.dwarf.iter_CUs())


def test_line_rows_match_pyelftools(binaries):
    for binary in binaries:
        resolver = dwarf_resolver.Resolver(binary)
        try:
            for cu in some_cus(resolver, binary):
                program = resolver.dwarf.line_program_for_CU(cu)
                fast = dwarf_skim.decode_line_rows(program, cu["version"])
                assert comparable(fast) == comparable(pyelftools_rows(program)), binary
        finally:
            resolver.close()


def test_top_level_subprograms_match_pyelftools(binaries):
    for binary in binaries:
        resolver = dwarf_resolver.Resolver(binary)
        try:
            for cu in some_cus(resolver, binary):
                skimmed = [(i["offset"], i["tag"], (i.get("DW_AT_name") or (None,))[0], i["range"])
                           for i in resolver.top_level(cu)]
                expected = []
                for die in cu.get_top_DIE().iter_children():
                    name = None     # names are decoded for functions and variables only
                    if "DW_AT_name" in die.attributes and die.tag in dwarf_skim.TopLevelSkimmer.NAMED_TAGS:
                        name = die.attributes["DW_AT_name"].value.decode()
                    ranges = resolver.die_ranges(die) if "DW_AT_low_pc" in die.attributes else []
                    expected.append((die.offset, die.tag, name, ranges[0] if ranges else None))
                assert skimmed == expected, binary
        finally:
            resolver.close()


def test_aranges_match_pyelftools(binaries):
    for binary in binaries:
        resolver = dwarf_resolver.Resolver(binary)
        try:
            aranges = resolver.dwarf.get_aranges()
            for start, end, cu_offset in dwarf_skim.parse_aranges(resolver.context.section(".debug_aranges"))[:200]:
                assert aranges.cu_offset_at_addr(start) == cu_offset
                assert resolver.cu_offset_for_address(end - 1) == cu_offset
        finally:
            resolver.close()
