"""A sentinel's life on the node when things happen to it: its deadline, its target restarting or
upgraded, its watcher killed, its spool full, a reboot, a second sentinel, new settings.

The target is the demo daemon (tests/programs/demo) with no watchdog; a stall of
exactly the test's length is SIGSTOP ... SIGCONT, which the daemon measures
itself (its "not scheduled for N ms" log line is the truth).  Each test arms
through the sentinel module (the whole cycle through the playbook is in
test_sentinel_watchdog.py) and ends with ``absent``, whatever happened.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from tests.helpers import sentinel as sh
from tests.helpers.paths import REPO

PERIOD_MS = 100
THRESHOLD_MS = 300
THRESHOLD_NS = THRESHOLD_MS * 1000000
SOURCE = os.path.join(REPO, "tests", "programs", "demo", "demo_daemon.c")


@pytest.fixture
def node(tmp_path, run_token, request):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    made = sh.Node(tmp_path, "%s_%s" % (run_token, request.node.name.split("_")[1][:8]))
    try:
        yield made
    finally:
        result = made.sentinel("absent")
        made.close()
        assert not result.get("failed"), result
        assert made.tracefs_names() == [] and made.watchers() == []


class Daemon:
    """The demo daemon at one path; ``start`` runs it again (a restart), its log is the truth."""

    def __init__(self, workdir, cc, binary=None):
        self.workdir = workdir
        self.cc = cc
        self.binary = binary or os.path.join(workdir, "bin", "demo_daemon")
        self.procs = []
        os.makedirs(os.path.dirname(self.binary), exist_ok=True)

    def build(self, *flags):
        """Compile into a new file and rename it over the path: a new inode, as a package upgrade does."""
        fresh = self.binary + ".new"
        subprocess.run([self.cc, "-g"] + list(flags or ["-O2"]) + ["-o", fresh, SOURCE], check=True)
        os.rename(fresh, self.binary)

    def reinstall(self):
        """The same build copied to a new inode (a reinstalled package)."""
        shutil.copy2(self.binary, self.binary + ".new")
        os.rename(self.binary + ".new", self.binary)

    def start(self):
        log = open(os.path.join(self.workdir, "daemon-%d.log" % len(self.procs)), "w")
        proc = subprocess.Popen([self.binary, os.path.join(self.workdir, "heartbeat.log"), str(PERIOD_MS),
                                 str(THRESHOLD_MS)], stderr=log)
        log.close()
        self.procs.append(proc)
        time.sleep(0.3)
        return proc

    def delays(self):
        found = []
        for index in range(len(self.procs)):
            with open(os.path.join(self.workdir, "daemon-%d.log" % index)) as handle:
                found += [float(ms) for ms in re.findall(r"not scheduled for ([0-9.]+) ms", handle.read())]
        return found

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)


@pytest.fixture
def daemon(tmp_path, cc):
    made = Daemon(str(tmp_path / "daemon"), cc)
    made.build()
    try:
        yield made
    finally:
        made.stop()


def pick_spec(node, binary):
    """The first probe-able line after 'tv_diff = ', as diagnose-corosync.yml's presets pick it."""
    lines = node.module("fleettrace.tracefs.probe_info", {"binary": binary,
                                                          "function": "timer_function_scheduler_timeout"})["lines"]
    anchor = [line["line"] for line in lines if line.get("source") and "tv_diff = " in line["source"]][0]
    picked = [line for line in lines if line["probeable"] and line["line"] > anchor][0]
    return "timer_function_scheduler_timeout:%d tv_diff=tv_diff:u64" % picked["relative_line"]


def arm(node, daemon, proc, **more):
    definitions, build_id = node.resolve(daemon.binary, pick_spec(node, daemon.binary))
    args = dict(pid=proc.pid, binary=daemon.binary, definitions=definitions, build_id=build_id,
                threshold=THRESHOLD_NS, latency_seconds=0)
    args.update(more)
    result = node.sentinel("armed", **args)
    assert not result.get("failed") and result["changed"], result
    return result


def stall(node, proc, seconds, captures):
    """SIGSTOP the target for ``seconds``, then wait until the sentinel has ``captures`` captures."""
    sh.sigstop_for(proc.pid, seconds)
    sh.wait_for(lambda: node.state().get("captures_total", 0) >= captures, 60, 0.2, "capture %d" % captures)


def collected(node, **more):
    result = node.sentinel("collected", **more)
    assert not result.get("failed"), result
    return result["result"]


