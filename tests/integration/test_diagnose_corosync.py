"""diagnose-corosync.yml against a real corosync built from Debian's source, stalled for real.

A single-node corosync runs on loopback with its state directory on a
loop-mounted ext4.  Two stalls, both real:

- frozen file system: the test freezes that file system and asks corosync to
  dump its flight recorder there (corosync-cmapctl): corosync's main loop then
  blocks in D state (mnt_want_write -> percpu_rwsem_wait) and its
  scheduler-pause timer fires late, exactly the "not scheduled for N ms" of
  the story.
- the talk's own incident: corosync's watchdog service (exec/wd.c) tickles
  /dev/watchdog with WDIOC_KEEPALIVE from a main-loop timer every
  resources.watchdog_timeout / 2 seconds.  corosync runs in a private mount
  namespace where /dev/watchdog is the slow watchdog (FUSE,
  tests/programs/slow_watchdog); when a keepalive blocks past the threshold
  the loop sleeps in S state in request_wait_answer, as an IPMI watchdog held
  it in the talk.
"""

import json
import os
import re
import subprocess
import time

import pytest

from tests.helpers.paths import REPO, ansible_env
from tests.helpers import slow_watchdog as sw
from tests.helpers.corosync import TOKEN_MS, WATCHDOG_TIMEOUT_S, Corosync, watchdog_fd
from tests.helpers.armed import wait_armed
from tests.helpers.cgroup_freezer import CgroupFreezer, FreezerUnavailable

# Run alone, after the parallel part (scripts/test.sh): real corosync listens on the fixed UDP port 5405.
pytestmark = pytest.mark.serial

# A blocked keepalive longer than the threshold stalls the loop past it.
KEEPALIVE_DELAY_MS = 1500
# The trace's text timestamps have microseconds.
CLOCK_RESOLUTION_NS = 1000
# A cgroup freeze past the 800 ms threshold.
FREEZE_SECONDS = 2.0


@pytest.fixture(autouse=True)
def _no_mount_left(mount_leak_check):
    yield


@pytest.fixture
def corosync(corosync_prefix, tmp_path):
    node = Corosync(corosync_prefix, str(tmp_path / "corosync"))
    os.makedirs(node.workdir)
    try:
        node.start()
        yield node
    finally:
        node.stop()


def diagnose_command(corosync, tmp_path, run_id, results):
    """The user's command for this corosync on localhost, and the file its output goes to."""
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n"
                         % os.path.join(REPO, ".venv", "bin", "python"))
    cmd = [os.path.join(REPO, ".venv", "bin", "ansible-playbook"), "-i", str(inventory),
           os.path.join(REPO, "playbooks", "diagnose-corosync.yml"),
           "-e", json.dumps({"diagnose_corosync_binary": corosync.binary, "diagnose_timeout": 120,
                             "diagnose_results_dir": results, "diagnose_run_id": run_id})]
    return cmd, open(str(tmp_path / "playbook.log"), "w+")


