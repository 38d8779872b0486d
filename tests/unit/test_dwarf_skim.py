"""The raw-byte fast paths (dwarf_skim) agree with pyelftools' generic parsing."""

import os
import subprocess

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import resolver as dwarf_resolver

from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import line_table as dwarf_line_table
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import skim as dwarf_skim

from tests.helpers import resolver_programs as programs  # noqa: E402

LIBPYTHON = "/root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0"
# Top-level DIEs with LEB128 forms: a negative constant (DW_FORM_sdata) and enumerators.
LEB_FORMS_C = """
enum level { LOW = -300, MID = 0, HIGH = 70000 };
struct s { int a; enum level l; };
static const long big = -123456789;
int use(struct s *p) { return p->a + (int)p->l + (int)big; }
int main(void) { struct s v = {1, LOW}; return use(&v); }
"""


@pytest.fixture(scope="module")
def binaries(cc, tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("skim"))
    found = [programs.build(cc, directory, name) for name in sorted(programs.VARIANTS)]
    source = os.path.join(directory, "leb_forms.c")
    with open(source, "w") as handle:
        handle.write(LEB_FORMS_C)
    for version in ("4", "5"):
        binary = os.path.join(directory, "leb_forms_dwarf%s" % version)
        subprocess.run([cc, "-gdwarf-" + version, "-O2", "-o", binary, source], check=True)
        found.append(binary)
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
        return [resolver.context.cu_at(resolver.context.cu_offset_for_address(address))]
    return list(resolver.context.dwarf.iter_CUs())


def test_line_rows_match_pyelftools(binaries):
    for binary in binaries:
        resolver = dwarf_resolver.Resolver(binary)
        try:
            for cu in some_cus(resolver, binary):
                program = resolver.context.dwarf.line_program_for_CU(cu)
                fast = dwarf_line_table.decode_line_rows(program, cu["version"])
                assert comparable(fast) == comparable(pyelftools_rows(program)), binary
        finally:
            resolver.close()


def test_top_level_subprograms_match_pyelftools(binaries):
    for binary in binaries:
        resolver = dwarf_resolver.Resolver(binary)
        try:
            for cu in some_cus(resolver, binary):
                skimmed = [(i["offset"], i["tag"], (i.get("DW_AT_name") or (None,))[0], i["range"])
                           for i in resolver.context.top_level(cu)]
                expected = []
                for die in cu.get_top_DIE().iter_children():
                    name = None     # names are decoded for functions and variables only
                    if "DW_AT_name" in die.attributes and die.tag in dwarf_skim.TopLevelSkimmer.NAMED_TAGS:
                        name = die.attributes["DW_AT_name"].value.decode()
                    ranges = resolver.context.die_ranges(die) if "DW_AT_low_pc" in die.attributes else []
                    expected.append((die.offset, die.tag, name, ranges[0] if ranges else None))
                assert skimmed == expected, binary
        finally:
            resolver.close()


def test_top_level_walk_reads_leb128_forms(binaries, monkeypatch):
    """The skimmer decodes DW_FORM_sdata/udata attributes of top-level DIEs itself (a negative
    DW_AT_const_value): this path once called a misspelled reader and no test reached it."""
    calls = []
    real = dwarf_skim.read_sleb
    monkeypatch.setattr(dwarf_skim, "read_sleb", lambda data, pos: calls.append(pos) or real(data, pos))
    for binary in [b for b in binaries if "leb_forms" in b]:
        resolver = dwarf_resolver.Resolver(binary)
        try:
            values = [i["DW_AT_const_value"][0] for cu in resolver.context.dwarf.iter_CUs()
                      for i in resolver.context.top_level(cu) if "DW_AT_const_value" in i]
        finally:
            resolver.close()
        assert calls, binary
        if values:      # kept only when the skimmer wants the attribute; the walk passed it either way
            assert -123456789 in values


def test_aranges_match_pyelftools(binaries):
    for binary in binaries:
        resolver = dwarf_resolver.Resolver(binary)
        try:
            aranges = resolver.context.dwarf.get_aranges()
            for start, end, cu_offset in dwarf_skim.parse_aranges(resolver.context.section(".debug_aranges"))[:200]:
                assert aranges.cu_offset_at_addr(start) == cu_offset
                assert resolver.context.cu_offset_for_address(end - 1) == cu_offset
        finally:
            resolver.close()
