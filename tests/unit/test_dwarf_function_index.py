"""The stored function index (dwarf.function_index) agrees with pyelftools' walk, finds inline-only and
not-in-symtab functions, and a stored index is never used for another build."""

import os
import subprocess

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import function_index as dwarf_index
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import function_scan
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import resolver as dwarf_resolver
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import functions
from ansible_collections.fleettrace.tracefs.plugins.module_utils.elf import reader as elf_reader

from tests.helpers import resolver_programs as programs  # noqa: E402

LIBPYTHON = "/root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0"


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEETTRACE_RESOLVER_CACHE", str(tmp_path / "results"))
    monkeypatch.setenv("FLEETTRACE_DWARF_INDEX", str(tmp_path / "index"))


def walked_copies(cu):
    """abstract offset -> inlined_subroutine offsets, from pyelftools' full parse of the CU."""
    found = {}
    for die in cu.iter_DIEs():
        attr = die.attributes.get("DW_AT_abstract_origin")
        if die.tag == "DW_TAG_inlined_subroutine" and attr is not None:
            target = attr.value if attr.form == "DW_FORM_ref_addr" else attr.value + cu.cu_offset
            found.setdefault(target, []).append(die.offset)
    return found


def check_against_walk(resolver, cus):
    ctx = resolver.context
    index = ctx.function_index
    assert index is not None
    checked = 0
    for cu in cus:
        for info in ctx.top_level(cu):
            name = (info.get("DW_AT_name") or (None,))[0]
            if info["tag"] == "DW_TAG_subprogram" and name:
                assert (cu.cu_offset, info["offset"], "DW_AT_inline" in info) in index.subprograms(name), name
                checked += 1
        for target, offsets in walked_copies(cu).items():
            assert index.inlined_copies(target, cu.cu_offset, cu.cu_offset + cu.size) == offsets
            checked += 1
    return checked


def test_index_matches_pyelftools_walk(cc, tmp_path):
    for name in sorted(programs.VARIANTS):
        binary = programs.build(cc, str(tmp_path), name)
        resolver = dwarf_resolver.Resolver(binary)
        try:
            assert check_against_walk(resolver, list(resolver.context.dwarf.iter_CUs())) > 3, name
        finally:
            resolver.close()


@pytest.mark.skipif(not os.path.exists(LIBPYTHON), reason="no libpython3.11 with DWARF")
def test_index_matches_pyelftools_walk_on_libpython():
    resolver = dwarf_resolver.Resolver(LIBPYTHON)
    try:
        # Two big CUs (all of them through pyelftools would take minutes).
        cus = [resolver.context.cu_at(resolver.context.cu_offset_for_address(resolver.symbols.function(f)[0][0]))
               for f in ("PyList_Append", "_PyEval_EvalFrameDefault")]
        assert check_against_walk(resolver, cus) > 500
    finally:
        resolver.close()


def resolve_both_ways(binary, spec):
    """(definitions through the index, definitions through the walk over every CU)."""
    results = []
    for use_index in (True, False):
        resolver = dwarf_resolver.Resolver(binary)
        try:
            if not use_index:
                resolver.context._index = False     # what happens when the DWARF cannot be indexed
            results.append(resolver.resolve(spec).definitions)
            if use_index:
                assert resolver.context.function_index is not None
        finally:
            resolver.close()
    return results


def test_index_finds_inline_only_function(cc, tmp_path):
    binary = programs.build(cc, str(tmp_path), "demo_O2")
    resolver = dwarf_resolver.Resolver(binary)
    try:
        assert not resolver.symbols.function("clamp_add")
        entries = resolver.context.function_index.subprograms("clamp_add")
        assert [inline for _cu, _offset, inline in entries] == [True]
        found = functions.find_function(resolver.context, "clamp_add")
        assert len(found) == 1 and resolver.context.entry_pc(found[0][1]) is None      # the abstract DIE
    finally:
        resolver.close()
    with_index, walked = resolve_both_ways(binary, "clamp_add")
    assert len(with_index) == 2       # demo.c: two inlined copies in main
    assert with_index == walked


def test_index_finds_function_not_in_symtab(cc, tmp_path):
    full = programs.build(cc, str(tmp_path), "demo_O2")
    stripped = str(tmp_path / "demo_O2_nosymtab")
    # No symbol table, DWARF kept (as a binary whose symbols were stripped but not its debug info).
    subprocess.run(["objcopy", "--strip-all", "--keep-section=.debug*", full, stripped], check=True)
    resolver = dwarf_resolver.Resolver(stripped)
    try:
        assert not resolver.symbols.function("compute")
        assert resolver.context.function_index.subprograms("compute")
    finally:
        resolver.close()
    with_index, walked = resolve_both_ways(stripped, "compute $params")
    assert with_index == walked
    reference = dwarf_resolver.resolve(full, "compute $params")["definitions"]
    # Same address and fetch args (the default group follows the file name).
    assert [line.split(" ", 1)[1].replace(stripped, full) for line in with_index] == \
        [line.split(" ", 1)[1] for line in reference]


def build_with_id(cc, out, build_id, cflags):
    subprocess.run([cc, "-g", "-gdwarf-5", "-Wl,--build-id=0x" + build_id] + cflags
                   + ["-o", out, programs.DEMO], check=True)
    assert elf_reader.read_build_id(out) == build_id


def test_stored_index_is_not_used_for_another_build(cc, tmp_path):
    binary = str(tmp_path / "demo")
    first, second = "11" * 20, "22" * 20
    build_with_id(cc, binary, first, ["-O2"])
    for expect_cached in (False, True):
        resolver = dwarf_resolver.Resolver(binary)
        try:
            assert resolver.context.function_index.cached is expect_cached
            assert len(resolver.resolve("clamp_add").probes) == 2
        finally:
            resolver.close()
    assert os.path.isfile(dwarf_index.index_path(first))
    # Rebuilt in place at -O0: clamp_add now has an out-of-line copy, and a new build-id.
    build_with_id(cc, binary, second, ["-O0"])
    resolver = dwarf_resolver.Resolver(binary)
    try:
        index = resolver.context.function_index
        assert index.cached is False
        assert [inline for _c, _o, inline in index.subprograms("clamp_add")] == [False]
        assert len(resolver.resolve("clamp_add").probes) == 1
    finally:
        resolver.close()
    assert os.path.isfile(dwarf_index.index_path(second))
    # A stored index whose sections do not match (same build-id, other DWARF) is not used either.
    sizes = (1, 2, 3, 4)
    assert dwarf_index.load(second, sizes) is None


def test_unreadable_dwarf_raises_build_error():
    with pytest.raises(dwarf_index.IndexBuildError):
        function_scan.build(b"\x20\x00\x00\x00\x01\x00" + b"\x00" * 30, b"", b"", b"")
