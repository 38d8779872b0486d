# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One host's result of a threshold capture (HOST.json of the threshold_capture role), built once.

The role calls its modules and registers what they return; this turns those results into the
host's record: the names of the run's tracefs objects, the record when the target does not run,
the sentence check mode says, the record of a finished capture, and the record of a failed step.
capture_summary and the fleet report read the record (report/capture_summary.py, report/document.py).
"""


import collections
import hashlib
import re
import time

SCHEMA = "fleettrace.threshold_capture/1"
_NOT_A_NAME_CHAR = re.compile(r"[^A-Za-z0-9_]")
# Hosts can share one kernel (containers, loopback tests): part of the host's name and a hash of it.
HOST_NAME_CHARS = 20

RunNames = collections.namedtuple("RunNames", "run_id tag instance group")

# Every record has these keys (and debuginfo, added when it is written); a capture adds CAPTURE_KEYS.
RECORD_KEYS = ("schema", "host", "label", "run_id", "status", "threshold_reached", "field", "field_unit", "threshold",
               "findings", "message")
CAPTURE_KEYS = ("stop_reason", "probe_values", "guesses", "culprit_latency", "capture_attempts", "lost_events",
                "event_count", "events", "probe", "target")


def run_names(run_id, host, now=None):
    """The names of one host's tracefs objects: the run id (a UTC timestamp when none is given) and the host."""
    run_id = str(run_id or "") or time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
    run_id = _NOT_A_NAME_CHAR.sub("_", run_id)
    host_part = "%s_%s" % (_NOT_A_NAME_CHAR.sub("_", host)[:HOST_NAME_CHARS],
                           hashlib.md5(host.encode("utf-8")).hexdigest()[:4])
    # The run's tag is the name of its instance and its probe group: runs/ removes only names it owns.
    tag = "fleettrace_%s_%s" % (run_id, host_part)
    return RunNames(run_id=run_id, tag=tag, instance=tag, group=tag)


def started(host, label, run_id, field="", field_unit="ns", threshold=0):
    """The record before anything was found: the target is not known to run yet."""
    return dict(schema=SCHEMA, host=host, label=label, run_id=run_id, status="target_not_running",
                threshold_reached=False, field=field, field_unit=field_unit, threshold=int(threshold or 0),
                findings=[], message="")


def target_not_running(record, target):
    """No process matched the target on this host: not a failure, the host's status says so."""
    return dict(record, status="target_not_running",
                message=(target or {}).get("message") or "no process matches the target")


def planned(record, probe, target, instance, timeout):
    """Check mode: what the run would do, in one sentence (nothing was traced)."""
    process = _first(target)
    message = ("check mode: would install %s, trace %s[%s] in instance %s until %s >= %d (at most %s s), "
               "then remove everything" % (", ".join(probe.get("definitions") or []), process.get("comm"),
                                           process.get("pid"), instance, record["field"], record["threshold"],
                                           _seconds(timeout)))
    return dict(record, status="check_mode", message=message)


def captured(record, capture, probe, target, after, latency, binary, spec, names):
    """The record of a finished capture: the capture's findings, the probe and the target as they are now."""
    latency = latency or {}
    # The target after the capture (fds, scheduling) when it still exists, else as it was found.
    process = _first(after) or _first(target)
    message = capture.get("message") or ""
    if "latency" not in latency and latency.get("msg") and not latency.get("skipped"):
        message += "; the culprit call was not measured: %s" % latency["msg"]
    return dict(
        record, status=capture.get("status"), threshold_reached=bool(capture.get("threshold_reached")),
        stop_reason=capture.get("stop_reason"), findings=capture.get("findings") or [],
        probe_values=capture.get("probe_values") or [], guesses=capture.get("guesses") or [],
        culprit_latency=latency.get("latency"), capture_attempts=capture.get("attempts") or 0,
        lost_events=capture.get("lost_events") or 0, event_count=capture.get("event_count") or 0,
        events=capture.get("events") or [], message=message,
        probe=dict(binary=binary, spec=spec or "", definitions=probe.get("definitions") or [],
                   variables=probe.get("variables") or [], build_id=probe.get("build_id") or "",
                   mapped=probe.get("mapped"), group=names.group, events=probe.get("events") or [],
                   instance=names.instance),
        target=dict(pid=process.get("pid"), comm=process.get("comm"), exe=process.get("exe"),
                    policy=process.get("policy"), priorities=process.get("priorities"), state=process.get("state"),
                    alive=any(p.get("state") != "Z" for p in (after or {}).get("processes") or []),
                    fds=process.get("fds") or []))


def failed(record, task_name, failed_result):
    """A step failed: the record says which and why, so the summary names the host while the others go on."""
    why = failure_reason(failed_result)
    return dict(record, status="failed", message="task %s failed: %s" % (task_name or "?", why))


def failure_reason(failed_result):
    """The failed task's message. A killed module leaves no result: async_status then returns a traceback
    or "Unknown error", and the last line of it is what is worth reading."""
    if isinstance(failed_result, dict) and failed_result.get("msg") is not None:
        text = str(failed_result["msg"])
    elif failed_result is None or failed_result == {}:
        text = "no message"
    else:
        text = str(failed_result)
    if "Traceback" in text or "Unknown error" in text:
        lines = text.strip().splitlines()
        return "the module ended without a result (killed?): %s" % (lines[-1] if lines else "")
    return text


def debuginfo(resolved, probe):
    """Where the probe was resolved and its debug info came from: the controller (resolve entry point),
    this node (the uprobe module resolved a spec), or nowhere (a definition given as it is)."""
    from_resolve = (resolved or {}).get("debuginfo") or {}
    if from_resolve.get("resolved_on") == "controller":
        return dict(from_resolve)
    probe = probe or {}
    return {"resolved_on": "node" if "debuginfo_source" in probe else "given", "binary_from": "node",
            "source": probe.get("debuginfo_source"), "server": probe.get("debuginfod_server")}


def one_line(record):
    """The record in one line, as check mode prints it."""
    return "%s: %s: %s" % (record["host"], record["status"], record["message"])


def _first(proc_info):
    processes = (proc_info or {}).get("processes") or []
    return processes[0] if processes else {}


def _seconds(value):
    number = float(value)
    return "%d" % number if number == int(number) else "%s" % number
