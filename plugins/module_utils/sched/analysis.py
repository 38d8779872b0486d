# -*- coding: utf-8 -*-
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Scheduling latency from sched_waking/sched_wakeup/sched_switch records.

Fed events in time order, ``SchedAnalyzer`` computes

* run-queue latency: woken (first of sched_waking / sched_wakeup /
  sched_wakeup_new since the task left the CPU) -> switched in, and
  preempted (switched out in state R or R+) -> switched in again;
* per host, per CPU (the CPU the task ran on) and per watched task;
* the worst waits, with what ran on that CPU meanwhile;
* off-CPU intervals of watched tasks split by the state they left in
  (S, D), the longest D intervals with the kernel stack recorded at the
  switch (stacktrace trigger on sched_switch).

Memory is bounded by the number of tasks and the histogram sizes, never by
the event count.  How percentiles stay exact: see ``LatencySeries``.
Nothing here imports Ansible (Python 3.8+).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import heapq
import re
import struct
from array import array

from ansible_collections.fleettrace.tracefs.plugins.module_utils.elf import symbols as elf_symbols

# prev_state bits as the sched_switch format prints them.
STATE_RUNNING_MASK = 0xff   # no bit set: R (the 0x100 bit is R+, preempted)
STATE_S = 0x1
STATE_D = 0x2

WAKEUP = "wakeup"
PREEMPT = "preempt"

# Log-linear bins: 2**SUB_BITS bins per power of two, exact below 2**(SUB_BITS+1) ns.
SUB_BITS = 7
MAX_RELATIVE_ERROR = 1.0 / (1 << (SUB_BITS + 1))  # bin half-width / lower bound

PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99_9", 99.9))


def _fine_bin(value):
    """Log-linear bin key of a non-negative integer (ns)."""
    if value < (1 << (SUB_BITS + 1)):
        return value
    shift = value.bit_length() - (SUB_BITS + 1)
    return ((shift + 1) << (SUB_BITS + 1)) | (value >> shift)


def _fine_bin_middle(key):
    """Representative value (bin middle) of a log-linear bin key."""
    if key < (1 << (SUB_BITS + 1)):
        return key
    shift = (key >> (SUB_BITS + 1)) - 1
    top = key & ((1 << (SUB_BITS + 1)) - 1)
    return (top << shift) + ((1 << shift) >> 1)


