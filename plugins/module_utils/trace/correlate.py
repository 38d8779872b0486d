# -*- coding: utf-8 -*-
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stall findings from captured events: the talk's steps 3-5 in code.

For every probe hit whose field is over the threshold (a late tick), look
back to the previous hit of the same task and find:

- the switch-out of that task in an uninterruptible state (``sched_switch``
  with ``prev_state`` D), and how long it stayed off the CPU;
- the kernel stack recorded for that switch (a ``stacktrace`` trigger);
- the system call in flight (the last ``raw_syscalls:sys_enter`` or
  ``syscalls:sys_enter_*`` of the task before it blocked, with no
  ``sys_exit`` after it), its number, name and fd argument;
- the file behind that fd (``/proc/PID/fd``), while the process lives.

Input records are those of ``trace_parser``; output is one dict per stall.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.fleettrace.tracefs.plugins.module_utils import procfs

# x86_64 numbers of the system calls a stalled daemon is likely to sit in
# (arch/x86/entry/syscalls/syscall_64.tbl); the full table is read from
# asm/unistd_64.h when the node has the kernel headers.
X86_64_SYSCALLS = {
    0: "read", 1: "write", 2: "open", 3: "close", 4: "stat", 5: "fstat", 6: "lstat", 7: "poll",
    8: "lseek", 9: "mmap", 10: "mprotect", 11: "munmap", 12: "brk", 13: "rt_sigaction",
    14: "rt_sigprocmask", 16: "ioctl", 17: "pread64", 18: "pwrite64", 19: "readv", 20: "writev",
    21: "access", 22: "pipe", 23: "select", 24: "sched_yield", 25: "mremap", 26: "msync",
    28: "madvise", 32: "dup", 33: "dup2", 35: "nanosleep", 39: "getpid", 40: "sendfile",
    41: "socket", 42: "connect", 43: "accept", 44: "sendto", 45: "recvfrom", 46: "sendmsg",
    47: "recvmsg", 48: "shutdown", 49: "bind", 50: "listen", 56: "clone", 57: "fork",
    59: "execve", 60: "exit", 61: "wait4", 62: "kill", 72: "fcntl", 73: "flock", 74: "fsync",
    75: "fdatasync", 76: "truncate", 77: "ftruncate", 78: "getdents", 80: "chdir", 81: "fchdir",
    82: "rename", 83: "mkdir", 84: "rmdir", 85: "creat", 86: "link", 87: "unlink",
    91: "fchmod", 93: "fchown", 162: "sync", 165: "mount", 166: "umount2", 202: "futex",
    217: "getdents64", 228: "clock_gettime", 230: "clock_nanosleep", 231: "exit_group",
    232: "epoll_wait", 233: "epoll_ctl", 257: "openat", 262: "newfstatat", 270: "pselect6",
    271: "ppoll", 277: "sync_file_range", 281: "epoll_pwait", 285: "fallocate", 288: "accept4",
    292: "dup3", 293: "pipe2", 295: "preadv", 296: "pwritev", 299: "recvmmsg", 306: "syncfs",
    307: "sendmmsg", 318: "getrandom", 332: "statx", 435: "clone3", 441: "epoll_pwait2",
}
UNISTD_HEADERS = ("/usr/include/x86_64-linux-gnu/asm/unistd_64.h", "/usr/include/asm/unistd_64.h")

# Which argument of a system call is a file descriptor (index into args).
FD_ARGUMENT = dict((name, 0) for name in (
    "read", "write", "close", "fstat", "lseek", "ioctl", "pread64", "pwrite64", "readv", "writev",
    "connect", "accept", "sendto", "recvfrom", "sendmsg", "recvmsg", "shutdown", "bind", "listen",
    "fcntl", "flock", "fsync", "fdatasync", "ftruncate", "getdents", "fchdir", "fchmod", "fchown",
    "getdents64", "epoll_wait", "epoll_ctl", "sync_file_range", "epoll_pwait", "fallocate",
    "accept4", "preadv", "pwritev", "recvmmsg", "syncfs", "sendmmsg", "dup", "dup2", "dup3",
    "sendfile", "epoll_pwait2", "getsockopt", "setsockopt", "getsockname", "getpeername"))
