"""The sentinel's whole cycle on the talk's incident: arm, leave, the stall comes unannounced, collect, disarm.

The demo daemon (tests/programs/demo) tickles the slow watchdog (FUSE) after every
100 ms tick.  sentinel-corosync.yml arms a sentinel on it and exits; the test
then holds one keepalive at a random time 1-1.7 minutes later, and another one
20-40 s after that, never telling the sentinel.  The node must have caught both
by itself, as accurately as the diagnose workflow: the stall's length within 5 %
of what the daemon measured itself, the S state in the FUSE wait, the ioctl
decoded, and the culprit's latency measured afterwards against the watchdog's
own log.  ``absent`` must leave tracefs and the process table as they were.
"""

import json
import os
import re
import subprocess

import pytest

from tests.helpers import sentinel as sh
from tests.helpers import slow_watchdog as sw
from tests.helpers import tracefs_state
from tests.helpers.paths import REPO

PERIOD_MS = 100
THRESHOLD_MS = 400
HELD_MS = (700, 900)
LATENCY_S = 180
CLOCK_RESOLUTION_NS = 1000


@pytest.fixture(autouse=True)
def _no_mount_left(mount_leak_check):
    yield


@pytest.fixture
def watchdog_binary(tmp_path, cc):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    reason = sw.fuse_unavailable()
    if reason:
        pytest.skip(reason)
    return sw.build(cc, tmp_path)


def _logged_delays(path):
    with open(path) as handle:
        return [float(ms) for ms in re.findall(r"not scheduled for ([0-9.]+) ms", handle.read())]


