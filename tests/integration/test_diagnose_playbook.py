"""playbooks/diagnose-corosync.yml as a user runs it: stalls outside a system call, --limit, a broken node.

The demo daemon (tests/programs/demo) stands in for corosync; its heartbeat file lives on a
loop-mounted ext4 that the fault injector freezes.  Each test reads the result files a user
reads (summary.json, summary.md, the host's JSON, the report) and checks them against what the
daemon itself logged.  Nothing stays in tracefs (the autouse leak check) or mounted.
"""

import json
import os
import shutil
import subprocess

import pytest

from tests.helpers.paths import REPO, ansible_env

PLAYBOOK = os.path.join(REPO, "playbooks", "diagnose-corosync.yml")
PYTHON = os.path.join(REPO, ".venv", "bin", "python")


@pytest.fixture(autouse=True)
def _no_mount_left(mount_leak_check):
    yield


def local_inventory(tmp_path, extra=""):
    path = tmp_path / "inventory.ini"
    path.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n%s" % (PYTHON, extra))
    return str(path)


def diagnose(tmp_path, run_id, binary, inventory, args=(), timeout=60, **extra_vars):
    """ansible-playbook diagnose-corosync.yml (text output, as a user sees it) -> (rc, stdout, run dir)."""
    variables = {"diagnose_corosync_binary": binary, "diagnose_threshold_ms": 400, "diagnose_timeout": timeout,
                 "diagnose_results_dir": str(tmp_path / "results"), "diagnose_run_id": run_id}
    variables.update(extra_vars)
    cmd = [os.path.join(REPO, ".venv", "bin", "ansible-playbook"), "-i", inventory, PLAYBOOK,
           "-e", json.dumps(variables)] + list(args)
    proc = subprocess.run(cmd, cwd=REPO, env=ansible_env({"ANSIBLE_PIPELINING": "1"}), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=900, check=False)
    return proc.returncode, proc.stdout, str(tmp_path / "results" / ("corosync-%s" % run_id))


def read_json(*parts):
    with open(os.path.join(*parts)) as handle:
        return json.load(handle)


def read_text(*parts):
    with open(os.path.join(*parts)) as handle:
        return handle.read()


def test_d_state_stall_outside_a_system_call(demo_daemon, tmp_path, run_token):
    """A store into a mapped file of a frozen fs sleeps in D in the page fault, in no system call:
    the play ends rc 0 with the finding (issue 20: it crashed on the culprit call's `when:`)."""
    demo_daemon.start(period_ms=100, threshold_ms=400, heartbeat="mmap")
    demo_daemon.inject_faults(freeze_ms=1000, pause_ms=1500)
    run_id = "%s_pagefault" % run_token
    rc, out, run_dir = diagnose(tmp_path, run_id, demo_daemon.binary, local_inventory(tmp_path))
    assert rc == 0, out[-5000:]
    host = read_json(run_dir, "localhost.json")
    assert host["status"] == "threshold_reached" and host["threshold_reached"] is True, host["message"]
    stall = host["findings"][0]
    assert stall["cause"] == "blocked" and stall["state"] == "D", stall["explanation"]
    assert stall["syscall"] is None and stall["fd"] is None, stall["syscall"]
    stack = " ".join(stall["kernel_stack"])
    assert "page_mkwrite" in stack or "page_fault" in stack, stall["kernel_stack"]
    # Runtime truth: the traced delay is one the daemon measured and logged itself.
    assert any(abs(ms - stall["value"] / 1e6) < 0.001 for ms in demo_daemon.late_ticks_ms()), stall["value"]
    # No call to measure: said as such, not a crash.
    assert host["culprit_latency"] is None
    summary = read_json(run_dir, "summary.json")
    assert [h["host"] for h in summary["hosts"]] == ["localhost"] and summary["totals"]["findings"] >= 1
    markdown = read_text(run_dir, "summary.md")
    assert "1 of 1 host(s) reached the threshold" in markdown, markdown
    assert "D state" in markdown, markdown
