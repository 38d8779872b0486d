# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run-queue waits the trace proves, from sched_wakeup/sched_switch/sched_migrate_task.

Fed events in time order, ``SchedAnalyzer`` computes

* run-queue latency: woken (first of sched_waking / sched_wakeup /
  sched_wakeup_new since the task left the CPU) -> switched in, and
  preempted (switched out in state R or R+) -> switched in again;
* per host, per CPU (the CPU the task ran on) and per watched task;
* the worst waits, with what ran on that CPU meanwhile;
* off-CPU intervals of watched tasks split by the state they left in
  (S, D), the longest D intervals with the kernel stack recorded at the
  switch (stacktrace trigger on sched_switch).

A wait is measured only when the trace proves it: its start and its end are
both seen and nothing in between contradicts it (``UNMEASURED_REASONS``,
docs/sched-audit.md "Only waits the trace proves").  Anything else is
counted in ``unmeasured_by_reason``, never as latency.

Memory is bounded by the number of tasks and the histogram sizes, never by
the event count.  Nothing here imports Ansible (Python 3.8+).
"""


import bisect
import collections
import functools
import heapq

from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched import result as sched_result
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched.offcpu import OffCpuIntervals
# Re-exported, part of this module's interface: the reasons a wait is not measured (they live with
# the result that reports them), the series, the watch list, kernel stack decoding.
# pylint: disable=unused-import
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched.result import (  # noqa: F401
    REWOKEN, RAN_UNTRACED, MIGRATED, CPU_MISMATCH, IDLE_CPU, LOST, CLOCK_ORDER, UNMEASURED_REASONS)
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched.offcpu import stack_addresses  # noqa: F401
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched.watch import WatchSpec, comm_text  # noqa: F401
from ansible_collections.fleettrace.tracefs.plugins.module_utils.series import (  # noqa: F401
    LatencySeries, PERCENTILES, SUB_BITS, MAX_RELATIVE_ERROR, FLUSH_AT, log2_histogram_us, _fine_bin,
    _fine_bin_middle, _nearest_rank)
# pylint: enable=unused-import

from ansible_collections.fleettrace.tracefs.plugins.module_utils.elf import symbols as elf_symbols

# prev_state bits as the sched_switch format prints them.
STATE_RUNNING_MASK = 0xff   # no bit set: R (the 0x100 bit is R+, preempted)
STATE_S = 0x1
STATE_D = 0x2

WAKEUP = "wakeup"
PREEMPT = "preempt"
SWITCH = "sched_switch"   # the ``kind`` of a switch in ``SchedAnalyzer.feed``
ENQUEUE_EVENTS = ("sched_wakeup", "sched_wakeup_new")
WAKE_EVENTS = ("sched_waking",) + ENQUEUE_EVENTS

# Per-CPU trace clocks may disagree by a little: a switch-in stamped up to this
# much "before" its wakeup on another CPU is a wait of 0 (counted); more is a contradiction.
CLOCK_TOLERANCE_NS = 10000

# Fields of a queued-wait record (a list, for speed).
Q_SINCE, Q_KIND, Q_CPU, Q_ENQUEUED, Q_IDLE_SEQ = range(5)


# /proc/kallsyms lookup lives with the other symbolizers (elf.symbols).
KernelSymbols = elf_symbols.KernelSymbols


class SchedAnalyzer(OffCpuIntervals):
    """Streaming state machine over scheduler events in time order."""

    def __init__(self, watch=None, worst_count=10, longest_d_count=10, exact_cap=100000,
                 tail_cap=10000, cpu_history=64, max_watched_tasks=64):
        self.watch = watch or WatchSpec()
        self.worst_count = worst_count
        self.longest_d_count = longest_d_count
        self.exact_cap = exact_cap
        self.tail_cap = tail_cap
        self.max_watched_tasks = max_watched_tasks
        self.series = {"all": self._new_series(), WAKEUP: self._new_series(), PREEMPT: self._new_series()}
        self.per_cpu = {}
        self.tasks = {}            # watched pid -> task record
        self.tasks_dropped = 0
        self.queued = {}           # pid -> [since, kind, cpu, enqueued, idle_seq of that cpu] (Q_*)
        self.off_cpu = {}          # watched pid -> [since_ts, state, stack, woken_ts, comm]
        self.pending_stack = {}    # cpu -> pid switched out in D, waiting for its kernel_stack
        self.history_len = cpu_history
        self.history = {}          # cpu -> deque of (ts, pid, comm) switch-ins
        self.worst = []            # min-heap of (latency, seq, record)
        self.longest_d = []        # min-heap of (duration, seq, record)
        self._seq = 0
        self.clock_underflows = 0
        self.current = {}           # cpu -> pid believed on CPU
        self.running = {}           # pid -> cpu it is believed to run on
        self.idle_seq = {}          # cpu -> times it went idle
        self.last_event = {}        # cpu -> ts of its latest event
        self.comms = {}             # pid -> last comm seen (bounded by the number of tasks)
        self.inferred_switch_ins = 0
        self.woken_while_running = 0
        self.unmeasured = collections.Counter()
        self.losses = []            # sorted, merged [since, until] intervals with lost events
        self._loss_starts = []
        self._counts = collections.Counter()
        self.n_switches = 0         # counted apart from ``counts``: the hottest event
        self.first_ts = None
        self.last_ts = None
        self.watching = bool(self.watch)
        self._worst_floor = -1      # a wait must exceed this to enter ``worst``
        # A measured wait goes into three series (all, its kind, its CPU): it is appended once, to
        # the list of its (kind, CPU), and ``flush`` sorts each such list once and hands the
        # series merged sorted runs (a sort per series would cost three times as much).
        self._wait_adds = {WAKEUP: {}, PREEMPT: {}}   # kind -> cpu -> append of its pending list
        self._pending_waits = []    # (kind, cpu, pending list) of every (kind, CPU) seen

    def _per_cpu_series(self, cpu):
        series = self.per_cpu.get(cpu)
        if series is None:
            series = self.per_cpu[cpu] = self._new_series(max(1000, self.exact_cap // 8))
        return series

    def _add_wait(self, kind, cpu, latency):
        """A measured run-queue wait of ``kind`` on ``cpu`` (into the series at the next flush)."""
        add = self._wait_adds[kind].get(cpu)
        if add is None:
            self._per_cpu_series(cpu)
            pending = []
            self._pending_waits.append((kind, cpu, pending))
            add = self._wait_adds[kind][cpu] = pending.append
        add(latency)

    def _pending_count(self):
        return sum(len(pending) for _kind, _cpu, pending in self._pending_waits)

    def flush(self):
        """Fold the waiting samples into the series (bounded memory; result() does it too)."""
        by_series = collections.defaultdict(list)   # series -> sorted runs
        for kind, cpu, pending in self._pending_waits:
            if pending:
                run = sorted(pending)
                del pending[:]   # in place: ``feed`` holds ``pending.append``
                for series in (self.series["all"], self.series[kind], self.per_cpu[cpu]):
                    by_series[series].append(run)
        for series, runs in by_series.items():
            merged = runs[0]
            if len(runs) > 1:
                merged = list(merged)
                for run in runs[1:]:
                    merged.extend(run)
                merged.sort()   # concatenated sorted runs: Python's sort merges them (linear per run)
            series.add_sorted(merged)
        for series in self.series.values():
            series.flush()
        for series in self.per_cpu.values():
            series.flush()

    def _new_series(self, exact_cap=None):
        return LatencySeries(exact_cap or self.exact_cap, self.tail_cap)

    @property
    def unmeasured_waits(self):
        return sum(self.unmeasured.values())

    # -- events --------------------------------------------------------------
    def lost(self, since, until):
        """Events were lost somewhere between ``since`` and ``until`` (ns; None: unknown)."""
        since = -1 if since is None else since
        until = float("inf") if until is None else until
        self.losses.append([since, until])
        self.losses.sort()
        merged = []
        for low, high in self.losses:
            if merged and low <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], high)
            else:
                merged.append([low, high])
        self.losses = merged
        self._loss_starts = [low for low, _high in merged]

    def _overlaps_loss(self, since, until):
        index = bisect.bisect_left(self._loss_starts, until) - 1
        return index >= 0 and self.losses[index][1] > since

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
            if self.current.get(cpu, waker) != waker:
                self._running(ts, cpu, waker, None)
            self.last_event[cpu] = ts
        if self.watching:
            record = self.off_cpu.get(pid)
            if record is not None and record[3] is None:
                record[3] = ts
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
                entry[Q_ENQUEUED] = True
                if target_cpu is not None:
                    entry[Q_CPU] = target_cpu
                    entry[Q_IDLE_SEQ] = self.idle_seq.get(target_cpu, 0)
                return
        self.queued[pid] = [ts, WAKEUP, target_cpu, enqueue, self.idle_seq.get(target_cpu, 0)]

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
            self.last_event[cpu] = ts
        entry = self.queued.get(pid)
        if entry is None:
            return
        if entry[Q_KIND] == WAKEUP and not entry[Q_ENQUEUED]:
            entry[Q_CPU] = dest_cpu
            entry[Q_IDLE_SEQ] = self.idle_seq.get(dest_cpu, 0)
        else:
            del self.queued[pid]
            self.unmeasured[MIGRATED] += 1

    def switch(self, ts, cpu, prev_comm, prev_pid, prev_state, next_comm, next_pid):
        self.feed(((ts, cpu, SWITCH, (prev_comm, prev_pid, prev_state, next_comm, next_pid)),))

    def feed(self, events, handlers=None, switch_kind=SWITCH, enqueue_kind=None):
        """Analyse ``(ts, cpu, kind, fields)`` events in time order.

        ``kind`` is ``switch_kind`` (fields as ``switch()`` takes them) or a key of
        ``handlers``, whose value is called as ``handler(ts, cpu, fields)``;
        ``enqueue_kind`` (sched_wakeup, fields as ``wake_fields`` takes them) has
        its common case inline too.
        The switch, every other event, is handled inline here (the hot path:
        local names, no call per event); rare cases go to helpers.
        """
        current = self.current
        running = self.running
        queued = self.queued
        idle_seq = self.idle_seq
        last_event = self.last_event
        histories = self.history
        comms = self.comms
        wakeup_adds, preempt_adds = self._wait_adds[WAKEUP], self._wait_adds[PREEMPT]
        watching = self.watching
        measured_fast = not watching and not self.losses
        worst_floor = self._worst_floor
        n_enqueues = 0
        n_handled = 0
        ts = None
        if events and self.first_ts is None:
            self.first_ts = events[0][0]
        for ts, cpu, kind, fields in events:
            if kind != switch_kind:
                if kind == enqueue_kind and not watching:
                    waker, comm, pid, target = fields
                    # (Subscripts, not .get(): cheaper on this path; a missing key is rare.)
                    try:
                        believed = current[cpu]
                    except KeyError:
                        believed = None
                    if (believed == waker or believed is None) and pid not in running and pid not in queued:
                        # A sleeping task put on a run queue: a wait starts.
                        n_enqueues += 1
                        current[cpu] = waker
                        last_event[cpu] = ts
                        if comm:
                            comms[pid] = comm
                        try:
                            target_idle = idle_seq[target]
                        except KeyError:
                            target_idle = 0
                        queued[pid] = [ts, WAKEUP, target, True, target_idle]
                        continue
                n_handled += 1
                handlers[kind](ts, cpu, fields)
                continue
            # A switch (counted at the end: the events that were not).
            prev_comm, prev_pid, prev_state, next_comm, next_pid = fields
            try:
                believed = current[cpu]
            except KeyError:
                believed = None
            if believed != prev_pid and believed is not None:
                self._running(ts, cpu, prev_pid, prev_comm)
            current[cpu] = next_pid
            try:
                history = histories[cpu]
            except KeyError:  # the CPU's first switch; from here on idle_seq[cpu] exists too
                history = histories[cpu] = collections.deque(maxlen=self.history_len)
                idle_seq.setdefault(cpu, 0)
            # One pop for the usual case (prev ran here); put back if it is believed elsewhere.
            prev_cpu = running.pop(prev_pid, cpu)
            if prev_cpu != cpu:
                running[prev_pid] = prev_cpu
            if prev_pid:
                if prev_state & STATE_RUNNING_MASK == 0:
                    queued[prev_pid] = [ts, PREEMPT, cpu, True, idle_seq[cpu]]
                elif watching and prev_state & (STATE_S | STATE_D):
                    prev_comm = prev_comm or self._name(prev_pid)
                    if self.watch.matches(prev_pid, prev_comm):
                        self._switched_out(ts, cpu, prev_pid, prev_comm, prev_state)
            if next_pid:
                running[next_pid] = cpu
                if watching:
                    comms[next_pid] = next_comm
                entry = queued.pop(next_pid, None)
                if entry is not None:
                    latency = ts - entry[0]
                    if measured_fast and entry[2] == cpu and latency >= 0 and idle_seq[cpu] == entry[4]:
                        # Proven (queued here, CPU never idle since, nothing lost): the common case.
                        # Straight into its (kind, CPU) pending list; folded every FLUSH_AT waits.
                        try:
                            (wakeup_adds if entry[1] is WAKEUP else preempt_adds)[cpu](latency)
                        except KeyError:
                            self._add_wait(entry[1], cpu, latency)
                        if latency > worst_floor:
                            self._record_worst(latency, entry, ts, cpu, next_pid, next_comm, history)
                            worst_floor = self._worst_floor
                    else:
                        self._end_wait(entry, ts, cpu, next_pid, next_comm, history)
                        worst_floor = self._worst_floor
                if watching:
                    record = self.off_cpu.pop(next_pid, None)
                    if record is not None:
                        self._record_off_cpu(next_pid, record, ts, ongoing=False)
            else:
                idle_seq[cpu] += 1
            history.append((ts, next_pid, next_comm))
        if self._pending_count() >= FLUSH_AT:
            self.flush()  # memory stays bounded by the batch size plus FLUSH_AT
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
        if entry[Q_ENQUEUED] and entry[Q_CPU] is not None and self.idle_seq.get(cpu, 0) != entry[Q_IDLE_SEQ]:
            self.unmeasured[IDLE_CPU] += 1
            return
        since = entry[Q_SINCE]
        if self.losses and self._overlaps_loss(since, ts):
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
        self._record_latency(latency, entry, ts, cpu, pid, comm, history)

    def _running(self, ts, cpu, pid, comm):
        """``pid`` is on ``cpu`` now; if no switch put it there, the kernel did not record one.

        This kernel (docs/sched-audit.md) records no sched_switch when CPU 1 leaves
        idle, and sometimes none when it goes back.  A task seen running without a
        switch-in ends its wait unmeasured (its end is unknown); the idle task seen
        on a CPU believed busy means the CPU went idle, which contradicts the
        waits queued there.  For history, the switch is put at the CPU's previous event.
        """
        current = self.current.get(cpu)
        if current is None or current == pid:
            self.current[cpu] = pid
            return
        self.inferred_switch_ins += 1
        self.current[cpu] = pid
        running = self.running
        if running.get(current) == cpu:
            del running[current]
        if pid:
            running[pid] = cpu
            if self.queued.pop(pid, None) is not None:
                self.unmeasured[RAN_UNTRACED] += 1
        else:
            self.idle_seq[cpu] = self.idle_seq.get(cpu, 0) + 1
        history = self.history.get(cpu)
        if history is not None:
            # At the CPU's previous event: its last wakeup/migration or its last switch.
            since = max(self.last_event.get(cpu, -1), history[-1][0] if history else -1)
            history.append((since if since >= 0 else ts, pid, comm or self._name(pid)))

    def _name(self, pid):
        """A task's last known name (decoding skips names the hot path does not need)."""
        comm = self.comms.get(pid)
        if comm:
            return comm
        for history in self.history.values():
            for _ts, other, comm in reversed(history):
                if other == pid:
                    return comm
        return b"?"

    def _record_latency(self, latency, entry, ts, cpu, pid, comm, history):
        kind = entry[Q_KIND]
        self._add_wait(kind, cpu, latency)
        since = entry[Q_SINCE]
        if self.watching and self.watch.matches(pid, comm):
            task = self._task(pid, comm)
            if task is not None:
                task["runqueue"].add(latency)
                self._keep_worst(task["worst"], latency, {"latency_ns": latency, "cpu": cpu, "kind": kind,
                                                          "since_ns": since, "until_ns": ts})
        if latency > self._worst_floor:
            self._record_worst(latency, entry, ts, cpu, pid, comm, history)

    def _record_worst(self, latency, entry, ts, cpu, pid, comm, history):
        since = entry[Q_SINCE]
        self._keep_worst(self.worst, latency, {
            "latency_ns": latency, "pid": pid, "comm": comm, "cpu": cpu, "kind": entry[Q_KIND],
            "since_ns": since, "until_ns": ts, "ran_meanwhile": sched_result.ran_meanwhile(history, since, ts)})
        if len(self.worst) >= self.worst_count:
            self._worst_floor = self.worst[0][0]

    def _keep_worst(self, heap, latency, record):
        if len(heap) < self.worst_count or latency > heap[0][0]:
            self._seq += 1
            if len(heap) < self.worst_count:
                heapq.heappush(heap, (latency, self._seq, record))
            else:
                heapq.heapreplace(heap, (latency, self._seq, record))

    def coverage(self):
        """How much of the window the latency numbers cover: measured vs unmeasured waits."""
        self.flush()
        return sched_result.coverage_of(self)

    def result(self, symbols=None, facts_by_pid=None):
        """The analysis as plain data (JSON-ready), times in us / ms."""
        self.flush()
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
