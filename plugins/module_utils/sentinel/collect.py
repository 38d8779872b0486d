# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What ``collected`` returns: the sentinel's state in words, and the host's result as the diagnose workflow's.

The host's document has the ``threshold_capture`` schema (one finding per
kept capture, the culprit's latency, the guesses, the probe and the target),
so the summary and the fleet report read it unchanged, plus ``sentinel``
(armed since, until, captures, the pids it followed, events lost, its cost)
and ``captures`` (the spool's index).

How a sentinel that no longer runs ended: its own word when it wrote one;
else ``ended_by_reboot`` when the boot id differs from the one it was armed
in (nothing survives a reboot in tracefs; the spool does), else
``watcher_killed``.
"""


import os
import time

from ansible_collections.fleettrace.tracefs.plugins.module_utils import procfs
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sentinel import running
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sentinel.spool import LATENCY

SCHEMA = "fleettrace.threshold_capture/1"
LIVE = ("starting", "armed", "measuring")
EVENTS_IN_RESULT = 50


def read_boot_id(path):
    try:
        with open(path) as handle:
            return handle.read(64).strip()
    except OSError:
        return None


def status_of(session, state, boot_id_path):
    """(status, alive): the watcher's status while it lives, else how it ended."""
    if not session:
        return "not_armed", False
    if running.watcher_alive(state):
        return state.get("status", "starting"), True
    status = state.get("status")
    if status in LIVE or status is None:
        if session.get("boot_id") and read_boot_id(boot_id_path) != session["boot_id"]:
            return "ended_by_reboot", False
        return "watcher_killed", False
    return status, False


def _target(state, captures):
    """The target now (proc facts while it runs), else what the last capture saw."""
    current = (state.get("target") or {})
    pid = current.get("pid")
    if pid and procfs.process_alive(pid):
        try:
            facts = procfs.process_facts(pid, threads=False, fds=True, kernel_stack=False)
            facts["alive"] = True
            return facts
        except procfs.ProcessGone:
            pass
    seen = dict((captures[-1].get("process") or {}) if captures else {})
    seen.update({"pid": pid, "comm": current.get("comm") or seen.get("comm"), "exe": current.get("exe"),
                 "alive": False})
    seen.setdefault("policy", None)
    seen.setdefault("priorities", {})
    return seen


def _when(stamp):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp)) if stamp else None


