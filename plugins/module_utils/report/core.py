# -*- coding: utf-8 -*-
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet report: per-host results in, report.json/.md/.html and junit.xml out.

Accepted per-host documents (schema in docs/sched-audit.md):

* ``kind: sched_latency`` -- the sched_latency module's result;
* ``kind: diagnose`` -- the diagnose workflow's result with ``findings``
  (``duration_ms``, ``state``, ``kernel_stack``, ``syscall``, ``fd``, ``file``...).

Checks are JMESPath expressions evaluated on each host's entry of
report.json (``hosts.<name>``): ``{"name", "value", "max"/"min"}`` compares a
number, ``{"name", "expr"}`` must be true.  A check whose value is null for
a host (no such data) is skipped for that host, not passed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import html
import json
import os
import re
from xml.sax.saxutils import quoteattr, escape as xml_escape

from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import correlate

try:
    import jmespath
    HAS_JMESPATH = True
except ImportError:  # reported by the module with a clear message
    jmespath = None
    HAS_JMESPATH = False

KINDS = ("sched_latency", "diagnose")
REPORT_FILES = ("report.json", "report.md", "report.html", "junit.xml")
BAR_COLOR = "#1f77b4"      # histogram bars (the screenshot test looks for it)
STALL_COLOR = "#d62728"


class ReportError(ValueError):
    """A per-host document or a check that cannot be used."""


# -- input -----------------------------------------------------------------------
def host_name(doc, fallback=None):
    return doc.get("inventory_hostname") or doc.get("host") or fallback


def validate_document(doc, where):
    """Check one per-host document; return it. ``where`` names its origin in errors."""
    if not isinstance(doc, dict):
        raise ReportError("%s: a per-host result must be a JSON object, got %s" % (where, type(doc).__name__))
    kind = doc.get("kind")
    if kind is None and str(doc.get("schema", "")).startswith("fleettrace.threshold_capture/"):
        # The threshold_capture role (diagnose workflow) names its schema instead of a kind.
        kind = doc["kind"] = "diagnose"
    if kind not in KINDS:
        raise ReportError("%s: field 'kind' must be one of %s, got %r (see docs/sched-audit.md)"
                          % (where, ", ".join(KINDS), kind))
    if not host_name(doc):
        raise ReportError("%s: no 'host' (or 'inventory_hostname') field" % where)
    if kind == "diagnose" and not isinstance(doc.get("findings", []), list):
        raise ReportError("%s: 'findings' must be a list" % where)
    return doc


def load_documents(paths):
    """Read per-host JSON files; a directory is searched for ``*.json`` (one level of host dirs)."""
    docs = []
    for path in paths:
        files = []
        if os.path.isdir(path):
            for root, _dirs, names in sorted(os.walk(path)):
                files.extend(os.path.join(root, n) for n in sorted(names) if n.endswith(".json"))
        else:
            files.append(path)
        for name in files:
            try:
                with open(name) as handle:
                    doc = json.load(handle)
            except (IOError, OSError, ValueError) as exc:
                raise ReportError("%s: cannot read a JSON per-host result: %s" % (name, exc))
            if isinstance(doc, dict) and not host_name(doc):
                # DIR/<host>/<kind>.json or DIR/<host>.json: the path names the host.
                base = os.path.basename(name)[:-len(".json")]
                doc["inventory_hostname"] = os.path.basename(os.path.dirname(name)) if base in KINDS else base
            docs.append(validate_document(doc, name))
    return docs


# -- model -----------------------------------------------------------------------
def _number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _max(values):
    values = [v for v in values if _number(v) is not None]
    return max(values) if values else None


