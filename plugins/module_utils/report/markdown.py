# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet report as Markdown (report.md)."""


from ansible_collections.fleettrace.tracefs.plugins.module_utils.report.coverage import coverage_text
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report.escape import code_line, fence, md
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report.model import down_line
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report.text import (
    checks_line, fmt, hosts_line, summary_lines, worst_stalls)


def render_markdown(report):
    # Host names, comm names, files and stacks come from the nodes: escaped (report/escape.py).
    table = [code_line(line) for line in summary_lines(report)]
    out = ["# %s" % md(report["title"]), "", "Generated %s. Hosts: %s. Checks: %s." % (
        md(report["generated"]), md(hosts_line(report)), checks_line(report)), ""]
    out += ["**No result from %s**" % md(down_line(item)) for item in report["down"]]
    out += [""] if report["down"] else []
    out += ["## Fleet (sorted by p99 of all run-queue waits)", "", fence(table)] + table + [fence(table), ""]
    if report["checks"]:
        out += ["## Checks", "", "| host | check | status | value | limit |", "|---|---|---|---|---|"]
        for c in report["checks"]:
            cells = (c["host"], c["check"], c["status"], fmt(c.get("value"), 3), c.get("limit", c.get("message", "")))
            out.append("| %s | %s | %s | %s | %s |" % tuple(md(cell) for cell in cells))
        out.append("")
    for name in sorted(report["hosts"]):
        entry = report["hosts"][name]
        out += ["## %s" % md(name), ""]
        if entry.get("failure"):
            out += ["**%s**" % md(down_line(dict(entry["failure"], host=name))), ""]
        sched = entry.get("sched_latency")
        if sched:
            overall = sched["latency"]["all"]
            out.append("Run-queue latency over %s waits: p50 %s us, p99 %s us, max %s us; %s events, %s lost."
                       % (overall.get("count"), fmt(overall.get("p50_us")), fmt(overall.get("p99_us")),
                          fmt(overall.get("max_us")), sched["events"].get("processed"), sched["events"].get("lost")))
            out.append("Coverage: %s." % (coverage_text(sched) or "-"))
            out += ["", "```", "     usecs          : count"]
            for b in overall.get("histogram_log2_us") or []:
                out.append("%8d -> %-8d : %d" % (b["low_us"], b["high_us"] - 1 if b["high_us"] > 1 else 0, b["count"]))
            out += ["```", ""]
            for wait in (sched.get("worst_waits") or [])[:3]:
                ran = ", ".join("%s[%s] %s us" % (md(t["comm"]), md(t["pid"]), fmt(t["us"])) for t in wait["ran_meanwhile"])
                out.append("- waited %s us (%s) %s[%s] on CPU %s; meanwhile: %s"
                           % (fmt(wait["latency_us"]), md(wait["kind"]), md(wait["comm"]), md(wait["pid"]), md(wait["cpu"]),
                              ran or "-"))
            out.append("")
        for stall in worst_stalls(entry)[:5]:
            out.append("- %s stall %s ms of %s %s"
                       % (md(stall["state"]), fmt(stall["duration_ms"], 3), md(stall["task"]), md(stall["detail"])))
            for frame in stall["kernel_stack"][:12]:
                out.append("    %s" % code_line(frame))
        out.append("")
    return "\n".join(out) + "\n"