def test_deadline_expiry_ends_the_sentinel_and_removes_everything(node, daemon):
    proc = daemon.start()
    armed = arm(node, daemon, proc, duration=20)
    watcher = armed["watcher"]["pid"]
    stall(node, proc, 0.5, 1)
    # Nobody comes back: at its deadline the node restores itself.
    sh.wait_for(lambda: not sh.alive(watcher), 120, 0.5, "the watcher ending at its deadline")
    assert node.tracefs_names() == []
    assert not os.path.exists("/run/fleettrace/runs/%s.json" % node.tag)
    doc = collected(node)
    assert doc["sentinel"]["status"] == "deadline_passed" and not doc["sentinel"]["alive"], doc["sentinel"]
    assert doc["sentinel"]["ended_by"]["at"] - doc["sentinel"]["armed_since"] == pytest.approx(20, abs=5)
    assert len(doc["findings"]) == 1 and doc["status"] == "threshold_reached"
    assert not sh.alive(doc["sentinel"]["reaper"]["pid"])


def test_target_restart_is_followed_and_a_new_build_ends_the_sentinel(node, daemon):
    first = daemon.start()
    arm(node, daemon, first, follow_seconds=60)
    stall(node, first, 0.5, 1)
    # Restarted (pacemaker does this to corosync): the same file, a new pid.
    first.terminate()
    first.wait(timeout=30)
    second = daemon.start()
    sh.wait_for(lambda: node.state().get("target", {}).get("pid") == second.pid, 30, 0.2, "following the restart")
    stall(node, second, 0.6, 2)
    # Reinstalled (same build-id, new inode): the probe is placed on the new file.
    daemon.reinstall()
    second.terminate()
    second.wait(timeout=30)
    third = daemon.start()
    sh.wait_for(lambda: node.state().get("target", {}).get("pid") == third.pid, 30, 0.2, "following the reinstall")
    stall(node, third, 0.7, 3)
    # Upgraded (another build at the same path): the probe's offset is stale; the sentinel stops and says so.
    daemon.build("-O1")
    third.terminate()
    third.wait(timeout=30)
    fourth = daemon.start()
    sh.wait_for(lambda: node.state().get("status") == "binary_replaced", 30, 0.2, "binary_replaced")
    assert node.tracefs_names() == [] and node.watchers() == []
    sh.sigstop_for(fourth.pid, 0.5)     # never captured: no probe on the new build

    doc = collected(node)
    sentinel = doc["sentinel"]
    assert sentinel["status"] == "binary_replaced", sentinel
    assert "build-id" in sentinel["ended_by"]["message"], sentinel["ended_by"]
    assert [p["pid"] for p in sentinel["target_pids"]] == [first.pid, second.pid, third.pid]
    assert [f["pid"] for f in doc["findings"]] == [first.pid, second.pid, third.pid]
    delays = daemon.delays()
    for finding in doc["findings"]:
        assert finding["cause"] == "stopped"
        nearest = min(delays, key=lambda ms: abs(ms - finding["duration_ms"]))
        assert abs(nearest - finding["duration_ms"]) <= 0.05 * nearest, (finding["duration_ms"], delays)
    assert any("reinstalled" in line for line in sentinel["log"]), sentinel["log"]


def test_watcher_sigkill_restores_the_node_and_keeps_the_spool(node, daemon):
    proc = daemon.start()
    armed = arm(node, daemon, proc)
    stall(node, proc, 0.5, 1)
    os.kill(armed["watcher"]["pid"], signal.SIGKILL)
    # Its reaper removes the probe and the instances at once (lease 0), long before the deadline.
    sh.wait_for(lambda: node.tracefs_names() == [], 30, 0.2, "the reaper removing the objects")
    doc = collected(node)
    assert doc["sentinel"]["status"] == "watcher_killed" and doc["sentinel"]["ended"], doc["sentinel"]
    assert len(doc["findings"]) == 1 and doc["findings"][0]["pid"] == proc.pid
    assert os.path.exists(os.path.join(node.spool, "captures", "0001.json"))


def test_simulated_reboot_reports_ended_by_reboot_with_the_spool_intact(node, daemon, tmp_path):
    proc = daemon.start()
    armed = arm(node, daemon, proc)
    stall(node, proc, 0.5, 1)
    # The reboot: the watcher and its pair of reapers vanish at once (nothing restores the node then
    # but the next fleettrace call, as after a real reboot nothing is left to restore).
    with open("/run/fleettrace/runs/%s.json" % node.tag) as handle:
        reapers = [r["pid"] for r in json.load(handle)["reapers"]]
    assert len(reapers) == 2
    for pid in reapers + [armed["watcher"]["pid"]]:
        os.kill(pid, signal.SIGKILL)
    sh.wait_for(lambda: not any(sh.alive(pid) for pid in reapers + [armed["watcher"]["pid"]]), 10, 0.1, "all gone")
    assert node.tracefs_names()     # nothing removed them yet
    other_boot = tmp_path / "boot_id"
    other_boot.write_text("00000000-0000-4000-8000-000000000000\n")
    doc = collected(node, boot_id_path=str(other_boot))     # its first step reaps the dead run's objects
    assert node.tracefs_names() == []
    assert doc["sentinel"]["status"] == "ended_by_reboot", doc["sentinel"]
    assert "rebooted" in doc["sentinel"]["ended_by"]["message"]
    assert len(doc["findings"]) == 1 and doc["status"] == "threshold_reached"
    # The same boot: the same dead watcher is "killed", not a reboot.
    assert collected(node)["sentinel"]["status"] == "watcher_killed"


