"""The slow watchdog itself (tests/programs/slow_watchdog), on this kernel's real FUSE.

What the scenarios rely on: the watchdog ioctls answer as a driver would; a
keepalive blocks as configured (always, every Nth, switched at run time); the
daemon's log of keepalives is the truth the tracing is checked against; the
caller sleeps in request_wait_answer in state S; and /dev/watchdog can be the
FUSE file inside a private mount namespace while the host's /dev stays as it was.
"""

import array
import fcntl
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time

import pytest

from tests.helpers import slow_watchdog as sw

SLOW_MS = 1500


@pytest.fixture(autouse=True)
def _no_mount_left(mount_leak_check):
    yield


@pytest.fixture
def wd_binary(cc, tmp_path):
    try:
        return sw.build(cc, tmp_path)
    except sw.FuseUnavailable as why:
        pytest.skip(str(why))


@pytest.fixture
def watchdog(wd_binary, tmp_path, run_token):
    with sw.SlowWatchdog(wd_binary, tmp_path, "fleettrace_%s_wd" % run_token, delay_ms=0) as wd:
        yield wd


# A caller in its own process, so that /proc shows its state while it waits.
KEEPALIVE_CLIENT = textwrap.dedent("""\
    import array, fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_WRONLY)
    print("ready", flush=True)
    sys.stdin.readline()
    buf = array.array("i", [1234])
    start = time.monotonic_ns()
    fcntl.ioctl(fd, %d, buf)
    print("took", time.monotonic_ns() - start, buf[0], flush=True)
""" % sw.WDIOC_KEEPALIVE)


def _read(path):
    with open(path) as handle:
        return handle.read()


def test_driver_ioctls_answer_like_a_watchdog(watchdog):
    fd = os.open(watchdog.device, os.O_WRONLY)
    try:
        info = bytearray(40)
        fcntl.ioctl(fd, sw.WDIOC_GETSUPPORT, info)
        options, _firmware, identity = struct.unpack("II32s", bytes(info))
        assert options & 0x0080 and options & 0x8000  # WDIOF_SETTIMEOUT, WDIOF_KEEPALIVEPING
        assert identity.rstrip(b"\0") == b"fleettrace slow watchdog"
        value = array.array("i", [7])
        fcntl.ioctl(fd, sw.WDIOC_SETTIMEOUT, value)
        assert value[0] == 7
        value = array.array("i", [0])
        fcntl.ioctl(fd, sw.WDIOC_GETTIMEOUT, value)
        assert value[0] == 7
        with pytest.raises(OSError):  # out of any driver's range
            fcntl.ioctl(fd, sw.WDIOC_SETTIMEOUT, array.array("i", [0]))
        # KEEPALIVE brings nothing back: the caller's int is left alone (corosync passes &watchdog_ok).
        value = array.array("i", [1234])
        fcntl.ioctl(fd, sw.WDIOC_KEEPALIVE, value)
        assert value[0] == 1234
        # SETOPTIONS as corosync calls it, the option as the "pointer": accepted, nothing copied.
        fcntl.ioctl(fd, sw.WDIOC_SETOPTIONS, 2)
        os.write(fd, b"V")
    finally:
        os.close(fd)
    calls = watchdog.ioctls()
    # The FUSE daemon answers on several threads: its log holds every call, not always in call order.
    assert sorted(call["name"] for call in calls) == sorted(
        ["WDIOC_GETSUPPORT", "WDIOC_SETTIMEOUT", "WDIOC_GETTIMEOUT", "WDIOC_SETTIMEOUT", "WDIOC_SETOPTIONS"])
    assert sorted(call["result"] < 0 for call in calls if call["name"] == "WDIOC_SETTIMEOUT") == [False, True]
    assert [ka["pid"] for ka in watchdog.keepalives()] == [os.getpid()]
    assert watchdog.state()["magic_closes"] == 1


def test_blocked_keepalive_sleeps_in_request_wait_answer_in_state_s(watchdog):
    watchdog.control(delay_ms=SLOW_MS, every=1)
    client = subprocess.Popen([sys.executable, "-c", KEEPALIVE_CLIENT, watchdog.device], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, universal_newlines=True)
    try:
        assert client.stdout.readline().strip() == "ready"
        client.stdin.write("go\n")
        client.stdin.flush()
        # Wait (no time limit but the client's own end) until the server holds the request.
        while not watchdog.state()["slow_keepalives"] and client.poll() is None:
            time.sleep(0.01)
        seen = None
        while client.poll() is None:
            stack = _read("/proc/%d/stack" % client.pid)
            if "request_wait_answer" in stack:
                state = _read("/proc/%d/stat" % client.pid).rsplit(")", 1)[1].split()[0]
                wchan = _read("/proc/%d/wchan" % client.pid)
                syscall = _read("/proc/%d/syscall" % client.pid).split()
                # One sleep seen whole: the stack still there after the reads, and not running in between
                # (wchan "0": the answer came, or a wakeup the wait loop slept through again; look again).
                if wchan != "0" and "request_wait_answer" in _read("/proc/%d/stack" % client.pid):
                    seen = (state, wchan, stack, syscall)
                    break
            time.sleep(0.01)
        took = client.communicate(timeout=60)[0].split()
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert seen is not None, "never saw the caller waiting for the FUSE answer"
    state, wchan, stack, syscall = seen
    assert state == "S", seen  # interruptible: a D-only filter misses it
    assert wchan == "request_wait_answer"
    assert "fuse_do_ioctl" in stack
    assert syscall[0] == "16" and int(syscall[2], 16) == sw.WDIOC_KEEPALIVE  # ioctl(fd, WDIOC_KEEPALIVE, ...)
    # The log is the truth: one slow keepalive of at least the delay, which the caller waited out.
    (keepalive,) = watchdog.keepalives()
    assert keepalive["slow"] and keepalive["pid"] == client.pid
    assert keepalive["duration_ns"] >= SLOW_MS * 1000000
    assert took[0] == "took" and int(took[1]) >= keepalive["duration_ns"] and took[2] == "1234"


