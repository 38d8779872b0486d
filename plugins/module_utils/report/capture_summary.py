# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""summary.json and summary.md of one threshold-capture run: every host's result merged, in words.

The hosts' results (threshold_capture's HOST.json, the sentinel's documents) are merged
into one summary; hosts the run was for without a result are listed as unreachable.
Text from the nodes goes through escape.md, as in report.md.
"""


import math

from ansible_collections.fleettrace.tracefs.plugins.module_utils.report.escape import md
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report.text import blocking_frames

SCHEMA = "fleettrace.threshold_capture.summary/1"
# Frames of the tracer and the scheduler, left out of a stack's line.
_OWN_FRAMES = ("trace_event_", "__traceiter_")
_SCHEDULER = ("__schedule", "schedule", "preempt_schedule")
STACK_FRAMES = 8


def merge(results, label, results_dir, expected_hosts=()):
    """The summary document of ``results`` (host result dicts, sorted by file name)."""
    hosts = list(results)
    names = [h.get("host") for h in hosts]
    return {
        "schema": SCHEMA, "label": label, "results_dir": results_dir, "hosts": hosts,
        "unreachable": [name for name in expected_hosts if name not in names],
        "totals": {"hosts": len(hosts), "threshold_reached": len([h for h in hosts if h.get("threshold_reached")]),
                   "findings": sum(len(h.get("findings") or []) for h in hosts)},
    }


def _ms(ns):
    return "%.1f" % (float(ns or 0) / 1e6)


def _frames(stack):
    frames = []
    for frame in stack:
        name = frame.strip().lstrip("=> ").strip().split("+")[0].split(" ")[0]
        if name.startswith(_OWN_FRAMES) or name in _SCHEDULER:
            continue
        frames.append(md(name))
    return " <- ".join(frames[:STACK_FRAMES])


def histogram(buckets):
    """log2 buckets as text bars, the non-empty range only, in a code fence ([] when all are empty)."""
    used = [i for i, bucket in enumerate(buckets or []) if bucket.get("count")]
    if not used:
        return []
    top = max(buckets[i]["count"] for i in used)
    lines = ["```"]
    for bucket in buckets[used[0]:used[-1] + 1]:
        stars = "*" * int(math.ceil(40.0 * bucket["count"] / top))
        lines.append("%10s -> %-10s us : %-6d|%s" % (bucket["low_us"], bucket["high_us"], bucket["count"], stars))
    return lines + ["```"]


def _cause(finding):
    cause = finding.get("cause") or "blocked"
    if cause == "unexplained":
        return "no cause in the buffer (%s)" % md("; ".join(finding.get("missing_cause") or []))
    if cause == "runnable":
        text = "runnable but not running for %s ms" % _ms(finding.get("runnable_ns"))
        other = finding.get("ran_instead")
        if other and finding.get("cpu_holders"):
            priority = (" rtprio %s" % other["rtprio"]) if other.get("rtprio") is not None else (
                " nice %s" % other.get("nice"))
            text += ", %s[%s] (%s%s) held the CPU %.1f ms" % (md(other.get("comm")), md(other.get("pid")),
                                                              md(other.get("policy")), priority,
                                                              float(other.get("ran_ms") or 0))
        elif other:
            text += ", %s[%s] ran last before it" % (md(other.get("comm")), md(other.get("pid")))
        return text
    if cause == "stopped":
        state, asleep = md(finding.get("state")), _ms(finding.get("asleep_ns"))
        return "stopped (%s state: SIGSTOP or a debugger) for %s ms" % (state, asleep)
    text = "%s state" % md(finding.get("state") or "?")
    call = finding.get("syscall")
    if call:
        short = call.get("short")
        if not short:
            fd = finding.get("fd")
            short = "%s(%s)" % (call.get("name"), "" if fd is None else "fd %s%s" % (
                fd, " -> %s" % finding["file"] if finding.get("file") else ""))
        text += " in %s" % md(short)
    if finding.get("blocked_ns"):
        text += ", off CPU %s ms" % _ms(finding["blocked_ns"])
    if finding.get("kernel_wait"):
        text += ": %s" % md(finding["kernel_wait"])
    return text


def _host_lines(host):
    lines = ["## %s: %s" % (md(host.get("host")), md(str(host.get("status", "")).replace("_", " ")))]
    target = host.get("target")
    if target:
        rtprio = (target.get("priorities") or {}).get("rtprio")
        lines.append("- target: %s[%s] %s%s%s" % (md(target.get("comm")), md(target.get("pid")), md(target.get("policy")),
                                                  " rtprio %s" % rtprio if rtprio else "",
                                                  "" if target.get("alive", True) else " (exited)"))
        lines.append("- probe: %s" % md(", ".join((host.get("probe") or {}).get("definitions") or [])))
    threshold = "- threshold: %s >= %s" % (md(host.get("field")), md(host.get("threshold")))
    if host.get("field_unit", "ns") == "ns":
        threshold += " (%s ms)" % _ms(host.get("threshold"))
    lines.append(threshold)
    if host.get("lost_events"):
        lines.append("- lost events: %s" % host["lost_events"])
    if host.get("message"):
        lines.append("- %s" % md(host["message"]))
    for number, finding in enumerate(host.get("findings") or [], 1):
        stack = _frames(blocking_frames(finding.get("kernel_stack") or [])) or "none captured"
        lines.append("- stall %d: not scheduled for %.1f ms; %s; kernel stack: %s" % (
            number, float(finding.get("duration_ms") or 0), _cause(finding), stack))
        excluded = finding.get("excluded")
        if excluded:
            lines.append("  - left out: %s ms asleep in %s (the loop's own idle wait)" % (
                _ms(excluded.get("asleep_ns")), md(excluded.get("syscall"))))
    latency = host.get("culprit_latency")
    if latency:
        text = "- %s on fd %s" % (md(latency.get("call")), md(latency.get("fd")))
        if latency.get("cmd"):
            text += " (%s)" % md(latency["cmd"].get("text"))
        text += ": %s calls in %s s" % (latency.get("count"), latency.get("duration_s"))
        if latency.get("count"):
            text += ", p50 %s ms, p99 %s ms, max %s ms" % tuple(latency.get(k) for k in ("p50_ms", "p99_ms", "max_ms"))
        lines += [text, ""] + histogram(latency.get("histogram_log2_us"))
    values = host.get("probe_values")
    if values and values.get("count"):
        lines += ["- %s over the capture: %s ticks, p50 %s ms, p99 %s ms, max %s ms" % (
            md(host.get("field")), values["count"], values.get("p50_ms"), values.get("p99_ms"), values.get("max_ms")),
            ""] + histogram(values.get("histogram_log2_us"))
    for guess in host.get("guesses") or []:
        ruled = guess.get("ruled_out")
        verdict = "ruled out" if ruled else ("not ruled out" if ruled is False else "no data")
        lines.append('- guess "%s": %s: %s (%s)' % (md(guess.get("guess")), verdict, md(guess.get("seen")),
                                                    md(guess.get("why"))))
    return lines + [""]


def render_markdown(summary):
    """summary.md: a heading with the totals, one section per host, the hosts without a result."""
    totals = summary["totals"]
    lines = ["# %s: %s of %s host(s) reached the threshold" % (md(summary["label"]), totals["threshold_reached"],
                                                               totals["hosts"]),
             "", "Results: %s" % md(summary["results_dir"]), ""]
    for host in summary["hosts"]:
        lines += _host_lines(host)
    if summary["unreachable"]:
        lines += ["## Unreachable or without a result"] + ["- %s" % md(name) for name in summary["unreachable"]]
    return "\n".join(lines).rstrip("\n") + "\n"
