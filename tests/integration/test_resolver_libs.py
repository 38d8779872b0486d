"""Differential suite on real libraries: our resolver against perf, judged by runtime truth.

zlib, lz4 and liblzma are built from Debian source at -O0/-O2 with DWARF 5/4, zstd at -O2
and -O3, snappy and leveldb (C++) at -O2, and zlib with LTO (scripts/build-libs.sh, cached).  For each build a fixed-seed sample of specs of
every kind (functions, lines, $params, $vars, locals, members, :string, %return,
inline-only functions, static copies; tests/helpers/libdiff.py) is
resolved by both tools and every difference is classified.  Where they differ
on a spec the x86-64 ABI can judge (entry of a function with a symbol), both
definitions are installed with a truth probe and the driver program runs
(libtruth.py): ours must never read a value other than the one passed.

FLEETTRACE_LIBDIFF_SAMPLE sets the specs per build (default 40; the benchmark
runs bigger samples).  Classes where perf is wrong are listed in PERF_WRONG
and documented in docs/uprobe.md.
"""

import os

import pytest

from tests.helpers import libdiff  # noqa: E402
from tests.helpers import libtruth  # noqa: E402

from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import resolver as dwarf_resolver  # noqa: E402

SAMPLE = int(os.environ.get("FLEETTRACE_LIBDIFF_SAMPLE", "40"))
SEED = 14
LABELS = sorted(libdiff.SUITE)
PARITY_TARGET = 99.0
SWEEP = int(os.environ.get("FLEETTRACE_LIBDIFF_SWEEP", "25"))   # exported entries judged per build
CONTROLS = 3            # identical results judged too, to show the judge sees right values
BATCH = 40              # specs judged per driver run
# Differences where perf is wrong, each shown in docs/uprobe.md ("Where we differ from perf").
PERF_WRONG = {
    "perf-global-symbol": "perf writes @sym+0 for globals, which the kernel refuses in uprobes",
}
# perf refuses, we resolve: perf's own limits (we are judged by runtime truth where the ABI can).
PERF_REFUSES = ("perf-",)

pytestmark = pytest.mark.skipif(libdiff.PERF is None, reason="perf (Debian linux-perf) is not installed")


@pytest.fixture(scope="module")
def libraries():
    if os.geteuid() != 0 and not os.path.exists("/var/cache/fleettrace/libs-1/.complete-lto"):
        pytest.skip("building the libraries needs root the first time (apt-get source)")
    return libdiff.build_libraries()


def _explain(results):
    lines = []
    for r in results:
        lines.append("%s  %s\n    ours: %s\n    perf: %s%s" % (
            r["verdict"], r["spec"], " | ".join(r["ours"][:3]) or r["our_error"][:300],
            " | ".join(r["perf"][:3]) or r["perf_error"].split("\n")[0][:200],
            "\n    truth: %s" % r["truth"] if r.get("truth") else ""))
    return "\n".join(lines)


@pytest.mark.parametrize("label", LABELS)
def test_same_as_perf_where_perf_is_right(label, libraries, tracefs, run_token, cc, tmp_path_factory):
    root, paths = libraries
    binary = paths[label]
    functions = libdiff.catalog(binary)
    specs = libdiff.sample(functions, SAMPLE, "%d:%s" % (SEED, label))
    assert len(specs) >= SAMPLE * 3 // 4, "the sampler found too few specs in %s" % binary
    results = libdiff.compare(dwarf_resolver, binary, specs, functions)
    driver = libtruth.build_driver(cc, root, label, str(tmp_path_factory.mktemp("libdiff")))
    # Runtime truth for every difference the ABI can judge, for a few identical results as
    # controls (the judge must see right values where both agree), and for a sweep of exported
    # functions' entries (-O0 prologues, scopes at the entry): one driver run for all.
    sweep = libdiff.compare(dwarf_resolver, binary, libdiff.entry_sweep(functions, SWEEP, "%d:%s" % (SEED, label)),
                            functions)
    judged, controls = [], 0
    for r in results + sweep:
        function = functions.get(r["function"])
        if r["verdict"] == "both-refuse" or not libtruth.applicable(r, function):
            continue
        if r["verdict"] == "same" and r["kind"] != "sweep":
            if controls >= CONTROLS:
                continue
            controls += 1
        judged.append((r, function))
    for start in range(0, len(judged), BATCH):
        batch = judged[start:start + BATCH]
        for (r, _f), truth in zip(batch, libtruth.judge_many(tracefs, run_token, binary, driver, batch, start)):
            r["truth"] = truth
            if r["verdict"] != "same" and truth["ours"] == "right" and truth["perf"] in ("wrong", "kernel-refused"):
                r["perf_wrong"] = True
    results += sweep
    hit = [r for r, _f in judged if r["truth"]["ours"] in ("right", "wrong")]
    assert hit, "the driver program reached none of the judged functions: runtime truth judged nothing"
    wrong = [r for r in results if r.get("truth", {}).get("ours") in ("wrong", "kernel-refused")]
    assert not wrong, "our fetch args read other values than the program passed:\n" + _explain(wrong)
    # Judged by the DWARF: every variable we trace comes from the probed function's own scope.
    wrong_scope = libdiff.scope_audit(binary, results)
    assert not wrong_scope, "variables read from another scope:\n" + "\n".join(
        "%s  %s: %s" % entry for entry in wrong_scope)
    judged_same = [r for r in results if r["verdict"] == "same" and r.get("truth")]
    assert all(r["truth"]["ours"] in ("right", "not-hit", "none") for r in judged_same), _explain(judged_same)
    unexplained = [r for r in results if r["verdict"] not in ("same", "both-refuse") and not r.get("perf_wrong")
                   and r["verdict"] not in PERF_WRONG and not r["verdict"].startswith(PERF_REFUSES)]
    counts, parity, base = libdiff.summary(results)
    assert parity >= PARITY_TARGET and not unexplained, (
        "parity %.1f%% of %d specs where perf resolved (target %.0f%%); classes %s\n%s"
        % (parity, base, PARITY_TARGET, dict(counts), _explain(unexplained)))