FD_ARGUMENT["mmap"] = 4

# Frames of the scheduler and of the tracer itself: not where the task blocked.
_SCHED_FRAME = re.compile(r"^(trace_event_|__traceiter_|__schedule|schedule|preempt_schedule|io_schedule|"
                          r"__bpf_trace|trace_|ftrace_|stack_trace_|__ftrace)")

_syscall_table_cache = []


def syscall_table(headers=UNISTD_HEADERS):
    """number -> name for x86_64: the node's header if present, else the built-in subset."""
    if _syscall_table_cache:
        return _syscall_table_cache[0]
    table = dict(X86_64_SYSCALLS)
    for header in headers:
        try:
            with open(header) as handle:
                for line in handle:
                    match = re.match(r"#define __NR_(\w+)\s+(\d+)", line)
                    if match:
                        table[int(match.group(2))] = match.group(1)
            break
        except (IOError, OSError):
            continue
    _syscall_table_cache.append(table)
    return table


def syscall_name(number):
    if os.uname()[4] not in ("x86_64",):
        return None  # numbers differ per architecture; only x86_64 is tabled
    return syscall_table().get(number)


def event_matches(record, spec):
    """'tick_gap' or 'group:tick_gap' against a record (the text shows no group)."""
    name = spec.split(":")[-1].split("/")[-1]
    return record["event"] == name


def _state_letters(value):
    return set(str(value).replace("+", "").split("|"))


def blocked_in(stack):
    """First frame of a kernel stack that is not the scheduler or the tracer."""
    for frame in stack or []:
        name = frame.split("+")[0].strip()
        if not _SCHED_FRAME.match(name):
            return name
    return None


def _syscall_of(record):
    """A sys_enter record -> {'name', 'nr', 'args', 'fd'}; None for other events."""
    event = record["event"]
    fields = record["fields"]
    if event == "sys_enter":
        number = fields.get("id")
        name = syscall_name(number)
        args = fields.get("args", [])
        fd = None
        if name in FD_ARGUMENT and len(args) > FD_ARGUMENT[name]:
            fd = args[FD_ARGUMENT[name]]
        return {"name": name or "syscall_%s" % number, "nr": number, "args": args, "fd": fd,
                "timestamp": record["timestamp"], "source": "raw_syscalls:sys_enter"}
    if event.startswith("sys_enter_"):
        name = event[len("sys_enter_"):]
        fd = fields.get("fd")
        if fd is None and name in FD_ARGUMENT:
            fd = fields.get("fildes", fields.get("out_fd"))
        return {"name": name, "nr": None, "args": dict(fields), "fd": fd,
                "timestamp": record["timestamp"], "source": "syscalls:%s" % event}
    return None


def _is_exit(record):
    return record["event"] == "sys_exit" or record["event"].startswith("sys_exit_")


def _merge_syscall(found, call):
    """The same call seen by both event kinds (raw_syscalls and syscalls:*) becomes one:
    the number of one and the argument names of the other end up in ``found``."""
    if not (call["name"] == found["name"] or found["name"].startswith("syscall_")):
        return
    if found["nr"] is None:
        found["nr"] = call["nr"]
    if isinstance(call["args"], dict):
        found["args"] = call["args"]
        found["source"] = call["source"]
        if call["fd"] is not None:
            found["fd"] = call["fd"]
    if found["name"].startswith("syscall_"):
        found["name"] = call["name"]


def syscall_in_flight(events, pid, before_index, after_index):
    """The system call ``pid`` was in at ``before_index`` (None if none was seen)."""
    found = None
    for index in range(before_index - 1, after_index, -1):
        record = events[index]
        if record["pid"] != pid:
            continue
        if _is_exit(record):
            break  # the last call returned before the task blocked
        call = _syscall_of(record)
        if call is None:
            continue
        if found is None:
            found = call
            continue
        _merge_syscall(found, call)
        break
    return found


