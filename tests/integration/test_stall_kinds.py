"""The culprit whatever the sleep state: S, D, runnable (preempted) and stopped stalls of a real loop.

tick_loop (tests/programs/capture) ticks every 20 ms, measures the gap since its
previous tick (the probed value, which it also prints: the truth) and writes a
heartbeat to fd 10.  Each test makes one tick late in a different way and checks
the capture module's finding (``stop`` option: the threshold written once)
against what the test and the program measured themselves.  Nothing is left in
tracefs (the autouse leak check) or mounted, also when a test fails.
"""

import fcntl
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.helpers import capture_program
from tests.helpers.capture_program import TickLoop as Tick
from tests.helpers.frozen_fs import LoopExt4, missing_requirements
from tests.helpers.stall_setup import StallSetup, cap_and_group

THRESHOLD_NS = 150 * 1000 * 1000
HOLD_SECONDS = 0.4
F_SETPIPE_SZ = 1031
PAGE = 4096


@pytest.fixture(scope="module")
def tick_binary(tmp_path_factory, cc):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    return capture_program.build(cc, tmp_path_factory.mktemp("tick_loop"))


def when_armed(setup, action):
    """Run ``action()`` in a thread once capture turned tracing on (its traceoff trigger is in place)."""
    errors, done = [], []

    def run():
        try:
            deadline = time.monotonic() + 60
            probe = setup.instance.event(setup.group, "tick_gap")
            while not (setup.instance.tracing_on and "traceoff" in " ".join(probe.triggers())):
                if time.monotonic() > deadline:
                    return
                time.sleep(0.02)
            time.sleep(0.3)
            done.append(action())
        except Exception as exc:  # reported by the test after join
            errors.append(exc)
    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors, done


def capture(run_module, setup, pid, tmp_path, **stop):
    wanted = {"events": [setup.probe_event], "field": "gap", "threshold": THRESHOLD_NS, "unit": "ns",
              "token_timeout_ms": 1000}
    wanted.update(stop)
    result = run_module("fleettrace.tracefs.capture", {
        "instance": setup.instance.name, "timeout": 60, "pid": pid, "max_events": 50,
        "json_path": str(tmp_path / "capture.json"), "stop": wanted})
    assert not result.get("failed"), result.get("msg")
    assert result["status"] == "threshold_reached", result["message"]
    # The stop trigger was installed for the capture and removed after it.
    assert not [t for t in setup.instance.event(setup.group, "tick_gap").triggers() if "traceoff" in t]
    assert result["findings"], result["message"]
    return result


def run_stall(tracefs, unique_name, tick, action, run_module, tmp_path):
    """Arm on ``tick``, run ``action`` once armed; returns (result, what action returned)."""
    setup = StallSetup(tracefs, *cap_and_group(unique_name), tick.binary_path, tick.pid)
    try:
        thread, errors, done = when_armed(setup, action)
        try:
            result = capture(run_module, setup, tick.pid, tmp_path)
        finally:
            thread.join()
        assert not errors, errors
        return result, done[0]
    finally:
        setup.remove()


def check_common(result, tick, min_ticks=2):
    finding = result["findings"][0]
    if os.environ.get("SHOW_FINDINGS"):
        print("\n".join([finding["summary"]] + finding["explanation"] + [result["message"]]))
    tick.stop()
    printed = tick.gaps()
    assert finding["value"] in printed and finding["value"] >= THRESHOLD_NS
    assert finding["duration_ms"] == round(finding["value"] / 1e6, 3)
    assert finding["pid"] == tick.pid
    values = result["probe_values"]
    assert values["count"] >= min_ticks and values["max_ms"] == round(finding["value"] / 1e6, 3)
    names = [g["guess"] for g in result["guesses"]]
    assert names == ["overloaded host", "overloaded VM host", "memory not locked", "token timeout too low", "KSM"]
    return finding


