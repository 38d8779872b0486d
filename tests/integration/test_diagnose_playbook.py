"""playbooks/diagnose-corosync.yml as a user runs it: stalls outside a system call, --limit, a broken node.

The demo daemon (tests/programs/demo) stands in for corosync; its heartbeat file lives on a
loop-mounted ext4 that the fault injector freezes.  Each test reads the result files a user
reads (summary.json, summary.md, the host's JSON, the report) and checks them against what the
daemon itself logged.  Nothing stays in tracefs (the autouse leak check) or mounted.
"""

import json
import os
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
    variables = {"diagnose_threshold_ms": 400, "diagnose_timeout": timeout,
                 "diagnose_results_dir": str(tmp_path / "results"), "diagnose_run_id": run_id}
    if binary:  # else each host's inventory says (an extra var would win over it)
        variables["diagnose_corosync_binary"] = binary
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


@pytest.mark.parametrize("limit,expected", [("node1", ["node1"]), ("pair", ["node2", "node3"])])
def test_limit_to_a_host_or_a_group(limit, expected, ssh_inventory, demo_daemon, tmp_path, run_token):
    """-l with a host or a group: the controller's steps still run (issue 20: 'HostVarsVars has no
    attribute diagnose_run'), and only the limited hosts are diagnosed and summarized."""
    with open(ssh_inventory, "a") as handle:
        handle.write("\n[local]\nlocalhost ansible_connection=local ansible_python_interpreter=%s\n"
                     "\n[pair]\nnode2\nnode3\n" % PYTHON)
    demo_daemon.start(period_ms=100, threshold_ms=400)
    demo_daemon.inject_faults(freeze_ms=1000, pause_ms=1500)
    run_id = "%s_limit_%s" % (run_token, limit)
    rc, out, run_dir = diagnose(tmp_path, run_id, demo_daemon.binary, ssh_inventory, args=["-l", limit],
                                diagnose_resolve_on_controller=True)
    assert rc == 0, out[-5000:]
    assert "HostVarsVars" not in out
    assert sorted(os.listdir(run_dir)) == sorted(["%s.json" % h for h in expected] + ["report", "summary.json",
                                                                                      "summary.md"])
    summary = read_json(run_dir, "summary.json")
    assert sorted(h["host"] for h in summary["hosts"]) == expected and summary["unreachable"] == []
    for host in summary["hosts"]:
        assert host["threshold_reached"] is True, (host["host"], host["message"])
        assert host["findings"][0]["state"] == "D"
    markdown = read_text(run_dir, "summary.md")
    assert "%d of %d host(s) reached the threshold" % (len(expected), len(expected)) in markdown
    assert sorted(read_json(run_dir, "report", "report.json")["hosts"]) == expected