def document(spool, host, boot_id_path, flush=True):
    """The host's result (see the module docstring); flushes a live watcher's state first."""
    session, state = spool.session(), spool.state()
    if flush and running.watcher_alive(state):
        state = running.request_flush(state, spool=spool)
    status, alive = status_of(session, state, boot_id_path)
    settings = (session or {}).get("settings") or {}
    index = state.get("captures") or []
    captures = [c for c in (spool.capture(entry["id"]) for entry in index) if c]
    latency = spool.read_json(LATENCY) if session else None
    first = captures[0] if captures else {}
    last = captures[-1] if captures else {}
    findings = [c["finding"] for c in captures if c.get("finding")]
    cost = dict(state.get("cost") or {})
    if alive:
        cost = _live_cost(state["watcher"]["pid"]) or cost
    sentinel = {
        "label": spool.label, "status": status, "alive": alive, "ended": not alive,
        "armed_since": state.get("armed_since"), "armed_since_utc": _when(state.get("armed_since")),
        "until": state.get("until"), "until_utc": _when(state.get("until")),
        "captures": state.get("captures_total", 0), "captures_kept": len(index),
        "dropped": state.get("dropped", []), "dropped_total": state.get("dropped_total", 0),
        "target_pids": state.get("pids", []), "events_lost": state.get("events_lost", 0) + (
            (latency or {}).get("lost_events") or 0),
        "cost": cost, "watcher": state.get("watcher"), "reaper": state.get("reaper"),
        "ended_by": (state.get("ended") or {}) if not alive else None, "boot_id": (session or {}).get("boot_id"),
        "spool": spool.dir, "metrics": state.get("metrics"), "journal_error": state.get("journal_error"),
        "log": spool.log_lines(20), "fingerprint": (session or {}).get("fingerprint"),
    }
    if status == "ended_by_reboot":
        sentinel["ended_by"] = {"why": "ended_by_reboot", "message": "the node rebooted (boot id %s, armed in %s): "
                                "nothing of the sentinel survives a reboot but its spool" % (
                                    read_boot_id(boot_id_path), session.get("boot_id"))}
    elif status == "watcher_killed":
        sentinel["ended_by"] = {"why": "watcher_killed", "message": "the watcher ended without a word (killed?): "
                                "its reaper removed the tracefs objects; the spool is intact"}
    probe = (session or {}).get("probe") or {}
    doc = {
        "schema": SCHEMA, "host": host, "label": spool.label, "run_id": "sentinel_%s" % spool.label,
        "status": _host_status(status, captures), "threshold_reached": bool(captures),
        "field": settings.get("field"), "field_unit": settings.get("unit"), "threshold": settings.get("threshold"),
        "findings": findings, "probe_values": last.get("probe_values"), "guesses": first.get("guesses", []),
        "culprit_latency": latency, "capture_attempts": sum(c.get("attempts", 1) for c in captures),
        "lost_events": sum(c.get("lost_events", 0) for c in captures),
        "event_count": sum(c.get("event_count", 0) for c in captures),
        "events": (first.get("events") or [])[-EVENTS_IN_RESULT:],
        "probe": {"binary": settings.get("binary"), "spec": "", "definitions": probe.get("definitions", []),
                  "build_id": probe.get("build_id"), "group": probe.get("group"), "events": probe.get("events", []),
                  "instance": probe.get("instance"), "variables": []},
        "target": _target(state, captures) if session else {},
        "sentinel": sentinel, "captures": index,
    }
    doc["message"] = message(doc)
    return doc


def _host_status(status, captures):
    if captures:
        return "threshold_reached"
    if status == "not_armed":
        return "target_not_running"
    if status == "target_exited":
        return "target_exited"
    return "threshold_not_reached"


def _live_cost(pid):
    """CPU seconds and peak memory of a live watcher, from /proc (the state's figure may be an hour old)."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            stat = procfs.parse_stat(handle.read())
        with open("/proc/%d/status" % pid) as handle:
            status = dict(line.split(":", 1) for line in handle.read().splitlines() if ":" in line)
    except (OSError, ValueError):
        return None
    ticks = float(os.sysconf("SC_CLK_TCK"))
    return {"cpu_seconds": round((stat["utime"] + stat["stime"]) / ticks, 3),
            "peak_rss_kb": int(status.get("VmHWM", "0 kB").split()[0]),
            "rss_kb": int(status.get("VmRSS", "0 kB").split()[0])}


def message(doc):
    s = doc["sentinel"]
    if s["status"] == "not_armed":
        return "no sentinel %s on this node" % doc["label"]
    lengths = [c.get("duration_ms") or 0 for c in doc["captures"]]
    text = "sentinel %s %s" % (doc["label"], {True: "is " + s["status"], False: "ended: " + s["status"]}[s["alive"]])
    if s["armed_since_utc"]:
        text += " (armed %s, until %s)" % (s["armed_since_utc"], s["until_utc"])
    text += "; %d capture(s)" % s["captures"]
    if lengths:
        text += ", longest %.1f ms" % max(lengths)
    if s["dropped_total"]:
        text += ", %d dropped for the spool's size cap" % s["dropped_total"]
    ended = s.get("ended_by") or {}
    if ended.get("message"):
        text += "; %s" % ended["message"]
    return text


def disarmed(doc, outcome):
    """The collected document, told that the sentinel was disarmed right after."""
    s = doc["sentinel"]
    if s["alive"]:
        s.update(status="disarmed", alive=False, ended=True,
                 ended_by={"why": "disarmed", "message": "disarmed (sentinel_state=absent)", "at": time.time()})
    doc["message"] = message(doc) + "; disarmed: watcher %s, spool %s" % (
        outcome["stopped"], "removed" if outcome["spool_removed"] else "kept")
    return doc