def _nearest_rank(count, percent):
    """1-based rank of the nearest-rank percentile of ``count`` samples."""
    # Integer arithmetic in tenths of a percent: 1000 * 99.9 must not become 999.0000001.
    tenths = int(round(percent * 10))
    rank = -(-count * tenths // 1000)
    return min(max(rank, 1), count)


def log2_histogram_us(values_ns=None, counts=None):
    """bcc-style log2 buckets of microseconds: [{low_us, high_us, count}].

    Bucket k holds values whose microsecond count has bit length k:
    0 -> [0,1) us, 1 -> [1,2), 2 -> [2,4), ...
    """
    if counts is None:
        counts = collections.Counter()
        for value in values_ns:
            counts[(value // 1000).bit_length()] += 1
    if not counts:
        return []
    buckets = []
    for k in range(0, max(counts) + 1):
        low = 0 if k == 0 else 1 << (k - 1)
        buckets.append({"low_us": low, "high_us": 1 << k if k else 1, "count": counts.get(k, 0)})
    return buckets


class LatencySeries:
    """Latency samples (ns) of one population, with bounded memory.

    Exact percentiles without unbounded memory: every sample is kept
    (8 bytes each, ``array('q')``) until ``exact_cap`` samples; past that the
    samples are folded into a log-linear histogram (``2**SUB_BITS`` bins per
    power of two, so any value read back from it is within
    ``MAX_RELATIVE_ERROR`` = 0.39 % of the truth) while the ``tail_cap``
    largest samples are still kept exactly in a heap.  A percentile is exact
    when its rank falls into the kept tail (p99.9 of up to 1000 * tail_cap
    samples, p99 of up to 100 * tail_cap) and otherwise carries the bounded
    error, flagged in ``exact``.  max, min, count and mean are always exact.
    """

    __slots__ = ("count", "total", "max", "min", "samples", "exact_cap", "tail_cap", "tail",
                 "fine", "log2")

    def __init__(self, exact_cap=100000, tail_cap=10000):
        self.count = 0
        self.total = 0
        self.max = 0
        self.min = None
        self.samples = array("q")
        self.exact_cap = exact_cap
        self.tail_cap = tail_cap
        self.tail = None
        self.fine = None
        self.log2 = None

    def add(self, value):
        self.count += 1
        self.total += value
        if value > self.max:
            self.max = value
        if self.min is None or value < self.min:
            self.min = value
        samples = self.samples
        if samples is not None:
            samples.append(value)
            if len(samples) > self.exact_cap:
                self._fold()
            return
        key = _fine_bin(value)
        self.fine[key] = self.fine.get(key, 0) + 1
        k = (value // 1000).bit_length()
        self.log2[k] = self.log2.get(k, 0) + 1
        tail = self.tail
        if len(tail) < self.tail_cap:
            heapq.heappush(tail, value)
        elif value > tail[0]:
            heapq.heapreplace(tail, value)

    def _fold(self):
        fine = {}
        log2 = {}
        for value in self.samples:
            key = _fine_bin(value)
            fine[key] = fine.get(key, 0) + 1
            k = (value // 1000).bit_length()
            log2[k] = log2.get(k, 0) + 1
        self.fine = fine
        self.log2 = log2
        self.tail = heapq.nlargest(self.tail_cap, self.samples)
        heapq.heapify(self.tail)
        self.samples = None

    def percentile(self, percent):
        """(value_ns, exact) of the nearest-rank percentile, or (None, True)."""
        if not self.count:
            return None, True
        rank = _nearest_rank(self.count, percent)
        if self.samples is not None:
            return sorted(self.samples)[rank - 1], True
        from_top = self.count - rank  # 0 = the largest sample
        if from_top < len(self.tail):
            return sorted(self.tail, reverse=True)[from_top], True
        seen = 0
        for key in sorted(self.fine):
            seen += self.fine[key]
            if seen >= rank:
                return _fine_bin_middle(key), False
        return self.max, True

    def summary(self, unit="us"):
        """Plain dict for JSON: count, mean, min, max, percentiles, log2 histogram."""
        divisor = 1000.0 if unit == "us" else 1000000.0
        result = {"count": self.count}
        if not self.count:
            for name, _percent in PERCENTILES:
                result["%s_%s" % (name, unit)] = None
            result.update({"mean_%s" % unit: None, "min_%s" % unit: None, "max_%s" % unit: None,
                           "exact": True, "histogram_log2_us": []})
            return result
        ordered = sorted(self.samples) if self.samples is not None else None
        exact_all = True
        for name, percent in PERCENTILES:
            if ordered is not None:
                value, exact = ordered[_nearest_rank(self.count, percent) - 1], True
            else:
                value, exact = self.percentile(percent)
            exact_all = exact_all and exact
            result["%s_%s" % (name, unit)] = round(value / divisor, 3)
        result["mean_%s" % unit] = round(self.total / self.count / divisor, 3)
        result["min_%s" % unit] = round(self.min / divisor, 3)
        result["max_%s" % unit] = round(self.max / divisor, 3)
        result["exact"] = exact_all
        if not exact_all:
            result["max_relative_error"] = MAX_RELATIVE_ERROR
        if ordered is not None:
            result["histogram_log2_us"] = log2_histogram_us(values_ns=ordered)
        else:
            result["histogram_log2_us"] = log2_histogram_us(counts=self.log2)
        return result


class WatchSpec:
    """Which tasks to follow closely: pids, exact comms, comm regexes."""

    def __init__(self, pids=(), comms=(), comm_regexes=()):
        self.pids = set(int(p) for p in pids)
        self.comms = set(c.encode("utf-8")[:15] if not isinstance(c, bytes) else c for c in comms)
        self.regexes = [re.compile(r.encode("utf-8") if not isinstance(r, bytes) else r) for r in comm_regexes]
        self._cache = {}

    def __bool__(self):
        return bool(self.pids or self.comms or self.regexes)

    __nonzero__ = __bool__

    def matches(self, pid, comm):
        if pid in self.pids:
            return True
        found = self._cache.get(comm)
        if found is None:
            found = comm in self.comms or any(r.search(comm) for r in self.regexes)
            self._cache[comm] = found
        return found


def comm_text(comm):
    """A raw ``char comm[16]`` as text."""
    if isinstance(comm, bytes):
        return comm.split(b"\0", 1)[0].decode("utf-8", "replace")
    return comm


# /proc/kallsyms lookup lives with the other symbolizers (elf.symbols).
KernelSymbols = elf_symbols.KernelSymbols


class SchedAnalyzer:
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
        self.queued = {}           # pid -> (since_ts, kind)
        self.off_cpu = {}          # watched pid -> [since_ts, state, stack, woken_ts, comm]
        self.pending_stack = {}    # cpu -> pid switched out in D, waiting for its kernel_stack
        self.history_len = cpu_history
        self.history = {}          # cpu -> deque of (ts, pid, comm) switch-ins
        self.worst = []            # min-heap of (latency, seq, record)
        self.longest_d = []        # min-heap of (duration, seq, record)
        self._seq = 0
        self.clock_underflows = 0
        self.current = {}           # cpu -> pid believed on CPU
        self.last_event = {}        # cpu -> ts of its latest event
        self.comms = {}             # pid -> last comm seen (bounded by the number of tasks)
        self.inferred_switch_ins = 0
        self.unmeasured_waits = 0
        self.counts = collections.Counter()
        self.first_ts = None
        self.last_ts = None

    def _new_series(self, exact_cap=None):
        return LatencySeries(exact_cap or self.exact_cap, self.tail_cap)

    # -- events --------------------------------------------------------------
    def wakeup(self, ts, cpu, pid, comm, event="sched_waking", waker=None):
        """``waker``: common_pid of the event, the task running on ``cpu`` at ``ts``."""
        self.counts[event] += 1
        self.comms[pid] = comm
        if waker is not None:
            self._running(ts, cpu, waker, None)
            self.last_event[cpu] = ts
        if pid not in self.queued:
            self.queued[pid] = (ts, WAKEUP)
        record = self.off_cpu.get(pid)
        if record is not None and record[3] is None:
            record[3] = ts

    def switch(self, ts, cpu, prev_comm, prev_pid, prev_state, next_comm, next_pid):
        self.counts["sched_switch"] += 1
        if self.first_ts is None:
            self.first_ts = ts
        self.last_ts = ts
        self._running(ts, cpu, prev_pid, prev_comm)
        self.current[cpu] = next_pid
        self.last_event[cpu] = ts
        if next_pid:
            self.comms[next_pid] = next_comm
        watch = self.watch
        if prev_pid:
            if prev_state & STATE_RUNNING_MASK == 0:
                self.queued[prev_pid] = (ts, PREEMPT)
            else:
                self.queued.pop(prev_pid, None)
                if watch and watch.matches(prev_pid, prev_comm) and prev_state & (STATE_S | STATE_D):
                    state = "D" if prev_state & STATE_D else "S"
                    self.off_cpu[prev_pid] = [ts, state, None, None, prev_comm]
                    if state == "D":
                        self.pending_stack[cpu] = prev_pid
        history = self.history.get(cpu)
        if history is None:
            history = self.history[cpu] = collections.deque(maxlen=self.history_len)
        if next_pid:
            queued = self.queued.pop(next_pid, None)
            if queued is not None:
                latency = ts - queued[0]
                if latency < 0:
                    # The wakeup was stamped on another CPU whose clock ran ahead.
                    self.clock_underflows += 1
                    latency = 0
                self._record_latency(latency, queued, ts, cpu, next_pid, next_comm, history)
            if watch:
                record = self.off_cpu.pop(next_pid, None)
                if record is not None:
                    self._record_off_cpu(next_pid, record, ts, ongoing=False)
        history.append((ts, next_pid, next_comm))

    def kernel_stack(self, ts, cpu, pid, addresses):
        self.counts["kernel_stack"] += 1
        if self.pending_stack.get(cpu) == pid:
            del self.pending_stack[cpu]
            record = self.off_cpu.get(pid)
            if record is not None and record[2] is None:
                record[2] = list(addresses)

    # -- bookkeeping -----------------------------------------------------------
    def _running(self, ts, cpu, pid, comm):
        """``pid`` is on ``cpu`` now; if no switch put it there, the kernel did not record one.

        Some kernels do not emit sched_switch when a CPU leaves idle (seen on a 6.18 VM
        kernel for CPU 1).  Such a switch-in is inferred at the CPU's previous event
        (for history: who held the CPU), and the task's wait, whose end is unknown, is
        dropped and counted instead of being measured wrong.
        """
        current = self.current.get(cpu)
        if current is None or current == pid:
            self.current[cpu] = pid
            return
        self.inferred_switch_ins += 1
        self.current[cpu] = pid
        if pid and self.queued.pop(pid, None) is not None:
            self.unmeasured_waits += 1
        history = self.history.get(cpu)
        if history is not None:
            history.append((self.last_event.get(cpu, ts), pid, comm or self.comms.get(pid, b"?")))

    def _record_latency(self, latency, queued, ts, cpu, pid, comm, history):
        kind = queued[1]
        self.series["all"].add(latency)
        self.series[kind].add(latency)
        per_cpu = self.per_cpu.get(cpu)
        if per_cpu is None:
            per_cpu = self.per_cpu[cpu] = self._new_series(max(1000, self.exact_cap // 8))
        per_cpu.add(latency)
        if self.watch and self.watch.matches(pid, comm):
            task = self._task(pid, comm)
            if task is not None:
                task["runqueue"].add(latency)
        worst = self.worst
        if len(worst) < self.worst_count or latency > worst[0][0]:
            self._seq += 1
            record = {"latency_ns": latency, "pid": pid, "comm": comm, "cpu": cpu, "kind": kind,
                      "since_ns": queued[0], "until_ns": ts,
                      "ran_meanwhile": self._ran_meanwhile(history, queued[0], ts)}
            if len(worst) < self.worst_count:
                heapq.heappush(worst, (latency, self._seq, record))
            else:
                heapq.heapreplace(worst, (latency, self._seq, record))

    @staticmethod
    def _ran_meanwhile(history, since, until):
        """Who held the CPU during [since, until], longest first (bounded history)."""
        spans = collections.Counter()
        names = {}
        entries = list(history)
        covered = bool(entries) and entries[0][0] <= since
        for index, (start, pid, comm) in enumerate(entries):
            end = entries[index + 1][0] if index + 1 < len(entries) else until
            low, high = max(start, since), min(end, until)
            if high > low:
                spans[pid] += high - low
                names[pid] = comm
        ran = [{"pid": pid, "comm": comm_text(names[pid]), "us": round(ns / 1000.0, 3)}
               for pid, ns in spans.most_common(5)]
        return {"tasks": ran, "complete": covered}

    def _task(self, pid, comm):
        task = self.tasks.get(pid)
        if task is None:
            if len(self.tasks) >= self.max_watched_tasks:
                self.tasks_dropped += 1
                return None
            cap = max(1000, self.exact_cap // 8)
            task = self.tasks[pid] = {"pid": pid, "comm": comm, "runqueue": self._new_series(cap),
                                      "S": self._new_series(cap), "D": self._new_series(cap)}
        task["comm"] = comm
        return task

    def _record_off_cpu(self, pid, record, ts, ongoing):
        since, state, stack, woken, comm = record
        duration = max(ts - since, 0)
        task = self._task(pid, comm)
        if task is not None:
            task[state].add(duration)
        if state != "D":
            return
        heap = self.longest_d
        if len(heap) < self.longest_d_count or duration > heap[0][0]:
            self._seq += 1
            entry = {"duration_ns": duration, "pid": pid, "comm": comm, "since_ns": since,
                     "until_ns": ts, "blocked_ns": (woken - since) if woken is not None else duration,
                     "ongoing": ongoing, "stack": stack}
            if len(heap) < self.longest_d_count:
                heapq.heappush(heap, (duration, self._seq, entry))
            else:
                heapq.heapreplace(heap, (duration, self._seq, entry))

    # -- result ----------------------------------------------------------------
    def finish(self, end_ts=None):
        """Close intervals still open at the end of the window (marked ongoing)."""
        end_ts = end_ts if end_ts is not None else self.last_ts
        for pid, record in list(self.off_cpu.items()):
            if end_ts is not None:
                self._record_off_cpu(pid, record, end_ts, ongoing=True)
        self.off_cpu = {}

    def result(self, symbols=None, facts_by_pid=None):
        """The analysis as plain data (JSON-ready), times in us / ms."""
        facts_by_pid = facts_by_pid or {}

        def symbolize(stack):
            if not stack:
                return []
            if symbols is None:
                return ["0x%x" % a for a in stack]
            return [symbols.name(a) for a in stack]

        worst = []
        for latency, _seq, record in sorted(self.worst, key=lambda item: (-item[0], item[1])):
            worst.append({"latency_us": round(latency / 1000.0, 3), "pid": record["pid"],
                          "comm": comm_text(record["comm"]), "cpu": record["cpu"], "kind": record["kind"],
                          "since_ns": record["since_ns"], "until_ns": record["until_ns"],
                          "ran_meanwhile": record["ran_meanwhile"]["tasks"],
                          "ran_meanwhile_complete": record["ran_meanwhile"]["complete"]})
        longest = []
        for duration, _seq, entry in sorted(self.longest_d, key=lambda item: (-item[0], item[1])):
            longest.append({"duration_ms": round(duration / 1e6, 3), "pid": entry["pid"],
                            "comm": comm_text(entry["comm"]), "state": "D",
                            "blocked_ms": round(entry["blocked_ns"] / 1e6, 3),
                            "since_ns": entry["since_ns"], "until_ns": entry["until_ns"],
                            "ongoing": entry["ongoing"], "kernel_stack": symbolize(entry["stack"])})
        tasks = []
        for pid in sorted(self.tasks):
            task = self.tasks[pid]
            item = {"pid": pid, "comm": comm_text(task["comm"]),
                    "runqueue": task["runqueue"].summary("us"),
                    "offcpu": {"S": task["S"].summary("ms"), "D": task["D"].summary("ms")}}
            item.update(facts_by_pid.get(pid, {}))
            tasks.append(item)
        return {
            "latency": dict((name, series.summary("us")) for name, series in self.series.items()),
            "per_cpu": dict((str(cpu), self.per_cpu[cpu].summary("us")) for cpu in sorted(self.per_cpu)),
            "tasks": tasks,
            "tasks_not_tracked": self.tasks_dropped,
            "worst_waits": worst,
            "longest_d": longest,
            "clock_underflows": self.clock_underflows,
            "inferred_switch_ins": self.inferred_switch_ins,
            "unmeasured_waits": self.unmeasured_waits,
            "event_counts": dict(self.counts),
            "first_ns": self.first_ts,
            "last_ns": self.last_ts,
        }


def stack_addresses(count, raw):
    """Addresses of a kernel_stack payload: ``count`` native longs of ``raw``."""
    available = len(raw) // 8
    count = max(0, min(count, available))
    return [a for a in struct.unpack_from("=%dQ" % count, raw, 0) if a] if count else []