def find_stalls(events, probe_event, field, threshold, pid=None, states=("D",), resolve_fds=True):
    """One finding per probe hit with ``field >= threshold``; see the module docstring.

    ``pid``: a task id, or a collection of them (the threads of a process:
    trace records carry thread ids, and the probed loop may run in any thread).
    """
    states = set(states)
    if pid is not None and not isinstance(pid, (set, frozenset, list, tuple)):
        pid = (pid,)
    pids = frozenset(pid) if pid is not None else None
    findings = []
    previous_hit = {}
    for index, record in enumerate(events):
        if not event_matches(record, probe_event):
            continue
        if pids is not None and record["pid"] not in pids and record.get("tgid") not in pids:
            continue
        task = record["pid"]
        window_start = previous_hit.get(task, -1)
        previous_hit[task] = index
        value = record["fields"].get(field)
        if not isinstance(value, int) or value < threshold:
            continue
        findings.append(_finding(events, index, window_start, record, field, value, threshold, states, resolve_fds))
    return findings


class StallFinder:
    """``find_stalls`` one record at a time, for a capture that does not keep its events.

    ``feed(record)`` every record in trace order, then ``findings()``: the
    same findings as ``find_stalls`` on the whole list.  Per task it keeps
    only what a finding needs since that task's previous probe hit: the
    switch-outs in a wanted state still waiting for their switch-in, the
    longest off-CPU stretch so far with the system call in flight when it
    began, and the task's last two ``sys_enter`` records since its last
    ``sys_exit``.  Every task is followed (each task's window is its own, so
    the ``pid`` filter only picks findings and may be set later with
    ``select``).  Memory grows with the number of tasks and of probe hits
    over the threshold, not with the number of events.
    """

    def __init__(self, probe_event, field, threshold, pid=None, states=("D",), resolve_fds=True):
        self.probe_event = probe_event
        self.field = field
        self.threshold = threshold
        self.states = set(states)
        self.pids = None
        self.select(pid)
        self.resolve_fds = resolve_fds
        self._tasks = {}    # pid -> {"enters": [...], "open": [(switch, call)], "best": (...) or None}
        self._found = []    # (hit, value, best) in trace order

    def _task(self, pid):
        state = self._tasks.get(pid)
        if state is None:
            state = self._tasks[pid] = {"enters": [], "open": [], "best": None}
        return state

    def select(self, pid):
        """Change the task filter (findings() applies it, so it may be set after the last record)."""
        if pid is not None and not isinstance(pid, (set, frozenset, list, tuple)):
            pid = (pid,)
        self.pids = frozenset(pid) if pid is not None else None

    def feed(self, record):
        event = record["event"]
        fields = record["fields"]
        if event == "sched_switch":
            # A switch-in ends the stretches of its task that began before it.
            woken = self._tasks.get(fields.get("next_pid"))
            if woken is not None and woken["open"]:
                for switch, call in woken["open"]:
                    self._consider(woken, switch, record["ts_ns"] - switch["ts_ns"], "switch_in", call)
                woken["open"] = []
        if event_matches(record, self.probe_event):
            self._hit(record)
            return
        if event == "sched_switch":
            prev = fields.get("prev_pid")
            if _state_letters(fields.get("prev_state", "")) & self.states:
                task = self._task(prev)
                task["open"].append((record, self._in_flight(task)))
            return
        pid = record["pid"]
        if _is_exit(record):
            if pid in self._tasks:
                self._tasks[pid]["enters"] = []
        elif event == "sys_enter" or event.startswith("sys_enter_"):
            task = self._task(pid)
            task["enters"] = task["enters"][-1:] + [record]

    def _in_flight(self, task):
        """syscall_in_flight over the task's last two sys_enter records (newest first)."""
        found = None
        for record in reversed(task["enters"]):
            call = _syscall_of(record)
            if found is None:
                found = call
                continue
            _merge_syscall(found, call)
        return found

    def _consider(self, task, switch, blocked, until, call):
        best = task["best"]
        if best is None or blocked > best[1]:
            task["best"] = (switch, blocked, until, call)

    def _hit(self, hit):
        task = self._task(hit["pid"])
        for switch, call in task["open"]:
            self._consider(task, switch, hit["ts_ns"] - switch["ts_ns"], "probe_hit", call)
        best = task["best"]
        task.update(enters=[], open=[], best=None)  # the next window starts after this hit
        value = hit["fields"].get(self.field)
        if isinstance(value, int) and value >= self.threshold:
            self._found.append((hit, value, best))

    def findings(self):
        """The findings so far (fds resolved now, stacks read now: call after the last record)."""
        pids = self.pids
        return [_make_finding(hit, self.field, value, self.threshold, self.states, best, self.resolve_fds)
                for hit, value, best in self._found
                if pids is None or hit["pid"] in pids or hit.get("tgid") in pids]


