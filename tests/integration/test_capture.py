"""fleettrace.tracefs.capture on the real tracefs, with a real process stalling in D state.

The test program (tests/programs/capture/tick_loop.c) ticks every 20 ms, measures
the gap since its previous tick into the local ``gap`` and writes a heartbeat to a
file on a loop-mounted ext4.  Freezing that filesystem blocks the write in D state
(percpu_rwsem_wait) and makes the next gap long: the talk's corosync case in small.
"""

import contextlib
import json
import os
import subprocess
import threading
import time

import pytest

from tests.helpers import capture_program
from tests.helpers.capture_program import TickLoop
from tests.helpers.frozen_fs import LoopExt4, missing_requirements
from tests.helpers.owned import OwnedRun
from tests.helpers.stall_setup import armed_instance, cap_and_group

THRESHOLD_NS = 150 * 1000 * 1000
NEVER = 10 ** 12        # a gap threshold no tick reaches: the capture ends otherwise
FREEZE_SECONDS = 0.4


@pytest.fixture(scope="module")
def tick_binary(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    cc = subprocess.run(["sh", "-c", "command -v gcc || command -v cc"], stdout=subprocess.PIPE,
                        text=True, check=False).stdout.strip()
    if not cc:
        pytest.skip("no C compiler")
    return capture_program.build(cc, tmp_path_factory.mktemp("tick_loop"))


@contextlib.contextmanager
def ticking_and_armed(tracefs, unique_name, binary, tmp_path, heartbeat=None, tick=None, threshold=THRESHOLD_NS,
                      **armed):
    """tick_loop running (its gaps in tmp_path/gaps.txt) and an armed instance on it; yields (proc, armed).

    Afterwards, also on failure, the loop is stopped and the instance and probe removed.
    """
    proc = TickLoop(binary, heartbeat or str(tmp_path / "heartbeat"), tmp_path / "gaps.txt", **(tick or {}))
    setup = None
    try:
        setup = armed_instance(tracefs, *cap_and_group(unique_name), binary, proc.pid, threshold, **armed)
        yield proc, setup
    finally:
        proc.stop()
        if setup is not None:
            setup.remove()


@pytest.fixture
def frozen_fs(tmp_path):
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    with LoopExt4(tmp_path, size_mb=16) as fs:
        yield fs


def freeze_when_armed(instance, fs, delay=0.3, seconds=FREEZE_SECONDS):
    """Freeze ``fs`` once capture has turned tracing on (in a thread; join it)."""
    errors = []

    def run():
        try:
            deadline = time.monotonic() + 60
            while not instance.tracing_on:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.02)
            time.sleep(delay)
            fs.freeze_for(seconds)
        except Exception as exc:  # reported by the test after join
            errors.append(exc)
    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def test_capture_finds_the_d_state_stall(tracefs, unique_name, tick_binary, frozen_fs, run_module, tmp_path):
    heartbeat = frozen_fs.file("heartbeat")
    with ticking_and_armed(tracefs, unique_name, tick_binary, tmp_path, heartbeat,
                           tick=dict(rtprio=50)) as (proc, armed):
        thread, errors = freeze_when_armed(armed.instance, frozen_fs)
        try:
            result = run_module("fleettrace.tracefs.capture", {
                "instance": armed.instance.name, "timeout": 60, "pid": proc.pid, "max_events": 40,
                "raw_path": str(tmp_path / "trace.txt"), "json_path": str(tmp_path / "capture.json"),
                "findings": {"probe_event": "%s:tick_gap" % armed.group, "field": "gap", "threshold": THRESHOLD_NS},
            })
        finally:
            thread.join()
        assert not errors, errors
        assert not result.get("failed"), result.get("msg")
        assert result["changed"] is True
        assert result["triggered"] is True and result["threshold_reached"] is True, result["message"]
        assert "threshold reached" in result["message"]
        assert armed.instance.tracing_on is False  # traceoff fired; capture leaves it off
        assert result["lost_events"] == 0
        assert len(result["events"]) <= 40 and result["event_count"] >= len(result["events"])

        # Runtime truth: every traced gap is a gap the program measured and printed.
        proc.stop()
        printed = set(proc.gaps())
        with open(str(tmp_path / "capture.json")) as handle:
            everything = json.load(handle)
        traced = [e["fields"]["gap"] for e in everything["events"] if e["event"] == "tick_gap"]
        assert traced and set(traced) <= printed, (sorted(set(traced) - printed)[:5], sorted(printed)[:5])
        assert everything["event_count"] == result["event_count"]
        assert os.path.getsize(str(tmp_path / "trace.txt")) > 0

        findings = result["findings"]
        assert len(findings) == 1, [f["summary"] for f in findings]
        finding = findings[0]
        assert finding["value"] in printed and finding["value"] >= THRESHOLD_NS
        assert finding["pid"] == proc.pid
        assert finding["state"] == "D", finding["summary"]
        switch = [e for e in everything["events"] if e["event"] == "sched_switch"
                  and e["timestamp"] == finding["switched_out_at"]][0]
        assert switch["fields"]["prev_prio"] == 99 - 50  # the kernel's prio of SCHED_RR 50
        # The frozen filesystem's frames: writers wait in sb_start_write's percpu rwsem.
        stack = " ".join(finding["kernel_stack"])
        assert "percpu_rwsem_wait" in stack or "__sb_start_write" in stack, finding["kernel_stack"]
        assert "vfs_write" in stack
        assert finding["blocked_in"] in ("percpu_rwsem_wait", "__percpu_down_read", "__sb_start_write")
        assert finding["syscall"]["name"] == "write"
        assert finding["syscall"]["nr"] == 1
        assert finding["fd"] == proc.fd == 10
        assert finding["file"] == heartbeat
        # Blocked for most of the freeze, and the gap the program measured covers the block.
        assert finding["blocked_ns"] >= (FREEZE_SECONDS - 0.1) * 1e9
        assert finding["value"] >= finding["blocked_ns"]
        assert "write(fd 10) on %s" % heartbeat in finding["summary"]


