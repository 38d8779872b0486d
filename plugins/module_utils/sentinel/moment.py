# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The moment a late tick fires: what only then can be seen, and the finding from the frozen buffer.

An fd, a wchan or a kernel stack read hours later means nothing, so the
target's ``/proc`` facts and the counters are read first, then the stopped
main buffer is read and explained by the very code ``capture`` uses
(``capture.read_back``, ``threshold.findings_of`` / ``conclude``: cause,
state, kernel stack, the call in flight as strace prints it, the guesses).

In a buffer that has been recording for days, overwritten events are the
ring buffer doing its job (it keeps the last seconds), not a loss: they are
counted apart (``overwritten_events``, and ``buffer_span_s`` says how much
time the buffer still held); ``lost_events`` counts only events the kernel
could not store.
"""


import time

from ansible_collections.fleettrace.tracefs.plugins.module_utils import procfs
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import event_sink, instance_capture
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import evidence, threshold

SCHEMA = "fleettrace.sentinel.capture/1"
MAX_UNPARSED = 20


class _SpanSink(event_sink.EventSink):
    """An EventSink that also remembers the first record's time (how far back the buffer reached)."""

    first_ns = None

    def add(self, record):
        if self.first_ns is None:
            self.first_ns = record["ts_ns"]
        event_sink.EventSink.add(self, record)


def facts_now(pid):
    """The target's /proc facts and counters, read first thing (None when it is gone)."""
    try:
        facts = procfs.process_facts(pid, threads=False, fds=True, kernel_stack=True)
    except procfs.ProcessGone:
        facts = None
    return facts, evidence.snapshot(pid)


def read_frozen(main, stop, pid, armed_at, stats_before, max_events):
    """(result, finder, findings) of the stopped main buffer, as ``capture`` explains it."""
    finder = threshold.new_finder(stop)
    sink = _SpanSink(max_events=max_events, stall_finder=finder, symbolize=True)
    result = instance_capture.read_back(main, sink, instance_capture.STOP_TRIGGERED, armed_at, stats_before,
                                        extra={"armed": True, "process_missing_at_start": False})
    result["first_ns"] = sink.first_ns
    return result, finder, threshold.findings_of(finder, pid)


def conclude(result, finder, findings, stop, pid, settings, before, after, facts, attempts, capture_id):
    """The capture document: the finding first, then what explains and surrounds it."""
    lost_by_cpu = result.get("lost_by_cpu") or {}
    overwritten = sum(c.get("overrun", 0) for c in lost_by_cpu.values())
    dropped = sum(c.get("dropped", 0) for c in lost_by_cpu.values())
    threshold.conclude(result, finder, findings, stop, pid, before, after, installed=[], attempts=attempts,
                       max_findings=settings.max_findings, token_timeout_ms=settings.token_timeout_ms or None,
                       lost_events=dropped)
    first = findings[0] if findings else {}
    last_ns = max([e["ts_ns"] for e in result["events"]] or [0])
    span = (last_ns - result["first_ns"]) / 1e9 if result.get("first_ns") and last_ns else None
    return {
        "schema": SCHEMA, "id": capture_id, "at": time.time(), "pid": pid, "comm": first.get("comm"),
        "duration_ms": first.get("duration_ms"), "cause": first.get("cause"), "state": first.get("state"),
        "summary": first.get("summary"), "finding": first or None, "findings": result["findings"],
        "findings_total": result["findings_total"], "status": result["status"], "attempts": attempts,
        "probe_values": result["probe_values"], "guesses": result.get("guesses", []),
        "evidence_window_s": round(after["time"] - before["time"], 3) if before and after else None,
        "events": result["events"], "event_count": result["event_count"],
        "events_truncated": result["events_truncated"], "lost_events": dropped, "overwritten_events": overwritten,
        "buffer_span_s": round(span, 3) if span is not None else None, "buffer_size_kb": result["buffer_size_kb"],
        "entries_in_buffer": result["entries_in_buffer"], "entries_written": result["entries_written"],
        "unparsed_lines": result["unparsed_lines"][:MAX_UNPARSED], "stop": result["stop"],
        "process": facts,
    }
