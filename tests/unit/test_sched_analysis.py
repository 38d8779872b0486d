"""Unit tests of the scheduling analysis and the binary ring-buffer page parser (no kernel needed)."""

import random
import struct

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import ring_buffer
from ansible_collections.fleettrace.tracefs.plugins.module_utils import series as ls
from ansible_collections.fleettrace.tracefs.plugins.module_utils.elf import symbols as elf_symbols
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched import analysis as sa


def nearest_rank(values, percent):
    ordered = sorted(values)
    rank = -(-len(ordered) * int(round(percent * 10)) // 1000)
    return ordered[max(rank, 1) - 1]


# -- percentiles ----------------------------------------------------------------------
def test_percentiles_are_exact_below_the_cap():
    rng = random.Random(7)
    values = [int(rng.lognormvariate(10, 1.5)) for _index in range(5000)]
    series = ls.LatencySeries(exact_cap=10000, tail_cap=100)
    for v in values:
        series.add(v)
    summary = series.summary("us")
    assert summary["exact"] is True
    for name, percent in ls.PERCENTILES:
        assert summary["%s_us" % name] == round(nearest_rank(values, percent) / 1000.0, 3), name
    assert summary["max_us"] == round(max(values) / 1000.0, 3)
    assert summary["count"] == 5000
    assert sum(b["count"] for b in summary["histogram_log2_us"]) == 5000


def test_past_the_cap_memory_is_bounded_tail_exact_and_body_within_error():
    rng = random.Random(11)
    values = [int(rng.expovariate(1 / 50000.0)) for _index in range(60000)]
    series = ls.LatencySeries(exact_cap=2000, tail_cap=1000)
    for v in values:
        series.add(v)
    assert series.samples is None                      # folded: nothing grows with the count
    assert len(series.tail) == 1000
    assert len(series.fine) < 40 * (1 << ls.SUB_BITS)  # bins, not samples
    # 60000 samples: p99 is rank 59400 (600th from the top) -> inside the exact tail of 1000.
    for percent in (99.0, 99.9):
        value, exact = series.percentile(percent)
        assert exact and value == nearest_rank(values, percent)
    for percent in (50.0, 90.0):
        value, exact = series.percentile(percent)
        truth = nearest_rank(values, percent)
        assert not exact
        assert abs(value - truth) <= truth * ls.MAX_RELATIVE_ERROR + 1
    summary = series.summary("us")
    assert summary["exact"] is False and summary["max_relative_error"] == ls.MAX_RELATIVE_ERROR
    assert summary["max_us"] == round(max(values) / 1000.0, 3)
    assert sum(b["count"] for b in summary["histogram_log2_us"]) == 60000


@pytest.mark.parametrize("value", [0, 1, 255, 256, 257, 1000, 123456, 10 ** 9 + 7, 2 ** 40 + 12345])
def test_fine_bins_keep_relative_error(value):
    middle = ls._fine_bin_middle(ls._fine_bin(value))
    assert abs(middle - value) <= value * ls.MAX_RELATIVE_ERROR


def test_nearest_rank_has_no_float_drift():
    assert ls._nearest_rank(1000, 99.9) == 999
    assert ls._nearest_rank(1, 50) == 1
    assert ls._nearest_rank(10, 90) == 9


def test_log2_buckets_match_bcc_style():
    buckets = ls.log2_histogram_us(values_ns=[500, 1500, 3000, 3999, 9000])
    assert [(b["low_us"], b["high_us"], b["count"]) for b in buckets] == [
        (0, 1, 1), (1, 2, 1), (2, 4, 2), (4, 8, 0), (8, 16, 1)]


# -- the state machine ------------------------------------------------------------------
def switch(an, ts, cpu, prev, prev_state, nxt):
    an.switch(ts, cpu, prev[1], prev[0], prev_state, nxt[1], nxt[0])


IDLE = (0, b"swapper/0")
A = (100, b"worker")
B = (200, b"hog")
C = (300, b"corosync")


def test_wakeup_and_preempt_latency_per_host_cpu_and_task():
    an = sa.SchedAnalyzer(watch=sa.WatchSpec(comms=["corosync"]))
    switch(an, 1000, 0, IDLE, 0, B)                  # hog runs on CPU 0
    an.wakeup(2000, 1, C[0], C[1])                   # corosync woken (from CPU 1)
    an.wakeup(2500, 0, C[0], C[1], "sched_wakeup")   # the later wakeup must not restart the clock
    switch(an, 9000, 0, B, 0x100, C)                 # hog preempted (R+), corosync runs: waited 7000
    switch(an, 9500, 0, C, 1, B)                     # corosync sleeps (S), hog back: waited 500
    result = an.result()
    assert result["latency"]["all"]["count"] == 2
    assert result["latency"]["wakeup"]["max_us"] == 7.0
    assert result["latency"]["preempt"]["max_us"] == 0.5
    assert result["per_cpu"]["0"]["count"] == 2
    (task,) = result["tasks"]
    assert task["comm"] == "corosync" and task["runqueue"]["max_us"] == 7.0
    worst = result["worst_waits"][0]
    assert worst["pid"] == C[0] and worst["kind"] == "wakeup" and worst["latency_us"] == 7.0
    # hog held CPU 0 during the whole wait [2000, 9000].
    assert worst["ran_meanwhile"] == [{"pid": B[0], "comm": "hog", "us": 7.0}]
    assert worst["ran_meanwhile_complete"] is True


def test_sleeping_switch_out_is_not_a_runqueue_wait():
    an = sa.SchedAnalyzer()
    switch(an, 1000, 0, A, 1, B)     # A sleeps
    switch(an, 5000, 0, B, 1, A)     # A runs again with no wakeup seen: no sample
    assert an.result()["latency"]["all"]["count"] == 0


def test_clock_underflow_is_clamped_and_counted():
    an = sa.SchedAnalyzer()
    an.wakeup(5000, 1, A[0], A[1])
    switch(an, 4990, 0, IDLE, 0, A)  # stamped 10 ns "before" the wakeup on another CPU
    result = an.result()
    assert result["clock_underflows"] == 1
    assert result["latency"]["all"]["min_us"] == 0.0


def test_d_state_intervals_with_stack_and_ongoing_at_the_end():
    an = sa.SchedAnalyzer(watch=sa.WatchSpec(pids=[C[0]]))
    switch(an, 1000, 1, C, 2, IDLE)                              # C blocks in D on CPU 1
    an.kernel_stack(1001, 1, C[0], [0xffffffff81000010, 0xffffffff81000200])
    an.wakeup(3001000, 0, C[0], C[1])
    switch(an, 3002000, 1, IDLE, 0, C)                           # back after 3.001 ms
    switch(an, 3003000, 1, C, 1, IDLE)                           # S sleep
    switch(an, 3004000, 1, IDLE, 0, C)
    switch(an, 4000000, 1, C, 2, IDLE)                           # D again, never comes back
    an.finish(end_ts=9000000)

    class Symbols:
        def name(self, address):
            return "fn_%x" % address

    result = an.result(symbols=Symbols())
    longest = result["longest_d"]
    assert [d["duration_ms"] for d in longest] == [5.0, 3.001]
    assert longest[0]["ongoing"] is True and longest[0]["kernel_stack"] == []
    assert longest[1]["ongoing"] is False
    assert longest[1]["blocked_ms"] == 3.0
    assert longest[1]["kernel_stack"] == ["fn_ffffffff81000010", "fn_ffffffff81000200"]
    (task,) = result["tasks"]
    assert task["offcpu"]["D"]["count"] == 2 and task["offcpu"]["S"]["count"] == 1
    assert task["offcpu"]["S"]["max_ms"] == 0.001


def test_worst_waits_keep_only_the_largest():
    an = sa.SchedAnalyzer(worst_count=3)
    ts = 0
    for i, wait in enumerate([5, 50, 1, 500, 7, 300]):
        ts += 10000
        an.wakeup(ts, 0, 1000 + i, b"t")
        switch(an, ts + wait * 1000, 0, IDLE, 0, (1000 + i, b"t"))
    assert [w["latency_us"] for w in an.result()["worst_waits"]] == [500.0, 300.0, 50.0]


def test_watch_spec_matches_pid_comm_and_regex():
    watch = sa.WatchSpec(pids=[5], comms=["corosync"], comm_regexes=["^kworker/"])
    assert watch.matches(5, b"x")
    assert watch.matches(6, b"corosync")
    assert watch.matches(7, b"kworker/0:1")
    assert not watch.matches(8, b"bash")
    assert not sa.WatchSpec()


def test_watch_spec_matches_names_as_decoded_from_events():
    """Event fields hold the raw char[16], NUL-padded: a task born during the window is watched by name."""
    watch = sa.WatchSpec(comms=["corosync"], comm_regexes=["^kworker/0:1$"])
    assert watch.matches(6, b"corosync" + b"\0" * 8)
    assert watch.matches(7, b"kworker/0:1" + b"\0" * 5)
    assert not watch.matches(8, b"corosync2" + b"\0" * 7)


def test_kernel_symbols_resolve_to_the_enclosing_function(tmp_path):
    path = tmp_path / "kallsyms"
    path.write_text("ffffffff81000000 T _stext\nffffffff81000100 t schedule\nffffffff81000200 T io_schedule\n"
                    "ffffffff81000300 d some_data\n")
    symbols = elf_symbols.KernelSymbols(str(path))
    assert symbols.name(0xffffffff81000150) == "schedule+0x50"
    assert symbols.name(0xffffffff81000400) == "io_schedule+0x200"


# -- ring-buffer pages ----------------------------------------------------------------------
SWITCH_FORMAT = """name: sched_switch
ID: 372
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:pid_t prev_pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:int prev_prio;\toffset:28;\tsize:4;\tsigned:1;
\tfield:long prev_state;\toffset:32;\tsize:8;\tsigned:1;
\tfield:char next_comm[16];\toffset:40;\tsize:16;\tsigned:0;
\tfield:pid_t next_pid;\toffset:56;\tsize:4;\tsigned:1;
\tfield:int next_prio;\toffset:60;\tsize:4;\tsigned:1;

print fmt: "prev_comm=%s"
"""

HEADER_PAGE = """\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;
\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;
\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;
\tfield: char data;\toffset:16;\tsize:4080;\tsigned:0;
"""


def switch_payload(prev_pid, prev_state, next_pid, event_id=372):
    return struct.pack("=HBBi16siiq16sii", event_id, 0, 0, prev_pid, b"prev", prev_pid, 120, prev_state,
                       b"next", next_pid, 120)


def event(delta, payload):
    assert len(payload) % 4 == 0
    words = len(payload) // 4
    if words <= 28:
        return struct.pack("=I", (delta << 5) | words) + payload
    return struct.pack("=II", delta << 5, len(payload) + 4) + payload


def page(base_ts, body, commit_flags=0, missed=None):
    data = body + (struct.pack("=Q", missed) if missed is not None else b"")
    raw = struct.pack("=QQ", base_ts, len(body) | commit_flags) + data
    return raw + b"\0" * (4096 - len(raw))


def test_event_format_struct_reads_fields_by_published_offsets():
    fmt = ring_buffer.EventFormat.parse(SWITCH_FORMAT)
    assert fmt.id == 372 and fmt.fields["next_pid"] == (56, 4, True)
    unpacker, index = fmt.struct_for(("prev_comm", "prev_pid", "prev_state", "next_comm", "next_pid"))
    fields = unpacker.unpack_from(switch_payload(7, 2, 9))
    assert fields[1:3] == (7, 2) and fields[4] == 9 and fields[0].startswith(b"prev\0")
    with pytest.raises(ValueError, match="has no field 'nope'"):
        fmt.struct_for(("nope",))


def test_parse_page_handles_extends_padding_long_events_and_unknown_events():
    fmt = ring_buffer.EventFormat.parse(SWITCH_FORMAT)
    unpacker, index = fmt.struct_for(("prev_pid", "prev_state", "next_pid"))
    decoders = {372: (unpacker, index, None)}
    layout = ring_buffer.PageLayout.parse(HEADER_PAGE)
    extend = 5 << ring_buffer.TS_SHIFT
    body = (event(10, switch_payload(1, 0, 2))
            + struct.pack("=II", (3 << 5) | ring_buffer.TYPE_TIME_EXTEND, 5)       # + (5 << 27) + 3
            + event(20, switch_payload(2, 1, 3))
            + struct.pack("=II", (1 << 5) | ring_buffer.TYPE_PADDING, 12) + b"\0" * 8  # discarded: array[0] = bytes after the header
            + event(30, switch_payload(9, 0, 9, event_id=999))                     # not decoded
            + event(40, switch_payload(3, 2, 4) + b"\0" * 64))                     # long: type_len 0
    out = []
    missed = ring_buffer.parse_page(page(1000, body), layout, decoders, 1, out)
    assert missed == 0
    assert [(ts, cpu, fields) for ts, cpu, _id, fields in out] == [
        (1010, 1, (1, 0, 2)),
        (1010 + 3 + extend + 20, 1, (2, 1, 3)),
        (1010 + 3 + extend + 20 + 30 + 40, 1, (3, 2, 4)),
    ]


def test_parse_page_reports_missed_events():
    layout = ring_buffer.PageLayout.parse(HEADER_PAGE)
    out = []
    body = event(1, switch_payload(1, 0, 2))
    assert ring_buffer.parse_page(page(0, body, ring_buffer.MISSED_EVENTS | ring_buffer.MISSED_STORED, 42),
                                  layout, {}, 0, out) == 42
    assert ring_buffer.parse_page(page(0, body, ring_buffer.MISSED_EVENTS), layout, {}, 0, out) == -1


def test_stack_addresses_use_the_recorded_count():
    raw = struct.pack("=4Q", 0xa, 0xb, 0, 0)
    assert sa.stack_addresses(2, raw) == [0xa, 0xb]
    assert sa.stack_addresses(9, raw) == [0xa, 0xb]


def test_unrecorded_switch_in_from_idle_is_inferred_not_mismeasured():
    # Some kernels emit no sched_switch when a CPU leaves idle: B appears on CPU 1 unannounced.
    an = sa.SchedAnalyzer()
    switch(an, 1000, 1, A, 1, IDLE)          # A sleeps, CPU 1 idle
    an.wakeup(2000, 1, B[0], B[1], waker=0)   # B woken by a timer on the idle CPU
    # (idle -> B not recorded)
    an.wakeup(3000, 1, C[0], C[1], waker=B[0])  # B, now running, wakes C: B is on CPU 1
    switch(an, 9000, 1, B, 1, C)             # C waited 6 us behind B
    result = an.result()
    assert result["inferred_switch_ins"] == 1
    assert result["unmeasured_waits"] == 1   # B's own wait has no known end: dropped, counted
    assert result["latency"]["all"]["count"] == 1 and result["latency"]["all"]["max_us"] == 6.0
    # B held the CPU since its wakeup (the CPU's previous event), not the idle task.
    assert result["worst_waits"][0]["ran_meanwhile"] == [{"pid": B[0], "comm": "hog", "us": 6.0}]


def test_unrecorded_switch_in_seen_at_the_switch_out():
    an = sa.SchedAnalyzer()
    switch(an, 1000, 1, A, 1, IDLE)
    an.wakeup(2000, 1, B[0], B[1], waker=0)
    an.wakeup(2500, 0, C[0], C[1], waker=A[0])   # C queued for CPU 1 from CPU 0
    switch(an, 8000, 1, B, 1, C)                 # first sign of B: its switch-out
    result = an.result()
    assert result["inferred_switch_ins"] == 1 and result["unmeasured_waits"] == 1
    assert result["latency"]["all"]["max_us"] == 5.5
    assert result["worst_waits"][0]["ran_meanwhile"][0]["comm"] == "hog"