def test_s_state_stall_in_a_pipe_write(tracefs, unique_name, tick_binary, run_module, tmp_path):
    fifo = str(tmp_path / "heartbeat.fifo")
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    fcntl.fcntl(reader, F_SETPIPE_SZ, PAGE)
    holding = threading.Event()
    stop_draining = threading.Event()

    drained_at = []  # when the reader really read again after a hold (the end of the truth interval)

    paused = threading.Event()  # the drainer has seen ``holding`` and reads no more

    def drain():
        while not stop_draining.is_set():
            if holding.is_set():
                paused.set()
            else:
                paused.clear()
                try:
                    os.read(reader, 65536)
                    if not drained_at:
                        drained_at.append(time.monotonic())
                except BlockingIOError:
                    pass
            time.sleep(0.005)
    drainer = threading.Thread(target=drain)
    drainer.start()
    tick = None
    try:
        tick = Tick(tick_binary, fifo, tmp_path / "gaps.txt")

        def hold_pipe_full():
            holding.set()
            # A read already under way would empty the pipe again after we filled it.
            assert paused.wait(10), "the drainer did not pause"
            started_at = time.monotonic()  # the pipe can fill (and the write block) from here on
            # Fill to the last byte: a heartbeat still in the pipe leaves room in its page that a
            # small write would merge into without blocking, so finish byte by byte.
            for chunk in (b"x" * 512, b"x"):
                try:
                    while True:
                        os.write(writer, chunk)
                except BlockingIOError:
                    pass
            time.sleep(HOLD_SECONDS)
            del drained_at[:]
            holding.clear()
            while not drained_at:
                time.sleep(0.001)
            return (drained_at[0] - started_at) * 1e9
        result, held_ns = run_stall(tracefs, unique_name, tick, hold_pipe_full, run_module, tmp_path)
        finding = check_common(result, tick)
        assert finding["cause"] == "blocked" and finding["state"] == "S", finding["explanation"]
        assert finding["syscall"]["name"] == "write" and finding["fd"] == 10
        assert finding["file"] == fifo
        assert finding["syscall"]["text"].startswith("write(fd 10 -> %s, " % fifo)
        assert "pipe_write" in " ".join(finding["kernel_stack"]), finding["kernel_stack"]
        # The write waited at most as long as the pipe was held full, and the gap covers it.
        assert finding["asleep_ns"] <= held_ns + 2e6
        assert finding["value"] >= finding["asleep_ns"]
        assert finding["excluded"] is None or finding["excluded"]["syscall"] == "clock_nanosleep"
    finally:
        stop_draining.set()
        drainer.join()
        if tick is not None:
            tick.stop()
        os.close(writer)
        os.close(reader)


def test_d_state_stall_on_a_frozen_fs(tracefs, unique_name, tick_binary, run_module, tmp_path):
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    with LoopExt4(tmp_path, size_mb=16) as fs:
        tick = Tick(tick_binary, fs.file("heartbeat"), tmp_path / "gaps.txt", rtprio=50)
        try:
            def freeze():
                started = time.monotonic()
                fs.freeze_for(HOLD_SECONDS)
                return (time.monotonic() - started) * 1e9
            result, frozen_ns = run_stall(tracefs, unique_name, tick, freeze, run_module, tmp_path)
            finding = check_common(result, tick)
        finally:
            tick.stop()
        assert finding["cause"] == "blocked" and finding["state"] == "D", finding["explanation"]
        assert finding["syscall"]["name"] == "write" and finding["file"] == fs.file("heartbeat")
        assert finding["asleep_ns"] <= frozen_ns + 2e6 and finding["value"] >= finding["asleep_ns"]
        memory = [g for g in result["guesses"] if g["guess"] == "memory not locked"][0]
        assert memory["ruled_out"] is not None


