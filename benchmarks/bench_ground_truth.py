"""The audit next to a program that measures its own wakeup latency, and next to ``perf sched latency``.

Two questions, on a paced ping-pong load (benchmarks/sched_load.c):

1. **Observer effect**: how much does running the audit add to the p99 wakeup
   latency a timer loop measures itself (tests/programs/sched/wakeup_truth.c,
   1 ms period)?  Conditions, interleaved round by round so that the other
   agents' load on this machine hits all of them alike: nothing traced, our
   collector, ``trace-cmd record`` on the same events.  The table shows the
   median over rounds of the program's p50/p99/max per condition.
2. **Same window, three views**: our collector (watching the program) and
   ``perf sched record`` run at once; the program's own latencies, our
   run-queue waits of its thread and perf sched latency's row for it are
   printed side by side (docs/sched-audit.md explains each difference).

    sudo .venv/bin/python benchmarks/bench_ground_truth.py [--seconds 5] [--rounds 3] [--load 20000]

Results: benchmarks/results/ground_truth.json.
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
COLLECTIONS = os.path.join(REPO, ".cache", "collections")
sys.path.insert(0, os.path.join(REPO, "benchmarks"))
sys.path.insert(0, COLLECTIONS)
import bench_sched_latency as bench  # noqa: E402  (the trace-cmd sandbox wrapper)
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import lifecycle  # noqa: E402
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import Tracefs  # noqa: E402

PERIOD_US = 1000
# trace-cmd's instance outlives its window by this much at most (start, its own teardown, ours).
TRACER_MARGIN = 60


def percentile(values, percent):
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * int(round(percent * 10)) // 1000))
    return ordered[rank - 1]


def truth_stats(path, window=None):
    with open(path) as handle:
        samples = [tuple(int(v) for v in line.split()) for line in handle if line.strip()]
    if window:
        samples = [s for s in samples if window[0] <= s[0] and s[1] <= window[1]]
    lat = [(a - i) / 1000.0 for i, a in samples]
    return {"samples": len(lat), "p50_us": percentile(lat, 50), "p99_us": percentile(lat, 99),
            "max_us": max(lat) if lat else None}


def start_truth(binary, seconds, out):
    proc = subprocess.Popen([binary, str(PERIOD_US), str(int(seconds * 1e6 / PERIOD_US)), out],
                            stdout=subprocess.PIPE, universal_newlines=True)
    return proc, int(proc.stdout.readline())


def finish_truth(proc):
    proc.stdout.read()
    proc.wait()


def ours_cmd(seconds, name, watch_pid=None):
    code = ("import json, sys\nsys.path.insert(0, %r)\n"
            "from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import core as tracefs\n"
            "from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import lifecycle\n"
            "from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched import collector as c\n"
            "fs = tracefs.Tracefs()\n"
            "# as the sched_latency module does: killed, its reaper removes the instance\n"
            "with lifecycle.module_run(fs, %r, %f, instances=[%r]):\n"
            "    r = c.collect(fs, %f, instance_name=%r, watch_pids=%r, stack_traces=False, worst_count=50)\n"
            "print(json.dumps(r))\n") % (COLLECTIONS, name, seconds, name, seconds, name,
                                         [watch_pid] if watch_pid else [])
    return [sys.executable, "-c", code]


def observer_round(bins, seconds, load_rounds, workdir, condition, index):
    out = os.path.join(workdir, "truth-%s-%d.txt" % (condition, index))
    name = "fleettrace_gt_%d_%s_%d" % (os.getpid(), condition, index)
    load = subprocess.Popen([bins["load"], "2", str(load_rounds), str(seconds + 10)], start_new_session=True)
    tracer = run = None
    try:
        time.sleep(1.0)
        if condition == "trace-cmd":
            # trace-cmd's instance is a run of this process: SIGKILLed, its reaper removes it.
            run = lifecycle.own(Tracefs(), name, seconds + TRACER_MARGIN, instances=[name], what="benchmark")
        if condition == "ours":
            tracer = subprocess.Popen(ours_cmd(seconds + 1, name), stdout=subprocess.PIPE, universal_newlines=True)
        elif condition == "trace-cmd":
            cmd = ["unshare", "-m", "sh", "-c", bench.TRACE_CMD_WRAPPER, "sh", name, workdir, "trace-cmd", "record",
                   "-B", name, "-o", os.path.join(workdir, "gt.dat")]
            for event in EVENTS:
                cmd += ["-e", "sched:%s" % event]
            tracer = subprocess.Popen(cmd + ["sleep", str(seconds + 1)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
        time.sleep(0.5 if tracer else 0)
        truth, _tid = start_truth(bins["truth"], seconds, out)
        finish_truth(truth)
        if tracer:
            tracer.communicate()
    finally:
        os.killpg(load.pid, signal.SIGKILL)
        load.wait()
        bench.remove_instance(name)
        if run is not None:
            lifecycle.finish(Tracefs(), name, run.nonce)
    return truth_stats(out)


def perf_row(data, tid):
    """perf sched latency's row for ``tid``: avg and max delay in us."""
    proc = subprocess.run(["perf", "sched", "latency", "-i", data, "-p"], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True, check=False)
    for line in proc.stdout.splitlines():
        if re.search(r":%d\s*\|" % tid, line):
            switches = re.search(r"\|\s*(\d+)\s*\|\s*avg:", line)
            avg = re.search(r"avg:\s*([\d.]+) ms", line)
            most = re.search(r"max:\s*([\d.]+) ms", line)
            return {"switches": int(switches.group(1)) if switches else None,
                    "avg_us": float(avg.group(1)) * 1000 if avg else None,
                    "max_us": float(most.group(1)) * 1000 if most else None}
    return None


