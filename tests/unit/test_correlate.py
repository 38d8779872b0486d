"""Stall correlation on parsed trace text (the talk's ioctl case and the frozen-fs write case)."""

import os

from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import correlate
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import syscalls
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace.text_parser import parse_trace


def line(ts, body, pid=3796, cpu=1, comm="corosync", flags="d..2."):
    return "%16s-%-7d [%03d] %s %12s: %s" % (comm, pid, cpu, flags, ts, body)


def switch_out(ts, state, pid=3796):
    return line(ts, "sched_switch: prev_comm=corosync prev_pid=%d prev_prio=0 prev_state=%s ==> "
                    "next_comm=swapper/1 next_pid=0 next_prio=120" % (pid, state), pid=pid)


def switch_in(ts, pid=3796):
    return line(ts, "sched_switch: prev_comm=swapper/1 prev_pid=0 prev_prio=120 prev_state=R ==> "
                    "next_comm=corosync next_pid=%d next_prio=0" % pid, pid=0, comm="<idle>")


def tick(ts, tv_diff, pid=3796):
    return line(ts, "timer_function_scheduler_timeout: (0x55d1c0a26097) tv_diff_u64=%d" % tv_diff, pid=pid)


IPMI_STACK = [" => __schedule", " => schedule", " => ipmi_heartbeat", " => ipmi_unlocked_ioctl",
              " => do_vfs_ioctl", " => sys_ioctl", " => entry_SYSCALL_64_fastpath"]

TALK = "\n".join([
    tick("100.000000", 1000000000),
    line("100.000100", "sys_enter: NR 16 (a, 80045705, 0, 0, 0, 0)", flags="....."),
    switch_out("100.000200", "D"),
    line("100.000210", "<stack trace>"),
] + IPMI_STACK + [
    switch_in("101.317000"),
    line("101.317100", "sys_exit: NR 16 = 0", flags="....."),
    tick("101.317200", 1317200000),
]) + "\n"


def test_the_talks_ioctl_stall():
    events = parse_trace(TALK)["events"]
    findings = correlate.find_stalls(events, "probe_corosync:timer_function_scheduler_timeout", "tv_diff_u64",
                                     1000100000, resolve_fds=False)
    assert len(findings) == 1
    finding = findings[0]
    assert finding["value"] == 1317200000 and finding["pid"] == 3796
    assert finding["state"] == "D" and finding["switched_out_at"] == 100.0002
    assert finding["blocked_ns"] == 1316800000 and finding["blocked_until"] == "switch_in"
    assert finding["blocked_in"] == "ipmi_heartbeat"
    assert finding["syscall"]["name"] == "ioctl" and finding["syscall"]["nr"] == 16
    assert finding["syscall"]["args"][:2] == [10, 0x80045705]
    assert finding["fd"] == 10 and finding["file"] is None
    assert "off CPU 1316.800 ms in state D, blocked in ipmi_heartbeat, in ioctl(fd 10)" in finding["summary"]


def test_below_threshold_and_other_pids_give_nothing():
    events = parse_trace(TALK)["events"]
    assert correlate.find_stalls(events, "timer_function_scheduler_timeout", "tv_diff_u64", 2 * 10 ** 9) == []
    assert correlate.find_stalls(events, "timer_function_scheduler_timeout", "tv_diff_u64", 1, pid=1) == []


def test_stall_without_d_state_says_what_is_missing():
    text = "\n".join([tick("1.0", 10), switch_out("1.1", "S"), switch_in("2.0"), tick("2.1", 1100000000)]) + "\n"
    finding = correlate.find_stalls(parse_trace(text)["events"], "timer_function_scheduler_timeout",
                                    "tv_diff_u64", 10 ** 9)[0]
    assert finding["state"] is None and finding["syscall"] is None
    assert "no switch-out in state D" in finding["summary"]
    # Asking for S as a blocking state finds it, and the blocked time ends at the switch-in.
    finding = correlate.find_stalls(parse_trace(text)["events"], "timer_function_scheduler_timeout",
                                    "tv_diff_u64", 10 ** 9, states=("S", "D"))[0]
    assert finding["state"] == "S" and finding["blocked_ns"] == 900000000


def test_named_syscall_event_merges_with_raw_and_resolves_fd_of_a_live_process(tmp_path):
    target = tmp_path / "heartbeat"
    with open(str(target), "w") as handle:
        fd = handle.fileno()
        pid = os.getpid()
        text = "\n".join([
            tick("1.0", 10, pid=pid),
            line("1.1", "sys_write(fd: 0x%x, buf: 0x7ffe1bdd7bd0, count: 7)" % fd, pid=pid),
            line("1.1", "sys_enter: NR 1 (%x, 7ffe1bdd7bd0, 7, 0, 0, 0)" % fd, pid=pid),
            switch_out("1.2", "D", pid=pid),
            tick("2.0", 900000000, pid=pid),
        ]) + "\n"
        finding = correlate.find_stalls(parse_trace(text)["events"], "timer_function_scheduler_timeout",
                                        "tv_diff_u64", 5 * 10 ** 8)[0]
    assert finding["syscall"]["name"] == "write" and finding["syscall"]["nr"] == 1
    assert finding["syscall"]["source"] == "syscalls:sys_enter_write"
    assert finding["syscall"]["args"]["count"] == 7
    assert finding["fd"] == fd and finding["file"] == str(target)
    assert finding["blocked_until"] == "probe_hit" and finding["blocked_ns"] == 800000000
    assert finding["summary"].endswith("in write(fd %d) on %s" % (fd, target))


