"""Cost per ``sched_switch`` of the audit's collector, side by side with perf, trace-cmd and bpftrace.

For each load step a paced ping-pong load (benchmarks/sched_load.c) runs while
these tools record the same window at once, each in its own buffer:

* ours: ``sched_collector.collect`` in a Python process of its own, measured
  whole: interpreter start, imports, setup, the window (raw pages copied with
  splice), decoding, analysis, cleanup and the result printed as JSON;
* perf: ``perf sched record -- sleep N`` (perf's own event set), then
  ``perf sched latency`` on its file: what a user runs for the same question;
* trace-cmd: ``trace-cmd record`` on our events in an instance of its own, then
  ``trace-cmd report`` of its file (to /dev/null);
* bpftrace (when installed): benchmarks/runqlat_preempt.bt, run-queue latency
  per thread with preemptions counted (bpftrace's runqlat.bt misses them here);
* ``--baseline REF``: the collector as of a git ref (none by default).

Per tool it prints the events and ``sched_switch`` events it recorded, what it
lost, its CPU *during the window* per wall second and its **whole CPU per
switch it recorded** (recording and post-processing, every process of the
tool, from rusage), then ours divided by each.  The kernel's own cost of
writing events (ftrace ring buffer, perf buffer, BPF program) is charged to
the traced tasks and is in no column: every tool pays it for its events.
Steps repeat ``--repeat`` times; the table shows the median of each number.
The machine may be loaded by others: compare within a row, not across runs.

    sudo .venv/bin/python benchmarks/bench_sched_latency.py [--seconds 5] [--steps 20000,60000] [--repeat 3]

Results: benchmarks/results/sched_latency.json (with the date, host, kernel and load;
``benchmarks/bench_results.py`` prints its figures with the other benchmarks').

This machine's sandbox refuses writes to /proc/sys/kernel/ftrace_enabled and
opening the function-tracer files, which trace-cmd touches on start even when
only events are recorded; it is run in a private mount namespace where those
files are bind-mounted placeholders (ftrace_enabled already reads 1, so
nothing changes).  Our collector runs at its documented default nice -10
during the window; the other tools at their default priority.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, ".cache", "collections")  # made by scripts/setup.sh
sys.path.insert(0, COLLECTIONS)
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import lifecycle  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_results  # noqa: E402
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import Tracefs  # noqa: E402

# Seconds the instances may outlive the window before their run's deadline.
RUN_MARGIN = 120
BPFTRACE_SCRIPT = os.path.join(REPO, "benchmarks", "runqlat_preempt.bt")
TOOLS = ("perf", "trace-cmd", "bpftrace")
LOAD_LEAD_S = 1.0   # the load runs this long before the windows open

COLLECTOR = r"""
import json, os, sys
sys.path.insert(0, %r)
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import core as tracefs
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched import collector as sched_collector
r = sched_collector.collect(tracefs.Tracefs(), %f, instance_name=%r, buffer_size_kb=%d)
print(json.dumps({"events": r["events"], "window": r["window"], "collector": r["collector"],
                  "event_counts": r["event_counts"], "unmeasured": r.get("unmeasured_waits"),
                  "p99_us": r["latency"]["all"]["p99_us"], "waits": r["latency"]["all"]["count"]}))
"""

TRACE_CMD_WRAPPER = r"""
set -e
inst=/sys/kernel/tracing/instances/$1; shift
dir=$1; shift
echo 1 > "$dir/ftrace_enabled"
mount --bind "$dir/ftrace_enabled" /proc/sys/kernel/ftrace_enabled
mkdir -p "$inst"
for f in set_ftrace_pid set_ftrace_filter set_ftrace_notrace set_graph_function set_graph_notrace set_ftrace_notrace_pid; do
  if [ -e "$inst/$f" ]; then : > "$dir/$f"; mount --bind "$dir/$f" "$inst/$f"; fi
