"""summary.md of a threshold-capture run, rendered in Python (report/capture_summary.py), not in a template."""

from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import capture_summary

BUCKETS = [{"low_us": 0, "high_us": 1, "count": 0}, {"low_us": 1, "high_us": 2, "count": 3},
           {"low_us": 2, "high_us": 4, "count": 0}, {"low_us": 4, "high_us": 8, "count": 1},
           {"low_us": 8, "high_us": 16, "count": 0}]


def host(name, **more):
    result = {"host": name, "status": "threshold_reached", "threshold_reached": True, "field": "tv_diff",
              "field_unit": "ns", "threshold": 400000000, "message": "", "findings": []}
    result.update(more)
    return result


def test_each_cause_in_words_and_the_hosts_without_a_result():
    findings = [
        {"cause": "blocked", "state": "D", "duration_ms": 1061.25, "syscall": None, "fd": None, "blocked_ns": 1e9,
         "kernel_stack": ["=> __schedule+0x1", "=> schedule+0x2", "=> percpu_rwsem_wait+0x3", "=> ext4_page_mkwrite+0x4"]},
        {"cause": "blocked", "state": "S", "duration_ms": 700.0, "fd": 3, "file": "/m/hb",
         "syscall": {"name": "write", "short": "write(fd 3 -> /m/hb)"}, "kernel_stack": [],
         "excluded": {"asleep_ns": 90e6, "syscall": "clock_nanosleep"}},
        {"cause": "stopped", "state": "T", "duration_ms": 700.0, "asleep_ns": 69e7, "kernel_stack": []},
        {"cause": "runnable", "state": "R", "duration_ms": 700.0, "runnable_ns": 68e7, "kernel_stack": [],
         "cpu_holders": [{}], "ran_instead": {"comm": "hog", "pid": 9, "policy": "SCHED_FIFO", "rtprio": 50, "ran_ms": 679.5}},
        {"cause": "unexplained", "duration_ms": 700.0, "missing_cause": ["no switch-out"], "kernel_stack": []},
    ]
    failed = host("n|2", status="failed", threshold_reached=False, message="task x failed: no debug info\nfor y")
    values = {"count": 4, "p50_ms": 1, "p99_ms": 2, "max_ms": 3, "histogram_log2_us": BUCKETS}
    summary = capture_summary.merge([host("n1", findings=findings, probe_values=values), failed], "corosync", "/r",
                                    ["n1", "n|2", "n3"])
    assert summary["unreachable"] == ["n3"] and summary["totals"] == {"hosts": 2, "threshold_reached": 1, "findings": 5}
    text = capture_summary.render_markdown(summary)
    assert text.startswith("# corosync: 1 of 2 host(s) reached the threshold\n")
    assert "- stall 1: not scheduled for 1061.2 ms; D state, off CPU 1000.0 ms; kernel stack: percpu_rwsem_wait <- " \
           "ext4_page_mkwrite\n" in text
    assert "- stall 2: not scheduled for 700.0 ms; S state in write(fd 3 -> /m/hb); kernel stack: none captured\n" \
           "  - left out: 90.0 ms asleep in clock_nanosleep (the loop's own idle wait)\n" in text
    assert "- stall 3: not scheduled for 700.0 ms; stopped (T state: SIGSTOP or a debugger) for 690.0 ms" in text
    assert "runnable but not running for 680.0 ms, hog[9] (SCHED_FIFO rtprio 50) held the CPU 679.5 ms" in text
    assert "- stall 5: not scheduled for 700.0 ms; no cause in the buffer (no switch-out)" in text
    # Text from the nodes cannot start markup or a line of its own.
    assert "## n\\|2: failed\n" in text and "- task x failed: no debug info for y\n" in text
    assert text.endswith("## Unreachable or without a result\n- n3\n")
    assert "         1 -> 2          us : 3     |****************************************\n" in text
    assert "         4 -> 8          us : 1     |" + "*" * 14 + "\n```" in text


def test_the_failed_hosts_in_one_sentence():
    summary = capture_summary.merge([host("a"), host("b", status="failed", message="task x failed: no debug info"),
                                     host("c", status="failed", message="m")], "corosync", "/r/run1")
    assert capture_summary.failed_hosts(summary) == [{"host": "b", "message": "task x failed: no debug info"},
                                                     {"host": "c", "message": "m"}]
    assert capture_summary.failures(summary) == ("2 host(s) failed: b, c (task x failed: no debug info; m). "
                                                 "See /r/run1/summary.md.")
    assert capture_summary.failures(capture_summary.merge([host("a")], "corosync", "/r")) == ""