def host_summary(entry):
    """The numbers a fleet table and the default checks use, from one host's entry."""
    sched = entry.get("sched_latency") or {}
    diag = entry.get("diagnose") or {}
    latency = sched.get("latency") or {}
    overall = latency.get("all") or {}
    wakeup = latency.get("wakeup") or {}
    findings = diag.get("findings") or []
    d_stalls = [s.get("duration_ms") for s in sched.get("longest_d") or []]
    d_stalls += [f.get("duration_ms") for f in findings if str(f.get("state", "")).startswith("D")]
    events = sched.get("events") or {}
    lost = events.get("lost") if sched else None
    if diag.get("lost_events") is not None:
        lost = (lost or 0) + diag["lost_events"]
    summary = {
        "p50_us": overall.get("p50_us"), "p90_us": overall.get("p90_us"), "p99_us": overall.get("p99_us"),
        "p99_9_us": overall.get("p99_9_us"), "max_us": overall.get("max_us"), "waits": overall.get("count"),
        "wakeup_p99_us": wakeup.get("p99_us"), "wakeup_max_us": wakeup.get("max_us"),
        "max_d_ms": _max(d_stalls), "d_stalls": len([d for d in d_stalls if _number(d) is not None]),
        "findings": len(findings), "max_finding_ms": _max(f.get("duration_ms") for f in findings),
        "lost_events": lost, "complete": events.get("complete") if sched else None,
        "events_per_s": events.get("per_second"),
        "unmeasured_waits": sched.get("unmeasured_waits"),
        "cpu_count": (sched.get("facts") or diag.get("facts") or {}).get("cpu_count"),
        "kernel": (sched.get("facts") or diag.get("facts") or {}).get("kernel"),
        "kinds": sorted(k for k in KINDS if entry.get(k)),
    }
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
            row[column] = search(expression, hosts[name], "column %r" % column)
        fleet.append(row)
    fleet.sort(key=lambda row: (row["p99_us"] is None, -(row["p99_us"] or 0), row["host"]))
    report = {
        "title": title,
        "generated": (now or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "hosts": hosts,
        "fleet": fleet,
        "columns": sorted((columns or {}).keys()),
        "checks": [],
    }
    report["checks"] = evaluate_checks(report, checks or [])
    report["failed"] = [c for c in report["checks"] if c["status"] == "failed"]
    report["passed"] = not report["failed"]
    return report


# -- checks ----------------------------------------------------------------------
def compile_check(check):
    if not isinstance(check, dict) or not check.get("name"):
        raise ReportError("each check needs a 'name' (got %r)" % (check,))
    if not HAS_JMESPATH:
        raise ReportError("checks need the Python library jmespath on the controller (pip install jmespath)")
    if "expr" not in check and "value" not in check:
        raise ReportError("check %r needs 'value' (with 'max' or 'min') or 'expr'" % check["name"])
    if "value" in check and "max" not in check and "min" not in check:
        raise ReportError("check %r has 'value' but neither 'max' nor 'min'" % check["name"])
    for key in ("max", "min"):
        if key in check:
            try:
                check[key] = float(check[key])
            except (TypeError, ValueError):
                raise ReportError("check %r: %s=%r is not a number" % (check["name"], key, check[key]))
    compiled = {}
    for key in ("value", "expr"):
        if key in check:
            try:
                compiled[key] = jmespath.compile(check[key])
            except jmespath.exceptions.JMESPathError as exc:
                raise ReportError("check %r: %s %r is not a valid JMESPath expression: %s"
                                  % (check["name"], key, check[key], exc))
    return compiled


def search(expression, data, what):
    if not HAS_JMESPATH:
        raise ReportError("%s needs the Python library jmespath on the controller" % what)
    try:
        return jmespath.search(expression, data)
    except jmespath.exceptions.JMESPathError as exc:
        raise ReportError("%s: JMESPath %r failed: %s" % (what, expression, exc))


def evaluate_checks(report, checks):
    """One result per host per check: status passed / failed / skipped."""
    results = []
    compiled = [(check, compile_check(check)) for check in checks]
    for name in sorted(report["hosts"]):
        entry = report["hosts"][name]
        for check, exprs in compiled:
            result = {"host": name, "check": check["name"], "description": check.get("description", "")}
            try:
                if "value" in exprs:
                    value = exprs["value"].search(entry)
                    result["value"] = value
                    if value is None:
                        result.update(status="skipped", message="no data for %s on %s" % (check["value"], name))
                    elif _number(value) is None:
                        result.update(status="failed", message="%s is %r, not a number" % (check["value"], value))
                    else:
                        limits = []
                        ok = True
                        if "max" in check:
                            limits.append("<= %s" % check["max"])
                            ok = ok and value <= check["max"]
                        if "min" in check:
                            limits.append(">= %s" % check["min"])
                            ok = ok and value >= check["min"]
                        result["limit"] = " and ".join(limits)
                        result["status"] = "passed" if ok else "failed"
                        result["message"] = "%s: %s = %s (must be %s)" % (
                            name, check["name"], value, result["limit"])
                if "expr" in exprs and result.get("status") != "failed":
                    verdict = exprs["expr"].search(entry)
                    if verdict is None and "value" not in exprs:
                        result.update(status="skipped", message="no data for %s on %s" % (check["expr"], name))
                    elif "value" not in exprs or result.get("status") == "passed":
                        result["status"] = "passed" if verdict else "failed"
                        result["message"] = "%s: %s is %s" % (name, check["expr"], "true" if verdict else "false")
            except jmespath.exceptions.JMESPathError as exc:
                result.update(status="failed", message="%s: evaluating %s failed: %s" % (name, check["name"], exc))
            results.append(result)
    return results


def failure_message(report):
    if report["passed"]:
        return "all %d checks passed on %d hosts" % (len(report["checks"]), len(report["hosts"]))
    lines = ["%d of %d checks failed:" % (len(report["failed"]), len(report["checks"]))]
    lines += ["  %s" % c["message"] for c in report["failed"]]
    return "\n".join(lines)


# -- rendering -----------------------------------------------------------------------
def _fmt(value, digits=1):
    if value is None:
        return "-"
    if isinstance(value, float):
        return ("%%.%df" % digits) % value
    return str(value)


TABLE_COLUMNS = (("host", "host"), ("p50_us", "p50 us"), ("p90_us", "p90 us"), ("p99_us", "p99 us"),
                 ("p99_9_us", "p99.9 us"), ("max_us", "max us"), ("waits", "waits"),
                 ("max_d_ms", "max D ms"), ("findings", "findings"), ("lost_events", "lost events"))


def summary_lines(report):
    """The fleet table as fixed-width text lines (end of play, report.md)."""
    columns = list(TABLE_COLUMNS) + [(c, c) for c in report.get("columns", [])]
    rows = [[label for _key, label in columns]]
    for row in report["fleet"]:
        rows.append([_fmt(row.get(key)) for key, _label in columns])
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                               for i, cell in enumerate(row)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def describe_syscall(finding):
    """``write(fd 3 -> /var/log/heartbeat.log)`` from a finding's syscall, fd and file."""
    syscall = finding.get("syscall")
    name = syscall.get("name") if isinstance(syscall, dict) else syscall
    fd = finding.get("fd")
    if fd is None and isinstance(syscall, dict):
        fd = syscall.get("fd")
    target = ""
    if fd is not None:
        target = "fd %s" % fd + (" -> %s" % finding["file"] if finding.get("file") else "")
    if name:
        return "in %s(%s)" % (name, target)
    return "on %s" % target if target else ""


def blocking_frames(stack):
    """The stack from where the task blocked outwards: scheduler and tracer frames dropped."""
    frames = [frame.strip().lstrip("=> ").strip() for frame in stack]
    first = correlate.blocked_in(frames)
    if first is None:
        return frames
    for index, frame in enumerate(frames):
        if frame.split("+")[0] == first:
            return frames[index:]
    return frames


def _stalls(entry):
    """Worst stalls of one host: D intervals (audit) and findings (diagnose), longest first."""
    stalls = []
    for item in (entry.get("sched_latency") or {}).get("longest_d") or []:
        stalls.append({"source": "audit", "duration_ms": item.get("duration_ms"), "state": "D",
                       "task": "%s[%s]" % (item.get("comm"), item.get("pid")),
                       "detail": "ongoing at end of window" if item.get("ongoing") else "",
                       "kernel_stack": item.get("kernel_stack") or []})
    for item in (entry.get("diagnose") or {}).get("findings") or []:
        stalls.append({"source": "diagnose", "duration_ms": item.get("duration_ms"), "state": item.get("state"),
                       "task": "%s[%s]" % (item.get("comm", "?"), item.get("pid", "?")),
                       "detail": describe_syscall(item),
                       "kernel_stack": blocking_frames(item.get("kernel_stack") or [])})
    stalls.sort(key=lambda s: -(_number(s["duration_ms"]) or 0))
    return stalls


def render_markdown(report):
    out = ["# %s" % report["title"], "", "Generated %s. Hosts: %d. Checks: %s." % (
        report["generated"], len(report["hosts"]),
        "all passed" if report["passed"] else "%d failed" % len(report["failed"])), "",
        "## Fleet (sorted by p99 run-queue latency)", "", "```"] + summary_lines(report) + ["```", ""]
    if report["checks"]:
        out += ["## Checks", "", "| host | check | status | value | limit |", "|---|---|---|---|---|"]
        for c in report["checks"]:
            cells = (c["host"], c["check"], c["status"], _fmt(c.get("value"), 3), c.get("limit", c.get("message", "")))
            out.append("| %s | %s | %s | %s | %s |" % cells)
        out.append("")
    for name in sorted(report["hosts"]):
        entry = report["hosts"][name]
        out += ["## %s" % name, ""]
        sched = entry.get("sched_latency")
        if sched:
            overall = sched["latency"]["all"]
            out.append("Run-queue latency over %s waits: p50 %s us, p99 %s us, max %s us; %s events, %s lost."
                       % (overall.get("count"), _fmt(overall.get("p50_us")), _fmt(overall.get("p99_us")),
                          _fmt(overall.get("max_us")), sched["events"].get("processed"), sched["events"].get("lost")))
            out += ["", "```", "     usecs          : count"]
            for b in overall.get("histogram_log2_us") or []:
                out.append("%8d -> %-8d : %d" % (b["low_us"], b["high_us"] - 1 if b["high_us"] > 1 else 0, b["count"]))
            out += ["```", ""]
            for wait in (sched.get("worst_waits") or [])[:3]:
                ran = ", ".join("%s[%s] %s us" % (t["comm"], t["pid"], _fmt(t["us"])) for t in wait["ran_meanwhile"])
                out.append("- waited %s us (%s) %s[%s] on CPU %s; meanwhile: %s"
                           % (_fmt(wait["latency_us"]), wait["kind"], wait["comm"], wait["pid"], wait["cpu"], ran or "-"))
            out.append("")
        for stall in _stalls(entry)[:5]:
            out.append("- %s stall %s ms of %s %s"
                       % (stall["state"], _fmt(stall["duration_ms"], 3), stall["task"], stall["detail"]))
            for frame in stall["kernel_stack"][:12]:
                out.append("    %s" % frame)
        out.append("")
    return "\n".join(out) + "\n"


def svg_histogram(buckets, width=420, height=140):
    """log2 histogram as inline SVG bars (no scripts, no external references)."""
    if not buckets:
        return '<p class="empty">no samples</p>'
    top = max(b["count"] for b in buckets) or 1
    slot = float(width - 40) / len(buckets)
    parts = ['<svg class="hist" width="%d" height="%d" '
             'viewBox="0 0 %d %d" role="img">' % (width, height + 30, width, height + 30)]
    for index, bucket in enumerate(buckets):
        bar_height = 0 if not bucket["count"] else max(2.0, (height - 10) * bucket["count"] / float(top))
        x = 30 + index * slot
        parts.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s-%s us: %d</title></rect>'
                     % (x, height - bar_height, max(slot - 2, 1), bar_height, BAR_COLOR, bucket["low_us"], bucket["high_us"],
                        bucket["count"]))
        if index % 2 == 0:
            parts.append('<text x="%.1f" y="%d" font-size="9" text-anchor="middle">%s</text>'
                         % (x + slot / 2, height + 12, _short_us(bucket["low_us"])))
    parts.append('<line x1="28" y1="%d" x2="%d" y2="%d" stroke="#444"/>' % (height, width - 8, height))
    parts.append('<text x="%d" y="%d" font-size="10">us (log2 buckets)</text>' % (width // 2 - 40, height + 26))
    parts.append("</svg>")
    return "".join(parts)


def _short_us(value):
    if value >= 1000000:
        return "%ds" % (value // 1000000)
    if value >= 1000:
        return "%dms" % (value // 1000)
    return str(value)


_SORT_JS = """
function sortFleet(col, numeric) {
  var table = document.getElementById('fleet');
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var dir = table.getAttribute('data-col') == col && table.getAttribute('data-dir') == 'desc' ? 'asc' : 'desc';
  rows.sort(function (a, b) {
    var x = a.cells[col].getAttribute('data-v'), y = b.cells[col].getAttribute('data-v');
    if (numeric) { x = x === '' ? -Infinity : parseFloat(x); y = y === '' ? -Infinity : parseFloat(y); }
    var r = x < y ? -1 : (x > y ? 1 : 0);
    return dir == 'desc' ? -r : r;
  });
  rows.forEach(function (row) { body.appendChild(row); });
  table.setAttribute('data-col', col); table.setAttribute('data-dir', dir);
}
"""

_CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
th { background: #eee; cursor: pointer; } td.n { text-align: right; }
.failed { background: #fdd; } .passed { background: #dfd; } .skipped { color: #888; }
.host { border-top: 2px solid #888; margin-top: 1.5em; }
pre { background: #f6f6f6; padding: 6px; font-size: 12px; }
.stall { color: %s; font-weight: bold; }
""" % STALL_COLOR


def render_html(report):
    """A self-contained page: inline CSS, inline SVG, inline JS; nothing fetched."""
    e = html.escape
    columns = list(TABLE_COLUMNS) + [(c, c) for c in report.get("columns", [])]
    out = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
           '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'; '
           'script-src \'unsafe-inline\'; img-src data:">',
           "<title>%s</title><style>%s</style></head><body>" % (e(report["title"]), _CSS),
           "<h1>%s</h1>" % e(report["title"]),
           "<p>Generated %s &middot; %d hosts &middot; checks: %s</p>" % (
               e(report["generated"]), len(report["hosts"]),
               "all passed" if report["passed"] else "<b>%d failed</b>" % len(report["failed"])),
           "<h2>Fleet</h2><p>Click a column to sort (initially by p99, worst first).</p>",
           '<table id="fleet" data-col="3" data-dir="desc"><thead><tr>']
    for index, (key, label) in enumerate(columns):
        out.append('<th onclick="sortFleet(%d, %s)">%s</th>' % (index, "false" if key == "host" else "true", e(label)))
    out.append("</tr></thead><tbody>")
    failing_hosts = set(c["host"] for c in report["failed"])
    for row in report["fleet"]:
        out.append('<tr class="%s">' % ("failed" if row["host"] in failing_hosts else ""))
        for key, _label in columns:
            value = row.get(key)
            data = "" if value is None else str(value)
            cell = '<a href="#host-%s">%s</a>' % (e(_anchor(row["host"])), e(row["host"])) if key == "host" else e(_fmt(value))
            out.append('<td%s data-v="%s">%s</td>' % ("" if key == "host" else ' class="n"', e(data), cell))
        out.append("</tr>")
    out.append("</tbody></table>")
    if report["checks"]:
        out.append("<h2>Checks</h2><table><thead><tr><th>host</th><th>check</th><th>status</th>"
                   "<th>value</th><th>limit</th></tr></thead><tbody>")
        for c in report["checks"]:
            out.append('<tr class="%s"><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>' % (
                e(c["status"]), e(c["host"]), e(c["check"]), e(c["status"]), e(_fmt(c.get("value"), 3)),
                e(c.get("limit", c.get("message", "")))))
        out.append("</tbody></table>")
    for name in sorted(report["hosts"]):
        entry = report["hosts"][name]
        out.append('<div class="host" id="host-%s"><h2>%s</h2>' % (e(_anchor(name)), e(name)))
        sched = entry.get("sched_latency")
        if sched:
            overall = sched["latency"]["all"]
            facts = sched.get("facts") or {}
            out.append("<p>%s CPUs, kernel %s, sched_rt_runtime_us %s. %s events in %s s, <b>%s lost</b>; "
                       "%s switch-ins the kernel did not record, %s waits unmeasured.</p>" % (
                           e(_fmt(facts.get("cpu_count"))), e(_fmt(facts.get("kernel"))),
                           e(_fmt(facts.get("sched_rt_runtime_us"))), e(_fmt(sched["events"].get("processed"))),
                           e(_fmt(sched["window"].get("duration_s"))), e(_fmt(sched["events"].get("lost"))),
                           e(_fmt(sched.get("inferred_switch_ins"))), e(_fmt(sched.get("unmeasured_waits")))))
            out.append("<h3>Run-queue latency: p50 %s us, p99 %s us, p99.9 %s us, max %s us (%s waits)</h3>" % tuple(
                e(_fmt(overall.get(k))) for k in ("p50_us", "p99_us", "p99_9_us", "max_us", "count")))
            out.append(svg_histogram(overall.get("histogram_log2_us") or []))
            if sched.get("worst_waits"):
                out.append("<h3>Worst waits</h3><table><thead><tr><th>task</th><th>waited us</th><th>kind</th>"
                           "<th>CPU</th><th>ran meanwhile</th></tr></thead><tbody>")
                for wait in sched["worst_waits"]:
                    ran = ", ".join("%s[%s] %s us" % (t["comm"], t["pid"], _fmt(t["us"])) for t in wait["ran_meanwhile"])
                    out.append("<tr><td>%s[%s]</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>" % (
                        e(wait["comm"]), wait["pid"], e(_fmt(wait["latency_us"])), e(wait["kind"]), wait["cpu"],
                        e(ran or "-")))
                out.append("</tbody></table>")
            if sched.get("tasks"):
                out.append("<h3>Watched tasks</h3><table><thead><tr><th>task</th><th>policy</th><th>rtprio</th>"
                           "<th>nice</th><th>p99 us</th><th>max us</th><th>S max ms</th><th>D max ms</th></tr></thead><tbody>")
                for task in sched["tasks"][:50]:
                    out.append("<tr><td>%s[%s]</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td>"
                               "<td>%s</td></tr>" % (
                                   e(task["comm"]), task["pid"], e(_fmt(task.get("policy"))), e(_fmt(task.get("rtprio"))),
                                   e(_fmt(task.get("nice"))), e(_fmt(task["runqueue"].get("p99_us"))),
                                   e(_fmt(task["runqueue"].get("max_us"))), e(_fmt(task["offcpu"]["S"].get("max_ms"))),
                                   e(_fmt(task["offcpu"]["D"].get("max_ms")))))
                out.append("</tbody></table>")
        stalls = _stalls(entry)
        if stalls:
            out.append("<h3>Worst stalls</h3>")
            for stall in stalls[:10]:
                out.append('<p><span class="stall">%s %s ms</span> %s (%s) %s</p>' % (
                    e(_fmt(stall["state"])), e(_fmt(stall["duration_ms"], 3)), e(stall["task"]), e(stall["source"]),
                    e(stall["detail"])))
                if stall["kernel_stack"]:
                    out.append("<pre>%s</pre>" % e("\n".join(stall["kernel_stack"])))
        out.append("</div>")
    out.append("<script>%s</script></body></html>" % _SORT_JS)
    return "\n".join(out) + "\n"


def _anchor(name):
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def render_junit(report, suite="fleettrace.sched_latency"):
    """One testcase per host per check; skipped when the host has no data for it."""
    checks = report["checks"]
    failures = len([c for c in checks if c["status"] == "failed"])
    skipped = len([c for c in checks if c["status"] == "skipped"])
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           "<testsuites>",
           "<testsuite name=%s tests=\"%d\" failures=\"%d\" errors=\"0\" skipped=\"%d\" timestamp=%s>"
           % (quoteattr(suite), len(checks), failures, skipped, quoteattr(report["generated"]))]
    for c in checks:
        out.append("<testcase classname=%s name=%s>" % (quoteattr(c["host"]), quoteattr(c["check"])))
        if c["status"] == "failed":
            out.append("<failure message=%s type=\"threshold\">%s</failure>"
                       % (quoteattr(c["message"]), xml_escape(json.dumps(c, sort_keys=True, default=str))))
        elif c["status"] == "skipped":
            out.append("<skipped message=%s/>" % quoteattr(c["message"]))
        out.append("</testcase>")
    out += ["</testsuite>", "</testsuites>"]
    return "\n".join(out) + "\n"


def render_all(report):
    return {
        "report.json": json.dumps(report, indent=2, sort_keys=True, default=str) + "\n",
        "report.md": render_markdown(report),
        "report.html": render_html(report),
        "junit.xml": render_junit(report),
    }


def write_files(directory, rendered):
    """Write the rendered files; return the names whose content changed."""
    if not os.path.isdir(directory):
        os.makedirs(directory)
    changed = []
    for name, text in sorted(rendered.items()):
        path = os.path.join(directory, name)
        try:
            with open(path) as handle:
                if handle.read() == text:
                    continue
        except (IOError, OSError):
            pass
        tmp = path + ".tmp"
        with open(tmp, "w") as handle:
            handle.write(text)
        os.rename(tmp, path)
        changed.append(name)
    return changed