done
exec "$@"
"""


def die_with_parent():
    """In the child: SIGINT when the benchmark dies, so a killed run leaves no tracer running.

    SIGINT, not SIGKILL: trace-cmd then stops its per-CPU recorders itself (killed outright, it
    leaves them reading the instance forever) and a collector's ``finally`` removes its instance.
    """
    import ctypes
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGINT)
    # A shell starts a background job (`make bench &`, nohup) with SIGINT ignored, and an ignored
    # signal stays ignored across exec: the tools' stop signal would do nothing.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_tree(cmd, **kwargs):
    """Start ``cmd``; return a handle whose wait_tree() gives (rc, cpu seconds of the whole tree)."""
    proc = subprocess.Popen(cmd, preexec_fn=die_with_parent, **kwargs)

    def wait(timeout=120):
        """Reap it; a tool still running ``timeout`` seconds later is killed (a benchmark never hangs)."""
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                print("%s did not end %d s after it was told to: killed" % (os.path.basename(cmd[0]), timeout))
                proc.kill()
                _pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        return proc.returncode, usage.ru_utime + usage.ru_stime
    proc.wait_tree = wait
    return proc


def run_timed(cmd, **kwargs):
    """Run ``cmd`` to its end: (rc, stdout text, cpu seconds of its tree)."""
    proc = run_tree(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, **kwargs)
    out = proc.stdout.read()
    rc, cpu = proc.wait_tree()
    return rc, out, cpu


def remove_instance(name):
    """Remove this benchmark's instance (trace-cmd's readers may take a moment to let go)."""
    path = "/sys/kernel/tracing/instances/%s" % name
    for _attempt in range(100):
        if not os.path.isdir(path):
            return
        try:
            with open(os.path.join(path, "set_event"), "w") as handle:
                handle.write("")
            os.rmdir(path)
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("could not remove %s" % path)


def collector_row(result, tree_cpu):
    wall = result["window"]["duration_s"]
    switches = max(1, result["event_counts"].get("sched_switch", 0))
    col = result["collector"]
    window_cpu = col.get("window_cpu_seconds", col["cpu_seconds"])  # the baseline analysed in the window
    return {
        "events_per_s": round(result["events"]["processed"] / wall),
        "switches": switches,
        "lost": result["events"]["lost"],
        "window_cpu_per_wall_s": round(window_cpu / wall, 4),
        "whole_cpu_s": round(tree_cpu, 3),
        "us_per_switch": round(tree_cpu * 1e6 / switches, 3),
        "collect_us_per_switch": round(col["cpu_seconds"] * 1e6 / switches, 3),
        "p99_us": result["p99_us"],
        "waits": result["waits"],
        "unmeasured": result.get("unmeasured"),
    }


def tool_row(events, switches, lost, window_cpu, post_cpu, seconds):
    return {"events_per_s": round(events / seconds) if events is not None else None,
            "switches": switches, "lost": lost,
            "window_cpu_per_wall_s": round(window_cpu / seconds, 4),
            "whole_cpu_s": round(window_cpu + post_cpu, 3),
            "us_per_switch": round((window_cpu + post_cpu) * 1e6 / switches, 3) if switches else None}


def start_tools(tools, names, seconds, workdir, buffer_kb, events):
    """Start every other tool on the same window; {tool: (process, files)}."""
    started = {}
    if "trace-cmd" in tools:
        dat = os.path.join(workdir, "tc.dat")
        cmd = ["unshare", "-m", "sh", "-c", TRACE_CMD_WRAPPER, "sh", names["tc"], workdir,
               "trace-cmd", "record", "-B", names["tc"], "-b", str(buffer_kb), "-o", dat]
        for event in events:
            cmd += ["-e", "sched:%s" % event]
        started["trace-cmd"] = (run_tree(cmd + ["sleep", str(seconds)], stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, universal_newlines=True, cwd=workdir), dat)
    if "perf" in tools:
        data = os.path.join(workdir, "perf.data")
        started["perf"] = (run_tree(["perf", "sched", "record", "-o", data, "--", "sleep", str(seconds)],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                                    cwd=workdir), data)
    if "bpftrace" in tools:
        started["bpftrace"] = (run_tree(["bpftrace", BPFTRACE_SCRIPT, "-c", "%s %s" % (shutil.which("sleep"), seconds)],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                                        cwd=workdir), None)
    return started


def wait_tool(proc):
    """A tool's window has ended: (rc, its output, its CPU seconds)."""
    out = proc.stdout.read()
    rc, cpu = proc.wait_tree()
    return rc, out, cpu


