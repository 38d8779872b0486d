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


from ansible_collections.fleettrace.tracefs.plugins.module_utils import procfs
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import syscalls
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace.frames import blocked_in, kernel_wait

STOPPED_STATES = frozenset(("T", "t"))
# Nanoseconds per unit of the probed field.
UNIT_NS = {"ns": 1, "us": 1000, "ms": 1000000, "s": 1000000000}
# The units a probed field may have (the options' choices): a time, or none (a field that is no time).
UNITS = ("ns", "us", "ms", "s", "none")
NS_PER_MS = 1e6
WORTH_SAYING_NS = 1000000   # a wait for a CPU shorter than 1 ms is not worth a sentence
NAMED_HOLDERS = 3           # holders of a waited-for CPU named in the explanation
# An off-CPU stretch shorter than this share of the stall does not explain it (e.g. a 0.1 ms
# wait for a CPU after a call entered before arming): the finding says what is missing instead.
MIN_EXPLAINED_SHARE = 0.1
CAUSE_BLOCKED, CAUSE_STOPPED, CAUSE_RUNNABLE, CAUSE_UNEXPLAINED = "blocked", "stopped", "runnable", "unexplained"
# An idle wait this large a share of an unexplained stall is where the time went: the wait itself ended late.
OVERSLEPT_SHARE = 0.5
IDLE_WHY = ("the loop's own wait for its next event or timer: sleeping there is the loop being idle, "
            "what matters is what kept it from getting back there")


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
        "asleep_ns": None, "runnable_ns": None, "woken_at": None, "ran_instead": None, "last_before": None,
        "runnable_wait": None, "cpu_holders": None,
        "kernel_stack": [], "blocked_in": None, "kernel_wait": None, "syscall": None, "fd": None, "file": None,
        "excluded": None, "began_before_capture": _began_before_capture(window, hit, stall_ns),
        "off_cpu_switches": window.switches, "runnable_total_ns": window.runnable_total,
    }
    if window.idle is not None:
        idle, idle_ns = window.idle
        finding["excluded"] = {"syscall": idle["call"]["name"], "asleep_ns": idle_ns, "why": IDLE_WHY,
                               "woken_by": _waker(idle)}
    finding["duration_ms"] = duration_ms(value, unit, interval["off_ns"] if interval else None)
    head, opening = _head(finding)
    if interval is None:
        _unexplained(finding, states, head, opening, partial, stall_ns)
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
        "kernel_wait": kernel_wait(out.get("kernel_stack")) if cause == CAUSE_BLOCKED else None,
        "cpu": out.get("cpu"),
    })
    if interval["waiting_ns"]:
        # Where and when it waited for a CPU: who held that CPU is read from the CPU context, if recorded.
        queued = interval.get("queued_cpu")
        finding["runnable_wait"] = {
            "cpu": queued if queued is not None else out.get("cpu"), "back_on_cpu": interval.get("in_cpu"),
            "from_ns": interval["woken_ns"] if interval["woken_ns"] is not None else out["ts_ns"],
            "until_ns": interval["end_ns"]}
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


def culprit_call(finding):
    """(call, fd, cmd) worth measuring again after ``finding``, or None.

    Only a stall blocked in a system call on an fd has one: a stall outside a call (cgroup
    freezer, a page fault on a file, reclaim), a runnable or a stopped one has none.
    """
    call = (finding or {}).get("syscall")
    if not call or finding.get("cause") != CAUSE_BLOCKED or finding.get("fd") is None:
        return None
    cmd = (call.get("ioctl") or {}).get("value") if call["name"] == "ioctl" else None
    return call["name"], finding["fd"], cmd


def _head(finding):
    """(head, opening): 'comm[pid] field=value >= threshold' and the explanation's first sentence."""
    task = _task_text(finding["comm"], finding["pid"])
    head = "%s %s=%d >= %d" % (task, finding["field"], finding["value"], finding["threshold"])
    if finding["duration_ms"] is None:
        return head, head
    return head, "%s was not scheduled for %.1f ms (%s=%d, threshold %d)" % (
        task, finding["duration_ms"], finding["field"], finding["value"], finding["threshold"])


