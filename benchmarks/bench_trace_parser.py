"""How fast trace_parser turns tracefs text into records, and how much memory it needs.

Usage (from the repository root, as root for --real):

    .venv/bin/python benchmarks/bench_trace_parser.py                 # 200k synthetic sched events
    .venv/bin/python benchmarks/bench_trace_parser.py --real           # record real sched events first
    .venv/bin/python benchmarks/bench_trace_parser.py --events 500000 --json benchmarks/results/parser.json

Side by side, on the same text:
- ``kernel read``  (--real only): reading ``trace`` from the kernel, which formats every event as text;
- ``split lines``: the floor, iterating the lines with str.split, no parsing;
- ``parse (keep)``: ``parse_trace`` building every record (what capture does);
- ``parse (stream)``: ``TraceParser(keep_events=False)``, counting only (constant memory).
Peak memory is measured in a separate run with tracemalloc (it slows the code down),
plus the process's max RSS.  ``capture read`` compares the two ways ``capture`` (trigger mode)
reads a ``trace`` file: before, the whole text read then ``parse_trace`` keeping every record;
now ``instance_capture.read_trace`` line by line into an ``EventSink`` keeping ``--max-events``
(with a stall finder and JSON/raw files written, as with findings/json_path/raw_path).
"""

import argparse
import ctypes
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, ".cache", "collections"))  # made by scripts/setup.sh

from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import event_sink, instance_capture  # noqa: E402

from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import correlate  # noqa: E402
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace.text_parser import (  # noqa: E402
    TraceParser, parse_trace)

HEADER = """# tracer: nop
#
# entries-in-buffer/entries-written: {n}/{n}   #P:2
#
#                                _-----=> irqs-off/BH-disabled
#                               / _----=> need-resched
#                              | / _---=> hardirq/softirq
#                              || / _--=> preempt-depth
#                              ||| / _-=> migrate-disable
#                              |||| /     delay
#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION
#              | |         |   |||||     |         |
"""


def synthetic_text(count, seed=1):
    """sched_switch / sched_waking / sched_wakeup lines in the kernel's exact layout."""
    rng = random.Random(seed)
    tasks = [("corosync", 3796, 0), ("kworker/1:1", 41, 120), ("rcu_preempt", 15, 120), ("Web Content", 4242, 120),
             ("memfd:sealed-91", 3464, 120), ("tick_loop", 11067, 120), ("swapper/0", 0, 120)]
    lines = [HEADER.format(n=count)]
    ts = 500.0
    for index in range(count):
        ts += rng.random() / 10000
        cpu = rng.randrange(2)
        comm, pid, prio = rng.choice(tasks)
        other, opid, oprio = rng.choice(tasks)
        shown = "<idle>" if pid == 0 else comm
        kind = index % 3
        if kind == 0:
            body = "sched_switch: prev_comm=%s prev_pid=%d prev_prio=%d prev_state=%s ==> next_comm=%s next_pid=%d next_prio=%d" % (
                comm, pid, prio, rng.choice("SDRI"), other, opid, oprio)
            flags = "d..2."
        else:
            body = "%s: comm=%s pid=%d prio=%d target_cpu=%03d" % (
                "sched_waking" if kind == 1 else "sched_wakeup", other, opid, oprio, rng.randrange(2))
            flags = "dNh4."
        lines.append("%16s-%-7d [%03d] %s %12.6f: %s\n" % (shown, pid, cpu, flags, ts, body))
    return "".join(lines)


PR_SET_PDEATHSIG = 1


