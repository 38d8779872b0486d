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
   printed side by side, with bpftrace's (benchmarks/runqlat_tid.bt) where installed
   (docs/sched-audit.md explains each difference).

    sudo .venv/bin/python benchmarks/bench_ground_truth.py [--seconds 5] [--rounds 3] [--load 20000]

Results: benchmarks/results/ground_truth.json (``benchmarks/bench_results.py`` prints its figures).
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
import bench_results  # noqa: E402
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import lifecycle  # noqa: E402
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import Tracefs  # noqa: E402

PERIOD_US = 1000
BPFTRACE_TID = os.path.join(REPO, "benchmarks", "runqlat_tid.bt")
BPFTRACE_LEAD_S = 3   # bpftrace compiles its script before it attaches
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
    load = subprocess.Popen([bins["load"], "2", str(load_rounds), str(seconds + 20)], start_new_session=True)
    try:
        time.sleep(1.0)
        truth, tid = start_truth(bins["truth"], seconds + 8, out)
        bpf = None
        if shutil.which("bpftrace"):
            # Started first and ended last, so its waits cover our window; only those inside it count.
            bpf = subprocess.Popen(["bpftrace", BPFTRACE_TID, str(tid), "-c",
                                    "%s %s" % (shutil.which("sleep"), seconds + BPFTRACE_LEAD_S + 1)],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
            time.sleep(BPFTRACE_LEAD_S)
        ours = subprocess.Popen(ours_cmd(seconds, name, tid), stdout=subprocess.PIPE, universal_newlines=True)
        perf = subprocess.Popen(["perf", "sched", "record", "-o", data, "--", "sleep", str(seconds)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        result = json.loads(ours.communicate()[0].strip().splitlines()[-1])
        perf.wait()
        bpf_out = bpf.communicate()[0] if bpf else None
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
            "perf_sched_latency": perf_row(data, tid), "bpftrace": bpftrace_row(bpf_out, window)}


def bpftrace_row(out, window):
    """benchmarks/runqlat_tid.bt's waits of the thread inside our window: count, p50/p99/max (us)."""
    if out is None:
        return None
    waits = [(int(a), int(b)) for a, b in re.findall(r"^wait (\d+) (\d+)$", out, re.M)]
    inside = [(b - a) / 1000.0 for a, b in waits if window[0] <= a and b <= window[1]]
    return {"waits": len(inside), "waits_all": len(waits), "p50_us": percentile(inside, 50),
            "p99_us": percentile(inside, 99), "max_us": max(inside) if inside else None}


EVENTS = ("sched_wakeup", "sched_wakeup_new", "sched_switch", "sched_migrate_task")


def figures(table, same):
    """The observer effect next to trace-cmd's; one thread's waits next to the program, perf and bpftrace."""
    ours = same["ours"]
    found = [{"measure": "p99 wakeup latency a timer loop measures, added by the tracer", "unit": "us",
              "ours": table["ours"]["p99_added_us"], "other": None, "tool": "trace-cmd record: %+.1f us"
              % table["trace-cmd"]["p99_added_us"], "target": "noise"},
             {"measure": "timer thread: longest run-queue wait vs its own longest wakeup", "unit": "us",
              "ours": ours["max_us"], "other": same["truth"]["max_us"], "tool": "the program itself",
              "target": "<= 1"}]
    perf = same["perf_sched_latency"] or {}
    found.append({"measure": "timer thread: waits (switch-ins) counted", "unit": "", "ours": ours["waits"],
                  "other": perf.get("switches"), "tool": "perf sched latency", "target": ""})
    bpf = same.get("bpftrace")
    if bpf:
        found.append({"measure": "timer thread: waits counted", "unit": "", "ours": ours["waits"],
                      "other": bpf["waits"], "tool": "bpftrace runqlat_tid.bt", "target": "~1"})
        for key in ("p99_us", "max_us"):
            found.append({"measure": "timer thread: %s wait" % key.split("_", maxsplit=1)[0], "unit": "us",
                          "ours": ours[key], "other": bpf[key], "tool": "bpftrace runqlat_tid.bt", "target": "~1"})
    return found


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
        print("             bpftrace runqlat_tid.bt %s" % same["bpftrace"])
        bench_results.record("ground_truth", figures(table, same), observer=table, runs=runs, same_window=same,
                             seconds=args.seconds, load_rounds_per_s=args.load, rounds=args.rounds)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
