# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One capture of one instance's buffer: arm, wait, read back (the ``capture`` module's two modes
and the threshold capture use it; trace/capture_modes.py chooses).

``capture_trigger``: clear the buffer, turn tracing on, wait until a
``traceoff`` trigger has turned it off (``tracing_on`` reads 0), enough
events arrived, the watched process exited, or the timeout passed; then read
``trace`` and parse it one line at a time.  ``capture_window``: stream
``trace_pipe`` for a fixed time.  Both leave the instance's tracing off
(capture turned it on) and report lost events from ``per_cpu/cpuN/stats``
and the trace header.  Records go to an ``EventSink`` (trace/event_sink.py)
as they are parsed.
No Ansible imports.
"""


import math
import os
import select
import time

from ansible_collections.fleettrace.tracefs.plugins.module_utils import bounded, procfs
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import per_cpu
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace.event_sink import EventSink
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace.text_parser import TraceParser
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import TracefsError

STOP_TRIGGERED = "triggered"
STOP_EVENTS = "event_count"
STOP_TIMEOUT = "timeout"
STOP_PROCESS_EXITED = "process_exited"
STOP_WINDOW = "window_elapsed"


def suggested_buffer_kb(buffer_kb, lost_by_cpu):
    """A per-CPU buffer_size_kb that would have held everything, with 25 % margin."""
    worst = 1.0
    for counts in lost_by_cpu.values():
        kept = max(1, counts["entries"])
        worst = max(worst, float(kept + counts["overrun"] + counts["dropped"]) / kept)
    return int(math.ceil(buffer_kb * worst * 1.25))


def _entries(instance):
    return sum(stats.get("entries", 0) for stats in per_cpu.all_stats(instance.path()).values())


def _count_event_lines(instance, event_name):
    needle = " %s: " % event_name
    count = 0
    with open(instance.path("trace")) as handle:
        for line in handle:
            if needle in line:
                count += 1
    return count


class CaptureResult(dict):
    """The dict a capture returns (module return values, see capture module RETURN)."""


def read_trace(path, sink, raw_path=None):
    """Parse the ``trace`` file at ``path`` line by line into ``sink``; returns the closed parser.

    Only one line, the records still waiting for a stack (``TraceParser``
    lookahead) and what ``sink`` keeps are in memory; with ``raw_path`` each
    line is copied to that file as it is read.
    """
    parser = TraceParser(keep_events=False, on_event=sink.add)
    raw = bounded.open_output(raw_path, "raw_path") if raw_path else None
    try:
        with open(path) as handle:
            for line in handle:
                if raw is not None:
                    raw.write(line)
                parser.feed(line.rstrip("\n"))
    finally:
        if raw is not None:
            raw.close()
    parser.close()
    return parser


def _require_instance(instance):
    if not instance.exists():
        raise TracefsError(
            "%s does not exist at %s; create it first (fleettrace.tracefs.instance) and enable the "
            "events to capture (fleettrace.tracefs.event)" % (instance.label, instance.path()))


def _finish(instance, parser, sink, stop_reason, started, stats_before, extra):
    parsed = parser.result()
    events = sink.events()
    stats_after = per_cpu.all_stats(instance.path())
    lost_by_cpu = per_cpu.lost_between(stats_before, stats_after)
    lost_stats = sum(c["overrun"] + c["dropped"] for c in lost_by_cpu.values())
    lost_markers = sum(item["count"] for item in parsed["lost_markers"])
    header_lost = 0
    if parsed["entries_written"] is not None and parsed["entries_in_buffer"] is not None:
        header_lost = max(0, parsed["entries_written"] - parsed["entries_in_buffer"])
    result = CaptureResult(
        stop_reason=stop_reason,
        triggered=stop_reason == STOP_TRIGGERED,
        threshold_reached=stop_reason == STOP_TRIGGERED,
        events=events,
        event_count=parsed["event_count"],
        events_truncated=len(events) < parsed["event_count"],
        entries_in_buffer=parsed["entries_in_buffer"],
        entries_written=parsed["entries_written"],
        # Each source sees part of the loss; the largest is the best lower bound.
        lost_events=max(lost_stats, lost_markers, header_lost),
        lost_by_cpu={str(cpu): counts for cpu, counts in sorted(lost_by_cpu.items())},
        unparsed_lines=parsed["unparsed"],
        duration=round(time.time() - started, 3),
        buffer_size_kb=instance.buffer_size_kb,
    )
    if result["lost_events"]:
        result["suggested_buffer_size_kb"] = suggested_buffer_kb(
            result["buffer_size_kb"], lost_by_cpu or {-1: {"entries": parsed["entries_in_buffer"] or 1,
                                                           "overrun": result["lost_events"], "dropped": 0}})
    result.update(extra)
    return result


def arm(instance, clear=True, companions=()):
    """Tracing off, the buffer cleared, tracing on: returns the per-CPU stats read in between
    (the baseline ``read_back`` counts losses from).

    ``companions`` (the CPU context) are stopped and cleared with it and switched on
    just before it, write after write: a clear waits for an RCU grace period (tens
    of ms, more on a busy node), and a late tick in that gap would stop a companion
    armed alone while the capture's own buffer was still being cleared.
    """
    together = tuple(companions) + (instance,)
    for each in together:
        each.set_tracing_on(False)
    if clear:
        for each in together:
            each.clear_buffer()
    stats_before = per_cpu.all_stats(instance.path())
    for each in together:
        each.set_tracing_on(True)
    return stats_before


def read_back(instance, sink, stop_reason, started, stats_before, raw_path=None, extra=None):
    """Read the stopped buffer's ``trace`` into ``sink``: the capture's result, losses counted.

    ``started``: wall time of the arming (``time.time()``); ``extra``: more result keys.
    """
    complete = per_cpu.complete_since_ns(instance.path(), stats_before)
    if hasattr(sink, "complete_since_ns"):
        sink.complete_since_ns = complete
    parser = read_trace(instance.path("trace"), sink, raw_path=raw_path)
    extra = dict(extra or {}, complete_since=complete / 1e9 if complete is not None else None)
    return _finish(instance, parser, sink, stop_reason, started, stats_before, extra)


def capture_trigger(instance, timeout, poll_interval=0.1, clear=True, stop_after_events=None,
                    stop_event=None, pid=None, raw_path=None, sink=None, companions=()):
    """Arm the instance, wait for its traceoff trigger (or count/timeout/exit), read the buffer.

    Records go to ``sink`` (an ``EventSink``; default: one keeping all of them).
    ``companions``: instances armed just before and stopped with it (the CPU context).
    """
    _require_instance(instance)
    started = time.time()
    process_missing_at_start = pid is not None and not procfs.process_alive(pid)
    armed = False
    stop_reason = STOP_TIMEOUT
    if process_missing_at_start:
        stats_before = per_cpu.all_stats(instance.path())
        stop_reason = STOP_PROCESS_EXITED
    else:
        stats_before = arm(instance, clear, companions)
        armed = True
        try:
            deadline = time.monotonic() + timeout
            while True:
                if not instance.tracing_on:
                    stop_reason = STOP_TRIGGERED
                    break
                if stop_after_events:
                    seen = _count_event_lines(instance, stop_event) if stop_event else _entries(instance)
                    if seen >= stop_after_events:
                        stop_reason = STOP_EVENTS
                        break
                if pid is not None and not procfs.process_alive(pid):
                    stop_reason = STOP_PROCESS_EXITED
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                time.sleep(min(poll_interval, remaining))
        finally:
            # Capture turned tracing on; it is off again whatever happened.
            for stopped in (instance,) + tuple(companions):
                if stopped.exists():
                    stopped.set_tracing_on(False)
    if sink is None:
        sink = EventSink()
    return read_back(instance, sink, stop_reason, started, stats_before, raw_path=raw_path,
                     extra={"armed": armed, "process_missing_at_start": process_missing_at_start})


def capture_window(instance, duration, clear=True, stop_after_events=None, stop_event=None, pid=None,
                   raw_path=None, sink=None, until=None):
    """Stream ``trace_pipe`` for ``duration`` seconds (no trigger wanted); records go to ``sink``."""
    _require_instance(instance)
    started = time.time()
    instance.set_tracing_on(False)
    if clear:
        instance.clear_buffer()
    stats_before = per_cpu.all_stats(instance.path())
    if sink is None:
        sink = EventSink()
    parser = TraceParser(keep_events=False, on_event=sink.add)
    raw = bounded.open_output(raw_path, "raw_path") if raw_path else None
    pending = [""]
    stop_reason = STOP_WINDOW
    counted = [0]

    def consume(chunk):
        if raw is not None:
            raw.write(chunk)
        lines = (pending[0] + chunk).split("\n")
        pending[0] = lines.pop()
        for line in lines:
            parser.feed(line)
            if stop_event and (" %s: " % stop_event) in line:
                counted[0] += 1

    fd = os.open(instance.path("trace_pipe"), os.O_RDONLY | os.O_NONBLOCK)
    try:
        instance.set_tracing_on(True)
        try:
            deadline = time.monotonic() + duration
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                ready, _w, _x = select.select([fd], [], [], min(remaining, 0.2))
                if ready:
                    bounded.read_available(fd, consume)
                if stop_after_events and (counted[0] if stop_event else parser.event_count) >= stop_after_events:
                    stop_reason = STOP_EVENTS
                    break
                if until is not None and until():
                    stop_reason = STOP_EVENTS
                    break
                if pid is not None and not procfs.process_alive(pid):
                    stop_reason = STOP_PROCESS_EXITED
                    break
        finally:
            if instance.exists():
                instance.set_tracing_on(False)
        bounded.read_available(fd, consume)  # what is still in the buffer after tracing stopped
    finally:
        os.close(fd)
        if pending[0]:
            parser.feed(pending[0])
        parser.close()
        if raw is not None:
            raw.close()
    return _finish(instance, parser, sink, stop_reason, started, stats_before,
                   {"armed": True, "process_missing_at_start": False})