def add_cpu_holders(finding, wait, resolve_fds=True):
    """Name who held the CPU ``finding`` waited for (``wait``: cpu_context holders of its runnable wait).

    For a runnable stall the one that held it longest becomes ``ran_instead``
    (the task that ran just before the switch-in stays as ``last_before``: a
    kworker seen at the end is not the culprit); summary and explanation are
    written again with them.
    """
    holders = wait["holders"]
    finding["cpu_holders"] = holders
    finding["runnable_wait"]["recorded_from"] = (wait["recorded_from_ns"] / 1e9
                                                 if wait["recorded_from_ns"] is not None else None)
    finding["runnable_wait"]["covered_ms"] = round(wait["covered_ns"] / NS_PER_MS, 3)
    top = next((h for h in holders if h["pid"]), None)
    if finding["cause"] == CAUSE_RUNNABLE and top is not None:
        finding["last_before"] = finding["ran_instead"]
        finding["ran_instead"] = {key: top[key] for key in ("comm", "pid", "policy", "rtprio", "nice", "ran_ms")}
    head, opening = _head(finding)
    length = finding["runnable_ns"] if finding["cause"] == CAUSE_RUNNABLE else finding["asleep_ns"]
    finding["summary"] = _summary(finding, head, finding["syscall"], resolve_fds)
    finding["explanation"] = [opening + "."] + _sentences(finding, finding["cause"], length)


def _holder_text(holder):
    """'hog[123] (SCHED_FIFO rtprio 50) 398.2 ms'."""
    if holder["pid"] == 0:
        return "idle %.1f ms" % holder["ran_ms"]
    if holder["rtprio"] is not None:
        how = "%s rtprio %d" % (holder["policy"], holder["rtprio"])
    elif holder["nice"] is not None:
        how = "%s nice %d" % (holder["policy"], holder["nice"])
    else:
        how = holder["policy"] or "prio %s" % holder["prio"]
    return "%s (%s) %.1f ms" % (_task_text(holder["comm"], holder["pid"]), how, holder["ran_ms"])


def _holders_sentence(finding):
    """'CPU 1 during the wait: hog[123] (SCHED_FIFO rtprio 50) 398.2 ms, then ...' or None."""
    holders = finding.get("cpu_holders")
    wait = finding.get("runnable_wait") or {}
    if not holders:
        return None
    named = ", ".join(_holder_text(h) for h in holders[:NAMED_HOLDERS])
    rest = holders[NAMED_HOLDERS:]
    if rest:
        named += " and %d more (%.1f ms)" % (len(rest), sum(h["ran_ms"] for h in rest))
    text = "Who held CPU %s during the wait, longest first: %s" % (wait.get("cpu"), named)
    if wait.get("recorded_from") is not None and wait["recorded_from"] * 1e9 > wait["from_ns"]:
        text += " (recorded only from %.6f s: the CPU's buffer was overwritten before)" % wait["recorded_from"]
    return text + "."


def _summary(finding, head, call, resolve_fds):
    """One line; the blocked case keeps the wording earlier releases printed."""
    if finding["cause"] == CAUSE_STOPPED:
        return "%s: stopped (state %s) for %.3f ms" % (head, finding["state"], finding["asleep_ns"] / NS_PER_MS)
    if finding["cause"] == CAUSE_RUNNABLE:
        text = "%s: runnable but not running for %.3f ms" % (head, finding["runnable_ns"] / NS_PER_MS)
        if finding["cpu_holders"] and finding["ran_instead"]:
            text += ", %s held the CPU" % _holder_text(dict(finding["ran_instead"], prio=None))
        elif finding["ran_instead"]:
            text += ", %s ran last before it (who held the CPU was not recorded)" % _task_text(
                finding["ran_instead"]["comm"], finding["ran_instead"]["pid"])
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
    if finding["kernel_wait"]:
        text += ": %s" % finding["kernel_wait"]
    return text


