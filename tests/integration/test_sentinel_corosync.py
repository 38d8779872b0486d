"""sentinel-corosync.yml on a real corosync with its watchdog service: the talk's incident, caught unattended.

corosync 3.1.7 built from Debian's source (scripts/build-corosync.sh) runs one
node on 127.0.0.1, its /dev/watchdog the slow watchdog (FUSE) in a private mount
namespace (tests/helpers/corosync.py).  The playbook arms a sentinel with the
diagnose workflow's probe line and threshold (0.8 x the running corosync's
token) and exits.  One keepalive is then held for 1.5 s at a time the sentinel
is not told (1 to 2 minutes later).  ``collected`` must name the ioctl on
/dev/watchdog in state S with corosync's own stall length (its log line,
within 5 %), and ``absent`` must leave the node as it was.
"""

import json
import os
import re

import pytest

from tests.helpers import sentinel as sh
from tests.helpers import tracefs_state
from tests.helpers.corosync import TOKEN_MS, watchdog_fd

# Run alone, after the parallel part (scripts/test.sh): real corosync listens on the fixed UDP port 5405.
pytestmark = pytest.mark.serial

HELD_MS = 1500


@pytest.fixture(autouse=True)
def _no_mount_left(mount_leak_check):
    yield


def test_sentinel_catches_corosyncs_slow_keepalive_unattended(corosync_with_watchdog, slow_watchdog, tmp_path,
                                                              run_token, tracefs):
    corosync = corosync_with_watchdog
    pid = corosync.proc.pid
    wd_fd = watchdog_fd(pid)
    node = sh.Node(tmp_path, "%s_coro" % run_token)
    before = tracefs_state.snapshot(tracefs)
    staller = None
    try:
        rc, out = node.play(diagnose_corosync_binary=corosync.binary, sentinel_max_captures=1,
                            sentinel_latency_seconds=60)
        assert rc == 0, out[-5000:]
        assert len(node.watchers()) == 1 and node.state()["target"]["pid"] == pid
        assert node.session()["settings"]["threshold"] == int(TOKEN_MS * 0.8 * 1000000)
        slow_watchdog.control(delay_ms=HELD_MS, every=0)
        staller = sh.Staller([(60, 120, lambda: slow_watchdog.control(hold=1))])
        staller.start()
        sh.wait_for(staller.done.is_set, 200, 1, "the held keepalive")
        sh.wait_for(lambda: node.state().get("captures_total") == 1, 60, 0.5, "the capture")
        rc, out = node.play(sentinel_state="collected")
        assert rc == 0, out[-5000:]
        _run_dir, summary = node.latest_results()
        journal = node.syslog.lines()
    finally:
        if staller is not None:
            staller.stop.set()
        slow_watchdog.try_control(enabled=0)
        rc_absent, out_absent = node.play(sentinel_state="absent")
        node.close()
    assert rc_absent == 0, out_absent[-5000:]

    host = summary["hosts"][0]
    assert host["status"] == "threshold_reached" and host["target"]["pid"] == pid, host["message"]
    assert host["target"]["policy"] == "SCHED_RR"
    stall = host["findings"][0]
    # corosync's own number: its log line says the same stall (within 5 %).
    logged = [float(ms) for ms in re.findall(r"not scheduled \(@\d+\) for ([0-9.]+) ms", corosync.read_log())]
    assert logged, corosync.read_log()[-3000:]
    nearest = min(logged, key=lambda ms: abs(ms - stall["duration_ms"]))
    assert abs(nearest - stall["duration_ms"]) <= 0.05 * nearest, (stall["duration_ms"], logged)
    assert stall["cause"] == "blocked" and stall["state"] == "S", json.dumps(stall, indent=1)[:6000]
    assert "request_wait_answer" in stall["kernel_stack"], stall["kernel_stack"]
    assert stall["syscall"]["short"] == "ioctl(fd %d -> /dev/watchdog, WDIOC_KEEPALIVE)" % wd_fd, stall["syscall"]
    held = [ka for ka in slow_watchdog.keepalives() if ka["slow"]]
    assert len(held) == 1 and abs(stall["asleep_ns"] - held[0]["duration_ns"]) <= 0.01 * held[0]["duration_ns"]
    assert [line for line in journal if "not scheduled" in line] == [
        "<28>fleettrace: corosync[%d] not scheduled for %d ms: S in ioctl(fd %d -> /dev/watchdog, WDIOC_KEEPALIVE)"
        % (pid, round(stall["duration_ms"]), wd_fd)]
    guesses = {g["guess"]: g for g in host["guesses"]}
    assert guesses["token timeout too low"]["ruled_out"] is True and "%d ms" % TOKEN_MS in guesses["token timeout too low"]["seen"]
    latency = host["culprit_latency"]
    assert latency["fd"] == wd_fd and latency["cmd"]["name"] == "WDIOC_KEEPALIVE" and latency["count"] >= 1, latency
    for sample in latency["samples"]:
        inside = [ka for ka in slow_watchdog.keepalives() if sample["start_ns"] <= ka["start_ns"]
                  and ka["end_ns"] <= sample["start_ns"] + sample["ns"] + 1000]
        assert len(inside) == 1, (sample, inside)
    assert host["sentinel"]["status"] == "measuring" and host["sentinel"]["captures"] == 1
    # absent: the node as it was.
    assert tracefs_state.diff_snapshots(before, tracefs_state.snapshot(tracefs), only=lambda n: run_token in n) == []
    assert node.watchers() == [] and not os.path.exists(node.spool)