def test_a_node_without_debug_info_never_stops_the_others(demo_daemon, tmp_path, run_token, cc):
    """Two hosts; one's binary is stripped (no debug info, no debuginfod): the other is diagnosed, the
    results directory, summary and report are written, and the failed node is in them with its reason."""
    demo_daemon.start(period_ms=100, threshold_ms=400)
    demo_daemon.inject_faults(freeze_ms=1000, pause_ms=1500)
    stripped = str(tmp_path / "stripped" / "demo_daemon")
    os.makedirs(os.path.dirname(stripped))
    # A build-id of its own: no copy with debug info of it exists anywhere (nor in the fetched-binaries cache).
    subprocess.run([cc, "-g", "-O2", "-Wl,--build-id=0x%s" % os.urandom(20).hex(), "-o", stripped,
                    os.path.join(REPO, "tests", "programs", "demo", "demo_daemon.c")], check=True)
    subprocess.run(["strip", "--strip-debug", stripped], check=True)
    inventory = local_inventory(tmp_path, "stripped ansible_connection=local ansible_python_interpreter=%s "
                                          "diagnose_corosync_binary=%s\n" % (PYTHON, stripped))
    with open(inventory) as handle:
        text = handle.read().replace("localhost ansible_connection=local", "localhost diagnose_corosync_binary=%s "
                                     "ansible_connection=local" % demo_daemon.binary, 1)
    with open(inventory, "w") as handle:
        handle.write(text)
    run_id = "%s_stripped" % run_token
    rc, out, run_dir = diagnose(tmp_path, run_id, None, inventory, diagnose_debuginfod_urls=[])
    # The run says a host failed (rc 2), after writing everything.
    assert rc == 2, out[-5000:]
    assert "1 host(s) failed: stripped" in out, out[-3000:]
    assert sorted(os.listdir(run_dir)) == ["localhost.json", "report", "stripped.json", "summary.json", "summary.md"]
    summary = read_json(run_dir, "summary.json")
    hosts = {h["host"]: h for h in summary["hosts"]}
    assert sorted(hosts) == ["localhost", "stripped"] and summary["unreachable"] == []
    assert hosts["localhost"]["threshold_reached"] is True, hosts["localhost"]["message"]
    assert hosts["localhost"]["findings"][0]["state"] == "D"
    failed = hosts["stripped"]
    assert failed["status"] == "failed" and failed["threshold_reached"] is False
    assert "cannot resolve the probe for %s" % stripped in failed["message"], failed["message"]
    assert "debug" in failed["message"], failed["message"]
    markdown = read_text(run_dir, "summary.md")
    assert "## stripped: failed" in markdown and "cannot resolve the probe" in markdown, markdown
    report = read_json(run_dir, "report", "report.json")
    assert "stripped" in report["hosts"] and "localhost" in report["hosts"], sorted(report["hosts"])


@pytest.mark.parametrize("args,report", [(["--skip-tags", "report"], False), (["--tags", "capture,summary"], False),
                                         (["--tags", "resolve,capture,summary,report"], True)])
def test_tags_select_the_main_steps(args, report, tmp_path, run_token):
    """The play's main steps carry tags; the run's directory and a node's failure record are always there."""
    run_id = "%s_tags_%d" % (run_token, len(args[1]))
    rc, out, run_dir = diagnose(tmp_path, run_id, "/usr/sbin/fleettrace-no-such-daemon", local_inventory(tmp_path),
                                args=args)
    assert rc == 0, out[-4000:]
    assert read_json(run_dir, "summary.json")["hosts"][0]["status"] == "target_not_running"
    assert os.path.isdir(os.path.join(run_dir, "report")) is report


SUMMARIZE = "Summarize every host's result on the controller"


def test_start_at_the_summary_continues_a_named_run_or_says_which_to_name(tmp_path, run_token):
    """--start-at-task at a main step of the play: the summary and the report of an earlier run are written
    again from its host results (-e diagnose_run_id names it); without a run id the play says to name one."""
    run_id = "%s_start" % run_token
    inventory = local_inventory(tmp_path)
    rc, out, run_dir = diagnose(tmp_path, run_id, "/usr/sbin/fleettrace-no-such-daemon", inventory)
    assert rc == 0, out[-4000:]
    host = read_json(run_dir, "localhost.json")
    os.unlink(os.path.join(run_dir, "summary.json"))
    rc, out, _run_dir = diagnose(tmp_path, run_id, "/usr/sbin/fleettrace-no-such-daemon", inventory,
                                 args=["--start-at-task", SUMMARIZE])
    assert rc == 0, out[-4000:]
    assert "Trace corosync until a tick" not in out and "Read the token timeout" not in out, out[-4000:]
    assert read_json(run_dir, "summary.json")["hosts"] == [host]
    assert os.path.isfile(os.path.join(run_dir, "report", "report.json"))
    cmd = [os.path.join(REPO, ".venv", "bin", "ansible-playbook"), "-i", inventory, PLAYBOOK, "--start-at-task",
           SUMMARIZE, "-e", json.dumps({"diagnose_results_dir": str(tmp_path / "unnamed")})]
    proc = subprocess.run(cmd, cwd=REPO, env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=300, check=False)
    assert proc.returncode != 0
    assert "continues an earlier run: name it with -e diagnose_run_id=RUN" in proc.stdout, proc.stdout[-3000:]
    assert not os.path.exists(str(tmp_path / "unnamed"))
