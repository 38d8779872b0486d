# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One stall finding, finished in Python: cause, numbers, decoded call and sentences.

``make_finding`` turns a late probe hit and what ``correlate.StallFinder``
kept of its window into the dict the capture module returns: the cause
(blocked, stopped, runnable or unexplained), the stall's length in ms, the
off-CPU interval that explains it (state, kernel stack, system call in
flight as strace prints it, the file behind the fd), what was left out and
why, and ``explanation``: the finding in sentences.  No tracefs access.
"""


import re

from ansible_collections.fleettrace.tracefs.plugins.module_utils import procfs
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import syscalls

STOPPED_STATES = frozenset(("T", "t"))
# Nanoseconds per unit of the probed field.
UNIT_NS = {"ns": 1, "us": 1000, "ms": 1000000, "s": 1000000000}
NS_PER_MS = 1e6
WORTH_SAYING_NS = 1000000   # a wait for a CPU shorter than 1 ms is not worth a sentence
# An off-CPU stretch shorter than this share of the stall does not explain it (e.g. a 0.1 ms
# wait for a CPU after a call entered before arming): the finding says what is missing instead.
MIN_EXPLAINED_SHARE = 0.1
CAUSE_BLOCKED, CAUSE_STOPPED, CAUSE_RUNNABLE, CAUSE_UNEXPLAINED = "blocked", "stopped", "runnable", "unexplained"
IDLE_WHY = ("the loop's own wait for its next event or timer: sleeping there is the loop being idle, "
            "what matters is what kept it from getting back there")

# Frames of the scheduler and of the tracer itself: not where the task blocked.
_SCHED_FRAME = re.compile(r"^(trace_event_|__traceiter_|__schedule|schedule|preempt_schedule|io_schedule|"
                          r"__bpf_trace|trace_|ftrace_|stack_trace_|__ftrace)")


def blocked_in(stack):
    """First frame of a kernel stack that is not the scheduler or the tracer."""
    for frame in stack or []:
        name = frame.split("+")[0].strip()
        if not _SCHED_FRAME.match(name):
            return name
    return None


def duration_ms(value, unit, fallback_ns=None):
    """The stall's length in ms: the probed value in its unit, else the off-CPU time."""
    if unit in UNIT_NS:
        return round(value * UNIT_NS[unit] / NS_PER_MS, 3)
    return round(fallback_ns / NS_PER_MS, 3) if fallback_ns is not None else None


def _ms(ns):
    return "%.1f ms" % (ns / NS_PER_MS)


def _task_text(comm, pid):
    return "%s[%s]" % (comm, pid)


def _choose(window):
    """(cause, interval, length_ns) of the largest explanation, or (unexplained, None, 0)."""
    best = (CAUSE_UNEXPLAINED, None, 0)
    for cause in (CAUSE_BLOCKED, CAUSE_STOPPED, CAUSE_RUNNABLE):
        kept = getattr(window, cause)
        if kept is not None and kept[1] > best[2]:
            best = (cause, kept[0], kept[1])
    return best


def make_finding(hit, field, value, threshold, states, window, resolve_fds=True, unit=None):
    """A finding from the hit and its window (see the module docstring)."""
    task = hit["pid"]
    cause, interval, length = _choose(window)
    partial = None
    stall_ns = value * UNIT_NS[unit] if unit in UNIT_NS else None
    if interval is not None and stall_ns and length < MIN_EXPLAINED_SHARE * stall_ns:
        partial = "the longest stretch found (%s, %s) is only %.0f %% of the stall" % (
            cause, _ms(length), 100.0 * length / stall_ns)
        cause, interval, length = CAUSE_UNEXPLAINED, None, 0
    finding = {
        "pid": task, "comm": hit["comm"], "probe_event": hit["event"], "field": field, "value": value,
        "threshold": threshold, "timestamp": hit["timestamp"], "cause": cause,
        "state": None, "state_name": None, "switched_out_at": None, "blocked_ns": None, "blocked_until": None,
        "asleep_ns": None, "runnable_ns": None, "woken_at": None, "ran_instead": None,
        "kernel_stack": [], "blocked_in": None, "syscall": None, "fd": None, "file": None,
        "excluded": None, "began_before_capture": not window.first_hit_seen,
        "off_cpu_switches": window.switches, "runnable_total_ns": window.runnable_total,
    }
    if window.idle is not None:
        idle, idle_ns = window.idle
        finding["excluded"] = {"syscall": idle["call"]["name"], "asleep_ns": idle_ns, "why": IDLE_WHY}
    head = "%s %s=%d >= %d" % (_task_text(hit["comm"], task), field, value, threshold)
    stall = duration_ms(value, unit, interval["off_ns"] if interval else None)
    finding["duration_ms"] = stall
    opening = head
    if stall is not None:
        opening = "%s was not scheduled for %.1f ms (%s=%d, threshold %d)" % (
            _task_text(hit["comm"], task), stall, field, value, threshold)
    if interval is None:
        _unexplained(finding, states, head, opening, partial)
        return finding
    out = interval["out"]
    letters = interval["letters"]
    if cause == CAUSE_RUNNABLE:
        state = "R"
    else:
        state = sorted(letters & states - {"R"})[0]
    call = interval["call"]
    finding.update({
        "state": state,
        "state_name": "runnable (waiting for a CPU)" if state == "R" else procfs.STATE_NAMES.get(state, state),
        "left_in_state": "/".join(sorted(letters)) or "R",
        "switched_out_at": out["timestamp"], "blocked_ns": interval["off_ns"], "blocked_until": interval["until"],
        "asleep_ns": interval["asleep_ns"], "runnable_ns": interval["waiting_ns"],
        "woken_at": interval["woken_ns"] / 1e9 if interval["woken_ns"] is not None else None,
        "kernel_stack": list(out.get("kernel_stack", [])), "blocked_in": blocked_in(out.get("kernel_stack")),
        "cpu": out.get("cpu"),
    })
    if interval.get("ran_instead") and interval["ran_instead"][1] is not None:
        finding["ran_instead"] = {"comm": interval["ran_instead"][0], "pid": interval["ran_instead"][1]}
    fd_paths = {}
    if call is not None:
        finding["syscall"] = dict(call)
        finding["fd"] = call["fd"]
        if call["fd"] is not None and resolve_fds:
            finding["file"] = procfs.fd_target(task, call["fd"])
            if finding["file"]:
                fd_paths[call["fd"]] = finding["file"]
        finding["syscall"].update(syscalls.describe(call, fd_paths))
    finding["summary"] = _summary(finding, head, call, resolve_fds)
    finding["explanation"] = [opening + "."] + _sentences(finding, cause, length)
    return finding