def test_full_spool_keeps_the_first_and_the_longest_and_says_what_it_dropped(node, daemon):
    proc = daemon.start()
    arm(node, daemon, proc, max_captures=4, spool_max_kb=48, max_events=200)
    for index, seconds in enumerate((0.45, 0.9, 0.5, 0.65), 1):
        stall(node, proc, seconds, index)
        time.sleep(1.0)
    doc = collected(node)
    sentinel = doc["sentinel"]
    kept = doc["captures"]
    assert sentinel["captures"] == 4 and sentinel["dropped_total"] == 4 - len(kept) >= 1, sentinel
    ids = [c["id"] for c in kept]
    assert 1 in ids and 2 in ids, kept           # the first, and the longest (0.9 s)
    assert sum(c["bytes"] for c in kept) <= 48 * 1024
    for gone in sentinel["dropped"]:
        assert gone["id"] in (3, 4) and gone["summary"] and gone["duration_ms"] and "spool over" in gone["why"]
        assert not os.path.exists(gone["file"])
    assert any("dropped" in line for line in sentinel["log"])


def test_second_sentinel_refused_unless_forced_and_new_settings_replace(node, daemon, tmp_path, run_token):
    proc = daemon.start()
    first = arm(node, daemon, proc)
    assert not node.sentinel("armed", check=True, **_same(node, daemon, proc)).get("failed")
    again = node.sentinel("armed", **_same(node, daemon, proc))
    assert not again["changed"] and again["watcher"]["pid"] == first["watcher"]["pid"], again
    (tmp_path / "second").mkdir()
    second = sh.Node(tmp_path / "second", "%s_2nd" % run_token)
    second.spool_root = node.spool_root      # the same node: the refusal looks at every label there
    try:
        refused = second.sentinel("armed", **_same(node, daemon, proc))
        assert refused.get("failed") and "already watches" in refused["msg"] and node.label in refused["msg"], \
            {k: v for k, v in refused.items() if k != "invocation"}
        assert second.tracefs_names() == []
        forced = second.sentinel("armed", force=True, **_same(node, daemon, proc))
        assert not forced.get("failed") and forced["changed"], forced
    finally:
        assert not second.sentinel("absent").get("failed")
        second.close()
    # Other settings: the old watcher is stopped, a new one watches with them.
    replaced = node.sentinel("armed", **dict(_same(node, daemon, proc), threshold=THRESHOLD_NS * 2))
    assert replaced["changed"] and replaced["watcher"]["pid"] != first["watcher"]["pid"], replaced
    assert not sh.alive(first["watcher"]["pid"]) and replaced["replaced"] == "stopped"
    assert node.session()["settings"]["threshold"] == THRESHOLD_NS * 2


def _same(node, daemon, proc):
    definitions = node.session()["settings"]["definitions"]
    return dict(pid=proc.pid, binary=daemon.binary, definitions=definitions,
                build_id=node.session()["settings"]["build_id"], threshold=THRESHOLD_NS, latency_seconds=0)


def test_cleanup_lists_a_live_sentinel_and_stops_it_only_when_forced(node, daemon):
    proc = daemon.start()
    armed = arm(node, daemon, proc)
    listed = node.module("fleettrace.tracefs.cleanup", {})
    mine = [s for s in listed["sentinels"] if s["tag"] == node.tag]
    assert mine and mine[0]["alive"] and mine[0]["label"] == node.label and mine[0]["watcher"] == armed["watcher"]["pid"]
    assert sh.alive(armed["watcher"]["pid"]) and node.tracefs_names()     # left alone
    forced = node.module("fleettrace.tracefs.cleanup", {"force": [node.tag]})
    assert not forced.get("failed") and forced["changed"], forced
    assert [s["stopped"] for s in forced["sentinels"] if s["tag"] == node.tag] == ["stopped"]
    assert node.tracefs_names() == [] and not sh.alive(armed["watcher"]["pid"])
    doc = collected(node)
    assert doc["sentinel"]["status"] == "disarmed" and os.path.isdir(node.spool), doc["sentinel"]
