"""Whole-process time of our probe resolver vs `perf probe --definition`, same specs.

    .venv/bin/python benchmarks/bench_resolver.py [--runs 5]

Binaries: this machine's libpython3.11.so.1.0 (DWARF 5, ~23 MB) and demo.c
built with gcc -O2 -g.  Each spec is resolved by
``python -S .../module_utils/dwarf/cli.py -x BIN SPEC`` (the resolver behind the
uprobe module) and by ``perf probe -x BIN --definition SPEC``:

* cold: our build-id keyed cache is empty (a fresh directory per run);
* warm: the same spec again, answered from the cache (pyelftools not imported).

perf keeps its own build-id cache in ~/.debug, so after its first run perf is
warm too.  Wall time is what a user waits; CPU time (user+sys of the child,
from wait4) is what the process costs and is the fairer number on a shared,
loaded machine.  Ratios are ours/perf on the sum of per-spec medians
(targets: cold <= 2, warm <= 0.5).  Not a test: nothing here asserts.
"""

import argparse
import os
import shutil
import statistics
import struct
import subprocess
import sys
import sysconfig
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, ".cache", "collections")  # made by scripts/setup.sh
PYTHON = os.path.join(REPO, ".venv", "bin", "python")
CLI = "ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.cli"
# Run as a script with -S: no runpy/site imports before the cache is consulted
# (dwarf_cli adds site-packages itself on a cache miss).
CLI_SCRIPT = os.path.join(COLLECTIONS, *CLI.split(".")) + ".py"
OURS = [PYTHON, "-S", CLI_SCRIPT]
sys.path.insert(0, os.path.join(REPO, "tests", "programs", "resolver"))
import resolver_programs as programs  # noqa: E402


def libpython():
    """The shared libpython of the Python this venv was made from."""
    candidates = []
    base = subprocess.run([PYTHON, "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"],
                          stdout=subprocess.PIPE, universal_newlines=True, check=False).stdout.strip()
    if base:
        candidates.append(os.path.join(base, "libpython3.11.so.1.0"))
    candidates += ["/root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0",
                   os.path.join(sysconfig.get_config_var("LIBDIR") or "", "libpython3.11.so.1.0")]
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise SystemExit("libpython3.11.so.1.0 not found (looked at %s)" % ", ".join(candidates))


def dwarf_version(path):
    """Version of the first compile unit in .debug_info (struct only)."""
    sys.path.insert(0, COLLECTIONS)
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.debuginfo import ElfHeaders
    headers = ElfHeaders(path)
    entry = headers.sections.get(".debug_info")
    if entry is None:
        return None
    with open(path, "rb") as handle:
        handle.seek(entry[2])
        length, version = struct.unpack("<IH", handle.read(6))
    return version


def timed(argv, env):
    """(wall s, cpu s, stdout, exit code) of one child; CPU time from wait4's rusage."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        devnull = os.open(os.devnull, os.O_WRONLY)
        out_fd = os.open(TMP_OUT, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(out_fd, 1)
        os.dup2(devnull, 2)
        try:
            os.execvpe(argv[0], argv, env)
        finally:
            os._exit(127)
    _pid, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    with open(TMP_OUT) as handle:
        out = handle.read()
    return wall, usage.ru_utime + usage.ru_stime, out, os.waitstatus_to_exitcode(status)


TMP_OUT = os.path.join(tempfile.gettempdir(), "fleettrace-bench-%d.out" % os.getpid())


def median(values):
    return statistics.median(values) if values else float("nan")


def bench_binary(label, binary, specs, runs, perf):
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)     # a real install has its bytecode compiled
    env["PYTHONPATH"] = COLLECTIONS
    rows = []
    for spec in specs:
        perf_times = [timed([perf, "probe", "-x", binary, "--definition", spec], env) for _i in range(runs + 1)][1:]
        cold = []
        for _i in range(runs):
            cache = tempfile.mkdtemp(prefix="fleettrace-bench-cache-")
            try:
                cold.append(timed(OURS + ["-x", binary, spec], dict(env, FLEETTRACE_RESOLVER_CACHE=cache)))
            finally:
                shutil.rmtree(cache, ignore_errors=True)
        cache = tempfile.mkdtemp(prefix="fleettrace-bench-cache-")
        try:
            warm_env = dict(env, FLEETTRACE_RESOLVER_CACHE=cache)
            timed(OURS + ["-x", binary, spec], warm_env)
            warm = [timed(OURS + ["-x", binary, spec], warm_env) for _i in range(runs)]
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        perf_lines = [l for l in perf_times[0][2].splitlines() if l[:2] in ("p:", "r:")]
        our_lines = [l for l in cold[0][2].splitlines() if l[:2] in ("p:", "r:")]
        same = "same" if perf_lines == our_lines else ("differs" if perf_lines and our_lines else "n/a")
        rows.append((spec, [median([t[0] for t in x]) for x in (perf_times, cold, warm)],
                     [median([t[1] for t in x]) for x in (perf_times, cold, warm)], same))
    print("\n== %s: %s" % (label, binary))
    print("%-44s %27s   %27s  %s" % ("spec", "wall ms: perf  cold  warm", "cpu ms: perf  cold  warm", "output"))
    for spec, wall, cpu, same in rows:
        print("%-44s %13.0f %6.0f %6.0f   %12.0f %6.0f %6.0f  %s" % (
            spec[:44], wall[0] * 1e3, wall[1] * 1e3, wall[2] * 1e3, cpu[0] * 1e3, cpu[1] * 1e3, cpu[2] * 1e3, same))
    totals = {}
    for kind, index in (("wall", 1), ("cpu", 2)):
        sums = [sum(r[index][i] for r in rows) for i in range(3)]
        totals[kind] = sums
        print("%s ratio ours/perf: cold %.2f (target <= 2)  warm %.2f (target <= 0.5)"
              % (kind, sums[1] / sums[0], sums[2] / sums[0]))
    return totals


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args()
    perf = shutil.which("perf")
    if not perf:
        raise SystemExit("perf is not installed (Debian: apt-get install linux-perf)")
    print("load average: %.1f %.1f %.1f on %d CPUs" % (os.getloadavg() + (os.cpu_count(),)))
    lib = libpython()
    print("libpython: %s, DWARF version %s" % (lib, dwarf_version(lib)))
    workdir = tempfile.mkdtemp(prefix="fleettrace-bench-")
    try:
        demo = programs.build(shutil.which("gcc") or "cc", workdir, "demo_O2")
        report = programs.marker_line("report") - programs.decl_line("compute")
        # Compile our modules' bytecode once, as an installed collection would have it.
        env = dict(os.environ, PYTHONPATH=COLLECTIONS)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        subprocess.run([PYTHON, "-c", "import %s, ansible_collections.fleettrace.tracefs.plugins.module_utils."
                        "dwarf.resolver, elftools.elf.elffile" % CLI], env=env, check=True)
        bench_binary("libpython (-O2, DWARF 5)", lib,
                     ["PyList_Append newitem", "PyList_Append:3 op newitem", "PyObject_GetAttr:4 v name",
                      "PyDict_SetItem key value"], options.runs, perf)
        bench_binary("demo.c -O2", demo,
                     ["compute:%d total k label" % report, "compute $params", "scale:3 $vars",
                      "compute%return $retval"], options.runs, perf)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if os.path.exists(TMP_OUT):
            os.unlink(TMP_OUT)


if __name__ == "__main__":
    main()
