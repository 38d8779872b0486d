# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Captured windows as Chrome trace-event JSON (opens in Perfetto and chrome://tracing).

One process per host (named after it), one thread per traced task.  From the
diagnose workflow: every kept event as an instant event (probe hits with
their fields, system call entries, switch-outs with their kernel stack), each
finding's off-CPU interval and system call as complete events, the late tick
as an instant event.  From the audit: the worst run-queue waits and the
longest D-state intervals as complete events.  Times are the trace clock's,
in microseconds, as the format wants.

Reference: the "Trace Event Format" document of the Chromium project
(``traceEvents``, ``ph`` X/i/M, ``ts``/``dur`` in microseconds).
"""


import json

from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import timeline

US_PER_S = 1e6


def _num(value):
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _tid(value):
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _host_events(pid, entry):
    out = []
    diag = entry.get("diagnose") or {}
    for event in diag.get("events") or []:
        ts = _num(event.get("timestamp")) if isinstance(event, dict) else None
        if ts is None:
            continue
        args = dict(event.get("fields") or {})
        if event.get("kernel_stack"):
            args["kernel_stack"] = event["kernel_stack"]
        out.append({"name": str(event.get("event") or "event"), "cat": "trace", "ph": "i", "s": "t",
                    "ts": ts * US_PER_S, "pid": pid, "tid": _tid(event.get("pid")), "args": args})
    for finding in diag.get("findings") or []:
        if not isinstance(finding, dict):
            continue
        parts = timeline.intervals(finding)
        if parts is None:
            continue
        tid = _tid(finding.get("pid"))
        out.append({"name": "late tick", "cat": "finding", "ph": "i", "s": "t", "ts": parts["late"] * US_PER_S,
                    "pid": pid, "tid": tid, "args": {"field": finding.get("field"), "value": finding.get("value"),
                                                     "threshold": finding.get("threshold"),
                                                     "summary": finding.get("summary")}})
        if parts["off"]:
            start, end, state = parts["off"]
            out.append({"name": "off CPU (%s)" % state, "cat": "finding", "ph": "X", "ts": start * US_PER_S,
                        "dur": (end - start) * US_PER_S, "pid": pid, "tid": tid,
                        "args": {"state": state, "blocked_in": finding.get("blocked_in"),
                                 "kernel_stack": finding.get("kernel_stack") or []}})
        if parts["call"]:
            start, end, label = parts["call"]
            out.append({"name": label or "syscall", "cat": "syscall", "ph": "X", "ts": start * US_PER_S,
                        "dur": (end - start) * US_PER_S, "pid": pid, "tid": tid,
                        "args": {"fd": finding.get("fd"), "file": finding.get("file")}})
    sched = entry.get("sched_latency") or {}
    for wait in sched.get("worst_waits") or []:
        since, until = _num(wait.get("since_ns")), _num(wait.get("until_ns"))
        if since is None or until is None:
            continue
        out.append({"name": "runnable, waiting for CPU %s" % wait.get("cpu"), "cat": "runqueue", "ph": "X",
                    "ts": since / 1e3, "dur": (until - since) / 1e3, "pid": pid, "tid": _tid(wait.get("pid")),
                    "args": {"kind": wait.get("kind"), "latency_us": wait.get("latency_us"),
                             "ran_meanwhile": wait.get("ran_meanwhile") or []}})
    for stall in sched.get("longest_d") or []:
        since, until = _num(stall.get("since_ns")), _num(stall.get("until_ns"))
        if since is None or until is None:
            continue
        out.append({"name": "off CPU (D)", "cat": "stall", "ph": "X", "ts": since / 1e3, "dur": (until - since) / 1e3,
                    "pid": pid, "tid": _tid(stall.get("pid")),
                    "args": {"duration_ms": stall.get("duration_ms"), "kernel_stack": stall.get("kernel_stack") or []}})
    return out


def trace_events(report):
    """The ``traceEvents`` list: process/thread names first, then the events sorted by time."""
    meta, events = [], []
    for index, host in enumerate(sorted(report["hosts"]), 1):
        entry = report["hosts"][host]
        meta.append({"name": "process_name", "ph": "M", "pid": index, "tid": 0, "args": {"name": host}})
        host_events = _host_events(index, entry)
        names = {}
        for item in (entry.get("diagnose") or {}).get("events") or []:
            if isinstance(item, dict) and isinstance(item.get("pid"), int):
                names[item["pid"]] = "%s[%d]" % (item.get("comm") or "?", item["pid"])
        for tid in sorted({e["tid"] for e in host_events}):
            meta.append({"name": "thread_name", "ph": "M", "pid": index, "tid": tid,
                         "args": {"name": names.get(tid, "pid %d" % tid)}})
        events += host_events
    events.sort(key=lambda e: (e["ts"], e["pid"], e["tid"]))
    return meta + events


def render(report):
    """The JSON text of ``trace.json``."""
    return json.dumps({"traceEvents": trace_events(report), "displayTimeUnit": "ms",
                       "otherData": {"title": report.get("title"), "generated": report.get("generated")}},
                      sort_keys=True, default=str) + "\n"