def _summary(finding, head, call, resolve_fds):
    """One line; the blocked case keeps the wording earlier releases printed."""
    if finding["cause"] == CAUSE_STOPPED:
        return "%s: stopped (state %s) for %.3f ms" % (head, finding["state"], finding["asleep_ns"] / NS_PER_MS)
    if finding["cause"] == CAUSE_RUNNABLE:
        text = "%s: runnable but not running for %.3f ms" % (head, finding["runnable_ns"] / NS_PER_MS)
        if finding["ran_instead"]:
            text += ", %s ran instead" % _task_text(finding["ran_instead"]["comm"], finding["ran_instead"]["pid"])
        return text
    text = "%s: off CPU %.3f ms in state %s" % (head, finding["blocked_ns"] / NS_PER_MS, finding["state"])
    if finding["blocked_in"]:
        text += ", blocked in %s" % finding["blocked_in"]
    if call is not None:
        text += ", in %s(%s)" % (call["name"], "fd %s" % call["fd"] if call["fd"] is not None else "")
    if finding["file"]:
        text += " on %s" % finding["file"]
    elif call is not None and call["fd"] is not None and resolve_fds:
        text += " (fd %s not resolved: process gone or fd closed)" % call["fd"]
    return text


def _sentences(finding, cause, length):
    call = finding["syscall"]
    where = " in %s" % call["text"] if call else ""
    stack = " (kernel stack: %s)" % finding["blocked_in"] if finding["blocked_in"] else ""
    if cause == CAUSE_BLOCKED:
        said = ["It slept %s in state %s (%s)%s%s, from %.6f s until %s." % (
            _ms(length), finding["state"], finding["state_name"], where, stack, finding["switched_out_at"],
            "its wakeup" if finding["woken_at"] is not None else "the late tick")]
    elif cause == CAUSE_STOPPED:
        said = ["It was stopped for %s (state %s: SIGSTOP or a debugger), from %.6f s, %s." % (
            _ms(length), finding["state"], finding["switched_out_at"],
            "in %s" % call["text"] if call else "outside any system call (a stop takes effect on the way back "
                                                "to user space)")]
    else:
        said = ["It was runnable but not running for %s on CPU %s (%s at %.6f s, back on the CPU %s later)." % (
            _ms(length), finding.get("cpu"), "preempted" if finding["left_in_state"] == "R" else "woken",
            finding["woken_at"], _ms(length))]
        if finding["ran_instead"]:
            said.append("%s had the CPU instead." % _task_text(finding["ran_instead"]["comm"],
                                                               finding["ran_instead"]["pid"]))
    if finding["runnable_ns"] >= WORTH_SAYING_NS and cause != CAUSE_RUNNABLE:
        said.append("Then it waited %s for a CPU." % _ms(finding["runnable_ns"]))
    if finding["excluded"]:
        said.append("Left out: %s asleep in %s, %s." % (
            _ms(finding["excluded"]["asleep_ns"]), finding["excluded"]["syscall"], IDLE_WHY))
    return said


def _unexplained(finding, states, head, opening, partial=None):
    """No interval explains the hit: say what was seen and why the cause is missing."""
    wanted = "/".join(sorted(states))
    seen = "%d switch-out(s) of the task between this tick and the previous one" % finding["off_cpu_switches"]
    why = [partial] if partial else []
    if finding["began_before_capture"]:
        why.append("this is the task's first tick in the buffer, so the stall may have begun before tracing "
                   "was armed")
    if not finding["off_cpu_switches"] and not finding["began_before_capture"]:
        why.append("the task never left the CPU in the window (busy on the CPU, or sched:sched_switch is not "
                   "recorded for this pid)")
    if finding["excluded"]:
        why.append("it only slept in its idle wait %s (%s), which is left out"
                   % (finding["excluded"]["syscall"], _ms(finding["excluded"]["asleep_ns"])))
    if set(states) != {"D", "S", "T", "t", "R"}:
        why.append("only states %s were looked for" % wanted)
    finding["missing_cause"] = why
    if set(states) == {"D"}:  # the wording earlier releases printed
        finding["summary"] = ("%s at %.6f, but no switch-out in state %s was captured before it (is "
                              "sched:sched_switch enabled for this pid?)" % (head, finding["timestamp"], wanted))
    else:
        finding["summary"] = "%s at %.6f: no cause in the buffer (%s)" % (head, finding["timestamp"], "; ".join(why))
    finding["explanation"] = [opening + ".", "No cause in the buffer: %s; %s." % (seen, "; ".join(why) or "nothing else")]
