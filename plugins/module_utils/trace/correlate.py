# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stall findings from captured events: the talk's steps 3-5 in code.

For every probe hit whose field is over the threshold (a late tick), look
back to the previous hit of the same task.  Every time the task left the CPU
in between is an off-CPU interval: from its switch-out (``sched_switch``,
with the state it left in and the kernel stack of a ``stacktrace`` trigger),
through its wakeup (``sched_wakeup``/``sched_waking``), to its switch-in.
Each interval splits into time asleep (or stopped) and time runnable but
waiting for a CPU.  The finding names the largest of:

- **blocked**: asleep (D, or S outside the loop's idle wait) in a system call,
  the one in flight when it switched out (the last ``sys_enter`` with no
  ``sys_exit`` after it), with the file behind its fd;
- **stopped**: in state T/t (SIGSTOP, a debugger);
- **runnable**: woken (or preempted) but not running, and who ran instead.

Sleeping in the loop's own idle wait (``epoll_wait``, ``poll``, ...: see
``syscalls.IDLE_WAITS``) is the loop having nothing to do; it is left out and
the finding says so.  A hit with nothing that explains it is still a finding,
with what was seen and why the cause is missing (``findings.py``).
Input records are those of ``trace_parser``.
"""


from ansible_collections.fleettrace.tracefs.plugins.module_utils.series import LatencySeries
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import syscalls
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace.findings import (
    blocked_in, make_finding, STOPPED_STATES, UNIT_NS)

__all__ = ["blocked_in", "find_stalls", "StallFinder", "syscall_in_flight", "ALL_STATES"]

# prev_state letters a finding may blame: asleep, stopped, and R for runnable (preempted or woken).
ALL_STATES = ("D", "S", "T", "t", "R")
WAKEUP_EVENTS = ("sched_wakeup", "sched_waking")


def _state_letters(value):
    return set(str(value).replace("+", "").split("|"))


def _syscall_of(record):
    """A sys_enter record -> {'name', 'nr', 'args', 'fd'}; None for other events."""
    event = record["event"]
    fields = record["fields"]
    if event == "sys_enter":
        number = fields.get("id")
        name = syscalls.name(number)
        args = fields.get("args", [])
        fd = None
        if name in syscalls.FD_ARGUMENT and len(args) > syscalls.FD_ARGUMENT[name]:
            fd = args[syscalls.FD_ARGUMENT[name]]
        return {"name": name or "syscall_%s" % number, "nr": number, "args": args, "fd": fd,
                "timestamp": record["timestamp"], "source": "raw_syscalls:sys_enter"}
    if event.startswith("sys_enter_"):
        name = event[len("sys_enter_"):]
        fd = fields.get("fd")
        if fd is None and name in syscalls.FD_ARGUMENT:
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


def find_stalls(events, probe_event, field, threshold, pid=None, states=("D",), resolve_fds=True, unit=None):
    """One finding per probe hit with ``field >= threshold``: ``StallFinder`` over a list."""
    finder = StallFinder(probe_event, field, threshold, pid=pid, states=states, resolve_fds=resolve_fds, unit=unit)
    for record in events:
        finder.feed(record)
    return finder.findings()


class _Window:
    """What one task did since its previous probe hit (bounded: the longest of each kind)."""

    __slots__ = ("enters", "open", "blocked", "stopped", "runnable", "idle", "switches", "runnable_total",
                 "first_hit_seen", "first_event_ns")

    def __init__(self, first_hit_seen, first_event_ns=None):
        self.enters = []        # last two sys_enter since the last sys_exit
        self.open = None        # the interval begun by the last switch-out, not yet switched in
        self.blocked = None     # longest sleep outside the idle wait
        self.stopped = None     # longest T/t stretch
        self.runnable = None    # longest wait for a CPU
        self.idle = None        # longest sleep in the loop's idle wait (left out)
        self.switches = 0
        self.runnable_total = 0
        self.first_hit_seen = first_hit_seen  # False: the window may have begun before tracing
        self.first_event_ns = first_event_ns  # the task's first record in it (how far back the buffer reaches)


class StallFinder:
    """Stall findings, one record at a time, for a capture that does not keep its events.

    ``feed(record)`` every record in trace order, then ``findings()``.  Per task
    it keeps only what a finding needs since that task's previous probe hit
    (the longest interval of each kind, the open one and the last two
    ``sys_enter`` records), so memory grows with the number of tasks and of
    hits over the threshold, not with the number of events.  ``values`` keeps
    every hit's field value (the probed value's distribution).
    ``states``: prev_state letters that may be blamed (``ALL_STATES``: all).
    """

    def __init__(self, probe_event, field, threshold, pid=None, states=("D",), resolve_fds=True, unit=None):
        self.probe_event = probe_event
        # One probe or several (inlined copies of the probed line): 'group:event' or 'event' each.
        specs = [probe_event] if isinstance(probe_event, str) else list(probe_event)
        self._probe_names = frozenset(spec.split(":")[-1].split("/")[-1] for spec in specs)
        self.field = field
        self.threshold = threshold
        self.states = set(states)
        self.unit = unit
        self.pids = None
        self.select(pid)
        self.resolve_fds = resolve_fds
        self._tasks = {}
        self._found = []    # (hit, value, window) in trace order
        self.values = {}    # pid -> LatencySeries of every hit's value (ns when the unit is known)
        self.tgids = {}     # pid -> tgid of its hits

    def select(self, pid):
        """Change the task filter (findings() applies it, so it may be set after the last record)."""
        if pid is not None and not isinstance(pid, (set, frozenset, list, tuple)):
            pid = (pid,)
        self.pids = frozenset(pid) if pid is not None else None

    def _task(self, pid, ts_ns):
        window = self._tasks.get(pid)
        if window is None:
            window = self._tasks[pid] = _Window(False, ts_ns)
        return window

    def feed(self, record):
        event = record["event"]
        fields = record["fields"]
        if event in self._probe_names:
            self._hit(record)
            return
        if event == "sched_switch":
            self._switch(record, fields)
            return
        if event in WAKEUP_EVENTS:
            window = self._tasks.get(fields.get("pid"))
            if window is not None and window.open is not None and window.open["woken_ns"] is None:
                window.open["woken_ns"] = record["ts_ns"]
                window.open["woken_by"] = (record["comm"], record["pid"])
                # In an interrupt (a timer, a device) the record's task is only whoever was running.
                window.open["woken_in_irq"] = (record.get("flags") or "")[2:3] in ("h", "H", "s", "z")
                window.open["queued_cpu"] = fields.get("target_cpu", record.get("cpu"))
            return
        pid = record["pid"]
        if _is_exit(record):
            if pid in self._tasks:
                self._tasks[pid].enters = []
        elif event == "sys_enter" or event.startswith("sys_enter_"):
            window = self._task(pid, record["ts_ns"])
            window.enters = window.enters[-1:] + [record]

    def _switch(self, record, fields):
        woken = self._tasks.get(fields.get("next_pid"))
        if woken is not None and woken.open is not None:
            self._close(woken, record["ts_ns"], "switch_in", (fields.get("prev_comm"), fields.get("prev_pid")),
                        record.get("cpu"))
        prev = fields.get("prev_pid")
        if prev is None or prev == 0:
            return
        window = self._task(prev, record["ts_ns"])
        if window.open is not None:  # a switch-in we did not see (lost or before the buffer)
            self._close(window, record["ts_ns"], "switch_out", None)
        window.switches += 1
        letters = _state_letters(fields.get("prev_state", ""))
        runnable = letters <= {"R", ""}
        window.open = {"out": record, "letters": letters, "call": self._in_flight(window),
                       "woken_ns": record["ts_ns"] if runnable else None, "woken_by": None,
                       "ran_instead": (fields.get("next_comm"), fields.get("next_pid")),
                       "queued_cpu": record.get("cpu") if runnable else None}

    def _in_flight(self, window):
        """The call in flight over the task's last two sys_enter records (newest first)."""
        found = None
        for record in reversed(window.enters):
            call = _syscall_of(record)
            if found is None:
                found = call
                continue
            _merge_syscall(found, call)
        return found

    def _close(self, window, end_ns, until, ran_before, in_cpu=None):
        interval, window.open = window.open, None
        interval["in_cpu"] = in_cpu
        out_ns = interval["out"]["ts_ns"]
        woken = interval["woken_ns"] if interval["woken_ns"] is not None else end_ns
        interval.update(end_ns=end_ns, until=until, off_ns=end_ns - out_ns, asleep_ns=max(0, woken - out_ns),
                        waiting_ns=max(0, end_ns - woken))
        if ran_before is not None and ran_before[1] not in (None, 0):
            interval["ran_instead"] = ran_before  # the task that had the CPU until ours got it back
        letters = interval["letters"]
        if interval["waiting_ns"] and "R" in self.states:
            window.runnable_total += interval["waiting_ns"]
            _keep_longest(window, "runnable", interval, interval["waiting_ns"])
        if letters & STOPPED_STATES & self.states:
            _keep_longest(window, "stopped", interval, interval["asleep_ns"])
        elif letters & self.states - {"R"} - STOPPED_STATES:
            call = interval["call"]
            if "S" in letters and call is not None and call["name"] in syscalls.IDLE_WAITS:
                _keep_longest(window, "idle", interval, interval["asleep_ns"])
            else:
                _keep_longest(window, "blocked", interval, interval["asleep_ns"])

    def _hit(self, hit):
        window = self._task(hit["pid"], hit["ts_ns"])
        if window.open is not None:
            self._close(window, hit["ts_ns"], "probe_hit", None)
        self._tasks[hit["pid"]] = _Window(True)  # the next window starts after this hit
        value = hit["fields"].get(self.field)
        if isinstance(value, int) and value >= 0:
            series = self.values.get(hit["pid"])
            if series is None:
                series = self.values[hit["pid"]] = LatencySeries()
                self.tgids[hit["pid"]] = hit.get("tgid")
            series.add(value * UNIT_NS.get(self.unit, 1))
        if isinstance(value, int) and value >= self.threshold:
            window.enters = []
            self._found.append((hit, value, window))

    def _selected(self, pid, tgid):
        return self.pids is None or pid in self.pids or tgid in self.pids

    def probe_values(self):
        """The distribution of the probed value over the selected tasks' hits (``LatencySeries``)."""
        merged = LatencySeries()
        for pid, series in sorted(self.values.items()):
            if self._selected(pid, self.tgids.get(pid)):
                for value in series.samples if series.samples is not None else ():
                    merged.add(value)
        return merged

    def findings(self):
        """The findings so far (fds resolved now: call after the last record)."""
        return [make_finding(hit, self.field, value, self.threshold, self.states, window, self.resolve_fds, self.unit)
                for hit, value, window in self._found if self._selected(hit["pid"], hit.get("tgid"))]


def _keep_longest(window, kind, interval, length):
    current = getattr(window, kind)
    if current is None or length > current[1]:
        setattr(window, kind, (interval, length))
