"""The collector against the kernel's own counters: nothing read is dropped, nothing lost is hidden.

These drive ``SchedCollector`` directly (the module is tested through Ansible in
test_sched_latency.py) because the test must hold the reader back on purpose to
force the ring buffer to overrun.
"""

import os
import subprocess
import sys

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import per_cpu
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched import analysis as sched_analysis
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched import collector as sched_collector
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import TracefsError

CHURN = "import os\nfor _ in range(%d):\n    os.sched_yield() if os.fork() else os._exit(0)\n    os.wait()\n"


def kernel_counts(collector):
    stats = [per_cpu.cpu_stats(collector.instance.path(), cpu)
             for cpu in per_cpu.online_cpus(collector.tracefs.root)]
    return sum(s.get("read_events", 0) for s in stats), sum(s.get("overrun", 0) for s in stats)


def test_every_event_the_kernel_handed_over_is_analysed(tracefs, unique_name):
    analyzer = sched_analysis.SchedAnalyzer()
    collector = sched_collector.SchedCollector(tracefs, unique_name("coll"), analyzer, buffer_size_kb=4096)
    try:
        collector.setup()
        churn = subprocess.Popen([sys.executable, "-c", CHURN % 300])
        collector.run(1.5)
        churn.wait()
        read_events, overrun = kernel_counts(collector)
    finally:
        collector.close()
    processed = sum(analyzer.counts.values())
    assert overrun == 0 and collector.lost_events()[0] == 0
    # The kernel's "read events" counter and our decoded events agree exactly.
    assert processed == read_events > 1000
    assert analyzer.counts["sched_wakeup_new"] >= 300      # one per fork the churn made
    assert not os.path.exists(collector.instance.path())


def test_an_overrun_buffer_is_reported_not_hidden(tracefs, unique_name):
    analyzer = sched_analysis.SchedAnalyzer()
    collector = sched_collector.SchedCollector(tracefs, unique_name("coll"), analyzer, buffer_size_kb=64)
    try:
        collector.setup()
        # The reader is held back while a burst overflows a 64 KiB buffer.
        subprocess.run([sys.executable, "-c", CHURN % 2000], check=True)
        collector.run(0.2)
        read_events, overrun = kernel_counts(collector)
    finally:
        collector.close()
    lost, by_cpu = collector.lost_events()
    assert overrun > 0
    assert lost >= overrun and sum(by_cpu.values()) >= overrun
    assert sum(analyzer.counts.values()) == read_events


class RefusedTrigger(sched_collector.SchedCollector):
    @property
    def stack_trigger(self):
        return "stacktrace if no_such_field == 2"


def test_setup_failure_leaves_nothing_behind(tracefs, unique_name):
    # A trigger the kernel refuses: setup fails half-way, close() must still remove the instance.
    collector = RefusedTrigger(tracefs, unique_name("coll"), sched_analysis.SchedAnalyzer())
    try:
        with pytest.raises(TracefsError, match="no_such_field"):
            collector.setup()
    finally:
        collector.close()
    assert not os.path.exists(collector.instance.path())
