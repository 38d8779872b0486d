"""Differential tests: our resolver against `perf probe --definition` on programs built here.

Where perf is right the lines must be identical.  Where perf is known to be
wrong (globals as '@sym+0', which the kernel refuses for uprobes; values that
DWARF computes; big-endian bitfields) the difference itself is asserted, and
tests/integration/test_uprobe_runtime.py shows which one traces the truth.
"""

import os
import re
import shutil
import subprocess

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import resolver as dwarf_resolver

from tests.helpers import resolver_programs as programs  # noqa: E402

PERF = shutil.which("perf")
pytestmark = pytest.mark.skipif(PERF is None, reason="perf (Debian linux-perf) is not installed")

REPORT = programs.marker_line("report") - programs.decl_line("compute")
SCALE_PRINT = programs.marker_line("scale_print") - programs.decl_line("scale")
SCALE_RESULT = programs.marker_line("scale_result") - programs.decl_line("scale")
CLAMP_SUM = programs.marker_line("clamp_sum") - programs.decl_line("clamp_add")
GLOBAL = re.compile(r"@(?:\+0x[0-9a-f]+|[A-Za-z_]\w*\+\d+)")


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("resolver_diff"))


def perf_definition(binary, spec):
    proc = subprocess.run([PERF, "probe", "-x", binary, "--definition", spec], capture_output=True, text=True, timeout=60, check=False)
    lines = [l for l in proc.stdout.splitlines() if re.match(r"^[pr]:", l)]
    return lines, proc.stdout + proc.stderr


def ours(binary, spec):
    return dwarf_resolver.resolve(binary, spec)["definitions"]


COMMON = [
    "compute",
    "compute $params",
    "compute%return $retval",
    "myev=compute k",
    "grp:myev=compute k",
    "compute:%d %%di $stack2 +8(%%sp) n=k" % REPORT,
    "scale:%d $vars" % SCALE_PRINT,
]
PER_VARIANT = {
    "demo_O0": ["clamp_add base extra", "clamp_add:%d sum base extra" % CLAMP_SUM,
                "compute:%d total k label o->in->z[2] o->name:string o->a:u64 k:u64 o->tag o->embedded.y" % REPORT,
                "demo.c:%d k label:string" % programs.marker_line("report"),
                "scale:%d doubled v" % SCALE_RESULT],
    "demo_O0_dw4": ["compute:%d total o->in->y o->name:string" % REPORT, "compute:%d" % (REPORT + 2)],
    "demo_O2": ["clamp_add",        # inline-only: one probe per inlined copy, in perf's order
                "compute:%d total k label" % REPORT, "demo.c:%d k" % programs.marker_line("report"),
                "compute:3", "compute:10"],
    "demo_O2_nopie_dw4": ["compute:%d total k label" % REPORT, "scale:%d v doubled" % SCALE_PRINT],
}


@pytest.mark.parametrize("variant", sorted(PER_VARIANT))
def test_same_definitions_as_perf(cc, build_dir, variant):
    binary = programs.build(cc, build_dir, variant)
    mismatches = []
    for spec in COMMON + PER_VARIANT[variant]:
        expected, perf_output = perf_definition(binary, spec)
        if not expected:
            mismatches.append("%s: perf gave no definition: %s" % (spec, perf_output.strip()))
            continue
        got = ours(binary, spec)
        if got != expected:
            mismatches.append("%s:\n  perf: %s\n  ours: %s" % (spec, "\n        ".join(expected), "\n        ".join(got)))
    assert not mismatches, "\n".join(mismatches)


def test_globals_use_file_offsets_where_perf_uses_symbols(cc, build_dir):
    binary = programs.build(cc, build_dir, "demo_O0")
    spec = "compute:%d gcount glabel:string total" % REPORT
    expected, _out = perf_definition(binary, spec)
    got = ours(binary, spec)
    # perf writes '@gcount+0', which the kernel refuses for uprobes.
    assert "gcount=@gcount+0:s64" in expected[0]
    assert re.search(r"gcount=@\+0x[0-9a-f]+:s64 ", got[0]), got
    assert [GLOBAL.sub("@G", l) for l in got] == [GLOBAL.sub("@G", l) for l in expected]


