# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run-queue waits the trace proves, from sched_wakeup/sched_switch/sched_migrate_task.

Fed events in time order, ``SchedAnalyzer`` follows which task each CPU runs
and which tasks wait on a run queue, and measures each wait: woken (the
enqueue: sched_wakeup / sched_wakeup_new; sched_waking where those are
missing) -> switched in, and preempted (switched out in state R or R+) ->
switched in again.  What it computes from those waits lives beside it:

* ``wait_series.WaitSeries``: the waits per host, per kind and per CPU;
* ``worst.Largest``: the worst waits, with what ran on that CPU meanwhile;
* ``offcpu.WatchedTasks``: watched tasks' own waits and off-CPU intervals (S, D),
  the longest D intervals with their kernel stacks;
* ``losses.LossIntervals``: where events were lost;
* ``result``: all of it as the result document.

A wait is measured only when the trace proves it: its start and its end are
both seen and nothing in between contradicts it (``result.UNMEASURED_REASONS``,
docs/sched-audit.md "Only waits the trace proves").  Anything else is
counted in ``unmeasured_by_reason``, never as latency.

One piece on purpose: the state (which task each CPU runs, which waits are
queued, when each CPU went idle) and the rules that read and change it; the
hot loop (``feed``) inlines the common rules, the methods beside it hold the
rest, and both must change together.

