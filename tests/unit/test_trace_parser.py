"""trace_parser on text in the kernel's exact format (samples taken from this machine's tracefs)."""

from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace.text_parser import (
    TraceParser, parse_trace, timestamp_ns, typed_value, user_stack_addresses)

HEADER = """\
# tracer: nop
#
# entries-in-buffer/entries-written: 12/15   #P:2
#
#                                _-----=> irqs-off/BH-disabled
#                               / _----=> need-resched
#                              | / _---=> hardirq/softirq
#                              || / _--=> preempt-depth
#                              ||| / _-=> migrate-disable
#                              |||| /     delay
#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION
#              | |         |   |||||     |         |
"""

# A backslash at a line's end joins it with the next: kernel lines stay verbatim within 160 columns.
BODY = """\
       tick_loop-11067   [001] DBZff   604.742268: tick_gap: (0x557bd2ac725f) gap=20289764
       tick_loop-11067   [001] .....   604.762534: sys_write(fd: 0xa, buf: 0x7ffe1bdd7bd0, count: 7)
       tick_loop-11067   [001] .....   604.762535: sys_enter: NR 1 (a, 7ffe1bdd7bd0, 7, 7ffe1bdd78f7, 0, 64)
       tick_loop-11067   [001] d..2.   604.762541: sched_switch: prev_comm=tick_loop prev_pid=11067 prev_prio=120 \
prev_state=D ==> next_comm=swapper/1 next_pid=0 next_prio=120
          <idle>-0       [000] d..2.   604.762550: sched_switch: prev_comm=swapper/0 prev_pid=0 prev_prio=120 \
prev_state=R ==> next_comm=Web Content next_pid=4242 next_prio=120
       tick_loop-11067   [001] d..2.   604.762574: <stack trace>
 => trace_event_raw_event_sched_switch
 => __traceiter_sched_switch
 => __schedule
 => schedule
 => percpu_rwsem_wait
 => __percpu_down_read
 => vfs_write
 => ksys_write
 => do_syscall_64
 => entry_SYSCALL_64_after_hwframe
 memfd:sealed-91-3464    [000] d..2.   604.770000: sched_wakeup: comm=rcu_preempt pid=15 prio=120 target_cpu=000
           <...>-11084   [000] d..2.   604.986628: sched_switch: prev_comm=fsfreeze prev_pid=11084 prev_prio=120 \
prev_state=Z ==> next_comm=tick_loop next_pid=11067 next_prio=120
       tick_loop-11067   [000] .....   604.986650: sys_write -> 0x7
       tick_loop-11067   [000] .....   604.986651: sys_exit: NR 1 = 7
       tick_loop-11067   [000] DBZff   605.006795: tick_gap: (0x557bd2ac725f) gap=244302634
       tick_loop-11067   [000] DBZff   605.006796: <user stack trace>
 =>  <0000557bd2ac725f>
 =>  <0000557bd2ac73a1>
"""


def test_events_fields_and_types():
    result = parse_trace(HEADER + BODY)
    events = result["events"]
    assert [e["event"] for e in events] == [
        "tick_gap", "sys_enter_write", "sys_enter", "sched_switch", "sched_switch", "sched_wakeup",
        "sched_switch", "sys_exit_write", "sys_exit", "tick_gap"]
    assert result["event_count"] == 10
    assert result["unparsed"] == []
    first = events[0]
    assert first["comm"] == "tick_loop" and first["pid"] == 11067 and first["cpu"] == 1
    assert first["fields"] == {"gap": 20289764} and first["probe_ip"] == 0x557bd2ac725f
    assert first["ts_ns"] == 604742268000 and first["timestamp"] == 604.742268
    assert events[1]["fields"] == {"fd": 10, "buf": 0x7ffe1bdd7bd0, "count": 7}
    assert events[2]["fields"] == {"id": 1, "args": [10, 0x7ffe1bdd7bd0, 7, 0x7ffe1bdd78f7, 0, 0x64]}
    switch = events[3]["fields"]
    assert switch["prev_state"] == "D" and switch["prev_pid"] == 11067 and switch["next_comm"] == "swapper/1"
    assert events[4]["fields"]["next_comm"] == "Web Content"  # comms may hold spaces
    assert events[5]["comm"] == "memfd:sealed-91" and events[5]["pid"] == 3464  # and dashes
    assert events[6]["comm"] == "<...>"
    assert events[7]["fields"] == {"ret": 7}
    assert events[8]["fields"] == {"id": 1, "ret": 7}


def test_stacks_attach_to_their_event_across_other_cpus():
    events = parse_trace(HEADER + BODY)["events"]
    d_switch = events[3]
    assert d_switch["kernel_stack"][4] == "percpu_rwsem_wait"
    assert len(d_switch["kernel_stack"]) == 10
    # The CPU-0 switch printed between the event and its stack got none.
    assert "kernel_stack" not in events[4]
    assert user_stack_addresses(events[-1]) == [0x557bd2ac725f, 0x557bd2ac73a1]


def test_header_counts_and_losses():
    result = parse_trace(HEADER + BODY)
    assert result["entries_in_buffer"] == 12 and result["entries_written"] == 15 and result["cpus"] == 2
    assert result["lost_events"] == 3  # overwritten: written - in buffer

    piped = parse_trace("CPU:1 [LOST 42 EVENTS]\n" + BODY.splitlines()[0] + "\n")
    assert piped["lost_markers"] == [{"cpu": 1, "count": 42}] and piped["lost_events"] == 42
    started = parse_trace("##### CPU 1 buffer started ####\n")
    assert started["buffer_started"] == [1]


def test_orphan_stack_and_garbage_are_kept():
    text = ("       tick_loop-11067   [001] d..2.   604.762574: <stack trace>\n"
            " => schedule\n"
            "this is not a trace line\n"
            " => dangling\n")
    result = parse_trace(text)
    assert result["events"][0]["event"] == "kernel_stack"
    assert result["events"][0]["kernel_stack"] == ["schedule"]
    assert result["unparsed"] == ["this is not a trace line", " => dangling"]


def test_optional_columns_and_streaming():
    # record-tgid adds "(tgid)", no irq-info drops the flags column; trace_pipe comes in pieces.
    parser = TraceParser()
    parser.feed("       tick_loop-11068   (  11067) [001] d..2.   604.762541: sched_wakeup: comm=a pid=1 prio=120 target_cpu=001")
    parser.feed("       tick_loop-11068   [001]   604.762542: tick_gap: (0x1) gap=-5 name=\"x y\"")
    result = parser.result()
    assert result["events"][0]["tgid"] == 11067
    assert result["events"][1]["flags"] == "" and result["events"][1]["fields"] == {"gap": -5, "name": "x y"}


def test_typed_values_and_timestamps():
    assert typed_value("0x1f") == 31 and typed_value("-3") == -3 and typed_value("S") == "S"
    assert typed_value("123", "prev_comm") == "123"
    assert timestamp_ns("1.5") == 1500000000
    assert timestamp_ns("604.762541123") == 604762541123
