"""The core on the real machine, as an unprivileged user: a clear error, nothing touched."""

import os
import shutil
import subprocess
import tempfile

import pytest

from tests.conftest import REPO

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
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert "ERROR:" in proc.stdout, proc.stdout + proc.stderr
    assert "run as root" in proc.stdout
    # tracefs is mounted, only not for this user: say so (issue 10), not "not mounted".
    assert "permission denied" in proc.stdout and "not mounted" not in proc.stdout, proc.stdout
    assert not os.path.exists(os.path.join(tracefs.root, "instances", "fleettrace_notroot"))