HOG = """
import os, sys, time
os.sched_setaffinity(0, {int(sys.argv[1])})
os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(int(sys.argv[2])))
start = time.monotonic()
while time.monotonic() - start < float(sys.argv[3]):
    pass
spun = time.monotonic() - start
os.write(int(sys.argv[4]), b"x")  # wakes the tail, which runs once the hog sleeps
print(int(spun * 1e9), flush=True)
sys.stdin.read()  # stays alive (asleep): its policy is read from /proc
"""
# A lower realtime task woken by the hog at its end: it runs after the hog and just before the target
# gets its CPU back, as a kworker often does. It must not be blamed.
TAIL = """
import os, sys, time
os.sched_setaffinity(0, {int(sys.argv[1])})
os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(int(sys.argv[2])))
print("ready", flush=True)
os.read(int(sys.argv[3]), 1)
start = time.monotonic()
while time.monotonic() - start < 0.003:
    pass
print(int((time.monotonic() - start) * 1e9), flush=True)
sys.stdin.read()
"""


def test_runnable_stall_blames_the_rt_hog_not_the_task_seen_last(
        tracefs, unique_name, tick_binary, run_module, tmp_path):
    """The target (SCHED_RR 10) waits on its CPU behind a SCHED_FIFO 50 hog; a SCHED_FIFO 30 task runs
    3 ms after the hog, right before the target gets the CPU back. The finding names the hog first, by
    time held, with policy and priority, and says the last one is not the culprit."""
    cpu = max(os.sched_getaffinity(0))
    tick = Tick(tick_binary, str(tmp_path / "heartbeat"), tmp_path / "gaps.txt", rtprio=10, cpu=cpu)
    read_end, write_end = os.pipe()
    tail = subprocess.Popen([sys.executable, "-c", TAIL, str(cpu), "30", str(read_end)], pass_fds=(read_end,),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, universal_newlines=True)
    assert tail.stdout.readline().strip() == "ready"
    hog = {}
    try:
        def run_hog():
            started = time.monotonic()  # the hog's whole life encloses the time it held the CPU
            proc = subprocess.Popen([sys.executable, "-c", HOG, str(cpu), "50", str(HOLD_SECONDS), str(write_end)],
                                    pass_fds=(write_end,), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    universal_newlines=True)
            hog.update(pid=proc.pid, proc=proc, spun_ns=int(proc.stdout.readline()))
            return (time.monotonic() - started) * 1e9
        result, lived_ns = run_stall(tracefs, unique_name, tick, run_hog, run_module, tmp_path)
        finding = check_common(result, tick)
        tail_ns = int(tail.stdout.readline())
    finally:
        tick.stop()
        for proc in (hog.get("proc"), tail):
            if proc is not None:
                proc.kill()
                proc.wait()
        os.close(read_end)
        os.close(write_end)
    assert finding["cause"] == "runnable" and finding["state"] == "R", finding["explanation"]
    # Waiting for the CPU at most as long as the hog lived, and the gap covers the wait.
    assert finding["runnable_ns"] <= lived_ns and finding["value"] >= finding["runnable_ns"]
    assert hog["spun_ns"] >= HOLD_SECONDS * 1e9
    holders = finding["cpu_holders"]
    assert finding["runnable_wait"]["cpu"] == cpu and holders, finding["explanation"]
    first = holders[0]
    assert (first["pid"], first["policy"], first["rtprio"]) == (hog["pid"], "SCHED_FIFO", 50), holders
    # The hog held the CPU for (nearly) its whole spin, and no longer than the wait.
    assert 0.9 * hog["spun_ns"] <= first["ran_ns"] <= finding["runnable_ns"], (first, hog["spun_ns"])
    assert finding["ran_instead"]["pid"] == hog["pid"]
    tail_entry = [h for h in holders if h["pid"] == tail.pid]
    assert tail_entry and tail_entry[0]["policy"] == "SCHED_FIFO" and tail_entry[0]["rtprio"] == 30, holders
    assert tail_ns <= tail_entry[0]["ran_ns"] < first["ran_ns"]
    assert finding["last_before"]["pid"] == tail.pid, finding["last_before"]
    said = " ".join(finding["explanation"])
    assert re.search(r"Who held CPU %d during the wait, longest first: [^\[]+\[%d\] \(SCHED_FIFO rtprio 50\)"
                     % (cpu, hog["pid"]), said), said
    assert re.search(r"\[%d\] ran last, just before it got the CPU back: not the culprit" % tail.pid, said), said
    assert result["cpu_context"]["instance"].endswith("_cpu")  # removed again: the leak check
    host = [g for g in result["guesses"] if g["guess"] == "overloaded host"][0]
    assert host["ruled_out"] is False, host


