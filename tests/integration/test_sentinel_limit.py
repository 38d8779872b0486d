"""sentinel-corosync.yml with --limit (issue 20): a host or a group of an inventory with a local and an SSH host.

The controller's steps (the result directory) used to live in a play on localhost that --limit
dropped ("HostVarsVars has no attribute sentinel_run_dir").  Arm on the limited hosts only,
collect and disarm them, and read the results a user reads.
"""

import os

import pytest

from tests.helpers import sentinel as sh
from tests.helpers.paths import REPO


@pytest.fixture(autouse=True)
def _no_mount_left(mount_leak_check):
    yield


@pytest.mark.parametrize("limit", ["node1", "ssh"])
def test_sentinel_with_limit(limit, ssh_inventory, demo_daemon, tmp_path, run_token):
    pid = demo_daemon.start(period_ms=100, threshold_ms=400)
    node = sh.Node(tmp_path, "%s_lim" % run_token)
    with open(ssh_inventory) as handle:
        text = handle.read()
    node.inventory = str(tmp_path / "limit-inventory.ini")
    with open(node.inventory, "w") as handle:
        # node1 only in the group "ssh": the hosts share one kernel, so one sentinel of this label at a time.
        handle.write(text + "\n[local]\nlocalhost ansible_connection=local ansible_python_interpreter=%s\n"
                     "\n[ssh]\nnode1\n" % os.path.join(REPO, ".venv", "bin", "python"))
    armed = dict(diagnose_corosync_binary=demo_daemon.binary, diagnose_threshold_ms=400)
    try:
        rc, out = node.play(args=["-l", limit], **armed)
        assert rc == 0, out[-5000:]
        assert "HostVarsVars" not in out
        assert node.state()["status"] == "armed" and node.state()["target"]["pid"] == pid, out[-3000:]
        # Only the limited host ran (the controller's steps show as "[node1 -> localhost]").
        assert "[node2]" not in out and "[localhost]" not in out, out[-3000:]
    finally:
        rc, out = node.play(args=["-l", limit], sentinel_state="absent")
        node.close()
    assert rc == 0, out[-5000:]
    run_dir, summary = node.latest_results()
    assert [h["host"] for h in summary["hosts"]] == ["node1"] and summary["unreachable"] == [], summary
    assert summary["hosts"][0]["sentinel"]["status"] == "disarmed"
    assert sorted(os.listdir(run_dir)) == ["node1.json", "report", "summary.json", "summary.md"]
    assert node.watchers() == []
