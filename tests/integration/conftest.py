"""Fixtures for multi-host and daemon tests: a loopback sshd, the demo daemon, corosync."""

import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SSH_LOOPBACK = os.path.join(REPO, "scripts", "ssh-loopback.sh")
SSH_HOSTS = 3


@pytest.fixture(scope="session")
def loopback_sshd():
    """Start the private loopback sshd of scripts/ssh-loopback.sh for this session.

    Stops it afterwards only if this session started it; the system's sshd is
    never touched (the script uses its own config, keys and pid file).
    """
    if os.geteuid() != 0:
        pytest.skip("the loopback sshd needs root")
    proc = subprocess.run(["bash", SSH_LOOPBACK, "start"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=300)
    if proc.returncode != 0:
        pytest.fail("scripts/ssh-loopback.sh start failed:\n%s%s" % (proc.stdout, proc.stderr))
    started_here = proc.stdout.strip().endswith("started")
    yield
    if started_here:
        subprocess.run(["bash", SSH_LOOPBACK, "stop"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture
def ssh_inventory(loopback_sshd, tmp_path):
    """Path of an inventory of node1..node3 reaching this machine over loopback SSH."""
    path = str(tmp_path / "ssh-inventory.ini")
    subprocess.run(["bash", SSH_LOOPBACK, "inventory", str(SSH_HOSTS), path], check=True,
                   stdout=subprocess.PIPE, timeout=60)
    yield path
