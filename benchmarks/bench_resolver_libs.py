"""Resolver truth at scale: parity with perf, wrong fetches and speed on real libraries.

    .venv/bin/python benchmarks/bench_resolver_libs.py [--sample 100] [--seed 14] [--runtime]
                                                      [--code DIR] [--labels zlib-O2,lz4-O0]

zlib, lz4 and liblzma built from Debian source at -O0/-O2, DWARF 5/4, zstd at -O2/-O3,
snappy and leveldb (C++), zlib with LTO (scripts/build-libs.sh; libdiff.SUITE).
A fixed-seed sample of specs per build
(tests/helpers/libdiff.py) is resolved by our resolver (in-process, a
fresh Resolver per spec, as the uprobe module does on a cache miss) and by
`perf probe --definition`; every difference is classified.

* parity: identical definitions where perf resolved and is not wrong (classes
  named perf-*: docs/uprobe.md, "Where we differ from perf");
* wrong fetches (--runtime, root): every spec at a function entry that the x86-64
  ABI can judge is installed with a truth probe and the driver program runs
  (tests/helpers/libtruth.py); each traced argument that differs from
  the value passed counts, ours and perf's;
* speed: in-process seconds per spec against perf's whole process, all specs and
  inline-only functions apart; and whole processes (`python -S dwarf/cli.py
  --no-cache`) against perf for up to 10 inline-only specs per build.

--code DIR resolves with the collection checked out at DIR (e.g. an older
commit: `git archive <commit> | tar x -C DIR`) to measure before/after.
Not a test: nothing asserts.  The machine is shared: compare the columns of one run.
"""

import argparse
import collections
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from tests.helpers import libdiff  # noqa: E402
from tests.helpers import libtruth  # noqa: E402

PYTHON = os.path.join(REPO, ".venv", "bin", "python")
WHOLE_PROCESS_SPECS = 10


def import_resolver(code):
    """The resolver module of the checkout at ``code`` (its own collections link)."""
    root = os.path.join(code, ".cache", "collections")
    if not os.path.isdir(os.path.join(root, "ansible_collections", "fleettrace", "tracefs")):
        os.makedirs(os.path.join(root, "ansible_collections", "fleettrace"), exist_ok=True)
        os.symlink(os.path.abspath(code), os.path.join(root, "ansible_collections", "fleettrace", "tracefs"))
    sys.path.insert(0, root)
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import resolver
    return resolver, root


