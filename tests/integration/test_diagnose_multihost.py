"""diagnose-corosync.yml fanned out over three inventory hosts reached through real SSH.

node1..node3 are this machine through the loopback sshd (scripts/ssh-loopback.sh),
so the three hosts share one kernel and one demo daemon: each must get its own
instance and probe group, and the controller must gather all three results.
A fourth host that cannot be reached is listed, the others still reported.
The probe is resolved once on the controller and sent to the nodes as a definition.
"""

import json
import os

from tests.helpers.paths import REPO


def first_fetcharg(hosts):
    definitions = [h["probe"]["definitions"][0] for h in hosts.values()]
    fetchargs = {d.rsplit(" tv_diff=", 1)[-1] for d in definitions}
    assert len(fetchargs) == 1, definitions
    return fetchargs.pop()


def test_three_hosts_over_ssh_and_one_unreachable(ssh_inventory, demo_daemon, run_playbook, tmp_path, run_token):
    pid = demo_daemon.start(period_ms=100, threshold_ms=400)
    demo_daemon.inject_faults(freeze_ms=1000, pause_ms=2000)
    # node4 points at a loopback address nothing listens on.
    with open(ssh_inventory, "a") as handle:
        handle.write("\n[nodes]\nnode4 ansible_host=127.0.0.250 ansible_port=2222\n")
    run_id = "%s_multi" % run_token
    results = str(tmp_path / "results")
    result = run_playbook(os.path.join(REPO, "playbooks", "diagnose-corosync.yml"), inventory=ssh_inventory,
                          extra_vars={"diagnose_corosync_binary": demo_daemon.binary, "diagnose_threshold_ms": 400,
                                      "diagnose_timeout": 120, "diagnose_results_dir": results,
                                      "diagnose_run_id": run_id,
                                      # The nodes get a definition resolved on the controller.
                                      "diagnose_resolve_on_controller": True},
                          json_output=False, env={"ANSIBLE_PIPELINING": "1"})
    # node4 is unreachable: the run reports it and still returns the others' results.
    assert "node4" in result.stdout and "UNREACHABLE" in result.stdout, result.stdout[-3000:]
    run_dir = os.path.join(results, "corosync-%s" % run_id)
    assert sorted(os.listdir(run_dir)) == ["node1.json", "node2.json", "node3.json", "report", "summary.json",
                                           "summary.md"]
    with open(os.path.join(run_dir, "summary.json")) as handle:
        summary = json.load(handle)
    assert summary["unreachable"] == ["node4"]
    hosts = {h["host"]: h for h in summary["hosts"]}
    assert sorted(hosts) == ["node1", "node2", "node3"]
    for name, host in hosts.items():
        assert host["threshold_reached"] is True, (name, host["status"], host["message"])
        assert host["target"]["pid"] == pid
        stall = host["findings"][0]
        assert stall["state"] == "D" and stall["fd"] == 3 and stall["file"] == demo_daemon.heartbeat, stall
        assert any(frame.startswith("percpu_rwsem_wait") for frame in stall["kernel_stack"])
        assert any(abs(ms - stall["value"] / 1e6) < 0.001 for ms in demo_daemon.late_ticks_ms())
        # Resolved once on the controller: same address and fetch args, this host's group.
        assert host["probe"]["spec"] == "", "the node resolved the probe itself"
        (definition,) = host["probe"]["definitions"]
        assert definition.startswith("p:%s/timer_function_scheduler_timeout %s:0x" % (host["probe"]["group"],
                                                                                      demo_daemon.binary))
        assert definition.endswith(" tv_diff=%s" % first_fetcharg(hosts))
    # One kernel, three hosts: no two share an instance or a probe group, and all carry the run id.
    instances = {h["probe"]["instance"] for h in hosts.values()}
    groups = {h["probe"]["group"] for h in hosts.values()}
    assert len(instances) == 3 and len(groups) == 3
    assert all(run_id in name and name.startswith("fleettrace_") for name in instances | groups)
    with open(os.path.join(run_dir, "summary.md")) as handle:
        markdown = handle.read()
    assert "3 of 3 host(s) reached the threshold" in markdown and "- node4" in markdown
    # The fleet report (roles/report) took the three hosts' findings.
    with open(os.path.join(run_dir, "report", "report.json")) as handle:
        report = json.load(handle)
    assert sorted(report["hosts"]) == ["node1", "node2", "node3"]
