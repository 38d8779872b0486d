"""The core on the real machine, as an unprivileged user: a clear error, nothing touched."""

import json
import os
import shutil
import subprocess
import tempfile

import pytest

from tests.helpers.paths import REPO, VENV_BIN

SNIPPET = """
import sys
sys.path.insert(0, sys.argv[1])
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import Tracefs, TracefsError
try:
    Tracefs().instance("fleettrace_notroot").create()
except TracefsError as exc:
    print("ERROR:", exc)
"""


@pytest.fixture
def world_readable_core():
    """A copy of module_utils that user nobody can import (the checkout may sit under /root)."""
    top = tempfile.mkdtemp(prefix="fleettrace-notroot-")
    target = os.path.join(top, "ansible_collections", "fleettrace", "tracefs", "plugins", "module_utils")
    shutil.copytree(os.path.join(REPO, "plugins", "module_utils"), target)
    for dirpath, dirnames, filenames in os.walk(top):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)
    yield top
    shutil.rmtree(top)


def test_unprivileged_user_gets_a_clear_error(tracefs, world_readable_core):
    if not shutil.which("setpriv") or not os.path.exists("/usr/bin/python3"):
        pytest.skip("setpriv (util-linux) or /usr/bin/python3 missing")
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           "/usr/bin/python3", "-c", SNIPPET, world_readable_core],
                          capture_output=True, text=True, check=False)
    assert "ERROR:" in proc.stdout, proc.stdout + proc.stderr
    assert "run as root" in proc.stdout
    # tracefs is mounted, only not for this user: say so (issue 10), not "not mounted".
    assert "permission denied" in proc.stdout and "not mounted" not in proc.stdout, proc.stdout
    assert not os.path.exists(os.path.join(tracefs.root, "instances", "fleettrace_notroot"))


# A become plugin for this test only: it marks the command so the interpreter below runs it as root.
# The machine has no sudo, and the point is where become comes from (-b, the inventory), not sudo.
BECOME_PLUGIN = '''
DOCUMENTATION = """
name: fleettrace_test_root
short_description: test only, run the module as root through the interpreter wrapper
description: [test only]
author: fleettrace developers (@fleettrace)
"""
from ansible.plugins.become import BecomeBase


class BecomeModule(BecomeBase):
    name = "fleettrace_test_root"

    def build_become_command(self, cmd, shell):
        super().build_become_command(cmd, shell)
        if not cmd:
            return cmd
        return "env FLEETTRACE_TEST_ROOT=1 %s" % self._build_success_command(cmd, shell)
'''

# The host's Python: user nobody, unless the command came through the become plugin above.
INTERPRETER = """#!/bin/sh
if [ "$FLEETTRACE_TEST_ROOT" = 1 ]; then exec %s "$@"; fi
exec setpriv --reuid=65534 --regid=65534 --clear-groups /usr/bin/python3 "$@"
"""


@pytest.fixture
def nobody_host(tmp_path):
    """(inventory line of a localhost whose modules run as nobody, env with the test become plugin)."""
    if not shutil.which("setpriv") or not os.path.exists("/usr/bin/python3"):
        pytest.skip("setpriv (util-linux) or /usr/bin/python3 missing")
    plugins = tmp_path / "become_plugins"
    plugins.mkdir()
    (plugins / "fleettrace_test_root.py").write_text(BECOME_PLUGIN)
    wrapper = tmp_path / "python-as-nobody"
    wrapper.write_text(INTERPRETER % os.path.join(VENV_BIN, "python"))
    wrapper.chmod(0o755)
    # Not named localhost: the report, delegated to the controller, runs with the controller's Python.
    line = "node ansible_connection=local ansible_python_interpreter=%s" % wrapper
    return line, {"ANSIBLE_BECOME_PLUGINS": str(plugins), "ANSIBLE_BECOME_METHOD": "fleettrace_test_root"}


AUDIT = os.path.join(REPO, "playbooks", "audit-sched-latency.yml")


def audit(run_playbook, tmp_path, run_token, inventory_text, env, args=()):
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(inventory_text + "\n")
    out = tmp_path / "report"
    result = run_playbook(AUDIT, inventory=str(inventory), env=env, args=args,
                          extra_vars={"fleettrace_report_dir": str(out), "sched_audit_duration": 1,
                                      "sched_audit_instance_label": "%s_nr" % run_token})
    return result, out


def test_audit_as_non_root_says_how_to_become_root(run_playbook, run_token, tmp_path, nobody_host):
    line, env = nobody_host
    result, _out = audit(run_playbook, tmp_path, run_token, line, env)
    assert result.rc != 0
    msg = result.task("fleettrace.tracefs.sched_audit : Trace the window on every host at once, seconds 1", "node")["msg"]
    assert msg.startswith("permission denied: tracefs is mounted at ") and msg.endswith(
        "may not use it; run as root (become: true or -b)"), msg


# The roles never set become: -b on the command line and become in the inventory both reach the module.
@pytest.mark.parametrize("how", ["-b", "inventory"])
def test_audit_becomes_root_the_way_the_user_says(run_playbook, run_token, tmp_path, nobody_host, how):
    line, env = nobody_host
    if how == "inventory":
        result, out = audit(run_playbook, tmp_path, run_token, line + " ansible_become=true", env)
    else:
        result, out = audit(run_playbook, tmp_path, run_token, line, env, args=["-b"])
    assert result.rc == 0, result.stdout[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["down"] == [] and report["hosts"]["node"]["sched_latency"]["latency"]["all"]["count"] > 0
