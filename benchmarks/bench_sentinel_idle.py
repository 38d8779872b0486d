"""What an armed sentinel costs while nothing happens, side by side with the other ways to wait.

A sentinel is armed on a target (real corosync 3.1.7 built by scripts/build-corosync.sh,
or the bundled demo daemon with ``--target demo``) with the diagnose workflow's
probe line and threshold, and left alone for ``--seconds`` (default 600: the
issue's 10 minutes).  Over the same window, on the same target, run:

* the sentinel's watcher (and its run's reaper), measured from /proc: CPU
  seconds (utime + stime) over the window, RSS and peak RSS;
* ``poll``: what the capture module does while it waits, a Python process
  reading ``tracing_on`` of an instance every 0.1 s;
* ``trace-cmd``: ``trace-cmd record`` of the same events of the same pid (what
  one leaves running to have the history when the stall comes), CPU of its tree;
* ``bpftrace`` (when installed): the lightest "wait for the tick" one writes by
  hand, a uprobe counting the probed function's calls (this bpftrace refuses a
  probe at an offset inside a function: "compiled without uprobe offset
  support", so it sits at the function's entry and fires on every tick); CPU
  and peak RSS.

It also reads the probe's hits from ``uprobe_profile``: on corosync the probe
line is inside the late-tick branch, so it fires on late ticks only.

    sudo .venv/bin/python benchmarks/bench_sentinel_idle.py [--seconds 600] [--target corosync|demo]

Figures: benchmarks/results/sentinel_idle.json (bench_results.record, in make bench's table).  The kernel's cost of writing
the events (charged to the traced task) is in no column.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, ".cache", "collections"))  # made by scripts/setup.sh
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import resolver as dwarf_resolver  # noqa: E402
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sentinel import control, settings  # noqa: E402
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import lifecycle  # noqa: E402
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import Tracefs  # noqa: E402
from bench_results import record  # noqa: E402
from bench_sched_latency import TRACE_CMD_WRAPPER, run_tree  # noqa: E402

POLLER = r"""
import sys, time
path = sys.argv[1]
try:
    while True:
        with open(path) as handle:
            if handle.read(2).strip() == "0":
                break
        time.sleep(0.1)
except KeyboardInterrupt:
    pass
"""


def usage(pid):
    """(cpu seconds, rss kB, peak rss kB, wakeups) of a process and every process below it (trace-cmd forks
    recorders).  CPU from ``schedstat`` (ns on the CPU, every thread), not the 10 ms ticks of ``stat``;
    wakeups are voluntary context switches (each time it went to sleep)."""
    tree, cpu, rss, peak, wakeups = {pid}, 0.0, 0, 0, 0
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name) as handle:
                    parents[int(name)] = int(handle.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    grew = True
    while grew:
        grew = False
        for child, parent in parents.items():
            if child not in tree and parent in tree:
                tree.add(child)
                grew = True
    for member in tree:
        try:
            for task in os.listdir("/proc/%d/task" % member):
                with open("/proc/%d/task/%s/schedstat" % (member, task)) as handle:
                    cpu += int(handle.read().split()[0]) / 1e9
                with open("/proc/%d/task/%s/status" % (member, task)) as handle:
                    for line in handle:
                        if line.startswith("voluntary_ctxt_switches:"):
                            wakeups += int(line.split()[1])
            with open("/proc/%d/status" % member) as handle:
                status = dict(line.split(":", 1) for line in handle.read().splitlines() if ":" in line)
        except OSError:
            continue
        rss += int(status.get("VmRSS", "0 kB").split()[0])
        peak += int(status.get("VmHWM", "0 kB").split()[0])
    return cpu, rss, peak, wakeups


def probe_hits(group):
    with open("/sys/kernel/tracing/uprobe_profile") as handle:
        return sum(int(line.split()[-1]) for line in handle if " %s/" % group in line)


def start_target(kind, workdir):
    """(pid, binary, stop function, token_ms) of the target."""
    if kind == "corosync":
        from tests.helpers import corosync as corosync_helper
        prefix, why = corosync_helper.build()
        if prefix is None:
            raise SystemExit(why)
        node = corosync_helper.Corosync(prefix, os.path.join(workdir, "corosync"))
        os.makedirs(node.workdir)
        node.start()
        return node.proc.pid, node.binary, node.stop, corosync_helper.TOKEN_MS
    binary = os.path.join(workdir, "demo_daemon")
    subprocess.run(["gcc", "-g", "-O2", "-o", binary, os.path.join(REPO, "tests", "programs", "demo", "demo_daemon.c")],
                   check=True)
    proc = subprocess.Popen([binary, os.path.join(workdir, "heartbeat.log"), "100", "400"], stderr=subprocess.DEVNULL)

    def stop():
        proc.terminate()
        proc.wait(timeout=30)
    return proc.pid, binary, stop, 500


def definitions_for(binary):
    """The diagnose workflow's probe line (first probe-able line after 'tv_diff = '), resolved here."""
    resolver = dwarf_resolver.Resolver(binary)
    try:
        lines = resolver.probeable_lines("timer_function_scheduler_timeout")["lines"]
        anchor = [line["line"] for line in lines if line.get("source") and "tv_diff = " in line["source"]][0]
        picked = [line for line in lines if line["probeable"] and line["line"] > anchor][0]
        spec = "timer_function_scheduler_timeout:%d tv_diff=tv_diff:u64" % picked["relative_line"]
        resolved = resolver.resolve(spec, group="bench", event="tick").as_dict()
        return resolved["definitions"], resolver.build_id, resolved["addresses"]
    finally:
        resolver.close()


