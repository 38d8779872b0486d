"""A diagnose run killed half-way leaves tracefs objects behind; cleanup.yml removes them all."""

import json
import os
import signal
import subprocess
import time

import pytest

from tests.helpers.paths import REPO, ansible_env
from tests.helpers.armed import is_armed

TRACEFS = "/sys/kernel/tracing"


def leftovers(run_id):
    instances = [n for n in os.listdir(os.path.join(TRACEFS, "instances")) if run_id in n]
    with open(os.path.join(TRACEFS, "uprobe_events")) as handle:
        probes = [line for line in handle.read().splitlines() if run_id in line]
    return instances, probes


def armed(run_id):
    return is_armed(run_id)


def probe_installed(run_id):
    return bool(leftovers(run_id)[1])


@pytest.mark.parametrize("kill_when", [probe_installed, armed], ids=["probe-installed", "armed"])
def test_cleanup_after_a_killed_run(kill_when, demo_daemon, run_playbook, tmp_path, run_token):
    demo_daemon.start(period_ms=100, threshold_ms=400)  # no faults: the threshold is never reached
    run_id = "%s_kill_%s" % (run_token, kill_when.__name__)
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n"
                         % os.path.join(REPO, ".venv", "bin", "python"))
    cmd = [os.path.join(REPO, ".venv", "bin", "ansible-playbook"), "-i", str(inventory),
           os.path.join(REPO, "playbooks", "diagnose-corosync.yml"),
           "-e", json.dumps({"diagnose_corosync_binary": demo_daemon.binary, "diagnose_threshold_ms": 400,
                             "diagnose_timeout": 30, "diagnose_results_dir": str(tmp_path / "results"),
                             "diagnose_run_id": run_id,
                             # The node's own reaper would remove the leftovers after the lease
                             # (test_fault_injection.py proves that); here cleanup.yml must.
                             "threshold_capture_lease": 600})]
    playbook = subprocess.Popen(cmd, cwd=REPO, env=ansible_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while not kill_when(run_id) and playbook.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        # Killed like an operator's Ctrl-C \ kill -9: no always: section runs.
        os.killpg(playbook.pid, signal.SIGKILL)
        playbook.wait()
        instances, probes = leftovers(run_id)
        assert probes, "the run was killed before it installed its probe"

        listed = run_playbook(os.path.join(REPO, "playbooks", "cleanup.yml"), check=True,
                              extra_vars={"cleanup_name_contains": run_id, "cleanup_hosts": "localhost"})
        would = listed.task("Remove fleettrace's probes, instances and triggers")
        # The capture runs on as an async job of the killed play: what it recorded beside
        # the capture (its CPU context instance, a run of that live process) is not taken
        # from it; it is named among the live runs and goes when the capture ends.
        kept = [name for name in instances if name not in would["removed"]["instances"]]
        assert all(any(name in run for run in would["live"]) and " - gone" not in
                   [run for run in would["live"] if name in run][0] for name in kept), (kept, would["live"])
        assert set(would["removed"]["instances"]) <= set(instances)
        assert sorted(set(instances) - set(kept)) == sorted(would["removed"]["instances"])
        assert len(would["removed"]["uprobes"]) == len(probes)
        assert leftovers(run_id) == (instances, probes), "check mode removed something"

        cleaned = run_playbook(os.path.join(REPO, "playbooks", "cleanup.yml"),
                               extra_vars={"cleanup_name_contains": run_id, "cleanup_hosts": "localhost"})
        assert cleaned.rc == 0, cleaned.stdout[-3000:]
        # The orphaned capture ends by its own timeout (diagnose_timeout 30 s) and removes the rest.
        deadline = time.time() + 60
        while leftovers(run_id) != ([], []) and time.time() < deadline:
            time.sleep(0.5)
        assert leftovers(run_id) == ([], [])
        again = run_playbook(os.path.join(REPO, "playbooks", "cleanup.yml"),
                             extra_vars={"cleanup_name_contains": run_id, "cleanup_hosts": "localhost"})
        assert again.task("Remove fleettrace's probes, instances and triggers")["changed"] is False
    finally:
        if playbook.poll() is None:
            os.killpg(playbook.pid, signal.SIGKILL)
        # Whatever happened, leave nothing of this run behind.
        subprocess.run([os.path.join(REPO, ".venv", "bin", "ansible"), "localhost", "-m", "fleettrace.tracefs.cleanup",
                        "-a", "name_contains=%s" % run_id], cwd=REPO, env=ansible_env(),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def test_cleanup_module_removes_only_what_fleettrace_owns(tracefs, run_module, unique_name, run_token, cc, tmp_path):
    binary = str(tmp_path / "demo_daemon")
    subprocess.run([cc, "-g", "-O2", "-o", binary, os.path.join(REPO, "tests", "programs", "demo", "demo_daemon.c")],
                   check=True)
    owned_instance = unique_name("inst")
    group = unique_name("grp")
    foreign_instance = "other_%s" % run_token  # not ours: must survive
    probe = run_module("fleettrace.tracefs.uprobe", {"binary": binary, "spec": "main", "group": group, "event": "main"})
    assert not probe.get("failed"), probe.get("msg")
    foreign = tracefs.instance(foreign_instance)
    # Not fleettrace's name: no run may own it (runs/manifest.py), so it is removed in finally only
    # (docs/DEVELOPING.md: the cleanup module's tests create objects without a manifest on purpose).
    try:
        tracefs.instance(owned_instance).create()
        tracefs.instance(owned_instance).event("sched", "sched_switch").set_filter("prev_state == 2")
        foreign.create()
        # Our probe's event enabled with a filter inside somebody else's instance.
        event = foreign.event(group, "main")
        event.set_filter("common_pid > 0")
        event.set_enabled(True)

        bad = run_module("fleettrace.tracefs.cleanup", {"prefix": "other"})
        assert bad.get("failed") and "fleettrace" in bad["msg"] and bad["changed"] is False

        listed = run_module("fleettrace.tracefs.cleanup", {"name_contains": run_token}, check=True)
        assert listed["changed"] is True
        assert listed["removed"]["instances"] == [owned_instance]
        assert listed["removed"]["uprobes"] == ["%s/main" % group]
        assert listed["removed"]["events"] == ["%s:%s:main" % (foreign_instance, group)]
        assert tracefs.instance(owned_instance).exists() and event.enabled

        removed = run_module("fleettrace.tracefs.cleanup", {"name_contains": run_token})
        assert removed["changed"] is True, removed.get("msg")
        assert not tracefs.instance(owned_instance).exists()
        assert not [u for u in tracefs.list_uprobes() if u.group == group]
        assert foreign.exists(), "an instance fleettrace does not own was removed"
        assert run_module("fleettrace.tracefs.cleanup", {"name_contains": run_token})["changed"] is False
    finally:
        for inst in (tracefs.instance(owned_instance), foreign):
            if inst.exists():
                inst.remove()
        for uprobe in tracefs.list_uprobes():
            if uprobe.group == group:
                tracefs.remove_uprobe(uprobe.group, uprobe.event)


def test_capture_reaps_expired_runs_first(tracefs, unique_name, run_module):
    """An expired run (owner gone, lease over) whose reaper never ran: the next capture on the
    node removes exactly its objects before doing its own work, as the other modules do."""
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import lifecycle, owner
    dead = subprocess.Popen(["true"])
    gone = owner.process(dead.pid, "a killed play")
    dead.wait()
    name = unique_name("expired")
    manifest = lifecycle.start(tracefs, name, instances=[name], lease=0.0, owner=gone, spawn=False)
    try:
        tracefs.instance(name).create()
        missing = unique_name("missing")
        result = run_module("fleettrace.tracefs.capture", {"instance": missing, "mode": "window", "duration": 1})
        assert result.get("failed") and "does not exist" in result["msg"]
        assert "expired run %s" % manifest.tag in result["msg"], result["msg"]
        assert not tracefs.instance(name).exists()
        assert lifecycle.load(manifest.tag) is None
    finally:
        if tracefs.instance(name).exists():
            tracefs.instance(name).remove()
        lifecycle.finish(tracefs, manifest.tag, force=True)
