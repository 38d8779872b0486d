"""Who held the CPU a task waited for: the CPU context's switches cut into time per task, the longest first.

The integration test (test_stall_kinds.py) runs a real SCHED_FIFO hog; these
check the arithmetic on hand-made switch sequences, including a buffer that
was overwritten before the wait began.
"""

from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import correlate, cpu_context, findings
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace.text_parser import parse_trace

MS = 1000000
GONE_PID = 4194300  # no such task: policy comes from the switch's prio


def switch(ts_ms, prev, nxt):
    """A sched_switch at ts_ms ms: (comm, pid, prio) -> (comm, pid, prio)."""
    return (int(ts_ms * MS), {"prev_comm": prev[0], "prev_pid": prev[1], "prev_prio": prev[2], "prev_state": "R",
                              "next_comm": nxt[0], "next_pid": nxt[1], "next_prio": nxt[2]})


HOG = ("hog", GONE_PID, 49)          # SCHED_FIFO rtprio 50
KWORKER = ("kworker/1:2", GONE_PID - 1, 120)
TARGET = ("corosync", GONE_PID - 2, 120)
IDLE = ("swapper/1", 0, 120)


def test_the_hog_that_held_the_cpu_comes_first_not_the_kworker_seen_last():
    switches = [
        switch(5, IDLE, TARGET),
        switch(10, TARGET, HOG),        # the target is preempted at 10 ms: the wait begins
        switch(810, HOG, KWORKER),      # the hog spins 800 ms
        switch(811, KWORKER, TARGET),   # a kworker runs 1 ms, then the target gets the CPU back
    ]
    found = cpu_context.holders_in(switches, 10 * MS, 811 * MS)
    names = [(h["comm"], h["ran_ms"]) for h in found["holders"]]
    assert names == [("hog", 800.0), ("kworker/1:2", 1.0)]
    hog = found["holders"][0]
    assert hog["policy"] == "SCHED_FIFO or SCHED_RR (task gone)" and hog["rtprio"] == 50
    assert found["holders"][1]["nice"] == 0
    assert found["recorded_from_ns"] == 10 * MS and found["covered_ns"] == 801 * MS


def test_a_holder_from_before_the_wait_and_a_switch_in_just_after_it():
    """The hog ran since before the wakeup; the context's own record of the switch-in is a hair later."""
    switches = [switch(1, IDLE, HOG), switch(600.0002, HOG, TARGET)]
    found = cpu_context.holders_in(switches, 100 * MS, 600 * MS)
    assert [(h["comm"], h["ran_ms"]) for h in found["holders"]] == [("hog", 500.0)]


def test_overwritten_buffer_counts_only_what_it_still_holds():
    switches = [switch(400, HOG, KWORKER), switch(401, KWORKER, TARGET)]
    found = cpu_context.holders_in(switches, 100 * MS, 401 * MS, overwritten=True)
    assert found["recorded_from_ns"] == 400 * MS
    assert [(h["comm"], h["ran_ms"]) for h in found["holders"]] == [("kworker/1:2", 1.0)]


def test_finding_names_the_hog_and_says_the_last_one_is_not_the_culprit():
    text = "\n".join([
        "      tick-100  [001] d..1.     1.000000: tick_gap: (0x1) gap=1000000",
        "      tick-100  [001] d..2.     1.010000: sched_switch: prev_comm=tick prev_pid=100 prev_prio=120 "
        "prev_state=R ==> next_comm=hog next_pid=%d next_prio=49" % GONE_PID,
        "   kworker-%d [001] d..2.     1.811000: sched_switch: prev_comm=kworker/1:2 prev_pid=%d prev_prio=120 "
        "prev_state=I ==> next_comm=tick next_pid=100 next_prio=120" % (GONE_PID - 1, GONE_PID - 1),
        "      tick-100  [001] d..1.     1.811010: tick_gap: (0x1) gap=811010000",
    ])
    finding = correlate.find_stalls(parse_trace(text)["events"], "tick_gap", "gap", 500 * MS,
                                    states=correlate.ALL_STATES, unit="ns", resolve_fds=False)[0]
    assert finding["cause"] == "runnable" and finding["ran_instead"]["comm"] == "kworker/1:2"
    wait = dict(finding["runnable_wait"])
    assert (wait["cpu"], wait["from_ns"], wait["until_ns"]) == (1, 1010 * MS, 1811 * MS)
    wait.update(cpu_context.holders_in([
        switch(1010, ("tick", 100, 120), HOG), switch(1810, HOG, KWORKER), switch(1811, KWORKER, ("tick", 100, 120))],
        wait["from_ns"], wait["until_ns"]))
    findings.add_cpu_holders(finding, wait, resolve_fds=False)
    assert finding["ran_instead"]["comm"] == "hog" and finding["ran_instead"]["rtprio"] == 50
    assert finding["last_before"]["comm"] == "kworker/1:2"
    assert "hog[%d] (SCHED_FIFO or SCHED_RR (task gone) rtprio 50) 800.0 ms held the CPU" % GONE_PID in finding["summary"]
    said = " ".join(finding["explanation"])
    assert "Who held CPU 1 during the wait, longest first: hog[%d]" % GONE_PID in said
    assert "kworker/1:2[%d] ran last, just before it got the CPU back: not the culprit." % (GONE_PID - 1) in said


def test_context_name_fits_the_instance_name_limit():
    assert cpu_context.context_name("fleettrace_run_host") == "fleettrace_run_host_cpu"
    long_name = "fleettrace_" + "x" * 53
    assert len(cpu_context.context_name(long_name)) == 64 and cpu_context.context_name(long_name).endswith("_cpu")
    assert cpu_context.context_name(long_name) != cpu_context.context_name(long_name[:-1] + "y")
