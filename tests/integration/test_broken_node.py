"""The finding survives a broken node: /run/fleettrace read-only or full while armed (issue 22, 5).

The diagnose play runs in a mount namespace of its own, where /run/fleettrace is a small tmpfs
that the test makes read-only (or fills) once the run is armed; the rest of the machine and the
other runs on it never see it. The capture still catches the daemon's stall, the host's result
and the summary are written on the controller, every tracefs object goes, and the run's reapers
live through the broken /run and delete the manifest once it can be written again.
"""

import json
import os
import signal
import subprocess
import time

import pytest

from tests.helpers.armed import is_armed
from tests.helpers.paths import REPO, ansible_env

# Run alone, after the parallel part (scripts/test.sh): its plays run under a remounted /run/fleettrace while others arm; timing-sensitive.
pytestmark = pytest.mark.serial

TRACEFS = "/sys/kernel/tracing"
RUNS = "/run/fleettrace"
SHELL = """
set -e
mkdir -p {runs}
mount -t tmpfs -o size=512k,mode=0755 fleettrace-broken-node-test {runs}
echo mounted
exec "$@"
"""


def ours(run_id):
    start = "fleettrace_%s_" % run_id
    instances = [n for n in os.listdir(os.path.join(TRACEFS, "instances")) if n.startswith(start)]
    with open(os.path.join(TRACEFS, "uprobe_events")) as handle:
        probes = [line for line in handle.read().splitlines() if start in line]
    return instances, probes


def in_namespace(pid, *command, check=True):
    return subprocess.run(["nsenter", "-t", str(pid), "-m", "--"] + list(command), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, check=check, timeout=60)


def reapers_in(namespace):
    """The reapers whose /run/fleettrace is the test's (they share the play's mount namespace)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/comm" % entry) as handle:
                if handle.read().strip() != "fleettrace-reap":
                    continue
            if os.readlink("/proc/%s/ns/mnt" % entry) == namespace:
                found.append(int(entry))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("breakage", ["read-only", "full"])
def test_the_finding_survives_a_broken_run_directory(breakage, demo_daemon, tmp_path, run_token):
    if not os.path.exists("/usr/bin/nsenter") and not os.path.exists("/bin/nsenter"):
        pytest.skip("needs nsenter (util-linux)")
    demo_daemon.start(period_ms=100, threshold_ms=400)
    run_id = "%s_broken_%s" % (run_token, breakage.replace("-", "_"))
    results = tmp_path / "results"
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n"
                         % os.path.join(REPO, ".venv", "bin", "python"))
    play = [os.path.join(REPO, ".venv", "bin", "ansible-playbook"), "-i", str(inventory),
            os.path.join(REPO, "playbooks", "diagnose-corosync.yml"),
            "-e", json.dumps({"diagnose_corosync_binary": demo_daemon.binary, "diagnose_threshold_ms": 400,
                              "diagnose_timeout": 120, "diagnose_results_dir": str(results),
                              "diagnose_run_id": run_id, "diagnose_report": False})]
    log = open(str(tmp_path / "play.log"), "w")
    playbook = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", SHELL.format(runs=RUNS),
                                 "sh"] + play, cwd=REPO, env=ansible_env(), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    namespace = None
    try:
        deadline = time.time() + 300
        while not is_armed(run_id) and playbook.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        # The play's exit status too: once (1 of 5 full runs) it ended silently before arming; a negative one is a signal.
        assert is_armed(run_id), "play ended with %s before arming:\n%s" % (
            playbook.poll(), open(str(tmp_path / "play.log")).read()[-3000:])
        namespace = os.readlink("/proc/%d/ns/mnt" % playbook.pid)
        assert namespace != os.readlink("/proc/self/ns/mnt")
        if breakage == "read-only":
            in_namespace(playbook.pid, "mount", "-o", "remount,ro", RUNS)
        else:
            in_namespace(playbook.pid, "sh", "-c", "dd if=/dev/zero of=%s/fill bs=4k 2>/dev/null; true" % RUNS)
            assert in_namespace(playbook.pid, "stat", "-f", "-c", "%a", RUNS).stdout.strip() == "0"   # no block free
        demo_daemon.inject_faults(freeze_ms=1000, pause_ms=2000)
        assert playbook.wait(timeout=600) == 0, open(str(tmp_path / "play.log")).read()[-3000:]
        run_dir = results / ("corosync-%s" % run_id)
        host = json.loads((run_dir / "localhost.json").read_text())
        assert host["threshold_reached"] is True, (host["status"], host["message"])
        stall = host["findings"][0]
        assert stall["state"] == "D" and stall["file"] == demo_daemon.heartbeat, stall
        assert any(abs(ms - stall["value"] / 1e6) < 0.001 for ms in demo_daemon.late_ticks_ms())
        assert json.loads((run_dir / "summary.json").read_text())["hosts"][0]["threshold_reached"] is True
        assert ours(run_id) == ([], []), "left in tracefs: %s" % (ours(run_id),)
        # The manifest could not be deleted: its reapers still run (the namespace lives with them) ...
        reapers = reapers_in(namespace)
        listing = in_namespace(reapers[0], "ls", "%s/runs" % RUNS).stdout if reapers else ""
        if breakage == "read-only":
            assert reapers and "fleettrace_%s_" % run_id in listing, (reapers, listing)
            # ... and delete it once /run can be written again.
            in_namespace(reapers[0], "mount", "-o", "remount,rw", RUNS)
        elif reapers:
            in_namespace(reapers[0], "rm", "-f", "%s/fill" % RUNS)
        waited = time.time() + 120
        while reapers and any(os.path.exists("/proc/%d" % pid) for pid in reapers):
            assert time.time() < waited, "the reapers never deleted the manifest: %s" % in_namespace(
                reapers[0], "ls", "-la", "%s/runs" % RUNS, check=False).stdout
            time.sleep(0.2)
    finally:
        log.close()
        if playbook.poll() is None:
            os.killpg(playbook.pid, signal.SIGKILL)
            playbook.wait()
        for pid in reapers_in(namespace) if namespace else []:
            os.kill(pid, signal.SIGKILL)        # the test failed: no reaper of ours outlives it
        if ours(run_id) != ([], []):
            subprocess.run([os.path.join(REPO, ".venv", "bin", "ansible"), "localhost", "-m",
                            "fleettrace.tracefs.cleanup", "-a", "name_contains=%s" % run_id], cwd=REPO,
                           env=ansible_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