def die_with_parent():
    """In a child before exec: the kernel SIGKILLs it when the benchmark dies."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


# Beyond the recording itself, the instance lives while its whole buffer is read as text.
RECORD_MARGIN = 120


def real_text(count, buffer_kb=65536, max_seconds=20):
    """Record real sched events in a private instance until ``count`` are there."""
    sys.path.insert(0, REPO)
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import lifecycle
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import Tracefs
    fs = Tracefs()
    inst = fs.instance("fleettrace_bench_%s" % uuid.uuid4().hex[:8])
    # A run of this process: killed (even by SIGKILL), its reaper removes the instance.
    run = lifecycle.own(fs, inst.name, max_seconds + RECORD_MARGIN, instances=[inst.name], what="benchmark")
    load = None
    try:
        inst.create()
        inst.set_tracing_on(False)
        inst.set_buffer_size_kb(buffer_kb)
        for name in ("sched_switch", "sched_waking", "sched_wakeup"):
            inst.event("sched", name).set_enabled(True)
        # Two processes bouncing a byte through pipes: many switches and wakeups.
        # It dies with this process (even SIGKILLed): the parent by PDEATHSIG, the forked
        # child by end of file once the parent's pipe ends close.
        load = subprocess.Popen([sys.executable, "-c", (
            "import os\nr1,w1=os.pipe()\nr2,w2=os.pipe()\n"
            "if os.fork()==0:\n  os.close(w1); os.close(r2)\n  while os.read(r1,1):\n    os.write(w2,b'x')\n"
            "  os._exit(0)\n"
            "os.close(r1); os.close(w2)\n"
            "while True:\n  os.write(w1,b'x')\n  if not os.read(r2,1):\n    break\n")],
            start_new_session=True, preexec_fn=die_with_parent)
        inst.clear_buffer()
        inst.set_tracing_on(True)
        deadline = time.monotonic() + max_seconds
        while time.monotonic() < deadline:
            time.sleep(0.2)
            entries = 0
            for cpu in os.listdir(inst.path("per_cpu")):
                stats = inst.read("per_cpu", cpu, "stats")
                entries += int(stats.split("entries:")[1].split()[0])
            if entries >= count:
                break
        inst.set_tracing_on(False)
        started = time.process_time()
        text = inst.read("trace")
        kernel_seconds = time.process_time() - started
        return text, kernel_seconds
    finally:
        if load is not None:
            os.killpg(load.pid, 9)
            load.wait()
        try:
            inst.remove()
        finally:
            lifecycle.finish(fs, inst.name, run.nonce)


def capture_read_peaks(text, max_events):
    """Peak tracemalloc bytes of capture's read of a trace file: (whole text + keep all, streaming)."""
    workdir = tempfile.mkdtemp(prefix="fleettrace_bench_")
    path = os.path.join(workdir, "trace")
    try:
        with open(path, "w") as handle:
            handle.write(text)

        def before():
            with open(path) as handle:
                whole = handle.read()
            return parse_trace(whole)

        def after():
            finder = correlate.StallFinder("timer_function_scheduler_timeout", "tv_diff_u64", 10 ** 9,
                                           resolve_fds=False)
            sink = event_sink.EventSink(max_events=max_events, json_path=os.path.join(workdir, "all.json"),
                                        stall_finder=finder)
            parser = instance_capture.read_trace(path, sink, raw_path=os.path.join(workdir, "raw.txt"))
            sink.finish_json({"event_count": parser.event_count})
            return parser.event_count

        peaks = []
        for function in (before, after):
            tracemalloc.start()
            function()
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
        return peaks
    finally:
        for name in os.listdir(workdir):
            os.unlink(os.path.join(workdir, name))
        os.rmdir(workdir)


def timed(function, repeat):
    """Best of ``repeat`` runs, in CPU seconds of this process.

    CPU time rather than wall time: on a shared machine (CI, other test runs)
    wall time mostly measures the neighbours.  Wall time is printed as well.
    """
    best = None
    for _run in range(repeat):
        started, started_wall = time.process_time(), time.perf_counter()
        result = function()
        elapsed = time.process_time() - started
        WALL.append(time.perf_counter() - started_wall)
        best = elapsed if best is None else min(best, elapsed)
    return best, result


