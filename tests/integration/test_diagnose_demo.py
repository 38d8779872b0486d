"""The README's main command (scripts/demo.sh) end to end: the finding is printed and true."""

import json
import os
import re
import subprocess

import pytest

from tests.conftest import REPO, ansible_env
from tests.helpers.armed import wait_armed


def test_demo_prints_the_true_finding(tmp_path, run_token):
    if os.geteuid() != 0:
        pytest.skip("the demo needs root")
    run_id = "%s_demo" % run_token
    env = ansible_env({"FLEETTRACE_DEMO_RESULTS": str(tmp_path), "FLEETTRACE_DEMO_RUN_ID": run_id})
    proc = subprocess.run(["bash", os.path.join(REPO, "scripts", "demo.sh")], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-6000:]

    # The one line a user reads.
    finding = [line for line in proc.stdout.splitlines() if line.startswith("- stall 1:")]
    assert finding, proc.stdout[-4000:]
    assert re.search(r"not scheduled for \d+\.\d ms; D state in write\(fd 3 -> /\S+/heartbeat\.log\)", finding[-1])
    assert "percpu_rwsem_wait" in finding[-1]

    with open(os.path.join(str(tmp_path), "corosync-%s" % run_id, "summary.json")) as handle:
        summary = json.load(handle)
    host = summary["hosts"][0]
    assert host["host"] == "localhost" and host["threshold_reached"] is True
    stall = host["findings"][0]
    assert stall["state"] == "D"
    assert stall["syscall"]["name"] == "write" and stall["fd"] == 3
    assert stall["file"].endswith("/mnt/heartbeat.log")
    assert any(frame.startswith("percpu_rwsem_wait") for frame in stall["kernel_stack"])
    # Runtime truth: the traced tv_diff is a delay the daemon itself measured and logged.
    logged = [float(ms) for ms in re.findall(r"main process was not scheduled for ([0-9.]+) ms", proc.stdout)]
    assert any(abs(ms - stall["value"] / 1e6) < 0.001 for ms in logged), (stall["value"], logged)
    assert stall["value"] >= 400 * 1000000
    # Probe and instance carried the run id and were removed (the leak check verifies the tracefs side).
    assert run_id in host["probe"]["instance"]


def run_diagnose(tmp_path, run_id, binary, timeout=30, background=False, extra_args=()):
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n"
                         % os.path.join(REPO, ".venv", "bin", "python"))
    cmd = [os.path.join(REPO, ".venv", "bin", "ansible-playbook"), "-i", str(inventory),
           os.path.join(REPO, "playbooks", "diagnose-corosync.yml"),
           "-e", json.dumps({"diagnose_corosync_binary": binary, "diagnose_threshold_ms": 400,
                             "diagnose_timeout": timeout, "diagnose_results_dir": str(tmp_path / "results"),
                             "diagnose_run_id": run_id})] + list(extra_args)
    if background:
        return subprocess.Popen(cmd, cwd=REPO, env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                universal_newlines=True)
    return subprocess.run(cmd, cwd=REPO, env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=600, check=False)


def host_result(tmp_path, run_id):
    with open(os.path.join(str(tmp_path / "results"), "corosync-%s" % run_id, "summary.json")) as handle:
        return json.load(handle)["hosts"][0]


def test_node_without_the_daemon_is_reported_not_failed(tmp_path, run_token):
    run_id = "%s_absent" % run_token
    proc = run_diagnose(tmp_path, run_id, "/usr/sbin/fleettrace-no-such-daemon")
    assert proc.returncode == 0, proc.stdout[-4000:]
    host = host_result(tmp_path, run_id)
    assert host["status"] == "target_not_running" and host["threshold_reached"] is False
    assert "localhost: target not running" in proc.stdout


def test_target_dying_while_armed_is_reported_and_cleaned(demo_daemon, tmp_path, run_token):
    demo_daemon.start(period_ms=100, threshold_ms=400)  # no faults: it only dies
    run_id = "%s_dies" % run_token
    playbook = run_diagnose(tmp_path, run_id, demo_daemon.binary, timeout=120, background=True)
    try:
        assert wait_armed(run_id, playbook, timeout=300, interval=0.05), "never armed"
        demo_daemon.proc.kill()
        output = playbook.communicate(timeout=600)[0]
    finally:
        if playbook.poll() is None:
            playbook.kill()
            playbook.wait()
    assert playbook.returncode == 0, output[-4000:]
    host = host_result(tmp_path, run_id)
    assert host["status"] == "target_exited", host
    assert host["target"]["alive"] is False
    # The leak check (autouse) verifies that the instance and probe are gone.


def test_check_mode_says_what_it_would_do_and_writes_nothing(demo_daemon, tmp_path, run_token):
    pid = demo_daemon.start(period_ms=100, threshold_ms=400)
    run_id = "%s_check" % run_token
    proc = run_diagnose(tmp_path, run_id, demo_daemon.binary, extra_args=["--check"])
    assert proc.returncode == 0, proc.stdout[-4000:]
    match = re.search(r"check mode: would install p:(fleettrace_%s_\S+)/timer_function_scheduler_timeout %s:0x[0-9a-f]+ "
                      r"tv_diff=\S+:u64, trace demo_daemon\[%d\]" % (run_id, re.escape(demo_daemon.binary), pid),
                      proc.stdout)
    assert match, proc.stdout[-4000:]
    assert not os.path.exists(str(tmp_path / "results" / ("corosync-%s" % run_id) / "summary.json"))
    # Nothing in tracefs either: the autouse leak check compares before and after.