def test_timeout_is_not_an_error_and_user_stacks_are_symbolized(
        tracefs, unique_name, tick_binary, run_module, tmp_path):
    with ticking_and_armed(tracefs, unique_name, tick_binary, tmp_path, threshold=NEVER, syscalls=False,
                           options=("userstacktrace",)) as (proc, armed):
        result = run_module("fleettrace.tracefs.capture", {
            "instance": armed.instance.name, "timeout": 1.5, "pid": proc.pid})
        assert not result.get("failed"), result.get("msg")
        assert result["triggered"] is False and result["threshold_reached"] is False
        assert result["stop_reason"] == "timeout"
        assert "threshold not reached" in result["message"]
        assert armed.instance.tracing_on is False  # capture turned it on, and off again
        probe_hits = [e for e in result["events"] if e["event"] == "tick_gap"]
        assert len(probe_hits) >= 10
        proc.stop()
        assert {e["fields"]["gap"] for e in probe_hits} <= set(proc.gaps())
        # The uprobe sits in tick(): the innermost user frame is tick, its caller main.
        frames = probe_hits[0]["user_stack"]
        assert frames[0]["symbol"].startswith("tick"), frames
        assert frames[0]["object"] == tick_binary
        assert any((f["symbol"] or "").startswith("main") for f in frames[1:]), frames


def test_process_exit_keeps_what_was_captured(tracefs, unique_name, tick_binary, run_module, tmp_path):
    with ticking_and_armed(tracefs, unique_name, tick_binary, tmp_path, threshold=NEVER,
                           syscalls=False) as (proc, armed):

        def kill_when_armed():
            deadline = time.monotonic() + 60
            while not armed.instance.tracing_on and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.5)
            proc.proc.kill()  # not reaped: a zombie, which must count as exited
        killer = threading.Thread(target=kill_when_armed)
        killer.start()
        try:
            result = run_module("fleettrace.tracefs.capture", {
                "instance": armed.instance.name, "timeout": 60, "pid": proc.pid})
        finally:
            killer.join()
        assert not result.get("failed"), result.get("msg")
        assert result["stop_reason"] == "process_exited" and result["process_exited"] is True
        assert "exited during the capture" in result["message"]
        assert result["duration"] < 30  # it did not wait for the timeout
        assert any(e["event"] == "tick_gap" for e in result["events"])

        gone = run_module("fleettrace.tracefs.capture", {
            "instance": armed.instance.name, "timeout": 5, "pid": proc.pid, "clear": False})
        assert gone["process_exited"] is True and gone["changed"] is False
        assert "was not running when the capture started" in gone["message"]
        assert gone["event_count"] == result["event_count"]  # the buffer was kept, not cleared


def test_overflow_is_reported_with_a_buffer_size(tracefs, unique_name, tick_binary, run_module, tmp_path):
    with ticking_and_armed(tracefs, unique_name, tick_binary, tmp_path, tick=dict(interval_ms=1), threshold=NEVER,
                           buffer_size_kb=8) as (proc, armed):
        result = run_module("fleettrace.tracefs.capture", {
            "instance": armed.instance.name, "timeout": 1.5, "max_events": 5})
        assert not result.get("failed"), result.get("msg")
        assert result["lost_events"] > 0
        assert result["suggested_buffer_size_kb"] > result["buffer_size_kb"] >= 8  # the kernel rounds up to pages
        print(result["message"], result["lost_by_cpu"])
        assert "LOST" in result["message"] and "buffer_size_kb" in result["message"]
        assert len(result["events"]) == 5 and result["events_truncated"] is True
        assert result["event_count"] > 5


def in_order_without_gaps(traced, printed):
    """``traced`` is a run of consecutive ticks of ``printed`` (the program's own list of its gaps)."""
    return any(printed[start:start + len(traced)] == traced
               for start, gap in enumerate(printed) if gap == traced[0])


