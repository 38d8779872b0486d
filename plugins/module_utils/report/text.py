# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plain-text pieces every renderer shares: numbers, the fleet table, syscalls, stalls."""


from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace.frames import blocked_in
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report.document import number


def fmt(value, digits=1):
    if value is None:
        return "-"
    if isinstance(value, float):
        return ("%%.%df" % digits) % value
    return str(value)


# Every percentile says what it is a percentile of: all run-queue waits, or only wakeups or preemptions.
# (key, label, group): a group heads the columns it spans (one header line above the labels).
ALL_WAITS, WAKEUPS, PREEMPTIONS = "all waits, us", "wakeups, us", "preemptions, us"
TABLE_COLUMNS = (("host", "host", None), ("p50_us", "p50", ALL_WAITS), ("p90_us", "p90", ALL_WAITS),
                 ("p99_us", "p99", ALL_WAITS), ("p99_9_us", "p99.9", ALL_WAITS), ("max_us", "max", ALL_WAITS),
                 ("wakeup_p99_us", "p99", WAKEUPS), ("preempt_p99_us", "p99", PREEMPTIONS),
                 ("waits", "waits", None), ("unmeasured_waits", "unmeasured", None),
                 ("max_d_ms", "max D ms", None), ("findings", "findings", None), ("lost_events", "lost events", None))


def table_columns(report):
    """(key, label, group) of the fleet table: the built-in columns some host has a number for, then the extra ones.

    A diagnose-only report has no run-queue numbers: no column of dashes for them.
    """
    fleet = report.get("fleet") or []
    shown = [column for column in TABLE_COLUMNS
             if column[0] == "host" or any(row.get(column[0]) is not None for row in fleet)]
    return shown + [(c, c, None) for c in report.get("columns", [])]


def column_groups(columns):
    """[(group or None, first index, last index)] of consecutive columns."""
    spans = []
    for index, (_key, _label, group) in enumerate(columns):
        if spans and group is not None and spans[-1][0] == group:
            spans[-1] = (group, spans[-1][1], index)
        else:
            spans.append((group, index, index))
    return spans


def checks_line(report):
    """What the checks said, in a few words: never "all passed" when there were none."""
    checks = report.get("checks") or []
    if not checks:
        return "no checks defined"
    skipped = len([c for c in checks if c["status"] == "skipped"])
    if not report["passed"]:
        text = "%d of %d failed" % (len(report["failed"]), len(checks))
    elif skipped:
        text = "%d passed" % (len(checks) - skipped)
    else:
        return "all %d passed" % len(checks)
    return text + (", %d skipped (no data)" % skipped if skipped else "")


def summary_lines(report):
    """The fleet table as fixed-width text lines (end of play, report.md): group line, labels, rule, rows."""
    columns = table_columns(report)
    rows = [[label for _key, label, _group in columns]]
    for row in report["fleet"]:
        rows.append([fmt(row.get(key)) for key, _label, _group in columns])
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
    spans = column_groups(columns)
    for group, first, last in spans:
        # A group's title must fit over its columns: widen its last column when it does not.
        room = sum(widths[first:last + 1]) + 2 * (last - first)
        if group is not None and len(group) + 2 > room:
            widths[last] += len(group) + 2 - room
    heading = []
    for group, first, last in spans:
        room = sum(widths[first:last + 1]) + 2 * (last - first)
        heading.append((" %s " % group).center(room, "-") if group else " " * room)
    lines = ["  ".join(heading).rstrip()]
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
    first = blocked_in(frames)
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
