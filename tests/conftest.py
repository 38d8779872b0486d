"""Shared fixtures: the collection on sys.path, real-tracefs leak checks, Ansible runners."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid

import pytest

from tests.helpers.paths import COLLECTIONS, REPO, SSH_LOOPBACK, VENV_BIN, ansible_env

if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import core as tracefs_core  # noqa: E402
from tests.helpers import tracefs_state  # noqa: E402

# One token per pytest process: every name a test creates carries it.
RUN_TOKEN = "t%s" % uuid.uuid4().hex[:8]
STRICT_LEAKS = os.environ.get("FLEETTRACE_STRICT_LEAKS") == "1"


@pytest.fixture(scope="session")
def run_token():
    return RUN_TOKEN


@pytest.fixture
def unique_name(request):
    """unique_name('inst') -> 'fleettrace_t1a2b3c4_inst_<test>' (valid instance/group name)."""
    counter = [0]

    def make(label="x"):
        counter[0] += 1
        return "fleettrace_%s_%s%d" % (RUN_TOKEN, label, counter[0])
    return make


def _is_root():
    return os.geteuid() == 0


@pytest.fixture(scope="session")
def tracefs():
    if not _is_root():
        pytest.skip("real tracefs tests need root")
    return tracefs_core.Tracefs()


# Under pytest-xdist several workers share the one tracefs: a worker's per-test
# check can only judge names carrying its own token, and the strict comparison
# of everything moves to the whole session (pytest_sessionstart/finish below,
# in the controlling process, after every worker has finished).
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")


@pytest.fixture(autouse=True)
def tracefs_leak_check(request):
    """Fail any test under tests/integration that leaves tracefs changed."""
    if "integration" not in str(request.node.fspath) or not _is_root():
        yield
        return
    fs = tracefs_core.Tracefs()
    before = tracefs_state.snapshot(fs)
    yield
    after = tracefs_state.snapshot(fs)
    strict = STRICT_LEAKS and not XDIST_WORKER
    only = None if strict else (lambda name: RUN_TOKEN in name)
    leaks = tracefs_state.diff_snapshots(before, after, only=only)
    if leaks:
        pytest.fail("tracefs was not left as found:\n  " + "\n  ".join(leaks))


def _session_checked(session):
    """The strict whole-session comparison runs in the process that is not an xdist worker,
    and only when that session hands tests to workers (a serial session checks each test)."""
    return (STRICT_LEAKS and not XDIST_WORKER and _is_root()
            and getattr(session.config.option, "numprocesses", None))


def _sshd_running():
    return subprocess.run(["bash", SSH_LOOPBACK, "status"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, check=False).returncode == 0


def pytest_sessionstart(session):
    if _session_checked(session):
        session.config._fleettrace_before = tracefs_state.snapshot(tracefs_core.Tracefs())
    if _is_root() and not XDIST_WORKER and getattr(session.config.option, "numprocesses", None):
        session.config._fleettrace_sshd_was_running = _sshd_running()


def pytest_sessionfinish(session, exitstatus):
    # Workers leave the loopback sshd running for each other: stop it if it was not running before.
    if getattr(session.config, "_fleettrace_sshd_was_running", True) is False and _sshd_running():
        subprocess.run(["bash", SSH_LOOPBACK, "stop"], stdout=subprocess.DEVNULL, check=False)
    before = getattr(session.config, "_fleettrace_before", None)
    if before is None:
        return
    leaks = tracefs_state.diff_snapshots(before, tracefs_state.snapshot(tracefs_core.Tracefs()))
    if leaks:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        text = "tracefs was not left as found by this session's workers:\n  " + "\n  ".join(leaks)
        if reporter:
            reporter.write_line(text, red=True)
        else:
            sys.stderr.write(text + "\n")
        session.exitstatus = 1


class PlaybookResult:
    def __init__(self, proc, data):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.data = data

    def task_results(self, name, host="localhost"):
        """Result dicts of every task whose name is ``name`` (in play order)."""
        found = []
        for play in (self.data or {}).get("plays", []):
            for task in play.get("tasks", []):
                if task["task"]["name"] == name and host in task["hosts"]:
                    found.append(task["hosts"][host])
        return found

    def task(self, name, host="localhost"):
        results = self.task_results(name, host)
        assert results, "no task named %r ran on %s; output:\n%s\n%s" % (name, host, self.stdout[-3000:], self.stderr[-3000:])
        return results[-1]

    @property
    def stats(self):
        return (self.data or {}).get("stats", {})


@pytest.fixture
def run_playbook(tmp_path):
    """run_playbook(yaml_text_or_path, check=False, diff=False, extra_vars=None, inventory=None)."""

    def run(playbook, check=False, diff=False, extra_vars=None, inventory=None, env=None, timeout=900, json_output=True):
        if "\n" in playbook:
            path = tmp_path / "playbook.yml"
            path.write_text(textwrap.dedent(playbook))
            playbook = str(path)
        cmd = [os.path.join(VENV_BIN, "ansible-playbook"), playbook]
        if inventory is None:
            inv = tmp_path / "inventory.ini"
            inv.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n"
                           % os.path.join(VENV_BIN, "python"))
            inventory = str(inv)
        cmd += ["-i", inventory]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        if extra_vars:
            cmd += ["-e", json.dumps(extra_vars)]
        extra_env = {}
        if json_output:
            extra_env["ANSIBLE_STDOUT_CALLBACK"] = "test_json"
            extra_env["ANSIBLE_CALLBACK_PLUGINS"] = os.path.join(REPO, "tests", "callback_plugins")
        extra_env.update(env or {})
        proc = subprocess.run(cmd, cwd=REPO, env=ansible_env(extra_env), capture_output=True, text=True, timeout=timeout, check=False)
        data = None
        if json_output:
            start = proc.stdout.find("{")
            if start >= 0:
                try:
                    data = json.loads(proc.stdout[start:])
                except ValueError:
                    data = None
        return PlaybookResult(proc, data)
    return run


@pytest.fixture
def run_module(run_playbook):
    """run_module('fleettrace.tracefs.instance', {...}, check=False, diff=False) -> result dict."""

    def run(module, args, check=False, diff=False):
        play = [{"hosts": "localhost", "gather_facts": False,
                 "tasks": [{"name": "the module", module: args, "ignore_errors": True}]}]
        # JSON is YAML; the trailing newline marks it as playbook text, not a path.
        result = run_playbook(json.dumps(play) + "\n", check=check, diff=diff)
        return result.task("the module")
    return run


@pytest.fixture(scope="session")
def cc():
    """Path of a C compiler, or skip."""
    path = shutil.which("gcc") or shutil.which("cc")
    if not path:
        pytest.skip("no C compiler")
    return path


@pytest.fixture(scope="session")
def cxx():
    """Path of a C++ compiler, or skip."""
    path = shutil.which("g++") or shutil.which("c++")
    if not path:
        pytest.skip("no C++ compiler")
    return path
