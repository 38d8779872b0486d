"""Benchmark the sched_latency collector side by side with ``trace-cmd record`` (and the previous collector).

For each load step a paced ping-pong load (benchmarks/sched_load.c) runs while
three tracers record in their own private instances during the same window:

* ours: ``sched_collector.collect`` (raw pages copied with splice during the
  window, decoded and analysed after it);
* trace-cmd: ``trace-cmd record -B <instance>`` on the same events as ours
  (splice of raw pages to a file, no analysis);
* baseline: the collector of ``--baseline`` (a git ref; default the commit
  before issue 11), which decoded and analysed during the window.

Per step it prints the events each saw and lost, CPU seconds *during the
window* per wall second (ours: the copier's own os.times; trace-cmd: rusage of
its process tree) and CPU microseconds per event for the whole run, decoding
and analysis included (the collectors' own os.times from setup to result).
Steps repeat ``--repeat`` times; the table shows the median of each number.
The machine may be loaded by others: compare within a row, not across runs.

    sudo .venv/bin/python benchmarks/bench_sched_latency.py [--seconds 5] [--steps 10000,20000] [--repeat 3]

Results are also written to benchmarks/results/sched_latency.json.

This machine's sandbox refuses writes to /proc/sys/kernel/ftrace_enabled and
opening the function-tracer files, which trace-cmd touches on start even when
only events are recorded; it is run in a private mount namespace where those
files are bind-mounted placeholders (ftrace_enabled already reads 1, so
nothing changes).  Both collectors run at their documented default nice -10
during the window; trace-cmd at its default priority.
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
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import Tracefs  # noqa: E402

# Seconds the three instances may outlive the window before their run's deadline.
RUN_MARGIN = 120
# The baseline: the last commit before issue 11 changed the collector.
DEFAULT_BASELINE = "d1ac691"

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


def run_tree(cmd, **kwargs):
    """Start ``cmd``; return a handle whose wait() gives (rc, cpu seconds of the whole tree)."""
    proc = subprocess.Popen(cmd, preexec_fn=die_with_parent, **kwargs)

    def wait():
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        return proc.returncode, usage.ru_utime + usage.ru_stime
    proc.wait_tree = wait
    return proc


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


def collector_row(result, seconds):
    wall = result["window"]["duration_s"]
    counts = result["event_counts"]
    col = result["collector"]
    window_cpu = col.get("window_cpu_seconds", col["cpu_seconds"])  # the baseline analysed in the window
    return {
        "events_per_s": round(result["events"]["processed"] / wall),
        "lost": result["events"]["lost"],
        "window_cpu_per_wall_s": round(window_cpu / wall, 4),
        "cpu_seconds": col["cpu_seconds"],
        "cpu_us_per_event": round(col["cpu_seconds"] * 1e6 / max(1, result["events"]["processed"]), 3),
        "cpu_us_per_switch": round(col["cpu_seconds"] * 1e6 / max(1, counts.get("sched_switch", 0)), 3),
        "p99_us": result["p99_us"],
        "waits": result["waits"],
        "unmeasured": result.get("unmeasured"),
    }


def step(load_binary, rounds, seconds, workdir, buffer_kb, baseline_collections, events):
    tag = "fleettrace_bench_%d_%d" % (os.getpid(), rounds)
    names = {"ours": tag + "_ours", "baseline": tag + "_base", "tc": tag + "_tc"}
    dat = os.path.join(workdir, "%d.dat" % rounds)
    load = subprocess.Popen([load_binary, "2", str(rounds), str(seconds + 8)], start_new_session=True)
    procs = {}
    # The three instances are one run of this process: SIGKILLed, its reaper removes them.
    run = lifecycle.own(Tracefs(), tag, seconds + RUN_MARGIN, instances=list(names.values()), what="benchmark")
    try:
        time.sleep(1.0)  # load at its pace before the windows open
        for who, path in (("ours", COLLECTIONS), ("baseline", baseline_collections)):
            if path:
                procs[who] = run_tree([sys.executable, "-c", COLLECTOR % (path, seconds, names[who], buffer_kb)],
                                      stdout=subprocess.PIPE, universal_newlines=True)
        tc_cmd = ["unshare", "-m", "sh", "-c", TRACE_CMD_WRAPPER, "sh", names["tc"], workdir,
                  "trace-cmd", "record", "-B", names["tc"], "-b", str(buffer_kb), "-o", dat]
        for event in events:
            tc_cmd += ["-e", "sched:%s" % event]
        tc_cmd += ["sleep", str(seconds)]
        tc = run_tree(tc_cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, cwd=workdir)
        tc_out = tc.stdout.read()
        tc_rc, tc_cpu = tc.wait_tree()
        outputs = {}
        for who, proc in procs.items():
            out = proc.stdout.read()
            rc, _cpu = proc.wait_tree()
            if rc != 0:
                raise SystemExit("the %s collector failed (rc %d): %s" % (who, rc, out))
            outputs[who] = json.loads(out.strip().splitlines()[-1])
    finally:
        os.killpg(load.pid, signal.SIGKILL)
        load.wait()
        for name in names.values():
            remove_instance(name)
        lifecycle.finish(Tracefs(), tag, run.nonce)
    tc_events, tc_lost = count_trace_cmd(dat, events)
    overrun = sum(int(n) for n in re.findall(r"overrun:\s*(\d+)", tc_out))
    row = {"load_rounds_per_s": rounds, "trace_cmd_rc": tc_rc,
           "trace_cmd_events_per_s": round(tc_events / seconds) if tc_events is not None else None,
           "trace_cmd_lost": max(tc_lost, overrun),
           "trace_cmd_cpu_per_wall_s": round(tc_cpu / seconds, 4)}
    for who, result in outputs.items():
        row[who] = collector_row(result, seconds)
    if row["trace_cmd_cpu_per_wall_s"]:
        row["window_cpu_ratio_ours_vs_trace_cmd"] = round(
            row["ours"]["window_cpu_per_wall_s"] / row["trace_cmd_cpu_per_wall_s"], 2)
    if "baseline" in row:
        row["cpu_per_switch_ratio_baseline_vs_ours"] = round(
            row["baseline"]["cpu_us_per_switch"] / row["ours"]["cpu_us_per_switch"], 2)
    try:
        os.unlink(dat)
    except OSError:
        pass
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
            out[key] = med([r[key] for r in rows])
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


def count_trace_cmd(dat, events):
    """Events in a trace-cmd data file and the LOST markers trace-cmd report prints."""
    if not os.path.exists(dat):
        return None, 0
    wanted = re.compile(r"\b(%s):" % "|".join(events))
    proc = subprocess.run(["trace-cmd", "report", "-i", dat], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True, check=False)
    events = 0
    lost = 0
    for line in proc.stdout.splitlines():
        if wanted.search(line):
            events += 1
        match = re.search(r"LOST (\d+) EVENTS", line)
        if match:
            lost += int(match.group(1))
    return events, lost


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--steps", default="10000,20000,30000,40000",
                        help="load steps in ping-pong round trips per second (about 5 events each)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--buffer-kb", type=int, default=4096)
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git ref of the collector to compare; '' for none")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (tracefs)")
    for tool in ("trace-cmd", "unshare", "gcc", "git"):
        if not shutil.which(tool):
            raise SystemExit("needs %s (scripts/setup.sh installs it)" % tool)
    sys.path.insert(0, COLLECTIONS)
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched import collector as sched_collector
    workdir = tempfile.mkdtemp(prefix="fleettrace-bench-")
    try:
        load_binary = os.path.join(workdir, "sched_load")
        subprocess.run(["gcc", "-O2", "-pthread", "-o", load_binary, os.path.join(REPO, "benchmarks", "sched_load.c")],
                       check=True)
        baseline = baseline_tree(args.baseline, workdir)
        rows = []
        header = ("load r/s", "ours ev/s", "lost", "win cpu/s", "us/ev", "us/sw", "tc ev/s", "tc lost",
                  "tc cpu/s", "ratio", "base ev/s", "lost", "cpu/s", "us/ev", "us/sw", "base/ours")
        print("%8s | %9s %6s %9s %6s %6s | %9s %7s %8s %5s | %9s %6s %6s %6s %6s %9s" % header)
        for rounds in [int(s) for s in args.steps.split(",")]:
            runs = [step(load_binary, rounds, args.seconds, workdir, args.buffer_kb, baseline,
                         sched_collector.EVENTS) for _run in range(args.repeat)]
            row = median_row(runs)
            row["runs"] = runs
            rows.append(row)
            ours, base = row["ours"], row.get("baseline") or {}
            print("%8d | %9d %6d %9.4f %6.2f %6.2f | %9s %7s %8.4f %5s | %9s %6s %6s %6s %6s %9s" % (
                rounds, ours["events_per_s"], ours["lost"], ours["window_cpu_per_wall_s"], ours["cpu_us_per_event"],
                ours["cpu_us_per_switch"], row["trace_cmd_events_per_s"], row["trace_cmd_lost"],
                row["trace_cmd_cpu_per_wall_s"], row.get("window_cpu_ratio_ours_vs_trace_cmd"),
                base.get("events_per_s"), base.get("lost"), base.get("window_cpu_per_wall_s"),
                base.get("cpu_us_per_event"), base.get("cpu_us_per_switch"),
                row.get("cpu_per_switch_ratio_baseline_vs_ours")))
            sys.stdout.flush()
        summary = {"steps": rows, "seconds_per_step": args.seconds, "repeat": args.repeat,
                   "baseline": args.baseline, "cpus": os.cpu_count(), "kernel": os.uname()[2],
                   "loadavg_at_end": os.getloadavg()}
        out_dir = os.path.join(REPO, "benchmarks", "results")
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "sched_latency.json"), "w") as handle:
            json.dump(summary, handle, indent=2)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
