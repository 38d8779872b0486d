"""A daemon running a binary or library replaced on disk (an upgrade without a restart) is still diagnosed.

The probe must go onto the code the process runs (its mapped, deleted inode,
through /proc/PID/map_files), not onto the new file at the path, which nothing
runs: before, diagnose reported threshold_not_reached with rc 0 while the
daemon logged its late ticks.  A probe that cannot fire in the target is now
refused before anything is armed, never reported as "no stall".  Every value is
checked against what the program itself measured.
"""

import json
import os
import re
import signal
import subprocess
import time

import pytest

from tests.helpers import replaced_programs as programs
from tests.helpers.armed import wait_armed
from tests.helpers.paths import REPO, ansible_env

THRESHOLD_MS = 300
STOP_SECONDS = 0.6
VENV_BIN = os.path.join(REPO, ".venv", "bin")


@pytest.fixture
def inventory(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    path = tmp_path / "inventory.ini"
    path.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n"
                    % os.path.join(VENV_BIN, "python"))
    return str(path)


def stall_once_armed(run_id, playbook, pid):
    """SIGSTOP ``pid`` for STOP_SECONDS once the run is armed; return the play's output."""
    try:
        assert wait_armed(run_id, playbook), "the run never armed: %s" % playbook.communicate(timeout=60)[0][-6000:]
        time.sleep(0.3)
        os.kill(pid, signal.SIGSTOP)
        time.sleep(STOP_SECONDS)
        os.kill(pid, signal.SIGCONT)
        out = playbook.communicate(timeout=600)[0]
    finally:
        if playbook.poll() is None:
            playbook.kill()
            playbook.wait()
    assert playbook.returncode == 0, out[-6000:]
    return out


def start_playbook(args):
    return subprocess.Popen([os.path.join(VENV_BIN, "ansible-playbook")] + args, cwd=REPO, env=ansible_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)


def test_replaced_library_is_probed_where_it_is_mapped(tmp_path, cc, run_token, inventory):
    main, library, upgraded = programs.build_gap_loop(cc, tmp_path)
    loop = programs.GapLoop(main, tmp_path / "gaps.txt")
    try:
        programs.replace(library, upgraded)
        with open("/proc/%d/maps" % loop.pid) as handle:
            assert "%s (deleted)" % library in handle.read()
        run_id = "%s_lib" % run_token
        play = tmp_path / "play.yml"
        play.write_text(json.dumps([{"hosts": "all", "gather_facts": False, "tasks": [{
            "name": "Trace the loop until a gap passes the threshold",
            "ansible.builtin.include_role": {"name": "fleettrace.tracefs.threshold_capture"},
            "vars": {"threshold_capture_target_pid": loop.pid, "threshold_capture_binary": library,
                     "threshold_capture_probe_spec": "report_gap gap", "threshold_capture_field": "gap",
                     "threshold_capture_threshold": THRESHOLD_MS * 1000000, "threshold_capture_timeout": 60,
                     "threshold_capture_latency_seconds": 0, "threshold_capture_run_id": run_id,
                     "threshold_capture_results_dir": str(tmp_path / "results")}}]}]))
        stall_once_armed(run_id, start_playbook(["-i", inventory, str(play)]), loop.pid)
    finally:
        loop.stop()
    with open(str(tmp_path / "results" / "localhost.json")) as handle:
        host = json.load(handle)
    assert host["status"] == "threshold_reached", host["message"]
    mapped = host["probe"]["mapped"]
    assert mapped["replaced"] is True and mapped["deleted"] is True and mapped["path"] == library
    assert re.match(r"^/proc/%d/map_files/[0-9a-f]+-[0-9a-f]+$" % loop.pid, mapped["probe_path"]), mapped
    assert mapped["build_id"] != mapped["disk_build_id"]
    assert all(" %s:0x" % mapped["probe_path"] in line for line in host["probe"]["definitions"])
    finding = host["findings"][0]
    assert finding["cause"] == "stopped", finding["explanation"]
    # The traced gap is one the loop measured itself, and it covers the stop.
    assert finding["value"] in loop.gaps() and finding["value"] >= STOP_SECONDS * 1e9