def test_diagnose_corosync_explains_a_real_stall(corosync, tmp_path, run_token):
    run_id = "%s_corosync" % run_token
    results = str(tmp_path / "results")
    cmd, out = diagnose_command(corosync, tmp_path, run_id, results)
    playbook = subprocess.Popen(cmd, cwd=REPO, env=ansible_env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        armed = wait_armed(run_id, playbook)
        corosync.stall_repeatedly()
        playbook.wait(timeout=600)
    finally:
        if playbook.poll() is None:
            playbook.kill()
            playbook.wait()
        corosync.stop()
    out.seek(0)
    output = out.read()
    assert armed, "the playbook never armed tracing:\n" + output[-5000:]
    assert playbook.returncode == 0, output[-5000:]

    with open(os.path.join(results, "corosync-%s" % run_id, "summary.json")) as handle:
        summary = json.load(handle)
    host = summary["hosts"][0]
    assert host["host"] == "localhost"
    # The threshold came from the running corosync: 0.8 x runtime.config.totem.token.
    assert host["threshold"] == int(TOKEN_MS * 0.8 * 1000000)
    assert host["threshold_reached"] is True, host
    assert host["target"]["comm"] == "corosync" and host["target"]["policy"] == "SCHED_RR"
    stall = host["findings"][0]
    assert stall["state"] == "D", stall
    # Blocked by the frozen file system: on the freeze lock itself, or on writeback that cannot finish.
    assert any(frame.startswith(("percpu_rwsem_wait", "wb_wait_for_completion"))
               for frame in stall["kernel_stack"]), stall["kernel_stack"]
    assert stall["syscall"] is not None and stall["syscall"]["name"] in ("openat", "write"), stall["syscall"]
    assert stall["value"] >= host["threshold"]
    # Runtime truth: corosync itself logged this very delay (its %0.4f of a float).
    logged = [float(ms) for ms in re.findall(r"not scheduled \(@\d+\) for ([0-9.]+) ms", corosync.read_log())]
    assert any(abs(ms - stall["value"] / 1e6) < 0.05 for ms in logged), (stall["value"], logged)
    # The summary printed at the end of the play says the same.
    assert re.search(r"stall 1: not scheduled for [0-9.]+ ms; D state in (openat|write)\(", output), output[-3000:]


def test_diagnose_corosync_explains_a_cgroup_freezer_stall(corosync, tmp_path, run_token):
    """The issue's crash: corosync frozen by the cgroup freezer (a paused container, systemctl freeze).

    Its main loop leaves epoll_wait with -EINTR and sleeps in the freezer outside any system call:
    a finding with no call to measure, rc 0, and the freezer in the stack."""
    run_id = "%s_corosync_frz" % run_token
    results = str(tmp_path / "results")
    cmd, out = diagnose_command(corosync, tmp_path, run_id, results)
    try:
        freezer = CgroupFreezer("fleettrace_%s_freezer" % run_token)
    except FreezerUnavailable as why:
        pytest.skip(str(why))
    with freezer:
        freezer.add(corosync.proc.pid)
        playbook = subprocess.Popen(cmd, cwd=REPO, env=ansible_env(), stdout=out, stderr=subprocess.STDOUT)
        try:
            armed = wait_armed(run_id, playbook)
            # Frozen 2 s (past the 800 ms threshold), again until the capture has its stall.
            for _freeze in range(10):
                if playbook.poll() is not None:
                    break
                freezer.freeze_for(FREEZE_SECONDS)
                time.sleep(2)
            playbook.wait(timeout=600)
        finally:
            if playbook.poll() is None:
                playbook.kill()
                playbook.wait()
    out.seek(0)
    output = out.read()
    assert armed, "the playbook never armed tracing:\n" + output[-5000:]
    assert playbook.returncode == 0, output[-5000:]

    with open(os.path.join(results, "corosync-%s" % run_id, "summary.json")) as handle:
        host = json.load(handle)["hosts"][0]
    assert host["threshold_reached"] is True, host
    stall = host["findings"][0]
    # Asleep in the freezer, outside any system call: blocked, with nothing to measure afterwards.
    assert stall["cause"] == "blocked" and stall["state"] == freezer.state_letter, stall
    assert any(frame in stall["kernel_stack"] for frame in freezer.frames), stall["kernel_stack"]
    assert stall["syscall"] is None, stall["syscall"]
    assert host["culprit_latency"] is None, host["culprit_latency"]
    # As long as the freeze, and corosync's own log line says the same delay.
    assert (FREEZE_SECONDS - 0.2) * 1e9 <= stall["asleep_ns"] <= stall["value"], stall
    logged = [float(ms) for ms in re.findall(r"not scheduled \(@\d+\) for ([0-9.]+) ms", corosync.read_log())]
    assert any(abs(ms - stall["value"] / 1e6) < 0.05 for ms in logged), (stall["value"], logged)
    # Named as what it was, in the result and in the summary printed at the end of the play.
    assert stall["kernel_wait"].startswith("frozen by the cgroup freezer"), stall
    assert re.search(r"stall 1: not scheduled for [0-9.]+ ms; %s state, off CPU [0-9.]+ ms: frozen by the cgroup "
                     r"freezer" % freezer.state_letter, output), output[-3000:]


def test_diagnose_corosync_names_the_slow_watchdog(corosync_with_watchdog, slow_watchdog, tmp_path, run_token):
    corosync = corosync_with_watchdog
    pid = corosync.proc.pid
    # corosync really took the slow watchdog for its /dev/watchdog, in its namespace only.
    assert "Watchdog /dev/watchdog is now being tickled by corosync." in corosync.read_log(), corosync.read_log()
    assert os.readlink("/proc/%d/ns/mnt" % pid) != os.readlink("/proc/self/ns/mnt")
    wd_fd = watchdog_fd(pid)
    assert wd_fd is not None, os.listdir("/proc/%d/fd" % pid)
    driver_calls = {call["name"] for call in slow_watchdog.ioctls()}
    assert driver_calls >= {"WDIOC_GETSUPPORT", "WDIOC_GETTIMEOUT", "WDIOC_SETTIMEOUT", "WDIOC_SETOPTIONS"}
    assert slow_watchdog.state()["timeout_s"] == WATCHDOG_TIMEOUT_S

    run_id = "%s_corosync_wd" % run_token
    results = str(tmp_path / "results")
    cmd, out = diagnose_command(corosync, tmp_path, run_id, results)
    playbook = subprocess.Popen(cmd, cwd=REPO, env=ansible_env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        armed = wait_armed(run_id, playbook)
        # Every other keepalive now blocks 1.5 s: a stall every ~2 s, none before tracing was armed.
        slow_watchdog.control(delay_ms=KEEPALIVE_DELAY_MS, every=2)
        playbook.wait(timeout=600)
    finally:
        if playbook.poll() is None:
            playbook.kill()
            playbook.wait()
        slow_watchdog.try_control(enabled=0)
    out.seek(0)
    output = out.read()
    assert armed, "the playbook never armed tracing:\n" + output[-5000:]
    assert playbook.returncode == 0, output[-5000:]

    with open(os.path.join(results, "corosync-%s" % run_id, "summary.json")) as handle:
        host = json.load(handle)["hosts"][0]
    assert host["threshold"] == int(TOKEN_MS * 0.8 * 1000000)
    assert host["threshold_reached"] is True, host
    assert host["target"]["pid"] == pid and host["target"]["policy"] == "SCHED_RR"
    stall = host["findings"][0]
    # The stall length is corosync's own: its log line says the same number (within 1 %).
    logged = [float(ms) for ms in re.findall(r"not scheduled \(@\d+\) for ([0-9.]+) ms", corosync.read_log())]
    assert logged, corosync.read_log()[-3000:]
    nearest = min(logged, key=lambda ms: abs(ms - stall["value"] / 1e6))
    assert abs(nearest - stall["value"] / 1e6) <= 0.01 * nearest, (stall["value"], logged)
    # What held it, as it really was: a FUSE request waits interruptibly (S), in request_wait_answer.
    assert stall["cause"] == "blocked" and stall["state"] == "S", stall
    assert "request_wait_answer" in stall["kernel_stack"] and "fuse_do_ioctl" in stall["kernel_stack"], stall
    call = stall["syscall"]
    assert call["name"] == "ioctl" and call["fd"] == wd_fd and stall["fd"] == wd_fd, call
    # /proc/PID/fd read from the host names the file as corosync's namespace sees it.
    assert stall["file"] == "/dev/watchdog", stall
    assert int(call["ioctl"]["cmd"], 16) == sw.WDIOC_KEEPALIVE and call["ioctl"]["name"] == "WDIOC_KEEPALIVE", call
    decoded = "ioctl(fd %d -> /dev/watchdog, WDIOC_KEEPALIVE)" % wd_fd
    assert call["short"] == decoded, call
    assert "not scheduled for %.1f ms; S state in %s" % (stall["value"] / 1e6, decoded) in output, output[-4000:]
    # The slow watchdog's own log has the keepalive that held it: corosync's, as long as the sleep (1 %).
    held = [ka for ka in slow_watchdog.keepalives() if ka["slow"]]
    assert held and all(ka["pid"] == pid for ka in slow_watchdog.keepalives()), slow_watchdog.keepalives()
    nearest = min(held, key=lambda ka: abs(ka["duration_ns"] - stall["asleep_ns"]))
    assert abs(stall["asleep_ns"] - nearest["duration_ns"]) <= 0.01 * nearest["duration_ns"], (stall, nearest)
    assert stall["asleep_ns"] < stall["value"]

    # The culprit's latency, measured afterwards on that fd, is the watchdog's own: every call
    # traced is one keepalive the daemon served (same clock: CLOCK_MONOTONIC), none missed between.
    measured = host["culprit_latency"]
    assert measured["call"] == "ioctl" and measured["fd"] == wd_fd and measured["trace_clock"] == "mono", measured
    samples = measured["samples"]
    assert measured["count"] == len(samples) > 0, measured
    served = slow_watchdog.keepalives()
    for sample in samples:
        inside = [ka for ka in served if sample["start_ns"] <= ka["start_ns"]
                  and ka["end_ns"] <= sample["start_ns"] + sample["ns"] + CLOCK_RESOLUTION_NS]
        assert len(inside) == 1, (sample, served)
        if inside[0]["slow"]:
            assert sample["ns"] <= 1.01 * inside[0]["duration_ns"], (sample, inside[0])
    first, last = samples[0]["start_ns"], samples[-1]["start_ns"] + samples[-1]["ns"] + CLOCK_RESOLUTION_NS
    assert len([ka for ka in served if first <= ka["start_ns"] and ka["end_ns"] <= last]) == len(samples)
