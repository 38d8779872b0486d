# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet report as one self-contained HTML page (report.html)."""


import html
import re

from ansible_collections.fleettrace.tracefs.plugins.module_utils.report.incident import render_incident_html
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import svg as report_svg
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report.coverage import coverage_text
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import timeline
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report.text import (
    checks_line, column_groups, fmt, hosts_line, table_columns, worst_stalls)
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report.model import down_line

STALL_COLOR = "#d62728"

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
th { background: #eee; cursor: pointer; } td.n { text-align: right; } th.group { cursor: default; text-align: center; }
.failed { background: #fdd; } .passed { background: #dfd; } .skipped { color: #888; }
.host { border-top: 2px solid #888; margin-top: 1.5em; }
pre { background: #f6f6f6; padding: 6px; font-size: 12px; }
svg.timeline { width: 100%%; height: auto; } svg.hist { width: 100%%; max-width: 900px; height: auto; } figure.stall-timeline { margin: 0.5em 0 1.5em; }
.stall { color: %s; font-weight: bold; }
""" % STALL_COLOR


def render_html(report):
    """A self-contained page: inline CSS, inline SVG, inline JS; nothing fetched."""
    e = html.escape
    columns = table_columns(report)
    out = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
           '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'; '
           'script-src \'unsafe-inline\'; img-src data:">',
           "<title>%s</title><style>%s</style></head><body>" % (e(report["title"]), _CSS),
           "<h1>%s</h1>" % e(report["title"]),
           "<p>Generated %s &middot; %s &middot; checks: %s</p>" % (
               e(report["generated"]),
               "<b>%s</b>" % e(hosts_line(report)) if report["down"] else e(hosts_line(report)),
               e(checks_line(report)) if not report["failed"] else "<b>%s</b>" % e(checks_line(report))),
           "".join('<p class="failed down"><b>No result from %s</b></p>' % e(down_line(item))
                   for item in report["down"]),
           "<h2>Fleet</h2><p>Click a column to sort%s.</p>" % (
               " (initially by the p99 of all run-queue waits, worst first)" if _column_index(columns, "p99_us") else ""),
           '<table id="fleet" data-col="%d" data-dir="desc"><thead><tr>' % _column_index(columns, "p99_us")]
    # Two header rows: a group (all waits, wakeups, preemptions) over the percentiles it names, then the labels.
    spans = column_groups(columns)
    for group, first, last in spans:
        if group is None:
            key, label, _group = columns[first]
            out.append('<th rowspan="2" onclick="sortFleet(%d, %s)">%s</th>' % (
                first, "false" if key == "host" else "true", e(label)))
        else:
            out.append('<th colspan="%d" class="group">%s</th>' % (last - first + 1, e(group)))
    out.append("</tr><tr>")
    for group, first, last in spans:
        if group is not None:
            for index in range(first, last + 1):
                out.append('<th onclick="sortFleet(%d, true)">%s</th>' % (index, e(columns[index][1])))
    out.append("</tr></thead><tbody>")
    failing_hosts = {c["host"] for c in report["failed"]} | {d["host"] for d in report["down"]}
    for row in report["fleet"]:
        out.append('<tr class="%s">' % ("failed" if row["host"] in failing_hosts else ""))
        for key, _label, _group in columns:
            value = row.get(key)
            data = "" if value is None else str(value)
            cell = '<a href="#host-%s">%s</a>' % (e(_anchor(row["host"])), e(row["host"])) if key == "host" else e(fmt(value))
            out.append('<td%s data-v="%s">%s</td>' % ("" if key == "host" else ' class="n"', e(data), cell))
        out.append("</tr>")
    out.append("</tbody></table>")
    if report["checks"]:
        out.append("<h2>Checks</h2><table><thead><tr><th>host</th><th>check</th><th>status</th>"
                   "<th>value</th><th>limit</th></tr></thead><tbody>")
        for c in report["checks"]:
            out.append('<tr class="%s"><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>' % (
                e(c["status"]), e(c["host"]), e(c["check"]), e(c["status"]), e(fmt(c.get("value"), 3)),
                e(c.get("limit", c.get("message", "")))))
        out.append("</tbody></table>")
    for name in sorted(report["hosts"]):
        entry = report["hosts"][name]
        out.append('<div class="host" id="host-%s"><h2>%s</h2>' % (e(_anchor(name)), e(name)))
        if entry.get("failure"):
            failure = dict(entry["failure"], host=name)
            out.append('<p class="failed">%s</p>' % e(down_line(failure)))
        sched = entry.get("sched_latency")
        if sched:
            overall = sched["latency"]["all"]
            facts = sched.get("facts") or {}
            out.append("<p>%s CPUs, kernel %s, sched_rt_runtime_us %s. %s events in %s s, <b>%s lost</b>; "
                       "%s switch-ins the kernel did not record, %s waits unmeasured.</p>" % (
                           e(fmt(facts.get("cpu_count"))), e(fmt(facts.get("kernel"))),
                           e(fmt(facts.get("sched_rt_runtime_us"))), e(fmt(sched["events"].get("processed"))),
                           e(fmt(sched["window"].get("duration_s"))), e(fmt(sched["events"].get("lost"))),
                           e(fmt(sched.get("inferred_switch_ins"))), e(fmt(sched.get("unmeasured_waits")))))
            keys = ("p50_us", "p99_us", "p99_9_us", "max_us", "count")
            out.append("<h3>Run-queue latency of all waits: p50 %s us, p99 %s us, p99.9 %s us, max %s us "
                       "(%s waits)</h3>" % tuple(e(fmt(overall.get(k))) for k in keys))
            wakeup, preempt = sched["latency"].get("wakeup") or {}, sched["latency"].get("preempt") or {}
            out.append("<p>Wakeups (woken, then on a CPU): p99 %s us, max %s us (%s). Preemptions (runnable "
                       "again, then on a CPU): p99 %s us, max %s us (%s).</p>" % tuple(
                           e(fmt(d.get(k))) for d in (wakeup, preempt) for k in ("p99_us", "max_us", "count")))
            out.append('<p class="coverage">Coverage: %s.</p>' % e(coverage_text(sched) or "-"))
            out.append(report_svg.svg_histogram(overall.get("histogram_log2_us") or [], "waits", _latency_markers(overall)))
            if sched.get("worst_waits"):
                out.append("<h3>Worst waits</h3><table><thead><tr><th>task</th><th>waited us</th><th>kind</th>"
                           "<th>CPU</th><th>ran meanwhile</th></tr></thead><tbody>")
                for wait in sched["worst_waits"]:
                    ran = ", ".join("%s[%s] %s us" % (t["comm"], t["pid"], fmt(t["us"])) for t in wait["ran_meanwhile"])
                    out.append("<tr><td>%s[%s]</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>" % (
                        e(wait["comm"]), wait["pid"], e(fmt(wait["latency_us"])), e(wait["kind"]), wait["cpu"],
                        e(ran or "-")))
                out.append("</tbody></table>")
            if sched.get("tasks"):
                out.append("<h3>Watched tasks</h3><table><thead><tr><th>task</th><th>policy</th><th>rtprio</th>"
                           "<th>nice</th><th>p99 us</th><th>max us</th><th>S max ms</th><th>D max ms</th></tr></thead><tbody>")
                for task in sched["tasks"][:50]:
                    out.append("<tr><td>%s[%s]</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td>"
                               "<td>%s</td></tr>" % (
                                   e(task["comm"]), task["pid"], e(fmt(task.get("policy"))), e(fmt(task.get("rtprio"))),
                                   e(fmt(task.get("nice"))), e(fmt(task["runqueue"].get("p99_us"))),
                                   e(fmt(task["runqueue"].get("max_us"))), e(fmt(task["offcpu"]["S"].get("max_ms"))),
                                   e(fmt(task["offcpu"]["D"].get("max_ms")))))
                out.append("</tbody></table>")
        stalls = worst_stalls(entry)
        if stalls:
            out.append("<h3>Worst stalls</h3>")
            for stall in stalls[:10]:
                out.append('<p><span class="stall">%s %s ms</span> %s (%s) %s</p>' % (
                    e(fmt(stall["state"])), e(fmt(stall["duration_ms"], 3)), e(stall["task"]), e(stall["source"]),
                    e(stall["detail"])))
                if stall["kernel_stack"]:
                    out.append("<pre>%s</pre>" % e("\n".join(stall["kernel_stack"])))
        out.append(render_incident_html(entry.get("diagnose") or {}))
        drawn = timeline.host_timelines(entry)
        if drawn:
            out.append("<h3>Stall timelines</h3>")
            out += drawn
        out.append("</div>")
    out.append("<script>%s</script></body></html>" % _SORT_JS)
    return "\n".join(out) + "\n"


def _column_index(columns, key):
    keys = [column[0] for column in columns]
    return keys.index(key) if key in keys else 0


def _latency_markers(series):
    """The p99 and the worst wait on the run-queue histogram."""
    marks = []
    if series.get("p99_us") is not None:
        marks.append(report_svg.marker(series["p99_us"], "p99", report_svg.PERCENTILE_COLOR))
    if series.get("max_us") is not None:
        marks.append(report_svg.marker(series["max_us"], "worst wait", report_svg.STALL_COLOR))
    return marks


def _anchor(name):
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)