@pytest.mark.parametrize("variant, spec", [
    ("demo_O2", "scale:%d" % (SCALE_RESULT - 1)),    # 'int doubled = v * 2;' shares the entry
    ("demo_O2", "compute:5"),
    ("demo_O2", "compute:1"),
    ("demo_O2", "clamp_add:2"),     # inside inlined copies
])
def test_refuses_shared_lines_like_perf(cc, build_dir, variant, spec):
    binary = programs.build(cc, build_dir, variant)
    expected, perf_output = perf_definition(binary, spec)
    assert not expected and "sharing the address" in perf_output
    suggestion = re.search(r"Please try to probe at (\S+) instead", perf_output).group(1)
    with pytest.raises(dwarf_resolver.ResolveError) as info:
        ours(binary, spec)
    assert "sharing the address" in str(info.value)
    assert "Please try to probe at %s instead" % suggestion in str(info.value)


def test_computed_pointer_members_are_traced_where_perf_reads_the_wrong_memory(cc, build_dir):
    """At -O2 gcc describes `o` as *(CFA+k) - 56 (DW_OP_fbreg; deref; const; minus; stack_value).

    perf keeps only DW_OP_fbreg and dereferences the wrong address; we fold the
    -56 into the member offset (runtime truth: test_uprobe_runtime.py)."""
    binary = programs.build(cc, build_dir, "demo_O2")
    spec = "compute:%d o->in->z[2] o->name:string" % REPORT
    expected, _out = perf_definition(binary, spec)
    got = ours(binary, spec)
    assert expected and got and expected != got
    with pytest.raises(dwarf_resolver.ResolveError) as info:
        ours(binary, "compute:%d o" % REPORT)
    assert "computed as" in str(info.value) and "o->field" in str(info.value)


def test_shared_library(cc, build_dir):
    lib, _exe = programs.build_shared(cc, build_dir)
    # The printf line itself shares its address at -O2; the line before it does not.
    for spec in ["lib_step $params", "lib_step%return $retval",
                 "lib_step:%d amount before c->hits c->label:string c->history[1]"
                 % (programs.marker_line("lib_report", programs.os.path.join(programs.SOURCES, "libdemo.c"))
                    - programs.decl_line("lib_step", os.path.join(programs.SOURCES, "libdemo.c")) - 1)]:
        expected, out = perf_definition(lib, spec)
        assert expected, out
        assert ours(lib, spec) == expected, spec


def _addresses(lines):
    return [l.split()[1] for l in lines]


@pytest.mark.parametrize("opt, spec", [
    ("-O0", "one_line x"),              # one-line function: probe after the argument is stored
    ("-O0", "one_line $params"),
    ("-O0", "caller:4 price"),          # the block's price, not the function's
    ("-O2", "both%return $retval"),     # the out-of-line copy's symbol, not the inlined copies
])
def test_copies_same_as_perf(cc, build_dir, opt, spec):
    binary = programs.build_copies(cc, build_dir, opt)
    expected, out = perf_definition(binary, spec)
    assert expected, out
    assert ours(binary, spec) == expected


def test_every_copy_of_a_function_with_out_of_line_and_inlined_copies(cc, build_dir):
    """perf probes the inlined copies and the out-of-line copy; so do we, each with its own scope."""
    binary = programs.build_copies(cc, build_dir, "-O2")
    expected, out = perf_definition(binary, "both")
    assert len(expected) >= 2, out
    assert _addresses(ours(binary, "both")) == _addresses(expected)


def test_inlined_copy_variables_come_from_its_own_scope(cc, build_dir):
    """priced() inlined into caller(), which has two other variables named price: at the copy's
    entry the copy's own parameter is meant, never the caller's."""
    binary = programs.build_copies(cc, build_dir, "-O2")
    expected, _out = perf_definition(binary, "priced")
    got = dwarf_resolver.resolve(binary, "priced $params", allow_unavailable=True)
    assert _addresses(got["definitions"]) == _addresses(expected)
    resolver = dwarf_resolver.Resolver(binary)
    try:
        for note in got["variables"]:
            assert note["name"] == "price"
        for entry in resolver.variables_at("priced"):
            assert entry["name"] in ("price", "doubled"), entry     # never the caller's n
    finally:
        resolver.close()