def test_stopped_stall_sigstop(tracefs, unique_name, tick_binary, run_module, tmp_path):
    tick = Tick(tick_binary, str(tmp_path / "heartbeat"), tmp_path / "gaps.txt")
    try:
        def stop_and_continue():
            stopped_at = time.monotonic()  # taken before the stop and after the continue: it encloses both
            os.kill(tick.pid, signal.SIGSTOP)
            time.sleep(HOLD_SECONDS)
            os.kill(tick.pid, signal.SIGCONT)
            return (time.monotonic() - stopped_at) * 1e9
        result, stopped_ns = run_stall(tracefs, unique_name, tick, stop_and_continue, run_module, tmp_path)
        finding = check_common(result, tick)
    finally:
        tick.stop()
    assert finding["cause"] == "stopped" and finding["state"] == "T", finding["explanation"]
    assert "SIGSTOP" in finding["explanation"][1]
    assert finding["asleep_ns"] <= stopped_ns + 2e6 and finding["value"] >= finding["asleep_ns"]


def test_stall_begun_before_arming_is_rearmed_then_explained(tracefs, unique_name, tick_binary, run_module, tmp_path):
    """The first late tick's stall began before tracing: capture arms again by itself; a stall caught whole
    is then explained.  With no re-arm left, the finding still says what is missing (never 'Unknown error')."""
    tick = Tick(tick_binary, str(tmp_path / "heartbeat"), tmp_path / "gaps.txt")
    setup = StallSetup(tracefs, *cap_and_group(unique_name), tick_binary, tick.pid)
    try:
        os.kill(tick.pid, signal.SIGSTOP)  # stopped before anything is armed
        probe = setup.instance.event(setup.group, "tick_gap")

        def armed():
            return setup.instance.tracing_on and "traceoff" in " ".join(probe.triggers())

        def wait_for(condition):
            deadline = time.monotonic() + 60
            while not condition():
                assert time.monotonic() < deadline
                time.sleep(0.005)

        def story():
            wait_for(armed)
            time.sleep(0.3)
            os.kill(tick.pid, signal.SIGCONT)           # the late tick of a stall begun before arming
            wait_for(lambda: not setup.instance.tracing_on)
            wait_for(armed)                              # capture armed again by itself
            time.sleep(0.3)
            os.kill(tick.pid, signal.SIGSTOP)
            time.sleep(HOLD_SECONDS)
            os.kill(tick.pid, signal.SIGCONT)
        thread = threading.Thread(target=story)
        thread.start()
        try:
            result = capture(run_module, setup, tick.pid, tmp_path, rearm=1)
        finally:
            thread.join()
        assert result["attempts"] == 2, result["message"]
        finding = check_common(result, tick)
        assert finding["cause"] == "stopped" and finding["began_before_capture"] is False

        # No re-arm left: the finding of a stall begun before arming says so.
        tick = Tick(tick_binary, str(tmp_path / "heartbeat2"), tmp_path / "gaps2.txt")
        setup.remove()
        setup = StallSetup(tracefs, *cap_and_group(unique_name), tick_binary, tick.pid)
        os.kill(tick.pid, signal.SIGSTOP)
        probe = setup.instance.event(setup.group, "tick_gap")

        def late():
            wait_for(armed)
            time.sleep(0.3)
            os.kill(tick.pid, signal.SIGCONT)
        thread = threading.Thread(target=late)
        thread.start()
        try:
            result = capture(run_module, setup, tick.pid, tmp_path, rearm=0)
        finally:
            thread.join()
        finding = check_common(result, tick, min_ticks=1)
        assert result["attempts"] == 1 and finding["cause"] == "unexplained"
        assert finding["began_before_capture"] is True
        assert "may have begun before tracing was armed" in finding["explanation"][1]
    finally:
        tick.stop()
        setup.remove()
