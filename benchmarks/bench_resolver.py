"""Whole-process time of our probe resolver vs `perf probe --definition`, same specs.

    .venv/bin/python benchmarks/bench_resolver.py [--runs 5]

Binaries: this machine's libpython3.11.so.1.0 (DWARF 5, ~23 MB) and demo.c
built with gcc -O2 -g.  Each spec is resolved by
``python -S .../module_utils/dwarf/cli.py -x BIN SPEC`` (the resolver behind the
uprobe module) and by ``perf probe -x BIN --definition SPEC``:

* first: every cache empty (the first resolution on a host: it builds the function
  index when the spec needs one and decodes the unit's line table, both stored by
  build-id, in check mode too);
* cold: our build-id keyed result cache is empty; the DWARF caches (function index,
  line tables) are there, as perf has its ~/.debug;
* warm: the same spec again, answered from the cache (pyelftools not imported).

Also the sqlite3 amalgamation (scripts/build-libs.sh sqlite3: one 1.6 MB unit of
DWARF, 237,000 line rows).  Inline-only specs (functions with DW_AT_inline and no out-of-line copy) and
not-in-symtab specs (static functions of a copy of libpython whose symbol
table was stripped, DWARF kept) go through the function index.  The last
part runs the ``fleettrace.tracefs.uprobe`` module through ansible-playbook
(check mode: resolves and compares, writes nothing to tracefs) against the same
play with a no-op module (``ansible.builtin.ping``): the difference is what one
probe costs beyond Ansible's own start-up, with the result cache hit and missed
(the task's ``cached`` says which), and hit in the first run of this code on the
controller (the module's payload built, as Ansible builds ping's in every run),
next to perf.  PYTHONUNBUFFERED is removed from the environment of these runs
(see bench_ansible).

perf keeps its own build-id cache in ~/.debug, so after its first run perf is
warm too.  Wall time is what a user waits; CPU time (user+sys of the child,
from wait4) is what the process costs and is the fairer number on a shared,
loaded machine.  Ratios are ours/perf on the sum of per-spec medians
(targets: cold <= 1.5, warm <= 0.5, one probe through Ansible <= 3); the last
lines print them all.  Not a test: nothing here asserts.
"""

import argparse
import json
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
sys.path.insert(0, REPO)
from tests.helpers import resolver_programs as programs  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_results  # noqa: E402


def libpython():
    """The shared libpython of the Python this venv was made from."""
    candidates = []
    base = subprocess.run([PYTHON, "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"],
                          stdout=subprocess.PIPE, text=True, check=False).stdout.strip()
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


def _fresh(env, **dirs):
    """``env`` with new empty directories for the named variables (removed by the caller)."""
    made = {name: tempfile.mkdtemp(prefix="fleettrace-bench-") for name in dirs}
    return dict(env, **made), list(made.values())