def test_syscall_that_returned_is_not_in_flight():
    text = "\n".join([
        tick("1.0", 10),
        line("1.1", "sys_enter: NR 1 (a, 0, 7, 0, 0, 0)"),
        line("1.15", "sys_exit: NR 1 = 7"),
        switch_out("1.2", "D"),
        tick("2.0", 900000000),
    ]) + "\n"
    finding = correlate.find_stalls(parse_trace(text)["events"], "timer_function_scheduler_timeout",
                                    "tv_diff_u64", 5 * 10 ** 8)[0]
    assert finding["state"] == "D" and finding["syscall"] is None


def test_builtin_syscall_table_agrees_with_the_kernel_headers():
    header = [h for h in syscalls.UNISTD_HEADERS if os.path.exists(h)]
    if not header:
        return
    from_header = {}
    syscalls._table_cache[:] = []
    try:
        from_header = syscalls.table(headers=header)
    finally:
        syscalls._table_cache[:] = []
    for number, name in syscalls.X86_64_SYSCALLS.items():
        assert from_header[number] == name, (number, name)


def test_loss_accounting_and_buffer_suggestion():
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import instance_capture, per_cpu
    before = {0: {"overrun": 5, "dropped events": 0, "entries": 0}, 1: {"overrun": 0, "dropped events": 0}}
    after = {0: {"overrun": 305, "dropped events": 0, "entries": 100}, 1: {"overrun": 0, "dropped events": 0,
                                                                           "entries": 50}}
    lost = per_cpu.lost_between(before, after)
    assert lost == {0: {"overrun": 300, "dropped": 0, "entries": 100}}
    # 100 kept + 300 lost on the worst CPU: 4x the buffer, plus 25 %.
    assert instance_capture.suggested_buffer_kb(1408, lost) == 7040


def test_hits_of_any_thread_of_the_process():
    text = "\n".join([tick("1.0", 10, pid=3797), switch_out("1.2", "D", pid=3797), tick("2.0", 900000000, pid=3797)]) + "\n"
    events = parse_trace(text)["events"]
    assert correlate.find_stalls(events, "timer_function_scheduler_timeout", "tv_diff_u64", 5 * 10 ** 8, pid=3796) == []
    found = correlate.find_stalls(events, "timer_function_scheduler_timeout", "tv_diff_u64", 5 * 10 ** 8,
                                  pid=[3796, 3797], resolve_fds=False)
    assert len(found) == 1 and found[0]["pid"] == 3797 and found[0]["state"] == "D"


def _frozen_in_its_sleep(waker_line):
    """The loop asleep in clock_nanosleep (its idle wait) for 2 s of a 2.05 s stall: frozen where it slept."""
    return "\n".join([
        tick("200.000000", 100000000),
        line("200.000100", "sys_enter: NR 230 (1, 0, 7ffe48add390, 0, 0, 0)", flags="....."),
        switch_out("200.000200", "S"),
        waker_line,
        switch_in("202.000400"),
        line("202.000500", "sys_exit: NR 230 = 0", flags="....."),
        tick("202.050000", 2050000000),
    ]) + "\n"


def test_an_idle_wait_that_took_the_stall_says_so_and_who_woke_it():
    thawed = line("202.000300", "sched_wakeup: comm=corosync pid=3796 prio=120 target_cpu=001", pid=4242,
                  comm="bash", flags="d..3.")
    findings = correlate.find_stalls(parse_trace(_frozen_in_its_sleep(thawed))["events"], "timer_function_scheduler_timeout",
                                     "tv_diff_u64", 1000000000, states=correlate.ALL_STATES, resolve_fds=False, unit="ns")
    (finding,) = findings
    assert finding["cause"] == "unexplained"
    assert finding["excluded"]["syscall"] == "clock_nanosleep"
    assert finding["excluded"]["woken_by"] == {"comm": "bash", "pid": 4242}
    (said,) = [why for why in finding["missing_cause"] if why.startswith("its idle wait")]
    assert "alone lasted 2000.1 ms, 98 % of the stall" in said and "bash[4242] woke it" in said, said
    assert not any(why.startswith("it only slept") for why in finding["missing_cause"])


def test_a_timer_wakeup_names_no_waker():
    # A timer interrupt (h) over whatever ran: that task did not wake the loop.
    timer = line("202.000300", "sched_wakeup: comm=corosync pid=3796 prio=120 target_cpu=001", pid=777,
                 comm="make", flags="dNh4.")
    (finding,) = correlate.find_stalls(parse_trace(_frozen_in_its_sleep(timer))["events"], "timer_function_scheduler_timeout",
                                       "tv_diff_u64", 1000000000, states=correlate.ALL_STATES, resolve_fds=False, unit="ns")
    assert finding["excluded"]["woken_by"] is None
    (said,) = [why for why in finding["missing_cause"] if why.startswith("its idle wait")]
    assert "woke it" not in said


def test_a_short_idle_wait_is_only_left_out():
    waker = line("200.050300", "sched_wakeup: comm=corosync pid=3796 prio=120 target_cpu=001", pid=0,
                 comm="<idle>", flags="dNh4.")
    trace = _frozen_in_its_sleep(waker).replace(switch_in("202.000400"), switch_in("200.050400"))
    (finding,) = correlate.find_stalls(parse_trace(trace)["events"], "timer_function_scheduler_timeout", "tv_diff_u64",
                                       1000000000, states=correlate.ALL_STATES, resolve_fds=False, unit="ns")
    assert any(why.startswith("it only slept in its idle wait clock_nanosleep") for why in finding["missing_cause"])
