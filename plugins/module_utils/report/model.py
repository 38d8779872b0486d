# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet report's model: per-host documents merged into the report.json structure."""


import datetime

from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import checks as report_checks
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import coverage as report_coverage
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report.document import KINDS, ReportError, host_name, number


def _max(values):
    values = [v for v in values if number(v) is not None]
    return max(values) if values else None


def host_summary(entry):
    """The numbers a fleet table and the default checks use, from one host's entry."""
    sched = entry.get("sched_latency") or {}
    diag = entry.get("diagnose") or {}
    latency = sched.get("latency") or {}
    overall = latency.get("all") or {}
    wakeup = latency.get("wakeup") or {}
    preempt = latency.get("preempt") or {}
    findings = diag.get("findings") or []
    d_stalls = [s.get("duration_ms") for s in sched.get("longest_d") or []]
    d_stalls += [f.get("duration_ms") for f in findings if str(f.get("state", "")).startswith("D")]
    events = sched.get("events") or {}
    lost = events.get("lost") if sched else None
    if diag.get("lost_events") is not None:
        lost = (lost or 0) + diag["lost_events"]
    failure = entry.get("failure") or {}
    summary = {
        # "ok", or why the host gave no result (unreachable, failed, no result): never left out of a report.
        "status": failure.get("status") or "ok",
        "p50_us": overall.get("p50_us"), "p90_us": overall.get("p90_us"), "p99_us": overall.get("p99_us"),
        "p99_9_us": overall.get("p99_9_us"), "max_us": overall.get("max_us"), "waits": overall.get("count"),
        "wakeup_p99_us": wakeup.get("p99_us"), "wakeup_max_us": wakeup.get("max_us"),
        "preempt_p99_us": preempt.get("p99_us"),
        "max_d_ms": _max(d_stalls), "d_stalls": len([d for d in d_stalls if number(d) is not None]),
        "findings": len(findings) if (sched or diag) else None, "max_finding_ms": _max(f.get("duration_ms") for f in findings),
        "lost_events": lost, "complete": events.get("complete") if sched else None,
        "events_per_s": events.get("per_second"),
        "unmeasured_waits": sched.get("unmeasured_waits"),
        "cpu_count": (sched.get("facts") or diag.get("facts") or {}).get("cpu_count"),
        "kernel": (sched.get("facts") or diag.get("facts") or {}).get("kernel"),
        "kinds": sorted(k for k in KINDS if entry.get(k) and k != "failure"),
    }
    summary.update(report_coverage.summary_fields(sched))
    return summary


def build_report(docs, checks=None, columns=None, title="Scheduling latency report", now=None):
    """Merge per-host documents into the report.json structure and evaluate checks."""
    hosts = {}
    for doc in docs:
        name = host_name(doc)
        entry = hosts.setdefault(name, {"host": name})
        if entry.get(doc["kind"]):
            raise ReportError("host %s has two %s results; give one per host and kind" % (name, doc["kind"]))
        entry[doc["kind"]] = doc
    for name, entry in hosts.items():
        entry["summary"] = host_summary(entry)
    fleet = []
    for name in sorted(hosts):
        row = dict(hosts[name]["summary"])
        row["host"] = name
        for column, expression in (columns or {}).items():
            row[column] = report_checks.search(expression, hosts[name], "column %r" % column)
        fleet.append(row)
    # Hosts that gave no result first: a report is read from the top.
    fleet.sort(key=lambda row: (row["status"] == "ok", row["p99_us"] is None, -(row["p99_us"] or 0), row["host"]))
    down = [{"host": name, "status": hosts[name]["failure"]["status"], "msg": hosts[name]["failure"].get("msg"),
             "task": hosts[name]["failure"].get("task")} for name in sorted(hosts) if hosts[name].get("failure")]
    report = {
        "title": title,
        "generated": (now or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "hosts": hosts,
        "fleet": fleet,
        "columns": sorted((columns or {}).keys()),
        "checks": [],
        "down": down,
    }
    report["checks"] = report_checks.evaluate_checks(report, checks or [], skip={d["host"] for d in down})
    report["failed"] = [c for c in report["checks"] if c["status"] == "failed"]
    # A host that gave no result fails the report: a gate must not pass because a node was down.
    report["passed"] = not report["failed"] and not down
    return report


def down_line(item):
    """``node2: unreachable (Trace the window ...): Failed to connect ...`` -- one host without a result."""
    task = " (%s)" % item["task"] if item.get("task") else ""
    return "%s: %s%s: %s" % (item["host"], item["status"], task, item.get("msg") or "")


def failure_message(report):
    """What the report says in one place: hosts without a result, failed checks, or what passed."""
    hosts, checks, down = len(report["hosts"]), len(report["checks"]), report["down"]
    lines = []
    if down:
        lines.append("%d of %d host(s) gave no result:" % (len(down), hosts))
        lines += ["  %s" % down_line(item) for item in down]
    if report["failed"]:
        lines.append("%d of %d checks failed:" % (len(report["failed"]), checks))
        lines += ["  %s" % c["message"] for c in report["failed"]]
    if lines:
        return "\n".join(lines)
    reported = "%d host(s) reported" % hosts
    if not checks:
        return reported + ", no checks defined"
    skipped = len([c for c in report["checks"] if c["status"] == "skipped"])
    return "%s; %d of %d checks passed%s" % (
        reported, checks - skipped, checks, ", %d skipped (no data)" % skipped if skipped else "")