def bench_binary(label, binary, specs, runs, perf, index_dir):
    """Per spec, CPU and wall of perf and of ours first (every cache empty: the function index is built
    when the spec needs one, the unit's line table decoded), cold (empty result cache, the DWARF caches
    of earlier runs present, as perf has its ~/.debug) and warm (the result cache answers)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)     # a real install has its bytecode compiled
    env["PYTHONPATH"] = COLLECTIONS
    env["FLEETTRACE_DWARF_INDEX"] = index_dir
    rows = []
    for spec in specs:
        first_env, made = _fresh(env, FLEETTRACE_DWARF_INDEX=1, FLEETTRACE_RESOLVER_CACHE=1)
        try:
            first = timed(OURS + ["-x", binary, spec], first_env)
        finally:
            for directory in made:
                shutil.rmtree(directory, ignore_errors=True)
        timed(OURS + ["--no-cache", "-x", binary, spec], env)     # the DWARF caches of this spec, once
        timed([perf, "probe", "-x", binary, "--definition", spec], env)
        perf_times, cold = [], []
        for _i in range(runs):      # interleaved: the load from others falls on both alike
            perf_times.append(timed([perf, "probe", "-x", binary, "--definition", spec], env))
            cold.append(timed(OURS + ["--no-cache", "-x", binary, spec], env))
        warm_env, made = _fresh(env, FLEETTRACE_RESOLVER_CACHE=1)
        try:
            timed(OURS + ["-x", binary, spec], warm_env)
            warm = [timed(OURS + ["-x", binary, spec], warm_env) for _i in range(runs)]
        finally:
            for directory in made:
                shutil.rmtree(directory, ignore_errors=True)
        perf_lines = [l for l in perf_times[0][2].splitlines() if l[:2] in ("p:", "r:")]
        our_lines = [l for l in cold[0][2].splitlines() if l[:2] in ("p:", "r:")]
        same = "same" if perf_lines == our_lines else ("differs" if perf_lines and our_lines else "n/a")
        rows.append((spec, [median([t[0] for t in x]) for x in (perf_times, [first], cold, warm)],
                     [median([t[1] for t in x]) for x in (perf_times, [first], cold, warm)], same))
    print("\n== %s: %s" % (label, binary))
    print("%-40s %33s   %33s  %s" % ("spec", "wall ms: perf  first  cold  warm", "cpu ms: perf  first  cold  warm",
                                     "output"))
    for spec, wall, cpu, same in rows:
        print("%-40s %13.0f %6.0f %6.0f %6.0f   %12.0f %6.0f %6.0f %6.0f  %s" % (
            spec[:40], wall[0] * 1e3, wall[1] * 1e3, wall[2] * 1e3, wall[3] * 1e3,
            cpu[0] * 1e3, cpu[1] * 1e3, cpu[2] * 1e3, cpu[3] * 1e3, same))
    totals = {}
    for kind, index in (("wall", 1), ("cpu", 2)):
        sums = [sum(r[index][i] for r in rows) for i in range(4)]
        totals[kind] = sums
        print("%s ratio ours/perf: first %.2f  cold %.2f (target <= 1.5)  warm %.2f (target <= 0.5)"
              % (kind, sums[1] / sums[0], sums[2] / sums[0], sums[3] / sums[0]))
    perf_cpu, first_cpu, cold_cpu, warm_cpu = (value * 1e3 for value in totals["cpu"])
    tool = "perf probe --definition, %d specs" % len(rows)
    FIGURES.extend([
        {"measure": "resolver cold, whole process CPU: %s" % label, "ours": cold_cpu, "other": perf_cpu,
         "unit": "ms", "target": "<= 1.5", "tool": tool},
        {"measure": "resolver warm (result cache), CPU: %s" % label, "ours": warm_cpu, "other": perf_cpu,
         "unit": "ms", "target": "<= 0.5", "tool": tool},
        {"measure": "resolver first run on a host, CPU: %s" % label, "ours": first_cpu, "other": perf_cpu,
         "unit": "ms", "tool": tool}])
    return totals


FIGURES = []    # for benchmarks/bench_results.py: printed with every benchmark's figures by make bench


def inline_only_functions(binary, count):
    """``count`` inline-only functions of ``binary`` (DW_AT_inline, no out-of-line copy, no symbol) from
    its DWARF, spread over the alphabet, that perf probes too (it gives up past 128 copies)."""
    sys.path.insert(0, COLLECTIONS)
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import resolver as dwarf_resolver
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import functions
    resolver = dwarf_resolver.Resolver(binary)
    try:
        index = resolver.context.function_index
        names = sorted(n for n in index.all_names() if all(inline for _c, _o, inline in index.subprograms(n)))
        chosen = []
        for name in names[::max(1, len(names) // (count * 4))]:
            found = functions.find_function(resolver.context, name)
            if found and not resolver.symbols.function(name) and all(
                    resolver.context.entry_pc(die) is None for _cu, die in found):
                copies = sum(len(functions.inlined_copies(resolver.context, cu, die)) for cu, die in found)
                if 1 <= copies <= 64:
                    chosen.append(name)
            if len(chosen) == count:
                break
        return chosen
    finally:
        resolver.close()


def walk_vs_index(label, binary, specs, index_dir):
    """In-process CPU time of one fresh resolution with the stored function index and without it
    (functions.py then searches the raw bytes, dwarf/byte_search.py), same specs, alternating; outputs compared."""
    sys.path.insert(0, COLLECTIONS)
    os.environ["FLEETTRACE_DWARF_INDEX"] = index_dir
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import resolver as dwarf_resolver

    def once(spec, use_index):
        start = time.process_time()
        resolver = dwarf_resolver.Resolver(binary)
        try:
            if not use_index:
                resolver.context._index = False
            lines = resolver.resolve(spec).definitions
        finally:
            resolver.close()
        return time.process_time() - start, lines

    print("\n== %s, in-process CPU ms per resolution: stored function index vs byte search" % label)
    totals = [0.0, 0.0]
    for spec in specs:
        indexed, walked = once(spec, True), once(spec, False)
        totals[0] += indexed[0]
        totals[1] += walked[0]
        print("%-44s index %7.1f   bytes %7.1f   %s" % (spec[:44], indexed[0] * 1e3, walked[0] * 1e3,
                                                        "same" if indexed[1] == walked[1] else "DIFFERENT"))
    print("byte search/index: %.1fx" % (totals[1] / totals[0]))


def without_symtab(binary, directory):
    """A copy of ``binary`` without .symtab (DWARF kept): its static functions are not in any symbol table."""
    out = os.path.join(directory, os.path.basename(binary) + ".nosymtab")
    subprocess.run(["objcopy", "--strip-all", "--keep-section=.debug*", binary, out], check=True)
    return out


ANSIBLE_PLAY = """- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
%s"""
UPROBE_TASK = """    - fleettrace.tracefs.uprobe:
        binary: %s
        spec: %s