WALL = []


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--events", type=int, default=200000)
    parser.add_argument("--real", action="store_true", help="record real sched events (root, tracefs)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="also write the numbers to this file")
    parser.add_argument("--max-events", type=int, default=1000, help="events capture keeps (capture read)")
    args = parser.parse_args()

    kernel_seconds = None
    if args.real:
        text, kernel_seconds = real_text(args.events)
    else:
        text = synthetic_text(args.events)
    lines = text.count("\n")

    split_seconds, _count = timed(lambda: sum(1 for line in text.split("\n") if line and line[0] != "#"), args.repeat)
    keep_seconds, parsed = timed(lambda: parse_trace(text), args.repeat)

    def stream():
        streaming = TraceParser(keep_events=False)
        streaming.feed_text(text)
        return streaming.result()
    stream_seconds, _count = timed(stream, args.repeat)
    events = parsed["event_count"]
    assert not parsed["unparsed"], parsed["unparsed"][:3]
    del parsed

    tracemalloc.start()
    parsed = parse_trace(text)
    _current, peak_keep = tracemalloc.get_traced_memory()
    del parsed
    tracemalloc.stop()
    tracemalloc.start()
    stream()
    _current, peak_stream = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    capture_before, capture_after = capture_read_peaks(text, args.max_events)
    max_rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    numbers = {
        "source": "real" if args.real else "synthetic",
        "events": events,
        "lines": lines,
        "text_mb": round(len(text) / 1e6, 1),
        "kernel_read_events_per_s": round(events / kernel_seconds) if kernel_seconds else None,
        "split_lines_per_s": round(lines / split_seconds),
        "parse_keep_events_per_s": round(events / keep_seconds),
        "parse_stream_events_per_s": round(events / stream_seconds),
        "parse_keep_seconds": round(keep_seconds, 3),
        "peak_mb_keep": round(peak_keep / 1e6, 1),
        "peak_mb_stream": round(peak_stream / 1e6, 2),
        "bytes_per_event_keep": round(peak_keep / max(1, events)),
        "capture_read_peak_mb_before": round(capture_before / 1e6, 1),
        "capture_read_peak_mb_after": round(capture_after / 1e6, 2),
        "capture_max_events": args.max_events,
        "max_rss_mb": round(max_rss_kb / 1024.0, 1),
        "python": sys.version.split()[0],
        "load_average": os.getloadavg()[0],
    }
    print("trace_parser on %(events)d %(source)s events (%(text_mb)s MB of text, Python %(python)s)" % numbers)
    if kernel_seconds:
        print("  kernel read (formatting)  %12d events/s" % numbers["kernel_read_events_per_s"])
    print("  split lines (floor)       %12d lines/s" % numbers["split_lines_per_s"])
    print("  parse, keep records       %12d events/s  (%.2f s; %.1fx the floor)" % (
        numbers["parse_keep_events_per_s"], keep_seconds, keep_seconds / split_seconds))
    print("  parse, stream/count only  %12d events/s" % numbers["parse_stream_events_per_s"])
    print("  (CPU time, best of %d; wall time of the keep runs: %s s; load average %.1f)" % (
        args.repeat, ", ".join("%.2f" % w for w in WALL[args.repeat:2 * args.repeat]), os.getloadavg()[0]))
    print("  peak memory: %.1f MB keeping records (%d B/event), %.2f MB streaming; max RSS %.1f MB" % (
        numbers["peak_mb_keep"], numbers["bytes_per_event_keep"], numbers["peak_mb_stream"], numbers["max_rss_mb"]))
    print("  capture read of the trace file: peak %.1f MB before (whole text, every record kept), "
          "%.2f MB streaming (max_events %d, findings, json_path and raw_path written)" % (
              numbers["capture_read_peak_mb_before"], numbers["capture_read_peak_mb_after"], args.max_events))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as handle:
            json.dump(numbers, handle, indent=1)
            handle.write("\n")


if __name__ == "__main__":
    main()