def test_sentinel_catches_unannounced_stalls_after_the_play_left(tmp_path, run_token, watchdog_binary, cc, tracefs):
    demo = str(tmp_path / "demo_daemon")
    subprocess.run([cc, "-g", "-O2", "-o", demo, os.path.join(REPO, "tests", "programs", "demo", "demo_daemon.c")],
                   check=True)
    node = sh.Node(tmp_path, "%s_fuse" % run_token)
    tracefs_before = tracefs_state.snapshot(tracefs)
    daemon = staller = None
    with sw.SlowWatchdog(watchdog_binary, tmp_path, "ft_%s" % run_token, delay_ms=0, every=0) as wd:
        try:
            daemon_log = str(tmp_path / "daemon.log")
            with open(daemon_log, "w") as log:
                daemon = subprocess.Popen([demo, str(tmp_path / "heartbeat.log"), str(PERIOD_MS), str(THRESHOLD_MS),
                                           wd.device], stderr=log)
            armed_vars = dict(diagnose_corosync_binary=demo, diagnose_threshold_ms=THRESHOLD_MS, sentinel_max_captures=2,
                              sentinel_latency_seconds=LATENCY_S, sentinel_token_timeout_ms=500)
            rc, out = node.play(**armed_vars)
            assert rc == 0, out[-5000:]
            # ansible-playbook has exited; the node owns the sentinel now.
            watchers = node.watchers()
            assert len(watchers) == 1, out[-3000:]
            watcher = watchers[0]
            with open("/proc/%d/stat" % watcher) as handle:
                assert int(handle.read().rsplit(")", 1)[1].split()[1]) != os.getpid()  # not the test's child
            assert {node.tag, node.tag + "_bell"} <= set(node.tracefs_names())
            assert node.state()["status"] == "armed" and node.state()["target"]["pid"] == daemon.pid

            # Armed again with the same settings: nothing changes.
            rc, out = node.play(**armed_vars)
            assert rc == 0, out[-5000:]
            assert re.search(r"TASK \[fleettrace.tracefs.sentinel : Arm the sentinel[^\n]*\n(ok|changed): ", out).group(1) == "ok"
            assert node.watchers() == [watcher]

            # Two keepalives held at times the sentinel is never told.
            staller = sh.Staller([(60, 100, lambda: wd.control(delay_ms=HELD_MS[0], hold=1)),
                                  (20, 40, lambda: wd.control(delay_ms=HELD_MS[1], hold=1))])
            staller.start()
            sh.wait_for(staller.done.is_set, 200, 1, "both stalls made")
            sh.wait_for(lambda: node.state().get("captures_total") == 2, 60, 0.5, "two captures")

            rc, out = node.play(sentinel_state="collected")
            assert rc == 0, out[-5000:]
            run_dir, summary = node.latest_results()
            keepalives = wd.keepalives()
            logged = _logged_delays(daemon_log)
            host = summary["hosts"][0]
            journal = node.syslog.lines()
            metric_captures, metric_last = node.metric("captures_total"), node.metric("last_stall_seconds")
        finally:
            if staller is not None:
                staller.stop.set()
            wd.try_control(enabled=0)
            rc, out_absent = node.play(sentinel_state="absent")
            if daemon is not None:
                daemon.terminate()
                daemon.wait(timeout=30)
            node.close()
    assert rc == 0, out_absent[-5000:]

    # What the sentinel saw, against the truth: the daemon's own delays and the watchdog's own log.
    assert host["status"] == "threshold_reached", host["message"]
    sentinel = host["sentinel"]
    assert sentinel["captures"] == 2 and sentinel["captures_kept"] == 2, sentinel
    assert sentinel["alive"] and sentinel["status"] == "measuring", sentinel   # max captures: measuring until its bound
    assert [p["pid"] for p in sentinel["target_pids"]] == [daemon.pid]
    assert sentinel["cost"]["cpu_seconds"] >= 0 and sentinel["cost"]["peak_rss_kb"] > 0
    assert len(host["findings"]) == 2
    held = [ka for ka in keepalives if ka["slow"]]
    assert [round(ka["duration_ns"] / 1e6, -1) for ka in held] == [float(ms) for ms in HELD_MS], held
    for finding, keepalive in zip(host["findings"], held):
        assert finding["cause"] == "blocked" and finding["state"] == "S", finding["explanation"]
        assert finding["syscall"]["short"] == "ioctl(fd 4 -> %s, WDIOC_KEEPALIVE)" % wd.device
        assert "request_wait_answer" in " ".join(finding["kernel_stack"]), finding["kernel_stack"]
        # The stall's length is the daemon's own number (its log), within 5 %.
        nearest = min(logged, key=lambda ms: abs(ms - finding["duration_ms"]))
        assert abs(finding["duration_ms"] - nearest) <= 0.05 * nearest, (finding["duration_ms"], logged)
        # ... and the sleep inside it is the keepalive the watchdog held (its own log), within 1 %.
        assert abs(finding["asleep_ns"] - keepalive["duration_ns"]) <= 0.01 * keepalive["duration_ns"], (finding, keepalive)
    assert host["guesses"] and {g["guess"] for g in host["guesses"]} >= {"overloaded host", "token timeout too low"}

    # The culprit call, measured since the first capture: every call timed is one keepalive the watchdog served.
    latency = host["culprit_latency"]
    assert latency["call"] == "ioctl" and latency["fd"] == 4 and latency["cmd"]["name"] == "WDIOC_KEEPALIVE", latency
    assert "fd == 4" in latency["kernel_filter"] and latency["measuring"], latency
    samples = latency["samples"]
    assert latency["count"] == len(samples) > 10, latency["count"]
    for sample in samples:
        inside = [ka for ka in keepalives if sample["start_ns"] <= ka["start_ns"]
                  and ka["end_ns"] <= sample["start_ns"] + sample["ns"] + CLOCK_RESOLUTION_NS]
        assert len(inside) == 1, (sample, inside)
    first, last = samples[0]["start_ns"], samples[-1]["start_ns"] + samples[-1]["ns"] + CLOCK_RESOLUTION_NS
    assert len([ka for ka in keepalives if first <= ka["start_ns"] and ka["end_ns"] <= last]) == latency["count"]
    # The second held keepalive came after the first capture: the histogram has it.
    assert latency["max_ms"] >= HELD_MS[1], latency["max_ms"]

    # One journal line per stall, and the node_exporter metric.
    stalls = [line for line in journal if "not scheduled for" in line]
    assert len(stalls) == 2, journal
    for line, finding in zip(stalls, host["findings"]):
        assert re.match(r"^<28>fleettrace: demo_daemon\[%d\] not scheduled for %d ms: S in ioctl\(fd 4 -> %s, "
                        r"WDIOC_KEEPALIVE\)$" % (daemon.pid, round(finding["duration_ms"]), re.escape(wd.device)), line), line
    assert metric_captures == 2
    assert abs(metric_last - host["findings"][1]["duration_ms"] / 1000.0) < 1e-3

    # The diagnose workflow's results: per host, summary and report.
    assert os.path.exists(os.path.join(run_dir, "localhost.json"))
    with open(os.path.join(run_dir, "summary.md")) as handle:
        text = handle.read()
    assert "stall 2: not scheduled for %.1f ms; S state in ioctl(fd 4 -> " % host["findings"][1]["duration_ms"] in text
    with open(os.path.join(run_dir, "report", "report.html")) as handle:
        assert "WDIOC_KEEPALIVE" in handle.read()

    # absent: collected once more, then nothing of the sentinel is left on the node.
    assert "disarmed: watcher stopped, spool removed" in out_absent, out_absent[-3000:]
    assert tracefs_state.diff_snapshots(tracefs_before, tracefs_state.snapshot(tracefs),
                                        only=lambda name: run_token in name) == []
    assert node.watchers() == [] and not sh.alive(watcher)
    reaper = sentinel["reaper"]
    assert reaper and not sh.alive(reaper["pid"])
    assert not os.path.exists(node.spool)
    assert not os.path.exists(os.path.join(node.textfile_dir, "fleettrace_sentinel_%s.prom" % node.label))
    with open(os.path.join(node.latest_results()[0], "localhost.json")) as handle:
        assert json.load(handle)["sentinel"]["status"] == "disarmed"