def _finding(events, hit_index, window_start, hit, field, value, threshold, states, resolve_fds):
    task = hit["pid"]
    # The longest off-CPU stretch in a wanted state between the previous hit and this one.
    best = None
    for index in range(window_start + 1, hit_index):
        record = events[index]
        if record["event"] != "sched_switch" or record["fields"].get("prev_pid") != task:
            continue
        letters = _state_letters(record["fields"].get("prev_state", ""))
        if not letters & states:
            continue
        switch_in, until = None, "probe_hit"
        for later in range(index + 1, hit_index + 1):
            candidate = events[later]
            if candidate["event"] == "sched_switch" and candidate["fields"].get("next_pid") == task:
                switch_in, until = candidate, "switch_in"
                break
        end_ns = (switch_in or hit)["ts_ns"]
        blocked = end_ns - record["ts_ns"]
        if best is None or blocked > best[1]:
            best = (index, blocked, until, letters & states)
    if best is not None:
        index, blocked, until, _matched = best
        best = (events[index], blocked, until, syscall_in_flight(events, task, index, window_start))
    return _make_finding(hit, field, value, threshold, states, best, resolve_fds)


def _make_finding(hit, field, value, threshold, states, best, resolve_fds):
    """A finding from the hit and its longest stretch ``(switch, blocked_ns, until, syscall)`` or None."""
    task = hit["pid"]
    finding = {
        "pid": task,
        "comm": hit["comm"],
        "probe_event": hit["event"],
        "field": field,
        "value": value,
        "threshold": threshold,
        "timestamp": hit["timestamp"],
        "state": None,
        "state_name": None,
        "switched_out_at": None,
        "blocked_ns": None,
        "blocked_until": None,
        "kernel_stack": [],
        "blocked_in": None,
        "syscall": None,
        "fd": None,
        "file": None,
    }
    if best is None:
        finding["summary"] = ("%s[%d] %s=%d >= %d at %.6f, but no switch-out in state %s was captured "
                              "before it (is sched:sched_switch enabled for this pid?)"
                              % (hit["comm"], task, field, value, threshold, hit["timestamp"], "/".join(sorted(states))))
        return finding
    switch, blocked, until, call = best
    state = sorted(_state_letters(switch["fields"].get("prev_state", "")) & states)[0]
    finding.update({
        "state": state,
        "state_name": procfs.STATE_NAMES.get(state, state),
        "switched_out_at": switch["timestamp"],
        "blocked_ns": blocked,
        "blocked_until": until,
        "kernel_stack": list(switch.get("kernel_stack", [])),
        "blocked_in": blocked_in(switch.get("kernel_stack")),
    })
    if call is not None:
        finding["syscall"] = call
        finding["fd"] = call["fd"]
        if call["fd"] is not None and resolve_fds:
            finding["file"] = procfs.fd_target(task, call["fd"])
    summary = "%s[%d] %s=%d >= %d: off CPU %.3f ms in state %s" % (
        hit["comm"], task, field, value, threshold, blocked / 1e6, state)
    if finding["blocked_in"]:
        summary += ", blocked in %s" % finding["blocked_in"]
    if call is not None:
        summary += ", in %s(%s)" % (call["name"], "fd %s" % call["fd"] if call["fd"] is not None else "")
    if finding["file"]:
        summary += " on %s" % finding["file"]
    elif call is not None and call["fd"] is not None:
        summary += " (fd %s not resolved: process gone or fd closed)" % call["fd"] if resolve_fds else ""
    finding["summary"] = summary
    return finding