def test_window_mode_streams_trace_pipe(tracefs, unique_name, tick_binary, run_module, tmp_path):
    with ticking_and_armed(tracefs, unique_name, tick_binary, tmp_path, threshold=NEVER,
                           syscalls=False) as (proc, armed):
        raw = tmp_path / "pipe.txt"
        ticked_before = len(proc.gaps())
        result = run_module("fleettrace.tracefs.capture", {
            "instance": armed.instance.name, "mode": "window", "duration": 1, "raw_path": str(raw),
            "json_path": str(tmp_path / "window.json")})
        ticked_after = len(proc.gaps())
        assert not result.get("failed"), result.get("msg")
        assert result["stop_reason"] == "window_elapsed"
        assert result["lost_events"] == 0
        # Every event, also past max_events (a loaded machine preempts the loop: many more switches).
        with open(str(tmp_path / "window.json")) as handle:
            everything = json.load(handle)
        assert len(everything["events"]) == everything["event_count"] == result["event_count"]
        hits = [e for e in everything["events"] if e["event"] == "tick_gap"]
        assert armed.instance.tracing_on is False
        # Against the program's own list of its ticks, not the clock (a loaded machine ticks less often):
        # from the first traced tick to the last none is missing and none comes twice, no more were traced
        # than it made during the task, and none was left unread in the buffer when the window closed.
        assert hits, "no tick traced in the window"
        traced = [e["fields"]["gap"] for e in hits]
        assert len(traced) <= ticked_after - ticked_before
        unread = [line for line in armed.instance.read("trace").splitlines() if line and not line.startswith("#")]
        assert unread == [], unread[:5]
        proc.stop()
        assert in_order_without_gaps(traced, proc.gaps()), (traced[:5], proc.gaps()[ticked_before:][:5])
        assert {e["fields"]["gap"] for e in hits} <= set(proc.gaps())
        assert raw.read_text().count(": tick_gap: ") == len(hits)


def test_clear_errors_and_check_mode(tracefs, unique_name, run_module):
    missing = run_module("fleettrace.tracefs.capture", {"instance": unique_name("nothere")})
    assert missing.get("failed") and "does not exist" in missing["msg"] and "fleettrace.tracefs.instance" in missing["msg"]

    bad = run_module("fleettrace.tracefs.capture", {"instance": "../etc"})
    assert bad.get("failed") and "not allowed" in bad["msg"]

    inst = tracefs.instance(unique_name("cap"))
    run = OwnedRun(tracefs, instances=[inst.name])
    try:
        inst.create()
        empty = run_module("fleettrace.tracefs.capture", {"instance": inst.name})
        assert empty.get("failed") and "no enabled events" in empty["msg"]

        inst.event("sched", "sched_switch").set_enabled(True)
        inst.set_tracing_on(False)
        checked = run_module("fleettrace.tracefs.capture", {"instance": inst.name, "timeout": 5}, check=True)
        assert not checked.get("failed") and checked["changed"] is True
        assert "would clear the buffer" in checked["message"]
        assert inst.tracing_on is False  # check mode armed nothing
    finally:
        try:
            inst.remove()
        finally:
            run.end()


def test_works_with_async_and_poll(tracefs, unique_name, tick_binary, run_playbook, tmp_path):
    with ticking_and_armed(tracefs, unique_name, tick_binary, tmp_path, threshold=NEVER,
                           syscalls=False) as (proc, armed):
        result = run_playbook("""
            - hosts: localhost
              gather_facts: false
              tasks:
                - name: capture in the background
                  fleettrace.tracefs.capture:
                    instance: %s
                    timeout: 3
                    max_events: 3
                  async: 60
                  poll: 1
                  register: captured
            """ % armed.instance.name)
        task = result.task("capture in the background")
        assert result.rc == 0, task
        assert task["finished"] == 1 and task["stop_reason"] == "timeout"
        assert len(task["events"]) == 3 and task["event_count"] >= 50
        assert armed.instance.tracing_on is False


def test_stop_after_a_number_of_probe_hits(tracefs, unique_name, tick_binary, run_module, tmp_path):
    with ticking_and_armed(tracefs, unique_name, tick_binary, tmp_path, threshold=NEVER) as (proc, armed):
        result = run_module("fleettrace.tracefs.capture", {
            "instance": armed.instance.name, "timeout": 60, "stop_after_events": 5,
            "stop_event": "%s:tick_gap" % armed.group, "poll_interval": 0.05})
        assert not result.get("failed"), result.get("msg")
        assert result["stop_reason"] == "event_count" and result["triggered"] is False
        assert "stopped after 5 events" in result["message"]
        hits = [e for e in result["events"] if e["event"] == "tick_gap"]
        assert 5 <= len(hits) < 60  # stopped soon after the fifth, not at the timeout
        assert result["duration"] < 30