def _sentences(finding, cause, length):
    call = finding["syscall"]
    where = " in %s" % call["text"] if call else ""
    stack = " (kernel stack: %s%s)" % (finding["blocked_in"], "; " + finding["kernel_wait"] if finding["kernel_wait"] else
                                       "") if finding["blocked_in"] else ""
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
        wait = finding["runnable_wait"] or {}
        said = ["It was runnable but not running for %s on CPU %s (%s at %.6f s, back on the CPU %s later)." % (
            _ms(length), wait.get("cpu", finding.get("cpu")), "preempted" if finding["left_in_state"] == "R"
            else "woken", finding["woken_at"], _ms(length))]
        holders = _holders_sentence(finding)
        if holders:
            said.append(holders)
            if finding["last_before"] and finding["last_before"]["pid"] != finding["ran_instead"]["pid"]:
                said.append("%s ran last, just before it got the CPU back: not the culprit." % _task_text(
                    finding["last_before"]["comm"], finding["last_before"]["pid"]))
        elif finding["ran_instead"]:
            said.append("%s ran last before it got the CPU back; who held the CPU during the wait was not "
                        "recorded." % _task_text(finding["ran_instead"]["comm"], finding["ran_instead"]["pid"]))
    if finding["runnable_ns"] >= WORTH_SAYING_NS and cause != CAUSE_RUNNABLE:
        said.append("Then it waited %s for a CPU." % _ms(finding["runnable_ns"]))
        if _holders_sentence(finding):
            said.append(_holders_sentence(finding))
    if finding["excluded"]:
        said.append("Left out: %s asleep in %s, %s." % (
            _ms(finding["excluded"]["asleep_ns"]), finding["excluded"]["syscall"], IDLE_WHY))
    return said


def _began_before_capture(window, hit, stall_ns):
    """Whether the stall may have begun before the buffer holds the task.

    After a hit of the task in the buffer it cannot; else the buffer must reach back to (nearly) the
    stall's start: a probe that records only late hits leaves the tick before out, so the task's first
    record shortly after that tick still covers the stall.
    """
    if window.first_hit_seen:
        return False
    if not stall_ns or window.first_event_ns is None:
        return True
    missed_ns = window.first_event_ns - (hit["ts_ns"] - stall_ns)
    return missed_ns > MIN_EXPLAINED_SHARE * stall_ns


def _waker(interval):
    """{'comm', 'pid'} of the task that woke an interval's sleeper; None when unknown or in an interrupt."""
    waker = interval.get("woken_by")
    if not waker or waker[1] in (None, 0) or interval.get("woken_in_irq"):
        return None
    return {"comm": waker[0], "pid": waker[1]}


def _overslept(excluded, stall_ns):
    """Why an idle wait that took most of the stall is the place to look, or None."""
    if not excluded or not stall_ns or excluded["asleep_ns"] < OVERSLEPT_SHARE * stall_ns:
        return None
    text = ("its idle wait %s alone lasted %s, %.0f %% of the stall: if that is longer than the loop's own timeout, "
            "the wait ended late, not the work after it (frozen where it slept by the cgroup freezer, or a wakeup "
            "that came late)" % (excluded["syscall"], _ms(excluded["asleep_ns"]), 100.0 * excluded["asleep_ns"] / stall_ns))
    waker = excluded.get("woken_by")
    if waker:
        text += "; %s woke it, a task rather than its timer" % _task_text(waker["comm"], waker["pid"])
    return text


def _unexplained(finding, states, head, opening, partial=None, stall_ns=None):
    """No interval explains the hit: say what was seen and why the cause is missing."""
    wanted = "/".join(sorted(states))
    seen = "%d switch-out(s) of the task between this tick and the previous one" % finding["off_cpu_switches"]
    why = [partial] if partial else []
    overslept = _overslept(finding["excluded"], stall_ns)
    if overslept:
        why.append(overslept)
    if finding["began_before_capture"]:
        why.append("this is the task's first tick in the buffer, so the stall may have begun before tracing "
                   "was armed")
    if not finding["off_cpu_switches"] and not finding["began_before_capture"]:
        why.append("the task never left the CPU in the window (busy on the CPU, or sched:sched_switch is not "
                   "recorded for this pid)")
    if finding["excluded"] and not overslept:
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