"""
PING_TASK = """    - ansible.builtin.ping:
"""


def _task_result(output):
    """The task's result as ansible-playbook -v prints it ('ok: [localhost] => {...}'), or {}."""
    start = output.find("[localhost] => {")
    if start < 0:
        return {}
    try:
        return json.JSONDecoder().raw_decode(output[output.index("{", start):])[0]
    except ValueError:
        return {}


def bench_ansible(binary, specs, runs, perf, workdir):
    """One probe through Ansible beyond Ansible's own start-up: ansible-playbook --check with one uprobe task
    against the same play with one no-op module task (ansible.builtin.ping), in the same run, next to perf.
    Twice: with the result cache holding the spec (the task says cached: true) and without it (cached: false;
    the DWARF caches present, as for perf)."""
    venv_bin = os.path.dirname(PYTHON)
    env = dict(os.environ, PATH=venv_bin + os.pathsep + os.environ.get("PATH", ""),
               ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=COLLECTIONS,
               ANSIBLE_PYTHON_INTERPRETER=PYTHON, ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=os.path.join(workdir, "ansible-local"),
               FLEETTRACE_RESOLVER_CACHE=os.path.join(workdir, "ansible-cache"),
               FLEETTRACE_DWARF_INDEX=os.path.join(workdir, "ansible-index"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    # With PYTHONUNBUFFERED set (as in some CI and agent environments), Python 3.11 reads a script
    # from stdin one byte per read(): a pipelined module's whole AnsiballZ wrapper, ~0.7 us CPU per
    # byte (~250 ms for uprobe's, ~120 ms for ping's). A node reached over ssh does not have it set.
    env.pop("PYTHONUNBUFFERED", None)
    spec = specs[0]
    plays = {}
    for label, task in (("ping", PING_TASK), ("uprobe", UPROBE_TASK % (binary, spec))):
        path = os.path.join(workdir, label + ".yml")
        with open(path, "w") as out:
            out.write(ANSIBLE_PLAY % task)
        plays[label] = path
    playbook = os.path.join(venv_bin, "ansible-playbook")
    cold_env = dict(env, FLEETTRACE_RESOLVER_CACHE=os.path.join(workdir, "ansible-cache-empty"))
    # The first run of this code on a controller: the module's payload is built (plugin_utils/payload_cache.py
    # keeps it for later runs, under ANSIBLE_LOCAL_TEMP), as Ansible builds ping's in every run.
    new_code_env = dict(env, ANSIBLE_LOCAL_TEMP=os.path.join(workdir, "ansible-local-empty"))
    timed([playbook, "--check", plays["uprobe"]], env)          # fills the caches: result, index, lines, payload
    commands = [("perf probe --definition", [perf, "probe", "-x", binary, "--definition", spec], env),
                ("ansible-playbook --check: ping", [playbook, "-v", "--check", plays["ping"]], env),
                ("ansible-playbook --check: uprobe, cache hit", [playbook, "-v", "--check", plays["uprobe"]], env),
                ("ansible-playbook --check: uprobe, cache miss", [playbook, "-v", "--check", plays["uprobe"]],
                 cold_env),
                ("ansible-playbook --check: uprobe, cache hit, payload built",
                 [playbook, "-v", "--check", plays["uprobe"]], new_code_env)]
    results = {}
    for _i in range(runs):     # interleaved: the load from others falls on all of them alike
        for label, argv, command_env in commands:
            if "cache miss" in label:
                shutil.rmtree(command_env["FLEETTRACE_RESOLVER_CACHE"], ignore_errors=True)
            if "payload built" in label:
                shutil.rmtree(command_env["ANSIBLE_LOCAL_TEMP"], ignore_errors=True)
            results.setdefault(label, []).append(timed(argv, command_env))
    print("\n== one probe through Ansible (check mode, %s): %s" % (spec, binary))
    print("%-60s %10s %10s  %s" % ("command", "wall ms", "cpu ms", "exit codes, task result"))
    medians = {}
    for label, _argv, _env in commands:
        times = results[label]
        medians[label] = (median([t[0] for t in times]), median([t[1] for t in times]))
        result = _task_result(times[-1][2]) if "ansible" in label else {}
        said = ("cached=%s" % result.get("cached")) if "uprobe" in label else ("ping=%s" % result.get("ping")
                                                                               if "ping" in label else "")
        print("%-60s %10.0f %10.0f  %s %s" % (label, medians[label][0] * 1e3, medians[label][1] * 1e3,
                                              sorted({t[3] for t in times}), said))
    perf_cpu = medians["perf probe --definition"][1]
    for label in ("ansible-playbook --check: uprobe, cache hit", "ansible-playbook --check: uprobe, cache miss",
                  "ansible-playbook --check: uprobe, cache hit, payload built"):
        beyond = medians[label][1] - medians["ansible-playbook --check: ping"][1]
        ratio = beyond / perf_cpu
        print("%s: %.0f ms CPU beyond the no-op module, %.1fx perf's %.0f ms (target <= 3)"
              % (label.split(": ", 1)[1], beyond * 1e3, ratio, perf_cpu * 1e3))
        FIGURES.append({"measure": "uprobe task beyond ping, CPU: %s" % label.split(", ", 1)[1],
                        "ours": beyond * 1e3, "other": perf_cpu * 1e3, "unit": "ms", "target": "<= 3",
                        "tool": "perf probe --definition"})


def sqlite3_library():
    """The sqlite3 amalgamation built from Debian's source (scripts/build-libs.sh sqlite3, cached)."""
    proc = subprocess.run(["bash", os.path.join(REPO, "scripts", "build-libs.sh"), "sqlite3"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit("scripts/build-libs.sh sqlite3 failed:\n" + proc.stderr[-2000:])
    return os.path.join(proc.stdout.strip().splitlines()[-1], "sqlite3-O2", "libsqlite3.so")


PARTS = ("libpython", "sqlite3", "inline", "nosymtab", "demo", "ansible")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", choices=PARTS, action="append", help="run only these parts (default: all)")
    options = parser.parse_args()
    parts = options.only or list(PARTS)
    perf = shutil.which("perf")
    if not perf:
        raise SystemExit("perf is not installed (Debian: apt-get install linux-perf)")
    when = time.strftime("%Y-%m-%d %H:%M %Z")
    print("%s on %s, load average: %.1f %.1f %.1f, %d CPUs"
          % ((when, os.uname()[1]) + os.getloadavg() + (os.cpu_count(),)))
    lib = libpython()
    print("libpython: %s, DWARF version %s" % (lib, dwarf_version(lib)))
    workdir = tempfile.mkdtemp(prefix="fleettrace-bench-")
    index_dir = os.path.join(workdir, "index")
    try:
        demo = programs.build(shutil.which("gcc") or "cc", workdir, "demo_O2")
        report = programs.marker_line("report") - programs.decl_line("compute")
        # Compile our modules' bytecode once, as an installed collection would have it.
        env = dict(os.environ, PYTHONPATH=COLLECTIONS)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        subprocess.run([PYTHON, "-c", "import %s, ansible_collections.fleettrace.tracefs.plugins.module_utils."
                        "dwarf.resolver, ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.byte_search, "
                        "elftools.elf.elffile" % CLI], env=env, check=True)
        if "libpython" in parts:
            bench_binary("libpython (-O2, DWARF 5)", lib,
                         ["PyList_Append newitem", "PyList_Append:3 op newitem", "PyObject_GetAttr:4 v name",
                          "PyDict_SetItem key value"], options.runs, perf, index_dir)
        if "sqlite3" in parts:
            bench_binary("sqlite3 amalgamation (-O2, DWARF 5, one 1.6 MB unit)", sqlite3_library(),
                         ["lockTable pParse iDb", "sqlite3_open zFilename", "computeYMD p->D", "computeYMD:12 p->D",
                          "sqlite3BtreeNext pCur"], options.runs, perf, index_dir)
        if "inline" in parts:
            inline = inline_only_functions(lib, 5)
            bench_binary("libpython inline-only functions (every inlined copy)", lib, inline, options.runs, perf,
                         index_dir)
            walk_vs_index("libpython inline-only functions", lib, inline, index_dir)
        if "nosymtab" in parts:
            stripped = without_symtab(lib, workdir)
            static = ["list_append", "dict_dealloc", "list_dealloc", "gc_collect_main"]
            bench_binary("libpython without .symtab: static functions", stripped, static, options.runs, perf,
                         index_dir)
            walk_vs_index("libpython without .symtab", stripped, static, index_dir)
        if "demo" in parts:
            bench_binary("demo.c -O2", demo,
                         ["compute:%d total k label" % report, "compute $params", "scale:3 $vars",
                          "compute%return $retval"], options.runs, perf, index_dir)
        if "ansible" in parts:
            bench_ansible(lib, ["PyList_Append newitem"], options.runs, perf, workdir)
        print("\n== resolver figures of this run (%s on %s)" % (when, os.uname()[1]))
        for figure in FIGURES:
            print("%-78s %7.0f %7.0f ms  ratio %5.2f  target %s" % (figure["measure"][:78], figure["ours"],
                                                                    figure["other"], figure["ours"] / figure["other"],
                                                                    figure.get("target", "-")))
        if FIGURES:
            bench_results.record("resolver", FIGURES, runs=options.runs, parts=parts)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if os.path.exists(TMP_OUT):
            os.unlink(TMP_OUT)


if __name__ == "__main__":
    main()
