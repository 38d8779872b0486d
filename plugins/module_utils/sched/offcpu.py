# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Off-CPU intervals of watched tasks: S and D, the longest D with its kernel stack.

A part of ``SchedAnalyzer`` (a mixin over its state: ``off_cpu``,
``pending_stack``, ``tasks``, ``longest_d``).  Nothing here imports Ansible.
"""


import heapq
import struct

STATE_D = 0x2


class OffCpuIntervals:
    """From the switch out (S or D) to the switch back in, per watched task."""

    def _switched_out(self, ts, cpu, pid, comm, prev_state):
        """A watched task left the CPU asleep (S) or blocked (D): its off-CPU interval starts."""
        state = "D" if prev_state & STATE_D else "S"
        self.off_cpu[pid] = [ts, state, None, None, comm]
        if state == "D":
            self.pending_stack[cpu] = pid

    def stack_fields(self, ts, cpu, fields):
        """A decoded ftrace kernel_stack: (common_pid, size, raw caller array)."""
        self.kernel_stack(ts, cpu, fields[0], stack_addresses(fields[1], fields[2]))

    def kernel_stack(self, ts, cpu, pid, addresses):
        self._counts["kernel_stack"] += 1
        if self.pending_stack.get(cpu) == pid:
            del self.pending_stack[cpu]
            record = self.off_cpu.get(pid)
            if record is not None and record[2] is None:
                record[2] = list(addresses)

    def _task(self, pid, comm):
        task = self.tasks.get(pid)
        if task is None:
            if len(self.tasks) >= self.max_watched_tasks:
                self.tasks_dropped += 1
                return None
            cap = max(1000, self.exact_cap // 8)
            task = self.tasks[pid] = {"pid": pid, "comm": comm, "runqueue": self._new_series(cap),
                                      "S": self._new_series(cap), "D": self._new_series(cap), "worst": []}
        task["comm"] = comm
        return task

    def watched_task(self, pid, comm):
        """Make sure a watched task has an entry (its series may stay empty)."""
        return self._task(pid, comm)

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


def stack_addresses(count, raw):
    """Addresses of a kernel_stack payload: ``count`` native longs of ``raw``."""
    available = len(raw) // 8
    count = max(0, min(count, available))
    return [a for a in struct.unpack_from("=%dQ" % count, raw, 0) if a] if count else []