def finish_tool(tool, recorded, path, seconds, events):
    """A tool's row: its window (``wait_tool``'s answer), then its post-processing, timed."""
    rc, out, window_cpu = recorded
    if rc != 0:
        raise SystemExit("%s failed (rc %d): %s" % (tool, rc, out[-2000:]))
    if tool == "trace-cmd":
        post_rc, report, post_cpu = run_timed(["trace-cmd", "report", "-i", path])
        counted = count_trace_cmd(report, events)
        overrun = sum(int(n) for n in re.findall(r"overrun:\s*(\d+)", out))
        return tool_row(counted["events"], counted["switches"], max(counted["lost"], overrun), window_cpu,
                        post_cpu, seconds)
    if tool == "perf":
        post_rc, latency, post_cpu = run_timed(["perf", "sched", "latency", "-i", path])
        if post_rc != 0:
            raise SystemExit("perf sched latency failed: %s" % latency[-2000:])
        stats = perf_stats(path)
        return tool_row(stats["events"], stats["switches"], stats["lost"], window_cpu, post_cpu, seconds)
    counts = {name: int(n) for name, n in re.findall(r"^@(\w+): (\d+)$", out, re.M)}
    lost = sum(int(n) for n in re.findall(r"Lost (\d+) events", out))
    return tool_row(counts.get("switches", 0) + counts.get("enqueues", 0), counts.get("switches"), lost,
                    window_cpu, 0.0, seconds)


def perf_stats(path):
    """Events, sched_switch events and lost events of a perf data file (perf report --stats)."""
    proc = subprocess.run(["perf", "report", "--stats", "-i", path], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, universal_newlines=True, check=False)
    text = proc.stdout
    sample = re.search(r"^\s*SAMPLE events:\s*(\d+)", text, re.M)
    switch = re.search(r"sched:sched_switch stats:\s*\n\s*SAMPLE events:\s*(\d+)", text)
    lost = sum(int(n) for n in re.findall(r"^\s*LOST(?:_SAMPLES)? events:\s*(\d+)", text, re.M))
    return {"events": int(sample.group(1)) if sample else None,
            "switches": int(switch.group(1)) if switch else None, "lost": lost}


def count_trace_cmd(report, events):
    """Events, switches and the LOST markers in ``trace-cmd report`` output."""
    wanted = re.compile(r"\b(%s):" % "|".join(events))
    found = {"events": 0, "switches": 0, "lost": 0}
    for line in report.splitlines():
        match = wanted.search(line)
        if match:
            found["events"] += 1
            found["switches"] += match.group(1) == "sched_switch"
        lost = re.search(r"LOST (\d+) EVENTS", line)
        if lost:
            found["lost"] += int(lost.group(1))
    return found