def test_every_nth_keepalive_blocks_and_the_mode_switches_at_run_time(watchdog):
    delay_ms = 200
    fd = os.open(watchdog.device, os.O_WRONLY)

    def tickle(times):
        for _count in range(times):
            fcntl.ioctl(fd, sw.WDIOC_KEEPALIVE, array.array("i", [1]))
    try:
        watchdog.control(delay_ms=delay_ms, every=3)
        tickle(6)
        os.kill(watchdog.proc.pid, signal.SIGUSR2)  # off
        while watchdog.state()["enabled"]:
            time.sleep(0.01)
        tickle(3)
        os.kill(watchdog.proc.pid, signal.SIGUSR1)  # on again
        while not watchdog.state()["enabled"]:
            time.sleep(0.01)
        watchdog.control(every=1)
        tickle(1)
        watchdog.control(enabled=0)
        tickle(1)
    finally:
        os.close(fd)
    keepalives = watchdog.keepalives()
    assert [ka["seq"] for ka in keepalives] == list(range(1, 12))
    assert [ka["seq"] for ka in keepalives if ka["slow"]] == [3, 6, 10]
    for ka in keepalives:
        assert ka["end_ns"] - ka["start_ns"] == ka["duration_ns"]
        assert (ka["duration_ns"] >= delay_ms * 1000000) == ka["slow"], ka
    state = watchdog.state()
    assert state["keepalives"] == 11 and state["slow_keepalives"] == 3
    with pytest.raises(OSError):
        watchdog.control(no_such_key=1)


def test_hold_blocks_the_next_n_keepalives_only(watchdog):
    """hold=N: what the sentinel's tests use to make one stall at a time of their choosing."""
    fd = os.open(watchdog.device, os.O_WRONLY)
    try:
        watchdog.control(delay_ms=150, every=0, hold=2)
        assert watchdog.state()["hold"] == 2
        for _count in range(4):
            fcntl.ioctl(fd, sw.WDIOC_KEEPALIVE, array.array("i", [1]))
    finally:
        os.close(fd)
    keepalives = watchdog.keepalives()
    assert [ka["slow"] for ka in keepalives] == [True, True, False, False]
    assert all(ka["duration_ns"] >= 150000000 for ka in keepalives[:2])
    assert watchdog.state()["hold"] == 0


def test_hold_in_ms_blocks_one_keepalive_that_late(watchdog):
    """hold_in_ms=N: the watchdog picks the moment itself (make demo SCENARIO=sentinel)."""
    fd = os.open(watchdog.device, os.O_WRONLY)
    try:
        asked = time.monotonic_ns()
        watchdog.control(delay_ms=150, every=0, hold_in_ms=300)
        for _count in range(8):
            fcntl.ioctl(fd, sw.WDIOC_KEEPALIVE, array.array("i", [1]))
            time.sleep(0.1)
    finally:
        os.close(fd)
    slow = [ka for ka in watchdog.keepalives() if ka["slow"]]
    assert len(slow) == 1 and slow[0]["start_ns"] >= asked + 300000000, (asked, watchdog.keepalives())
    assert slow[0]["duration_ns"] >= 150000000


def test_dev_watchdog_in_a_private_namespace_leaves_the_host_dev_alone(watchdog, tmp_path):
    host_had_watchdog = os.path.lexists("/dev/watchdog")
    stage = tmp_path / "stage"
    stage.mkdir()
    script = ("exec 7>/dev/watchdog; echo opened; read line; "
              "grep -c . /dev/shm/.fleettrace_probe 2>/dev/null || true; echo $(cat /proc/self/mountinfo | grep -c ' /dev/watchdog ')")
    probe = "/dev/shm/.fleettrace_probe_%d" % os.getpid()
    with open(probe, "w") as handle:
        handle.write("host\n")
    inside = subprocess.Popen(["bash", sw.WITH_DEV_WATCHDOG, watchdog.device, str(stage), "bash", "-c",
                               script.replace("/dev/shm/.fleettrace_probe", probe)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, universal_newlines=True)
    try:
        assert inside.stdout.readline().strip() == "opened"
        # Seen from the host, as capture and proc_info see it: the path inside the namespace.
        assert os.readlink("/proc/%d/fd/7" % inside.pid) == "/dev/watchdog"
        assert _read("/proc/%d/cmdline" % inside.pid).startswith("bash\0-c\0")  # exec'ed: same pid
        assert os.readlink("/proc/%d/ns/mnt" % inside.pid) != os.readlink("/proc/self/ns/mnt")
        inside.stdin.write("go\n")
        inside.stdin.flush()
        out = inside.communicate(timeout=60)[0].split()
    finally:
        if inside.poll() is None:
            inside.kill()
            inside.wait()
        os.unlink(probe)
    assert inside.returncode == 0
    assert out == ["1", "1"], out  # the host's /dev/shm is shared; one watchdog bind mount
    assert os.path.lexists("/dev/watchdog") == host_had_watchdog
    assert sw.mounts_of(str(stage)) == []  # the namespace died with its last process
    assert os.listdir(str(stage)) == []
