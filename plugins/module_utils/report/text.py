# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plain-text pieces every renderer shares: numbers, the fleet table, syscalls, stalls."""


from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import correlate
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report.document import number


def fmt(value, digits=1):
    if value is None:
        return "-"
    if isinstance(value, float):
        return ("%%.%df" % digits) % value
    return str(value)


TABLE_COLUMNS = (("host", "host"), ("p50_us", "p50 us"), ("p90_us", "p90 us"), ("p99_us", "p99 us"),
                 ("p99_9_us", "p99.9 us"), ("max_us", "max us"), ("waits", "waits"), ("unmeasured_waits", "unmeasured"),
                 ("max_d_ms", "max D ms"), ("findings", "findings"), ("lost_events", "lost events"))


def summary_lines(report):
    """The fleet table as fixed-width text lines (end of play, report.md)."""
    columns = list(TABLE_COLUMNS) + [(c, c) for c in report.get("columns", [])]
    rows = [[label for _key, label in columns]]
    for row in report["fleet"]:
        rows.append([fmt(row.get(key)) for key, _label in columns])
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


def worst_stalls(entry):
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
    stalls.sort(key=lambda s: -(number(s["duration_ms"]) or 0))
    return stalls
