# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The measured run-queue waits as series: all waits, per kind (wakeup, preempt), per CPU.

A wait goes into three series (all, its kind, its CPU).  It is appended once,
to the list of its (kind, CPU); ``flush`` sorts each such list once and hands
every series merged sorted runs (a sort per series would cost three times as
much).  Nothing here imports Ansible (Python 3.8+).
"""


import collections

from ansible_collections.fleettrace.tracefs.plugins.module_utils.series import LatencySeries

# Waits gathered before they are folded into the series (about 2.5 MiB of them at most).  Folding
# costs a step per histogram bin a batch touches: few waits per fold pay it almost per wait.
FOLD_AT = 1 << 16

WAKEUP = "wakeup"
PREEMPT = "preempt"


class WaitSeries:
    """Host, per-kind and per-CPU ``LatencySeries`` of measured waits, fed in bulk."""

    def __init__(self, exact_cap=100000, tail_cap=10000):
        self.exact_cap = exact_cap
        self.tail_cap = tail_cap
        self.series = {"all": self._new(), WAKEUP: self._new(), PREEMPT: self._new()}
        self.per_cpu = {}
        # kind -> cpu -> ``append`` of that (kind, CPU)'s pending list: what the analysis' hot path calls.
        self.adders = {WAKEUP: {}, PREEMPT: {}}
        self._pending = []    # (kind, cpu, pending list) of every (kind, CPU) seen

    def _new(self, exact_cap=None):
        return LatencySeries(exact_cap or self.exact_cap, self.tail_cap)

    def add(self, kind, cpu, latency):
        """A measured wait of ``kind`` on ``cpu`` (into the series at the next flush)."""
        add = self.adders[kind].get(cpu)
        if add is None:
            if cpu not in self.per_cpu:
                self.per_cpu[cpu] = self._new(max(1000, self.exact_cap // 8))
            pending = []
            self._pending.append((kind, cpu, pending))
            add = self.adders[kind][cpu] = pending.append
        add(latency)

    def pending_count(self):
        return sum(len(pending) for _kind, _cpu, pending in self._pending)

    def flush(self):
        """Fold the waiting samples into the series (bounded memory; the result does it too)."""
        by_series = collections.defaultdict(list)   # series -> sorted runs
        for kind, cpu, pending in self._pending:
            if pending:
                run = sorted(pending)
                del pending[:]   # in place: the hot path holds ``pending.append``
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