Memory is bounded by the number of tasks and the histogram sizes, never by
the event count.  Nothing here imports Ansible (Python 3.8+).
"""


import collections
import functools

from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched import result as sched_result
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched.losses import LossIntervals
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched.offcpu import WatchedTasks, stack_addresses
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched.result import (
    REWOKEN, RAN_UNTRACED, MIGRATED, CPU_MISMATCH, IDLE_CPU, LOST, CLOCK_ORDER)
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched.wait_series import (
    WaitSeries, WAKEUP, PREEMPT, FOLD_AT)
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched.watch import WatchSpec
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched.worst import Largest

# prev_state bits as the sched_switch format prints them.
STATE_RUNNING_MASK = 0xff   # no bit set: R (the 0x100 bit is R+, preempted)
STATE_S = 0x1
STATE_D = 0x2

SWITCH = "sched_switch"   # the ``kind`` of a switch in ``SchedAnalyzer.feed``
ENQUEUE_EVENTS = ("sched_wakeup", "sched_wakeup_new")
WAKE_EVENTS = ("sched_waking",) + ENQUEUE_EVENTS

# Per-CPU trace clocks may disagree by a little: a switch-in stamped up to this
# much "before" its wakeup on another CPU is a wait of 0 (counted); more is a contradiction.
CLOCK_TOLERANCE_NS = 10000

# Fields of a queued-wait record: a tuple (the cheapest object to build and free, one per wait;
# the rare paths that change a record replace it).
Q_SINCE, Q_KIND, Q_CPU, Q_ENQUEUED, Q_IDLE_SEQ = range(5)
# A CPU's history holds events as ``feed`` gets them, ``(ts, cpu, kind, fields)`` with the switch's
# fields: the task switched in and its name are these fields of the entry's fields.
H_PID, H_COMM = 4, 3
# Fields of a CPU's state (a list per CPU: the hot loop finds it with one lookup per event).
C_CURRENT, C_IDLE_SEQ, C_LAST_EVENT, C_HISTORY = range(4)


class SchedAnalyzer:
    """Streaming state machine over scheduler events in time order."""

    def __init__(self, watch=None, worst_count=10, longest_d_count=10, exact_cap=100000,
                 tail_cap=10000, cpu_history=64, max_watched_tasks=64):
        self.watch = watch or WatchSpec()
        self.watching = bool(self.watch)
        self.waits = WaitSeries(exact_cap, tail_cap)
        self.worst = Largest(worst_count)
        self.watched = WatchedTasks(self.watch, worst_count, longest_d_count, exact_cap, tail_cap,
                                    max_watched_tasks)
        self.losses = LossIntervals()
        self.queued = {}           # pid -> (since, kind, cpu, enqueued, idle_seq of that cpu) (Q_*)
        self.history_len = cpu_history
        # cpu -> [pid believed on it (None: unknown), times it went idle, ts of its latest
        # wakeup/migration (-1: none), deque of its switch-in events (H_*; None before its first
        # switch)] (C_*)
        self.cpus = {}
        self.clock_underflows = 0
        self.running = {}           # pid -> cpu it is believed to run on
        self.comms = {}             # pid -> last comm seen (bounded by the number of tasks)
        self.inferred_switch_ins = 0
        self.woken_while_running = 0
        self.unmeasured = collections.Counter()
        self._counts = collections.Counter()
        self.n_switches = 0         # counted apart from ``counts``: the hottest event
        self.first_ts = None
        self.last_ts = None

    @property
    def unmeasured_waits(self):
        return sum(self.unmeasured.values())

    # -- events --------------------------------------------------------------
    def _cpu(self, cpu):
        """The state of ``cpu`` (C_*), made at its first event."""
        state = self.cpus.get(cpu)
        if state is None:
            state = self.cpus[cpu] = [None, 0, -1, None]
        return state

    def _idle_seq(self, cpu):
        """Times ``cpu`` went idle so far (0 for a CPU not seen yet)."""
        state = self.cpus.get(cpu)
        return state[C_IDLE_SEQ] if state is not None else 0

    def lost(self, since, until):
        """Events were lost somewhere between ``since`` and ``until`` (ns; None: unknown)."""
        self.losses.add(since, until)

    def wakeup(self, ts, cpu, pid, comm, event="sched_waking", waker=None, target_cpu=None):
        """``waker``: common_pid of the event, the task running on ``cpu`` at ``ts``.

        ``sched_waking`` starts a wait; ``sched_wakeup``/``sched_wakeup_new``
        put the task on ``target_cpu``'s run queue (the enqueue).
        """
        self.wake_fields(event, ts, cpu, (waker, comm, pid, target_cpu))

    def wake_fields(self, event, ts, cpu, fields):
        """``wakeup()`` with the fields as decoded: (common_pid, comm, pid, target_cpu)."""
        waker, comm, pid, target_cpu = fields
        self._counts[event] += 1
        self._seen(ts, ts)
        if comm:
            self.comms[pid] = comm
        if waker is not None:
            state = self._cpu(cpu)
            if state[C_CURRENT] is not None and state[C_CURRENT] != waker:
                self._running(ts, cpu, waker, None)
            state[C_LAST_EVENT] = ts
        if self.watching:
            self.watched.woken(pid, ts)
        if pid in self.running:
            # Woken while still on a CPU (it had not switched out yet): no wait.
            self.woken_while_running += 1
            return
        enqueue = event in ENQUEUE_EVENTS
        entry = self.queued.get(pid)
        if entry is not None:
            if entry[Q_KIND] == PREEMPT:
                return  # preempted, still queued: woken before it ran again
            if not enqueue or entry[Q_ENQUEUED]:
                # A second wakeup of a woken task: it ran and slept in between, unseen.
                self.unmeasured[REWOKEN] += 1
                entry = None
            else:
                if target_cpu is None:
                    self.queued[pid] = entry[:Q_ENQUEUED] + (True,) + entry[Q_ENQUEUED + 1:]
                else:
                    self.queued[pid] = (entry[Q_SINCE], entry[Q_KIND], target_cpu, True,
                                        self._idle_seq(target_cpu))
                return
        self.queued[pid] = (ts, WAKEUP, target_cpu, enqueue, self._idle_seq(target_cpu))

    def migrate(self, ts, cpu, pid, orig_cpu, dest_cpu, waker=None):
        """``sched_migrate_task``: before the enqueue it places a woken task, after it moves it."""
        self.migrate_fields(ts, cpu, (waker, pid, orig_cpu, dest_cpu))

    def migrate_fields(self, ts, cpu, fields):
        """``migrate()`` with the fields as decoded: (common_pid, pid, orig_cpu, dest_cpu)."""
        waker, pid, _orig_cpu, dest_cpu = fields
        self._counts["sched_migrate_task"] += 1
        self._seen(ts, ts)
        if waker is not None:
            self._running(ts, cpu, waker, None)
            self._cpu(cpu)[C_LAST_EVENT] = ts
        entry = self.queued.get(pid)
        if entry is None:
            return
        if entry[Q_KIND] == WAKEUP and not entry[Q_ENQUEUED]:
            self.queued[pid] = (entry[Q_SINCE], WAKEUP, dest_cpu, False, self._idle_seq(dest_cpu))
        else:
            del self.queued[pid]
            self.unmeasured[MIGRATED] += 1

    def kernel_stack(self, ts, cpu, pid, addresses):
        """A kernel_stack event (the stack trigger on sched_switch): for the watched task's D interval."""
        self._counts["kernel_stack"] += 1
        self.watched.kernel_stack(cpu, pid, addresses)

    def stack_fields(self, ts, cpu, fields):
        """A decoded ftrace kernel_stack: (common_pid, size, raw caller array)."""
        self.kernel_stack(ts, cpu, fields[0], stack_addresses(fields[1], fields[2]))

    def switch(self, ts, cpu, prev_comm, prev_pid, prev_state, next_comm, next_pid):
        self.feed(((ts, cpu, SWITCH, (prev_comm, prev_pid, prev_state, next_comm, next_pid)),))

    def _history_entry(self, ts, cpu, pid, comm):
        """A switch-in the kernel did not record, as a history entry (H_*)."""
        return (ts, cpu, SWITCH, (None, None, None, comm, pid))

    def feed(self, events, handlers=None, switch_kind=SWITCH, enqueue_kind=None):
        """Analyse ``(ts, cpu, kind, fields)`` events in time order.

        ``kind`` is ``switch_kind`` (fields as ``switch()`` takes them) or a key of
        ``handlers``, whose value is called as ``handler(ts, cpu, fields)``;
        ``enqueue_kind`` (sched_wakeup, fields as ``wake_fields`` takes them) has
        its common case inline too.
        The switch, every other event, is handled inline here (the hot path:
        local names, no call per event); rare cases go to helpers.
        """
        cpus = self.cpus
        running = self.running
        queued = self.queued
        comms = self.comms
        wakeup_adds, preempt_adds = self.waits.adders[WAKEUP], self.waits.adders[PREEMPT]
        watching = self.watching
        measured_fast = not watching and not self.losses
        worst_floor = self.worst.floor
        n_enqueues = 0
        n_handled = 0
        ts = None
        if events and self.first_ts is None:
            self.first_ts = events[0][0]
        for event in events:
            ts, cpu, kind, fields = event
            # (Subscripts, not .get(): cheaper on this path; a missing key is rare.)
            try:
                state = cpus[cpu]
            except KeyError:
                state = self._cpu(cpu)
            if kind != switch_kind:
                if kind == enqueue_kind and not watching:
                    waker, comm, pid, target = fields
                    believed = state[0]
                    if (believed == waker or believed is None) and pid not in running and pid not in queued:
                        # A sleeping task put on a run queue: a wait starts.
                        n_enqueues += 1
                        state[0] = waker
                        state[2] = ts
                        if comm:
                            comms[pid] = comm
                        try:
                            target_idle = cpus[target][1]
                        except KeyError:
                            target_idle = 0
                        queued[pid] = (ts, WAKEUP, target, True, target_idle)
                        continue
                n_handled += 1
                handlers[kind](ts, cpu, fields)
                continue
            # A switch (counted at the end: the events that were not).
            # (state[0..3]: C_CURRENT, C_IDLE_SEQ, C_LAST_EVENT, C_HISTORY.)
            prev_comm, prev_pid, prev_state, next_comm, next_pid = fields
            believed = state[0]
            if believed != prev_pid and believed is not None:
                self._running(ts, cpu, prev_pid, prev_comm)
            state[0] = next_pid
            history = state[3]
            if history is None:  # the CPU's first switch
                history = state[3] = collections.deque(maxlen=self.history_len)
            # One pop for the usual case (prev ran here); put back if it is believed elsewhere.
            prev_cpu = running.pop(prev_pid, cpu)
            if prev_cpu != cpu:
                running[prev_pid] = prev_cpu
            if prev_pid:
                if prev_state & STATE_RUNNING_MASK == 0:
                    queued[prev_pid] = (ts, PREEMPT, cpu, True, state[1])
                elif watching and prev_state & (STATE_S | STATE_D):
                    prev_comm = prev_comm or self._name(prev_pid)
                    if self.watch.matches(prev_pid, prev_comm):
                        self.watched.switched_out(ts, cpu, prev_pid, prev_comm, prev_state)
            if next_pid:
                running[next_pid] = cpu
                if watching:
                    comms[next_pid] = next_comm
                entry = queued.pop(next_pid, None)
                if entry is not None:
                    latency = ts - entry[0]
                    if measured_fast and entry[2] == cpu and latency >= 0 and state[1] == entry[4]:
                        # Proven (queued here, CPU never idle since, nothing lost): the common case.
                        # Straight into its (kind, CPU) pending list; folded every FOLD_AT waits.
                        try:
                            (wakeup_adds if entry[1] is WAKEUP else preempt_adds)[cpu](latency)
                        except KeyError:
                            self.waits.add(entry[1], cpu, latency)
                        if latency > worst_floor:
                            self._record_worst(latency, entry, ts, cpu, next_pid, next_comm, history)
                            worst_floor = self.worst.floor
                    else:
                        self._end_wait(entry, ts, cpu, next_pid, next_comm, history)
                        worst_floor = self.worst.floor
                if watching:
                    self.watched.switched_in(next_pid, ts)
            else:
                state[1] += 1
            history.append(event)   # the switch itself: no new object (H_*)
        if self.waits.pending_count() >= FOLD_AT:
            self.waits.flush()  # memory stays bounded by the batch size plus FOLD_AT
        if n_enqueues:
            self._counts["sched_wakeup"] += n_enqueues
        self.n_switches += len(events) - n_enqueues - n_handled
        if ts is not None:
            self.last_ts = ts

    def _seen(self, first, last):
        """``first_ns``/``last_ns``: the first and last event analysed, of any kind."""
        if self.first_ts is None:
            self.first_ts = first
        self.last_ts = last

    def handlers(self, kinds):
        """``feed`` handlers for decoded events: {id: handler} from {id: event name}."""
        handlers = {}
        for kind, name in kinds.items():
            if name == "sched_migrate_task":
                handlers[kind] = self.migrate_fields
            elif name == "kernel_stack":
                handlers[kind] = self.stack_fields
            elif name in WAKE_EVENTS:
                handlers[kind] = functools.partial(self.wake_fields, name)
        return handlers

    # -- bookkeeping -----------------------------------------------------------
    def _end_wait(self, entry, ts, cpu, pid, comm, history):
        """A switch-in ends a wait: measure it if nothing contradicts it."""
        if entry[Q_CPU] is not None and entry[Q_CPU] != cpu:
            self.unmeasured[CPU_MISMATCH] += 1
            return
        if entry[Q_ENQUEUED] and entry[Q_CPU] is not None and self._idle_seq(cpu) != entry[Q_IDLE_SEQ]:
            self.unmeasured[IDLE_CPU] += 1
            return
        since = entry[Q_SINCE]
        if self.losses and self.losses.overlap(since, ts):
            self.unmeasured[LOST] += 1
            return
        latency = ts - since
        if latency < 0:
            if latency < -CLOCK_TOLERANCE_NS:
                self.unmeasured[CLOCK_ORDER] += 1
                return
            # The wakeup was stamped on another CPU whose clock ran a little ahead.
            self.clock_underflows += 1
            latency = 0
        self.waits.add(entry[Q_KIND], cpu, latency)
        if self.watching:
            self.watched.waited(pid, comm, latency, cpu, entry[Q_KIND], since, ts)
        if latency > self.worst.floor:
            self._record_worst(latency, entry, ts, cpu, pid, comm, history)

    def _running(self, ts, cpu, pid, comm):
        """``pid`` is on ``cpu`` now; if no switch put it there, the kernel did not record one.

        This kernel (docs/sched-audit.md) records no sched_switch when CPU 1 leaves
        idle, and sometimes none when it goes back.  A task seen running without a
        switch-in ends its wait unmeasured (its end is unknown); the idle task seen
        on a CPU believed busy means the CPU went idle, which contradicts the
        waits queued there.  For history, the switch is put at the CPU's previous event.
        """
        state = self._cpu(cpu)
        current = state[C_CURRENT]
        if current is None or current == pid:
            state[C_CURRENT] = pid
            return
        self.inferred_switch_ins += 1
        state[C_CURRENT] = pid
        running = self.running
        if running.get(current) == cpu:
            del running[current]
        if pid:
            running[pid] = cpu
            if self.queued.pop(pid, None) is not None:
                self.unmeasured[RAN_UNTRACED] += 1
        else:
            state[C_IDLE_SEQ] += 1
        history = state[C_HISTORY]
        if history is not None:
            # At the CPU's previous event: its last wakeup/migration or its last switch.
            since = max(state[C_LAST_EVENT], history[-1][0] if history else -1)
            history.append(self._history_entry(since if since >= 0 else ts, cpu, pid, comm or self._name(pid)))

    def _name(self, pid):
        """A task's last known name (decoding skips names the hot path does not need)."""
        comm = self.comms.get(pid)
        if comm:
            return comm
        for state in self.cpus.values():
            for entry in reversed(state[C_HISTORY] or ()):
                if entry[3][H_PID] == pid:
                    return entry[3][H_COMM]
        return b"?"

    def _record_worst(self, latency, entry, ts, cpu, pid, comm, history):
        since = entry[Q_SINCE]
        self.worst.keep(latency, {
            "latency_ns": latency, "pid": pid, "comm": comm, "cpu": cpu, "kind": entry[Q_KIND],
            "since_ns": since, "until_ns": ts, "ran_meanwhile": sched_result.ran_meanwhile(
                [(entry[0], entry[3][H_PID], entry[3][H_COMM]) for entry in history], since, ts)})

    # -- result ----------------------------------------------------------------
    def watched_task(self, pid, comm):
        """Make sure a watched task has an entry (its series may stay empty)."""
        return self.watched.task(pid, comm)

    def finish(self, end_ts=None):
        """Close the watched tasks' intervals still open at the end of the window (marked ongoing)."""
        self.watched.finish(end_ts if end_ts is not None else self.last_ts)

    def coverage(self):
        """How much of the window the latency numbers cover: measured vs unmeasured waits."""
        self.waits.flush()
        return sched_result.coverage_of(self)

    def result(self, symbols=None, facts_by_pid=None):
        """The analysis as plain data (JSON-ready), times in us / ms."""
        self.waits.flush()
        return sched_result.analysis_result(self, symbols=symbols, facts_by_pid=facts_by_pid)

    @property
    def counts(self):
        """Events seen, by name."""
        return self.event_counts()

    def event_counts(self):
        counts = dict(self._counts)
        if self.n_switches:
            counts["sched_switch"] = self.n_switches
        return counts
