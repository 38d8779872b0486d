# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the audit computes for watched tasks only: their waits, their off-CPU intervals (S, D),
the longest D intervals with the kernel stack recorded at the switch.

``SchedAnalyzer`` tells it about watched tasks as it sees them.  Nothing here imports Ansible.
"""


import struct

from ansible_collections.fleettrace.tracefs.plugins.module_utils.series import LatencySeries
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched.worst import Largest

STATE_D = 0x2


class WatchedTasks:
    """Per watched task: run-queue waits, worst waits, S and D intervals; the longest D of all."""

    def __init__(self, watch, worst_count=10, longest_d_count=10, exact_cap=100000, tail_cap=10000,
                 max_tasks=64):
        self.watch = watch
        self.worst_count = worst_count
        self.exact_cap = max(1000, exact_cap // 8)
        self.tail_cap = tail_cap
        self.max_tasks = max_tasks
        self.tasks = {}            # pid -> {pid, comm, runqueue, S, D, worst}
        self.tasks_dropped = 0
        self.off_cpu = {}          # pid -> [since_ts, state, stack, woken_ts, comm]
        self.pending_stack = {}    # cpu -> pid switched out in D, waiting for its kernel_stack
        self.longest_d = Largest(longest_d_count)

    def task(self, pid, comm):
        """The task's record (made on first sight; None past ``max_tasks``)."""
        task = self.tasks.get(pid)
        if task is None:
            if len(self.tasks) >= self.max_tasks:
                self.tasks_dropped += 1
                return None
            task = self.tasks[pid] = {"pid": pid, "comm": comm, "runqueue": self._series(),
                                      "S": self._series(), "D": self._series(), "worst": Largest(self.worst_count)}
        task["comm"] = comm
        return task

    def _series(self):
        return LatencySeries(self.exact_cap, self.tail_cap)

    def waited(self, pid, comm, latency, cpu, kind, since, until):
        """A measured run-queue wait of a task (kept only if it is watched)."""
        if self.watch.matches(pid, comm):
            task = self.task(pid, comm)
            if task is not None:
                task["runqueue"].add(latency)
                task["worst"].keep(latency, {"latency_ns": latency, "cpu": cpu, "kind": kind,
                                             "since_ns": since, "until_ns": until})

    def switched_out(self, ts, cpu, pid, comm, prev_state):
        """A watched task left the CPU asleep (S) or blocked (D): its off-CPU interval starts."""
        state = "D" if prev_state & STATE_D else "S"
        self.off_cpu[pid] = [ts, state, None, None, comm]
        if state == "D":
            self.pending_stack[cpu] = pid

    def woken(self, pid, ts):
        record = self.off_cpu.get(pid)
        if record is not None and record[3] is None:
            record[3] = ts

    def switched_in(self, pid, ts):
        record = self.off_cpu.pop(pid, None)
        if record is not None:
            self._ended(pid, record, ts, ongoing=False)

    def kernel_stack(self, cpu, pid, addresses):
        """The stack recorded at a D-state switch-out on ``cpu`` (the trigger fires right after it)."""
        if self.pending_stack.get(cpu) == pid:
            del self.pending_stack[cpu]
            record = self.off_cpu.get(pid)
            if record is not None and record[2] is None:
                record[2] = list(addresses)

    def _ended(self, pid, record, ts, ongoing):
        since, state, stack, woken, comm = record
        duration = max(ts - since, 0)
        task = self.task(pid, comm)
        if task is not None:
            task[state].add(duration)
        if state == "D" and (len(self.longest_d) < self.longest_d.count or duration > self.longest_d.floor):
            self.longest_d.keep(duration, {
                "duration_ns": duration, "pid": pid, "comm": comm, "since_ns": since, "until_ns": ts,
                "blocked_ns": (woken - since) if woken is not None else duration, "ongoing": ongoing,
                "stack": stack})

    def finish(self, end_ts):
        """Close intervals still open at the end of the window (marked ongoing)."""
        for pid, record in list(self.off_cpu.items()):
            if end_ts is not None:
                self._ended(pid, record, end_ts, ongoing=True)
        self.off_cpu = {}


def stack_addresses(count, raw):
    """Addresses of a kernel_stack payload: ``count`` native longs of ``raw``."""
    available = len(raw) // 8
    count = max(0, min(count, available))
    return [a for a in struct.unpack_from("=%dQ" % count, raw, 0) if a] if count else []