def child_seconds(command):
    """(wall, CPU) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, timeout=300)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def whole_process(root, binary, specs):
    """Sum of (wall, CPU) for ours (cli, no cache) and perf over ``specs``."""
    cli = os.path.join(root, "ansible_collections", "fleettrace", "tracefs", "plugins", "module_utils", "dwarf",
                       "cli.py")
    env_path = "PYTHONPATH=" + root
    ours, perf = [0.0, 0.0], [0.0, 0.0]
    for spec in specs:
        wall, cpu = child_seconds(["env", env_path, PYTHON, "-S", cli, "--no-cache", "-x", binary, spec])
        ours[0] += wall
        ours[1] += cpu
        wall, cpu = child_seconds([libdiff.PERF, "probe", "-x", binary, "--definition", spec])
        perf[0] += wall
        perf[1] += cpu
    return ours, perf


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sample", type=int, default=100, help="specs per build")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--runtime", action="store_true", help="judge entry specs by runtime truth (root)")
    parser.add_argument("--code", default=REPO, help="collection checkout to resolve with")
    parser.add_argument("--labels", default="", help="comma-separated builds (default: all)")
    options = parser.parse_args()
    resolver, root = import_resolver(options.code)
    lib_root, libraries = libdiff.build_libraries()
    labels = [l for l in libdiff.SUITE if not options.labels or l in options.labels.split(",")]
    fs = None
    if options.runtime:
        from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import core as tracefs_core
        fs = tracefs_core.Tracefs()
    totals = collections.Counter()
    classes = collections.Counter()
    header = ("build", "specs", "parity", "ours s", "perf s", "inl ours", "inl perf", "wrong us", "wrong perf",
              "wrong scope")
    print("%-11s %6s %7s %9s %9s %8s %8s %9s %9s %11s" % header)
    for label in labels:
        binary = libraries[label]
        functions = libdiff.catalog(binary)
        specs = libdiff.sample(functions, options.sample, "%d:%s" % (options.seed, label))
        results = libdiff.compare(resolver, binary, specs, functions)
        wrong_scope = libdiff.scope_audit(binary, results)
        traced = sum(1 for r in results for n in r["our_variables"] if n["available"])
        wrong = collections.Counter()
        if fs is not None:
            driver = libtruth.build_driver(shutil.which("gcc") or "cc", lib_root, label, "/tmp")
            for index, r in enumerate(results):
                function = functions.get(r["function"])
                if libtruth.applicable(r, function) and (r["ours"] or r["perf"]):
                    truth = libtruth.judge(fs, "bench%d" % os.getpid(), binary, driver, r, function, index)
                    r["truth"] = truth
                    for who in ("ours", "perf"):
                        wrong[who] += len(truth["wrong_args"][who])
                        wrong[who + "_judged"] += truth[who] in ("right", "wrong")
                    perf_wrong = truth["perf"] in ("wrong", "kernel-refused")
                    if r["verdict"] != "same" and truth["ours"] == "right" and perf_wrong:
                        r["perf_wrong"] = True
        counts, parity, base = libdiff.summary(results)
        classes.update(counts)
        inline = [r for r in results if functions[r["function"]].inline_only]
        row = {"ours": sum(r["our_seconds"] for r in results), "perf": sum(r["perf_seconds"] for r in results),
               "inl_ours": sum(r["our_seconds"] for r in inline), "inl_perf": sum(r["perf_seconds"] for r in inline)}
        for key, value in row.items():
            totals[key] += value
        totals["same"] += counts.get("same", 0)
        totals["base"] += base
        totals["specs"] += len(results)
        totals["inline"] += len(inline)
        totals.update({"wrong_" + k: v for k, v in wrong.items()})
        totals["wrong_scope"] += len(wrong_scope)
        totals["traced_variables"] += traced
        print("%-11s %6d %6.1f%% %9.2f %9.2f %8.2f %8.2f %9s %9s %11s" % (
            label, len(results), parity, row["ours"], row["perf"], row["inl_ours"], row["inl_perf"],
            "%d/%d" % (wrong["ours"], wrong["ours_judged"]) if fs else "-",
            "%d/%d" % (wrong["perf"], wrong["perf_judged"]) if fs else "-", "%d/%d" % (len(wrong_scope), traced)))
        for spec, variable, why in wrong_scope:
            print("    wrong scope: %s  %s: %s" % (spec, variable, why))
        whole = [r["spec"] for r in inline if r["ours"]][:WHOLE_PROCESS_SPECS]
        if whole:
            ours, perf = whole_process(root, binary, whole)
            totals["whole_ours_wall"] += ours[0]
            totals["whole_ours_cpu"] += ours[1]
            totals["whole_perf_wall"] += perf[0]
            totals["whole_perf_cpu"] += perf[1]
            totals["whole_specs"] += len(whole)
    print()
    print("parity where perf is right: %.2f%% (%d of %d specs; %d sampled)" % (
        100.0 * totals["same"] / max(totals["base"], 1), totals["same"], totals["base"], totals["specs"]))
    print("in-process ours / perf process: all specs %.2f s / %.2f s (%.2fx), inline-only (%d specs) %.2f s / %.2f s "
          "(%.2fx)" % (totals["ours"], totals["perf"], totals["ours"] / max(totals["perf"], 1e-9), totals["inline"],
                       totals["inl_ours"], totals["inl_perf"], totals["inl_ours"] / max(totals["inl_perf"], 1e-9)))
    if totals["whole_specs"]:
        print("whole process, inline-only (%d specs): ours %.2f s wall %.2f s CPU, perf %.2f s wall %.2f s CPU "
              "(%.2fx wall, %.2fx CPU)" % (
                  totals["whole_specs"], totals["whole_ours_wall"], totals["whole_ours_cpu"],
                  totals["whole_perf_wall"], totals["whole_perf_cpu"],
                  totals["whole_ours_wall"] / max(totals["whole_perf_wall"], 1e-9),
                  totals["whole_ours_cpu"] / max(totals["whole_perf_cpu"], 1e-9)))
    if fs is not None:
        print("wrong fetch args (runtime truth): ours %d in %d judged specs, perf %d in %d" % (
            totals["wrong_ours"], totals["wrong_ours_judged"], totals["wrong_perf"], totals["wrong_perf_judged"]))
    print("values read from another scope than the probed function's own (libdiff.scope_audit, by the DWARF): "
          "%d of %d traced variables" % (totals["wrong_scope"], totals["traced_variables"]))
    print("classes: " + ", ".join("%s %d" % kv for kv in classes.most_common()))


if __name__ == "__main__":
    # kill/pkill sends SIGTERM: unwind through the finally blocks that remove our probes and instances.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    main()
