"""Driving sentinels in tests: the playbook, the node's spool, the watcher processes, a stall at an unannounced time.

Everything a test's sentinel writes goes under its tmp_path (spool, node_exporter
textfile directory, the syslog socket it listens on, the controller's results),
and its label carries the run token, so its tracefs names do too.
"""

import glob
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import threading
import time

from tests.helpers.paths import REPO, VENV_BIN, ansible_env

PLAYBOOK = os.path.join(REPO, "playbooks", "sentinel-corosync.yml")
TRACEFS = "/sys/kernel/tracing"
PREFIX = "fleettrace_sentinel_"
_COUNTER = itertools.count(1)


def wait_for(predicate, timeout, interval=0.2, what="condition"):
    """Poll ``predicate`` until it returns something true (returned) or ``timeout`` passes (AssertionError)."""
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError("%s not met within %.0f s" % (what, timeout))
        time.sleep(interval)


class SyslogListener:
    """A unix datagram socket standing in for /dev/log: the watcher's journal lines land here."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setblocking(False)
        self.received = []

    def lines(self):
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                break
            self.received.append(data.decode("utf-8", "replace").rstrip("\0"))
        return list(self.received)

    def close(self):
        self.sock.close()
        if os.path.exists(self.path):
            os.unlink(self.path)


class Node:
    """One test's sentinel on this machine: where its files go and how to run the playbook on it."""

    def __init__(self, tmp_path, label):
        self.label = label
        self.tag = PREFIX + label
        self.spool_root = str(tmp_path / "spool")
        self.textfile_dir = str(tmp_path / "textfile")
        self.results = str(tmp_path / "results")
        os.makedirs(self.textfile_dir, exist_ok=True)
        self.syslog = SyslogListener(str(tmp_path / "log.sock"))
        self.inventory = str(tmp_path / "inventory.ini")
        with open(self.inventory, "w") as handle:
            handle.write("localhost ansible_connection=local ansible_python_interpreter=%s\n"
                         % os.path.join(VENV_BIN, "python"))

    @property
    def spool(self):
        return os.path.join(self.spool_root, self.label)

    def extra_vars(self, **more):
        values = {"sentinel_label": self.label, "sentinel_spool_dir": self.spool_root,
                  "sentinel_textfile_dir": self.textfile_dir, "sentinel_syslog_socket": self.syslog.path,
                  "diagnose_results_dir": self.results}
        values.update(more)
        return values

    def play(self, timeout=600, args=(), **extra):
        """Run sentinel-corosync.yml to its end (``args``: more of its command line): (returncode, output)."""
        proc = subprocess.run([os.path.join(VENV_BIN, "ansible-playbook"), "-i", self.inventory, PLAYBOOK,
                               "-e", json.dumps(self.extra_vars(**extra))] + list(args), cwd=REPO, env=ansible_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                              timeout=timeout, check=False)
        return proc.returncode, proc.stdout

    def module(self, name, args, check=False, timeout=300):
        """Run one module through Ansible on localhost; its result dict (failures included, ``failed`` set)."""
        play = [{"hosts": "localhost", "gather_facts": False,
                 "tasks": [{"name": "the module", name: args, "ignore_errors": True}]}]
        path = os.path.join(os.path.dirname(self.inventory), "module-%d.yml" % next(_COUNTER))
        with open(path, "w") as handle:
            handle.write(json.dumps(play) + "\n")
        env = ansible_env({"ANSIBLE_STDOUT_CALLBACK": "test_json",
                           "ANSIBLE_CALLBACK_PLUGINS": os.path.join(REPO, "tests", "callback_plugins")})
        proc = subprocess.run([os.path.join(VENV_BIN, "ansible-playbook"), "-i", self.inventory, path]
                              + (["--check"] if check else []), cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout, check=False)
        data = json.loads(proc.stdout[proc.stdout.index("{"):])
        return data["plays"][0]["tasks"][0]["hosts"]["localhost"]

    def sentinel(self, state="armed", check=False, **args):
        """The sentinel module on this test's label and files."""
        args = dict(args, state=state, label=self.label, spool_dir=self.spool_root, textfile_dir=self.textfile_dir,
                    syslog_socket=self.syslog.path)
        return self.module("fleettrace.tracefs.sentinel", args, check=check)

    def resolve(self, binary, spec):
        """The definition of ``spec`` in ``binary`` (probe_info resolves it, nothing is written): (lines, build_id)."""
        result = self.module("fleettrace.tracefs.probe_info", {"binary": binary, "spec": spec, "resolve": True,
                                                               "group": "fleettrace_resolved", "event": "tick"})
        assert not result.get("failed"), result
        return result["definitions"], result["build_id"]

    def state(self):
        try:
            with open(os.path.join(self.spool, "state.json")) as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return {}

    def session(self):
        with open(os.path.join(self.spool, "session.json")) as handle:
            return json.load(handle)

    def latest_results(self):
        """summary.json of the newest collection in the results directory."""
        runs = sorted(glob.glob(os.path.join(self.results, "sentinel-%s-*" % self.label)))
        assert runs, "no collection under %s" % self.results
        with open(os.path.join(runs[-1], "summary.json")) as handle:
            return runs[-1], json.load(handle)

    def watchers(self):
        """Pids of processes whose command line names this sentinel (``fleettrace-sentinel LABEL``)."""
        return processes_with("fleettrace-sentinel %s " % self.label)

    def tracefs_names(self):
        instances = [n for n in os.listdir(os.path.join(TRACEFS, "instances")) if n.startswith(self.tag)]
        with open(os.path.join(TRACEFS, "uprobe_events")) as handle:
            probes = [line.strip() for line in handle if (":%s/" % self.tag) in line]
        return instances + probes

    def metric(self, name):
        path = os.path.join(self.textfile_dir, "fleettrace_sentinel_%s.prom" % self.label)
        with open(path) as handle:
            for line in handle:
                if line.startswith("fleettrace_sentinel_%s{" % name):
                    return float(line.rsplit(" ", 1)[1])
        return None

    def close(self):
        self.syslog.close()


def processes_with(marker):
    """Pids whose command line contains ``marker`` (zombies left out)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as handle:
                text = handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
            with open("/proc/%s/stat" % name) as handle:
                state = handle.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in text and state != "Z":
            found.append(int(name))
    return found


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Staller(threading.Thread):
    """Runs ``actions`` one after the other, each after a random wait the test never learns in advance.

    ``actions``: [(low_s, high_s, callable)]; ``done`` is set after the last one; ``fired`` records
    (monotonic time, index) of each.
    """

    def __init__(self, actions):
        threading.Thread.__init__(self, daemon=True)
        self.actions = actions
        self.done = threading.Event()
        self.stop = threading.Event()
        self.fired = []

    def run(self):
        for index, (low, high, action) in enumerate(self.actions):
            if self.stop.wait(random.uniform(low, high)):
                return
            action()
            self.fired.append((time.monotonic(), index))
        self.done.set()


def sigstop_for(pid, seconds):
    """A stall of exactly the test's choosing: SIGSTOP, wait, SIGCONT."""
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)