def test_replaced_daemon_binary_is_diagnosed(tmp_path, cc, run_token, inventory):
    daemon_path = str(tmp_path / "corosync")
    programs.build_demo(cc, daemon_path)
    with open(str(tmp_path / "daemon.log"), "w") as log:
        daemon = subprocess.Popen([daemon_path, str(tmp_path / "heartbeat.log"), "50", str(THRESHOLD_MS)], stderr=log)
    try:
        programs.replace(daemon_path, programs.build_demo(cc, str(tmp_path / "corosync.new"), optimize="-O1"))
        assert os.readlink("/proc/%d/exe" % daemon.pid) == daemon_path + " (deleted)"
        run_id = "%s_exe" % run_token
        stall_once_armed(run_id, start_playbook([
            "-i", inventory, os.path.join(REPO, "playbooks", "diagnose-corosync.yml"), "-e", json.dumps({
                "diagnose_corosync_binary": daemon_path, "diagnose_threshold_ms": THRESHOLD_MS, "diagnose_timeout": 60,
                "diagnose_results_dir": str(tmp_path / "results"), "diagnose_run_id": run_id,
                "threshold_capture_latency_seconds": 0})]), daemon.pid)
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
    with open(str(tmp_path / "results" / ("corosync-%s" % run_id) / "summary.json")) as handle:
        host = json.load(handle)["hosts"][0]
    assert host["status"] == "threshold_reached", host["message"]
    assert host["probe"]["mapped"]["replaced"] is True, host["probe"]
    stall = host["findings"][0]
    # Runtime truth: the traced tv_diff is a delay the daemon itself logged.
    with open(str(tmp_path / "daemon.log")) as handle:
        logged = [float(ms) for ms in re.findall(r"not scheduled for ([0-9.]+) ms", handle.read())]
    assert any(abs(ms - stall["value"] / 1e6) < 0.001 for ms in logged), (stall["value"], logged)
    assert stall["cause"] == "stopped" and stall["value"] >= STOP_SECONDS * 1e9


def test_probe_that_cannot_fire_is_refused_not_reported_as_no_stall(tmp_path, cc, run_token, run_playbook):
    """A probe put on the new file (no pid given to uprobe) cannot fire in the loop: capture refuses to wait."""
    main, library, upgraded = programs.build_gap_loop(cc, tmp_path)
    loop = programs.GapLoop(main, tmp_path / "gaps.txt")
    name = "fleettrace_%s_repl" % run_token
    try:
        programs.replace(library, upgraded)
        result = run_playbook(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [{"block": [
            {"name": "Probe the file on disk", "fleettrace.tracefs.uprobe": {
                "binary": library, "spec": "report_gap gap", "group": name, "event": "gap"}},
            {"name": "Instance", "fleettrace.tracefs.instance": {"name": name, "event_pids": [loop.pid]}},
            {"name": "Enable", "fleettrace.tracefs.event": {"instance": name, "event": name + ":gap",
                                                            "enabled": True}},
            {"name": "Capture", "fleettrace.tracefs.capture": {
                "instance": name, "pid": loop.pid, "timeout": 30,
                "stop": {"events": [name + ":gap"], "field": "gap", "threshold": 1000}},
             "ignore_errors": True},
            {"name": "Probe with pid", "fleettrace.tracefs.uprobe": {
                "binary": library, "spec": "report_gap gap", "group": name, "event": "gap", "pid": loop.pid},
             "check_mode": True},
        ], "always": [
            {"name": "Remove the instance", "fleettrace.tracefs.instance": {"name": name, "state": "absent"}},
            {"name": "Remove the probe", "fleettrace.tracefs.uprobe": {"group": name, "event": "gap",
                                                                       "state": "absent"}},
        ]}]}]) + "\n")
    finally:
        loop.stop()
    assert result.rc == 0, result.stdout[-4000:]
    capture = result.task("Capture")
    assert capture["failed"], capture
    assert re.search(r"probe %s:gap cannot fire in the target: gap_main\[%d\] does not map %s .*Nothing was armed"
                     % (name, loop.pid, re.escape(library)), capture["msg"]), capture["msg"]
    # With pid, the same probe goes onto the mapped (deleted) library instead.
    planned = result.task("Probe with pid")
    assert planned["mapped"]["replaced"] is True
    assert planned["definitions"][0].split()[1].startswith("/proc/%d/map_files/" % loop.pid)