def step(load_binary, rounds, seconds, workdir, buffer_kb, baseline_collections, events, tools):
    tag = "fleettrace_bench_%d_%d" % (os.getpid(), rounds)
    names = {"ours": tag + "_ours", "baseline": tag + "_base", "tc": tag + "_tc"}
    # The load stops when the windows end: every tool's post-processing then runs on the same machine.
    load = subprocess.Popen([load_binary, "2", str(rounds), str(int(round(LOAD_LEAD_S + seconds)))],
                            start_new_session=True)
    procs = {}
    started = {}
    # The instances are one run of this process: SIGKILLed, its reaper removes them.
    run = lifecycle.own(Tracefs(), tag, seconds + RUN_MARGIN, instances=list(names.values()), what="benchmark")
    rows = {}
    try:
        time.sleep(LOAD_LEAD_S)  # load at its pace before the windows open
        for who, path in (("ours", COLLECTIONS), ("baseline", baseline_collections)):
            if path:
                procs[who] = run_tree([sys.executable, "-c", COLLECTOR % (path, seconds, names[who], buffer_kb)],
                                      stdout=subprocess.PIPE, universal_newlines=True)
        started = start_tools(tools, names, seconds, workdir, buffer_kb, events)
        results = {}
        for who, proc in procs.items():
            out = proc.stdout.read()
            rc, cpu = proc.wait_tree()
            if rc != 0:
                raise SystemExit("the %s collector failed (rc %d): %s" % (who, rc, out))
            results[who] = (json.loads(out.strip().splitlines()[-1]), cpu)
        recorded = {tool: wait_tool(proc) for tool, (proc, _path) in started.items()}
    finally:
        os.killpg(load.pid, signal.SIGKILL)
        load.wait()
        for name in names.values():
            remove_instance(name)
        lifecycle.finish(Tracefs(), tag, run.nonce)
    # Post-processing after the window, one tool at a time (the load has stopped: nobody competes).
    for tool, (_proc, path) in started.items():
        rows[tool] = finish_tool(tool, recorded[tool], path, seconds, events)
        if path and os.path.exists(path):
            os.unlink(path)
    row = {"load_rounds_per_s": rounds}
    for who, (result, cpu) in results.items():
        row[who] = collector_row(result, cpu)
    row.update(rows)
    ours = row["ours"]
    for tool in list(rows) + (["baseline"] if "baseline" in row else []):
        other = row[tool]
        if other.get("us_per_switch"):
            row["per_switch_ours_vs_%s" % tool] = round(ours["us_per_switch"] / other["us_per_switch"], 2)
        if other.get("window_cpu_per_wall_s"):
            row["window_ours_vs_%s" % tool] = round(ours["window_cpu_per_wall_s"] / other["window_cpu_per_wall_s"], 2)
    return row