def same_window(bins, seconds, load_rounds, workdir):
    out = os.path.join(workdir, "truth-same.txt")
    data = os.path.join(workdir, "perf-sched.data")
    name = "fleettrace_gt_%d_same" % os.getpid()
    load = subprocess.Popen([bins["load"], "2", str(load_rounds), str(seconds + 15)], start_new_session=True)
    try:
        time.sleep(1.0)
        truth, tid = start_truth(bins["truth"], seconds + 6, out)
        ours = subprocess.Popen(ours_cmd(seconds, name, tid), stdout=subprocess.PIPE, universal_newlines=True)
        perf = subprocess.Popen(["perf", "sched", "record", "-o", data, "--", "sleep", str(seconds)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        result = json.loads(ours.communicate()[0].strip().splitlines()[-1])
        perf.wait()
        truth.send_signal(signal.SIGTERM)
        finish_truth(truth)
    finally:
        os.killpg(load.pid, signal.SIGKILL)
        load.wait()
        bench.remove_instance(name)
    task = [t for t in result["tasks"] if t["pid"] == tid][0]
    window = (result["first_ns"], result["last_ns"])
    return {"truth": truth_stats(out, window),
            "ours": {"waits": task["runqueue"]["count"], "p50_us": task["runqueue"]["p50_us"],
                     "p99_us": task["runqueue"]["p99_us"], "max_us": task["runqueue"]["max_us"],
                     "host_unmeasured": result["unmeasured_by_reason"], "events_lost": result["events"]["lost"]},
            "perf_sched_latency": perf_row(data, tid)}


EVENTS = ("sched_wakeup", "sched_wakeup_new", "sched_switch", "sched_migrate_task")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--load", type=int, default=20000, help="ping-pong round trips per second")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (tracefs)")
    for tool in ("trace-cmd", "perf", "gcc", "unshare"):
        if not shutil.which(tool):
            raise SystemExit("needs %s (scripts/setup.sh installs it)" % tool)
    workdir = tempfile.mkdtemp(prefix="fleettrace-gt-")
    try:
        bins = {"load": os.path.join(workdir, "sched_load"), "truth": os.path.join(workdir, "wakeup_truth")}
        subprocess.run(["gcc", "-O2", "-pthread", "-o", bins["load"], os.path.join(REPO, "benchmarks", "sched_load.c")],
                       check=True)
        subprocess.run(["gcc", "-O2", "-o", bins["truth"],
                        os.path.join(REPO, "tests", "programs", "sched", "wakeup_truth.c")], check=True)
        conditions = ("none", "ours", "trace-cmd")
        runs = {c: [] for c in conditions}
        for index in range(args.rounds):
            order = conditions[index % 3:] + conditions[:index % 3]
            for condition in order:
                runs[condition].append(observer_round(bins, args.seconds, args.load, workdir, condition, index))
        table = {}
        print("%-10s %8s %10s %10s %10s" % ("condition", "samples", "p50 us", "p99 us", "max us"))
        for condition in conditions:
            rows = runs[condition]
            table[condition] = {key: percentile([r[key] for r in rows], 50)
                                for key in ("samples", "p50_us", "p99_us", "max_us")}
            print("%-10s %8d %10.1f %10.1f %10.1f" % ((condition,) + tuple(table[condition][k] for k in (
                "samples", "p50_us", "p99_us", "max_us"))))
        for condition in ("ours", "trace-cmd"):
            table[condition]["p99_added_us"] = round(table[condition]["p99_us"] - table["none"]["p99_us"], 1)
            print("p99 added by %s: %+.1f us (median of %d rounds)" % (
                condition, table[condition]["p99_added_us"], args.rounds))
        same = same_window(bins, args.seconds, args.load, workdir)
        print("same window: truth %s" % same["truth"])
        print("             ours  %s" % same["ours"])
        print("             perf sched latency %s" % same["perf_sched_latency"])
        summary = {"observer": table, "runs": runs, "same_window": same, "seconds": args.seconds,
                   "load_rounds_per_s": args.load, "rounds": args.rounds, "cpus": os.cpu_count(),
                   "kernel": os.uname()[2], "loadavg_at_end": os.getloadavg()}
        out_dir = os.path.join(REPO, "benchmarks", "results")
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "ground_truth.json"), "w") as handle:
            json.dump(summary, handle, indent=2)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
