"""Per-host documents and a fleet report built from them, for the report tests."""

from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import document as report_document
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import model as report_model


def series(p99, max_us=None, count=100):
    return {"count": count, "p50_us": p99 / 10.0, "p90_us": p99 / 2.0, "p99_us": p99, "p99_9_us": p99 * 1.5,
            "max_us": max_us or p99 * 2, "mean_us": p99 / 5.0, "exact": True,
            "histogram_log2_us": [{"low_us": 0, "high_us": 1, "count": 3}, {"low_us": 1, "high_us": 2, "count": 97}]}


def sched_doc(host, p99, lost=0, d_ms=None):
    return {
        "kind": "sched_latency", "host": "kernel-hostname", "inventory_hostname": host,
        "latency": {"all": series(p99), "wakeup": series(p99 * 0.9), "preempt": series(p99 * 1.1)},
        "per_cpu": {"0": series(p99)}, "tasks": [],
        "worst_waits": [{"latency_us": p99 * 2, "pid": 42, "comm": "corosync", "cpu": 0, "kind": "wakeup",
                         "ran_meanwhile": [{"pid": 7, "comm": "<hog>", "us": p99}]}],
        "longest_d": [] if d_ms is None else [{"duration_ms": d_ms, "pid": 42, "comm": "corosync", "ongoing": False,
                                               "kernel_stack": ["percpu_rwsem_wait+0x15f", "ext4_buffered_write_iter+0x1c"]}],
        "events": {"processed": 1000, "lost": lost, "complete": lost == 0, "per_second": 100.0},
        "window": {"duration_s": 10}, "facts": {"cpu_count": 2, "kernel": "6.18", "sched_rt_runtime_us": 950000},
    }


def diagnose_doc(host):
    return {"schema": "fleettrace.threshold_capture/1", "host": host, "status": "threshold_reached",
            "findings": [{"duration_ms": 1200.5, "state": "D", "kernel_stack": ["ipmi_heartbeat", "sys_ioctl"],
                          "syscall": "ioctl", "fd": 10, "file": "/dev/watchdog", "comm": "corosync", "pid": 3796}]}


CHECKS = [
    {"name": "p99_wakeup_latency_us", "value": "summary.wakeup_p99_us", "max": 1000},
    {"name": "max_d_state_stall_ms", "value": "summary.max_d_ms", "max": 500},
    {"name": "no_lost_events", "expr": "summary.lost_events == `0`"},
]


def make_report(checks=None, **kwargs):
    docs = [sched_doc("node1", 100.0), sched_doc("node2", 5000.0, lost=3), sched_doc("node3", 300.0, d_ms=20.0),
            diagnose_doc("node3"), diagnose_doc("node4")]
    return report_model.build_report([report_document.validate_document(d, "test") for d in docs],
                                     checks=CHECKS if checks is None else checks, **kwargs)