def median_row(rows):
    """The median of every number over repeated runs of one step."""
    def med(values):
        values = sorted(v for v in values if v is not None)
        return values[len(values) // 2] if values else None
    out = {}
    for key, value in rows[0].items():
        if isinstance(value, dict):
            out[key] = median_row([r[key] for r in rows])
        elif isinstance(value, (int, float)):
            out[key] = med([r.get(key) for r in rows])
        else:
            out[key] = value
    return out


def baseline_tree(ref, workdir):
    """The collection as of ``ref`` (git archive of plugins/) for side-by-side runs; None if no ref."""
    if not ref:
        return None
    root = os.path.join(workdir, "baseline")
    target = os.path.join(root, "ansible_collections", "fleettrace", "tracefs")
    os.makedirs(target)
    archive = subprocess.run(["git", "-C", REPO, "archive", ref, "plugins"], stdout=subprocess.PIPE, check=True)
    subprocess.run(["tar", "-x", "-C", target], input=archive.stdout, check=True)
    return root


TOOL_NAMES = {"perf": "perf sched record + perf sched latency", "trace-cmd": "trace-cmd record + trace-cmd report",
              "bpftrace": "bpftrace runqlat_preempt.bt (user space only)", "baseline": "our collector at --baseline"}


def figures(rows, tools):
    """The ratios of each step for bench_results (medians of the repeats)."""
    found = []
    for row in rows:
        ours = row["ours"]
        rate = "%dk events/s" % round(ours["events_per_s"] / 1000.0)
        for tool in tools + (["baseline"] if "baseline" in row else []):
            other = row.get(tool) or {}
            # The ratio is the median of the same-run ratios (not the ratio of the medians).
            found.append({"measure": "whole CPU per sched_switch, %s" % rate, "ours": ours["us_per_switch"],
                          "other": other.get("us_per_switch"), "unit": "us", "tool": TOOL_NAMES[tool],
                          "ratio": row.get("per_switch_ours_vs_%s" % tool), "target": "<= 1" if tool == "perf" else ""})
        for tool in ("perf", "trace-cmd"):
            if tool in row:
                found.append({"measure": "events lost, %s" % rate, "ours": ours["lost"], "other": row[tool]["lost"],
                              "unit": "", "tool": TOOL_NAMES[tool], "target": "0 if 0"})
        if "trace-cmd" in row:
            found.append({"measure": "CPU during the window per wall second, %s" % rate,
                          "ours": ours["window_cpu_per_wall_s"], "other": row["trace-cmd"]["window_cpu_per_wall_s"],
                          "ratio": row.get("window_ours_vs_trace-cmd"), "unit": "s/s", "tool": "trace-cmd record",
                          "target": "<= 2"})
    return found


def print_row(row, tools):
    ours = row["ours"]
    cells = ["%7d" % row["load_rounds_per_s"], "%7s" % ours["events_per_s"], "%7s" % ours["switches"],
             "%5s" % ours["lost"], "%6.3f" % ours["window_cpu_per_wall_s"], "%6.2f" % ours["us_per_switch"]]
    for tool in tools + (["baseline"] if "baseline" in row else []):
        other = row.get(tool) or {}
        cells += ["|", "%7s" % other.get("switches"), "%5s" % other.get("lost"),
                  "%6s" % other.get("window_cpu_per_wall_s"), "%6s" % other.get("us_per_switch"),
                  "%5s" % row.get("per_switch_ours_vs_%s" % tool), "%5s" % row.get("window_ours_vs_%s" % tool)]
    print(" ".join(cells))
    sys.stdout.flush()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--steps", default="20000,60000",
                        help="load steps in ping-pong round trips per second (about 3.5 events each)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--buffer-kb", type=int, default=4096)
    parser.add_argument("--tools", default=",".join(TOOLS), help="the other tools to run (those installed)")
    parser.add_argument("--baseline", default="", help="git ref of an older collector to compare too")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (tracefs)")
    for tool in ("unshare", "gcc", "git"):
        if not shutil.which(tool):
            raise SystemExit("needs %s (scripts/setup.sh installs it)" % tool)
    tools = [t for t in args.tools.split(",") if t and shutil.which(t)]
    skipped = [t for t in args.tools.split(",") if t and t not in tools]
    if skipped:
        print("not installed, left out: %s" % ", ".join(skipped))
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched import collector as sched_collector
    workdir = tempfile.mkdtemp(prefix="fleettrace-bench-")
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    load_before = os.getloadavg()
    try:
        load_binary = os.path.join(workdir, "sched_load")
        subprocess.run(["gcc", "-O2", "-pthread", "-o", load_binary, os.path.join(REPO, "benchmarks", "sched_load.c")],
                       check=True)
        baseline = baseline_tree(args.baseline, workdir)
        print("%s, %s, %d CPUs, load average %.1f before; whole CPU per switch each tool recorded; ratio = ours / tool"
              % (started, os.uname()[2], os.cpu_count(), load_before[0]))
        head = ["%7s" % "load r/s", "%7s" % "ev/s", "%7s" % "switch", "%5s" % "lost", "%6s" % "win/s", "%6s" % "us/sw"]
        for tool in tools + (["baseline"] if baseline else []):
            head += ["|", "%-7s" % tool[:7], "%5s" % "lost", "%6s" % "win/s", "%6s" % "us/sw", "%5s" % "ratio",
                     "%5s" % "win"]
        print(" ".join(head))
        rows = []
        for rounds in [int(s) for s in args.steps.split(",")]:
            runs = [step(load_binary, rounds, args.seconds, workdir, args.buffer_kb, baseline,
                         sched_collector.EVENTS, tools) for _run in range(args.repeat)]
            row = median_row(runs)
            row["runs"] = runs
            rows.append(row)
            print_row(row, tools)
        bench_results.record("sched_latency", figures(rows, tools), loadavg_before=load_before, steps=rows,
                             seconds_per_step=args.seconds, repeat=args.repeat, tools=tools,
                             baseline=args.baseline)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