def bpftrace_program(binary):
    """A uprobe at the probed function's entry, counting its calls (see the module docstring)."""
    return "uprobe:%s:timer_function_scheduler_timeout { @ticks = count(); }" % binary


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--target", choices=("corosync", "demo"), default="corosync")
    parser.add_argument("--tools", default="poll,trace-cmd,bpftrace")
    args = parser.parse_args()
    tools = [t for t in args.tools.split(",") if t and (t == "poll" or shutil.which(t))]
    workdir = tempfile.mkdtemp(prefix="fleettrace-bench-sentinel.")
    label = "bench%d" % os.getpid()
    fs = Tracefs()
    spool_root = os.path.join(workdir, "spool")
    poll_instance = "fleettrace_bench%d_poll" % os.getpid()
    tc_instance = "fleettrace_bench%d_tc" % os.getpid()
    bench_tag = "fleettrace_bench%d" % os.getpid()
    own = lifecycle.own(fs, bench_tag, args.seconds + 600, instances=[poll_instance, tc_instance],
                        what="bench_sentinel_idle")
    pid, binary, stop_target, token_ms = start_target(args.target, workdir)
    others = {}
    armed = None
    try:
        definitions, build_id, _addresses = definitions_for(binary)
        armed = control.arm(fs, settings.Settings(
            label, pid, binary, definitions, "tv_diff", int(token_ms * 0.8 * 1e6), build_id=build_id,
            spool_dir=spool_root, textfile_dir=os.path.join(workdir, "textfile"),
            syslog_socket=os.path.join(workdir, "no-log"), latency_seconds=0, duration=args.seconds + 300))
        watcher = armed["watcher"]["pid"]
        time.sleep(2.0)     # the watcher's start (imports, arming) is not idle cost
        manifest = lifecycle.load(settings.names(label)["tag"])
        reaper = manifest.reapers[0].pid if manifest and manifest.reapers else None
        group = settings.names(label)["group"]
        hits_before = probe_hits(group)
        if "poll" in tools:
            fs.instance(poll_instance).create()
            others["poll"] = run_tree([sys.executable, "-c", POLLER, fs.instance(poll_instance).path("tracing_on")])
        if "trace-cmd" in tools:
            others["trace-cmd"] = run_tree(
                ["unshare", "-m", "sh", "-c", TRACE_CMD_WRAPPER, "sh", tc_instance, workdir, "trace-cmd", "record",
                 "-B", tc_instance, "-b", "2048", "-P", str(pid), "-o", os.path.join(workdir, "tc.dat"),
                 "-e", "sched:sched_switch", "-e", "sched:sched_wakeup", "-e", "raw_syscalls"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)
        if "bpftrace" in tools:
            others["bpftrace"] = run_tree(["bpftrace", "-e", bpftrace_program(binary)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)
            time.sleep(10.0)    # LLVM compiles the program: its start is not idle cost
            if others["bpftrace"].poll() is not None:
                print("bpftrace did not start (rc %s): left out" % others.pop("bpftrace").returncode)
        start = {"watcher": usage(watcher), "reaper": usage(reaper) if reaper else None}
        for name, proc in others.items():
            start[name] = usage(proc.pid)
        began = time.time()
        time.sleep(args.seconds)
        elapsed = time.time() - began
        end = {"watcher": usage(watcher), "reaper": usage(reaper) if reaper else None}
        for name, proc in others.items():
            end[name] = usage(proc.pid)
        hits = probe_hits(group) - hits_before
        state = json.load(open(os.path.join(spool_root, label, "state.json")))
    finally:
        for name, proc in others.items():
            if proc.poll() is None:
                proc.send_signal(2)
                proc.wait_tree()
        if armed is not None:
            control.disarm(fs, spool_root, label, os.path.join(workdir, "textfile"))
        stop_target()
        lifecycle.finish(fs, bench_tag, own.nonce)
        shutil.rmtree(workdir, ignore_errors=True)
    rows = {}
    for name in end:
        if end[name] is None or start.get(name) is None:
            continue
        cpu = end[name][0] - start[name][0]
        rows[name] = {"cpu_s": round(cpu, 6), "cpu_percent_of_one": round(100.0 * cpu / elapsed, 5),
                      "rss_kb": end[name][1], "peak_rss_kb": end[name][2], "wakeups": end[name][3] - start[name][3]}
    result = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "kernel": os.uname().release,
              "target": args.target, "seconds": round(elapsed, 1), "probe_hits": hits,
              "probe_hits_per_hour": round(hits * 3600.0 / elapsed, 1), "captures": state.get("captures_total", 0),
              "loadavg": open("/proc/loadavg").read().split()[:3], "rows": rows}
    print("%-10s %10s %12s %10s %12s %8s" % ("who", "cpu s", "% of 1 CPU", "RSS kB", "peak RSS kB", "wakeups"))
    for name, row in rows.items():
        print("%-10s %10.4f %12.5f %10d %12d %8d" % (name, row["cpu_s"], row["cpu_percent_of_one"], row["rss_kb"],
                                                     row["peak_rss_kb"], row["wakeups"]))
    watcher_cpu = max(rows["watcher"]["cpu_s"], 1e-6)
    for name in others:
        print("%s / watcher CPU: %.0fx" % (name, rows[name]["cpu_s"] / watcher_cpu))
    print("probe hits: %d in %.0f s (%s per hour); captures: %d"
          % (hits, elapsed, result["probe_hits_per_hour"], result["captures"]))
    watcher = rows["watcher"]
    window = "armed and idle, %.0f min on %s" % (elapsed / 60.0, args.target)
    figures = [{"measure": "watcher CPU, %s (%% of one CPU)" % window, "ours": watcher["cpu_percent_of_one"],
                "unit": "%", "target": "<= 0.1"},
               {"measure": "watcher RSS, %s" % window, "ours": watcher["peak_rss_kb"], "unit": "kB",
                "target": "bounded"},
               {"measure": "watcher wakeups, %s" % window, "ours": watcher["wakeups"], "unit": "wakeups"},
               {"measure": "probe hits per hour on a healthy %s" % args.target, "ours": result["probe_hits_per_hour"],
                "unit": "hits/h"}]
    labels = {"poll": "a loop reading tracing_on every 0.1 s (capture's wait)",
              "trace-cmd": "trace-cmd record of the same events and pid", "bpftrace": "bpftrace uprobe at the function"}
    for name in others:
        figures.append({"measure": "CPU while waiting for the stall, %s" % window,
                        "ours": max(watcher["cpu_s"], 1e-6), "other": max(rows[name]["cpu_s"], 1e-6),
                        "tool": labels[name], "unit": "s"})
    record("sentinel_idle", figures, **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
