"""Streaming read of a capture: bounded memory, exact counts, files written line by line."""

import json
import random
import tracemalloc

from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import event_sink, instance_capture

from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import correlate
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace.text_parser import parse_trace

HEADER = ("# tracer: nop\n#\n# entries-in-buffer/entries-written: {kept}/{written}   #P:2\n#\n"
          "#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION\n")


def line(ts_ns, body, pid, cpu, comm="corosync", flags="d..2."):
    return "%16s-%-7d [%03d] %s %6d.%06d: %s\n" % (comm, pid, cpu, flags, ts_ns // 10 ** 9,
                                                   ts_ns % 10 ** 9 // 1000, body)


def synthetic_trace(path, count, seed=7, stall_every=0):
    """``count`` events of two tasks on two CPUs: ticks, syscalls, D-state switches with stacks.

    Returns the number of event records the text holds.
    """
    rng = random.Random(seed)
    ts = 100 * 10 ** 9
    records = 0
    with open(path, "w") as handle:
        handle.write(HEADER.format(kept=count, written=count + 5))
        handle.write("CPU:1 [LOST 5 EVENTS]\n")
        for index in range(count):
            ts += rng.randrange(1000, 50000) * 1000
            pid, cpu = rng.choice(((3796, 1), (4100, 0)))
            kind = index % 6
            if kind == 0:
                gap = 2 * 10 ** 9 if stall_every and index % stall_every == 0 else rng.randrange(10 ** 6)
                body = "timer_function_scheduler_timeout: (0x55d1c0a26097) tv_diff_u64=%d" % gap
            elif kind == 1:
                body = "sys_enter: NR 16 (a, 80045705, 0, 0, 0, 0)"
            elif kind == 2:
                body = ("sched_switch: prev_comm=corosync prev_pid=%d prev_prio=0 prev_state=%s ==> "
                        "next_comm=swapper/1 next_pid=0 next_prio=120" % (pid, rng.choice("DDS")))
            elif kind == 3:
                body = ("sched_switch: prev_comm=swapper/1 prev_pid=0 prev_prio=120 prev_state=R ==> "
                        "next_comm=corosync next_pid=%d next_prio=0" % pid)
            elif kind == 4:
                body = "sys_exit: NR 16 = 0"
            else:
                body = "sched_waking: comm=kworker/1:1 pid=41 prio=120 target_cpu=001"
            handle.write(line(ts, body, pid if kind != 3 else 0, cpu, comm="corosync" if kind != 3 else "<idle>"))
            records += 1
            if kind == 2:
                handle.write(line(ts, "<stack trace>", pid, cpu))
                handle.write(" => __schedule\n => schedule\n => ipmi_heartbeat\n => do_vfs_ioctl\n")
    return records


def test_memory_is_bounded_by_max_events_not_by_the_buffer(tmp_path):
    peaks = {}
    for count in (10000, 40000):
        path = str(tmp_path / ("trace%d" % count))
        written = synthetic_trace(path, count)
        sink = event_sink.EventSink(max_events=100, json_path=str(tmp_path / "all.json"),
                                    stall_finder=correlate.StallFinder(
                                        "timer_function_scheduler_timeout", "tv_diff_u64", 10 ** 9, resolve_fds=False))
        tracemalloc.start()
        try:
            parser = instance_capture.read_trace(path, sink, raw_path=str(tmp_path / "raw.txt"))
            _current, peaks[count] = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert parser.event_count == sink.seen == written
        assert len(sink.events()) == 100
        sink.finish_json({"event_count": parser.event_count})
        with open(str(tmp_path / "all.json")) as handle:
            assert len(json.load(handle)["events"]) == written
    # Four times the events, about the same peak; keeping the records costs ~900 B each (tens of MB).
    assert peaks[40000] < 1.5 * peaks[10000] + 200000, peaks
    assert peaks[40000] < 2 * 10 ** 6, peaks  # keeping all 40000: about 29 MB


def test_streaming_gives_what_parsing_everything_gives(tmp_path):
    path = str(tmp_path / "trace")
    synthetic_trace(path, 3000, seed=3, stall_every=60)
    with open(path) as handle:
        text = handle.read()
    whole = parse_trace(text)
    finder = correlate.StallFinder("timer_function_scheduler_timeout", "tv_diff_u64", 10 ** 9, resolve_fds=False)
    sink = event_sink.EventSink(max_events=50, json_path=str(tmp_path / "all.json"), stall_finder=finder)
    parser = instance_capture.read_trace(path, sink, raw_path=str(tmp_path / "raw.txt"))
    streamed = parser.result()
    assert streamed["event_count"] == whole["event_count"] == sink.seen
    assert streamed["lost_markers"] == whole["lost_markers"] == [{"cpu": 1, "count": 5}]
    assert streamed["entries_written"] - streamed["entries_in_buffer"] == 5
    assert streamed["unparsed"] == whole["unparsed"] == []
    assert sink.events() == whole["events"][-50:]
    sink.finish_json({"event_count": parser.event_count, "lost_events": 5})
    with open(str(tmp_path / "all.json")) as handle:
        everything = json.load(handle)
    assert everything["events"] == json.loads(json.dumps(whole["events"]))
    assert everything["event_count"] == whole["event_count"] and everything["lost_events"] == 5
    with open(str(tmp_path / "raw.txt")) as handle:
        assert handle.read() == text
    expected = correlate.find_stalls(whole["events"], "timer_function_scheduler_timeout", "tv_diff_u64", 10 ** 9,
                                     resolve_fds=False)
    assert len(expected) >= 10 and any(f["kernel_stack"] for f in expected)
    assert finder.findings() == expected
    for pid in (3796, 4100):
        finder.select(pid)
        assert finder.findings() == correlate.find_stalls(
            whole["events"], "timer_function_scheduler_timeout", "tv_diff_u64", 10 ** 9, pid=pid, resolve_fds=False)


def test_max_events_zero_keeps_nothing_but_counts_everything(tmp_path):
    path = str(tmp_path / "trace")
    written = synthetic_trace(path, 500)
    sink = event_sink.EventSink(max_events=0)
    parser = instance_capture.read_trace(path, sink)
    assert sink.events() == [] and parser.event_count == written


def test_a_quiet_cpu_does_not_hold_records_back(tmp_path):
    """The lookahead hands on a record whose CPU went quiet; a late stack is then a record of its own."""
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace.text_parser import TraceParser
    seen = []
    parser = TraceParser(keep_events=False, on_event=seen.append, lookahead=10)
    parser.feed(line(10 ** 9, "sched_waking: comm=a pid=1 prio=120 target_cpu=000", 7, 0))
    for index in range(30):
        parser.feed(line(2 * 10 ** 9 + index, "sched_waking: comm=a pid=1 prio=120 target_cpu=001", 8, 1))
    assert seen and seen[0]["cpu"] == 0 and len(parser._pending) <= 11
    parser.feed(line(3 * 10 ** 9, "<stack trace>", 7, 0))
    parser.feed(" => schedule")
    parser.close()
    assert parser.event_count == 32 == len(seen)
    assert seen[-1]["event"] == "kernel_stack" and seen[-1]["kernel_stack"] == ["schedule"]
    assert [r["ts_ns"] for r in seen[:31]] == sorted(r["ts_ns"] for r in seen[:31])
