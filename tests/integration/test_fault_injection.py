"""Fault injection: a diagnose run killed at each phase, by each method, leaves nothing behind.

The node must return to its pre-run tracefs state by itself (no cleanup.yml):
each run records its objects in a manifest and a detached reaper removes
exactly them once the owner is gone and the lease ran out, or the deadline
passed (docs/tracefs-core.md).  Other agents' objects exist on this kernel:
the fingerprint compares only this run's names.
"""

import glob
import json
import os
import signal
import subprocess
import time

import pytest

from tests.helpers.paths import REPO, ansible_env
from tests.helpers.armed import is_armed

TRACEFS = "/sys/kernel/tracing"
RUNS_DIR = "/run/fleettrace/runs"
LEASE_S = 3
# The guarantee is "within seconds of the owner dying" (lease + reaper poll +
# removal).  On this shared, loaded machine the bound checked is generous;
# the time measured is printed for docs/tracefs-core.md.
PROMISE_S = 60


def fingerprint(run_id, prefix="fleettrace_%s_"):
    """This run's tracefs objects and manifests (the pre-run state has none), by exact name prefix."""
    start = prefix % run_id
    instances = sorted(n for n in os.listdir(os.path.join(TRACEFS, "instances")) if n.startswith(start))
    with open(os.path.join(TRACEFS, "uprobe_events")) as handle:
        probes = sorted(line for line in handle.read().splitlines() if line.split(":", 1)[-1].startswith(start))
    events = sorted(n for n in os.listdir(os.path.join(TRACEFS, "events")) if n.startswith(start))
    manifests = sorted(n for n in os.listdir(RUNS_DIR) if n.startswith(start)) if os.path.isdir(RUNS_DIR) else []
    return {"instances": instances, "uprobes": probes, "event_groups": events, "manifests": manifests}


EMPTY = {"instances": [], "uprobes": [], "event_groups": [], "manifests": []}


def wait_restored(run_id, timeout=PROMISE_S, prefix="fleettrace_%s_"):
    start = time.time()
    while time.time() - start < timeout:
        if fingerprint(run_id, prefix) == EMPTY:
            return time.time() - start
        time.sleep(0.1)
    return None


def restore_timeline(run_id, playbook, killed, timeout=PROMISE_S):
    """Seconds after ``killed`` at which the controller exited, the run's lease was last renewed
    (its claims' newest mtime) and its last object went (None: not within ``timeout``)."""
    claims = {}
    for claim in glob.glob(os.path.join(RUNS_DIR, "claims", "fleettrace_%s_*" % run_id)):
        try:
            claims[claim] = os.stat(claim).st_ino
        except OSError:
            pass
    exited = renewed = None
    while time.time() - killed < timeout:
        if exited is None and playbook.poll() is not None:
            exited = time.time() - killed
        for claim, inode in claims.items():
            try:
                info = os.stat(claim)
            except OSError:
                continue
            if info.st_ino == inode:    # not yet its tombstone (a new file renamed over it)
                renewed = info.st_mtime - killed if renewed is None else max(renewed, info.st_mtime - killed)
        if fingerprint(run_id) == EMPTY:
            return {"exited": exited, "renewed": renewed, "restored": time.time() - killed}
        time.sleep(0.1)
    return {"exited": exited, "renewed": renewed, "restored": None}


def remove_everything_of(run_id):
    """Last resort after a failed test: remove this run's objects by name."""
    subprocess.run([os.path.join(REPO, ".venv", "bin", "ansible"), "localhost", "-m", "fleettrace.tracefs.cleanup",
                    "-a", json.dumps({"name_contains": run_id + "_"})], cwd=REPO, env=ansible_env(),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    for path in glob.glob(os.path.join(RUNS_DIR, "*%s_*" % run_id)):
        tag = os.path.basename(path)[:-len(".json")]
        subprocess.run([os.path.join(REPO, ".venv", "bin", "ansible"), "localhost", "-m", "fleettrace.tracefs.cleanup",
                        "-a", json.dumps({"force": [tag]})], cwd=REPO, env=ansible_env(),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


@pytest.fixture
def ticking_daemon(tmp_path, cc):
    """The demo daemon (probe target) on a plain file: it never stalls, the threshold is never reached."""
    if os.geteuid() != 0:
        pytest.skip("uprobes need root")
    binary = str(tmp_path / "demo_daemon")
    subprocess.run([cc, "-g", "-O2", "-o", binary, os.path.join(REPO, "tests", "programs", "demo", "demo_daemon.c")],
                   check=True)
    proc = subprocess.Popen([binary, str(tmp_path / "heartbeat.log"), "100", "400"], stderr=subprocess.DEVNULL)
    try:
        yield binary
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def modules_of(marker, name):
    """Pids of this test's processes (their command line holds our private tmp dir), reapers excluded."""
    found = []
    for stat in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(stat, "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
            with open(stat[:-len("cmdline")] + "comm") as handle:
                comm = handle.read().strip()
        except OSError:
            continue
        if marker in cmdline and name in cmdline and comm != "fleettrace-reap":
            found.append(int(stat.split("/")[2]))
    return found


def kill_strays(tmp_path):
    """Ansible's workers run in sessions of their own and outlive a killed controller: end them."""
    for pid in modules_of(str(tmp_path), ""):
        if pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def start_diagnose(binary, tmp_path, run_id, timeout_s, inventory=None, env=None, lease=LEASE_S):
    if inventory is None:
        inventory = tmp_path / "inventory.ini"
        inventory.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n"
                             % os.path.join(REPO, ".venv", "bin", "python"))
    cmd = [os.path.join(REPO, ".venv", "bin", "ansible-playbook"), "-i", str(inventory),
           os.path.join(REPO, "playbooks", "diagnose-corosync.yml"),
           "-e", json.dumps({"diagnose_corosync_binary": binary, "diagnose_threshold_ms": 400,
                             "diagnose_timeout": timeout_s, "diagnose_results_dir": str(tmp_path / "results"),
                             "diagnose_run_id": run_id, "diagnose_report": False}
                            | ({"threshold_capture_lease": lease} if lease is not None else {}))]
    # Module files in a private remote_tmp (no pipelining): the test finds its own module processes
    # by that path, never another agent's.
    extra = {"ANSIBLE_REMOTE_TMP": str(tmp_path / "remote_tmp"), "ANSIBLE_LOCAL_TEMP": str(tmp_path / "local_tmp"),
             "ANSIBLE_PIPELINING": "False"}
    extra.update(env or {})
    # The play's output, for the message when a run never gets where the test waits for it.
    with open(str(tmp_path / "play.log"), "w") as log:
        return subprocess.Popen(cmd, cwd=REPO, env=ansible_env(extra), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def play_log(tmp_path, tail=4000):
    try:
        with open(str(tmp_path / "play.log"), errors="replace") as handle:
            return handle.read()[-tail:]
    except OSError:
        return "(no play.log)"


def probe_installed(run_id):
    return bool(fingerprint(run_id)["uprobes"])


class Phase:
    """When to kill: a predicate polled every 10 ms, with memory of what was seen."""

    def __init__(self, name, run_id, marker):
        self.name, self.run_id, self.marker = name, run_id, marker
        self.seen_armed = False

    def reached(self):
        if self.name == "setup":
            return probe_installed(self.run_id) and not is_armed(self.run_id)
        armed = is_armed(self.run_id)
        self.seen_armed = self.seen_armed or armed
        if self.name == "armed":
            return armed
        # cleanup: the capture ended and the module removing the run's objects started.
        return self.seen_armed and not armed and bool(
            modules_of(self.marker, "AnsiballZ_run.py") or modules_of(self.marker, "AnsiballZ_cleanup.py"))


def kill(method, playbook, marker):
    if method == "ctrl-c":
        os.killpg(playbook.pid, signal.SIGINT)       # a terminal's Ctrl-C goes to the foreground group, once
    elif method == "sigkill-playbook":
        os.killpg(playbook.pid, signal.SIGKILL)
    elif method == "sigkill-main":
        os.kill(playbook.pid, signal.SIGKILL)       # kill -9 PID: Ansible's workers (own sessions) live on
    elif method == "sigkill-module":
        for pid in modules_of(marker, "AnsiballZ_"):
            os.kill(pid, signal.SIGKILL)
    elif method == "ssh-drop":
        for pid in modules_of(marker, "ssh") + modules_of(marker, "sshd"):
            os.kill(pid, signal.SIGKILL)


CASES = [("setup", "ctrl-c"), ("setup", "sigkill-playbook"), ("armed", "ctrl-c"), ("armed", "sigkill-playbook"),
         ("cleanup", "sigkill-module"), ("cleanup", "sigkill-playbook")]


@pytest.mark.parametrize("phase, method", CASES, ids=["%s-%s" % c for c in CASES])
def test_killed_run_restores_the_node_by_itself(phase, method, ticking_daemon, tmp_path, run_token):
    run_id = "%s_fi_%s_%s" % (run_token, phase, method.replace("-", "_"))
    marker = str(tmp_path / "remote_tmp")
    assert fingerprint(run_id) == EMPTY
    # A short capture window, so the cleanup phase comes soon; long enough to see it armed.
    playbook = start_diagnose(ticking_daemon, tmp_path, run_id, timeout_s=8 if phase == "cleanup" else 120)
    when = Phase(phase, run_id, marker)
    try:
        deadline = time.time() + 300
        while not when.reached() and playbook.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        assert playbook.poll() is None, "the play ended before phase %s" % phase
        kill(method, playbook, marker)
        # The play (if it still runs) ends; nothing here runs cleanup.yml.
        try:
            playbook.wait(timeout=PROMISE_S)
        except subprocess.TimeoutExpired:
            os.killpg(playbook.pid, signal.SIGKILL)
            playbook.wait()
        took = wait_restored(run_id)
        kill_strays(tmp_path)
        assert took is not None, "%s at %s: still there after %d s: %s" % (method, phase, PROMISE_S, fingerprint(run_id))
        print("restored %.1f s after the play ended (%s at %s)" % (took, method, phase))
    finally:
        if playbook.poll() is None:
            os.killpg(playbook.pid, signal.SIGKILL)
            playbook.wait()
        kill_strays(tmp_path)
        if fingerprint(run_id) != EMPTY:
            remove_everything_of(run_id)


SCHED = "fleettrace_sched_%s_"


def test_async_timeout_of_sched_latency_removes_its_instance(run_playbook, run_token):
    """An async timeout SIGKILLs the module (not SIGTERM): its own reaper removes its instance."""
    label = "%s_fi_async" % run_token
    play = """
    - hosts: localhost
      gather_facts: false
      tasks:
        - name: window longer than its async limit
          fleettrace.tracefs.sched_latency:
            duration: 60
            instance_label: %s
            buffer_size_kb: 256
          async: 4
          poll: 1
          ignore_errors: true
    """ % label
    try:
        result = run_playbook(play)
        task = result.task("window longer than its async limit")
        assert task.get("failed"), task
        took = wait_restored(label, prefix=SCHED)
        assert took is not None, fingerprint(label, SCHED)
    finally:
        if fingerprint(label, SCHED) != EMPTY:
            remove_everything_of(label)


def test_overlapping_run_ids_never_touch_each_other(ticking_daemon, tmp_path, run_token, run_playbook):
    """Run id 0537555 ending (or being cleaned) must not remove run 10537555's objects; the same id twice is refused."""
    # As CI build numbers: the short id's tag is a substring of the long one's.
    short_id = "%s_0537555" % run_token
    long_id = "1" + short_id
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = start_diagnose(ticking_daemon, tmp_path / "a", long_id, timeout_s=120)
    try:
        deadline = time.time() + 300
        while not is_armed(long_id) and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert is_armed(long_id)
        before = fingerprint(long_id)
        # A run whose id is a substring of the live one starts, ends and cleans up.
        second = start_diagnose(ticking_daemon, tmp_path / "b", short_id, timeout_s=2)
        second.wait(timeout=600)
        assert is_armed(long_id), "run %s's end removed the live run %s" % (short_id, long_id)
        assert fingerprint(long_id) == before
        # cleanup.yml by default removes orphans only: the live run stays.
        cleaned = run_playbook(os.path.join(REPO, "playbooks", "cleanup.yml"), extra_vars={"cleanup_hosts": "localhost"})
        assert cleaned.rc == 0, cleaned.stdout[-2000:]
        assert is_armed(long_id) and fingerprint(long_id) == before
        # The same run id again on this host: refused while the first lives, and the first survives.
        third = start_diagnose(ticking_daemon, tmp_path / "b", long_id, timeout_s=2)
        third.wait(timeout=600)
        summary = json.loads((tmp_path / "b" / "results" / ("corosync-%s" % long_id) / "localhost.json").read_text())
        assert summary["status"] == "failed" and "already live" in summary["message"], summary
        assert is_armed(long_id) and fingerprint(long_id) == before
        # Removing a live run takes force naming it.
        # The play's run; the capture working for it has a run of its own (TAG_cpu, its CPU context).
        tags = [m[:-len(".json")] for m in before["manifests"]]
        (tag,) = [t for t in tags if all(other.startswith(t) for other in tags)]
        forced = run_playbook(os.path.join(REPO, "playbooks", "cleanup.yml"),
                              extra_vars={"cleanup_hosts": "localhost", "cleanup_force": [tag]})
        assert forced.rc == 0, forced.stdout[-2000:]
        # The capture sees its instance gone at its next poll and removes its own run.
        deadline = time.time() + 30
        while fingerprint(long_id) != EMPTY and time.time() < deadline:
            time.sleep(0.2)
        assert fingerprint(long_id) == EMPTY
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
        for run_id in (long_id, short_id):
            if fingerprint(run_id) != EMPTY:
                remove_everything_of(run_id)


def test_dropped_ssh_connection_restores_the_node(loopback_sshd, ticking_daemon, tmp_path, run_token):
    """The SSH connection dies while armed and the controller cannot come back (its multiplexing
    master killed, the controller frozen as by a suspended laptop): the capture already running on
    the node ends at its timeout, then nothing renews the run and the node removes its objects a lease
    later, by itself. (A controller that is alive reconnects and renews: killing the master alone is
    no end of the play.)"""
    run_id = "%s_fi_ssh_drop" % run_token
    inventory = str(tmp_path / "ssh.ini")
    subprocess.run(["bash", os.path.join(REPO, "scripts", "ssh-loopback.sh"), "inventory", "1", inventory],
                   check=True, stdout=subprocess.PIPE, timeout=60)
    control = str(tmp_path / "cp")     # a master of our own: never another agent's shared one
    os.mkdir(control)
    # The default lease: over ssh the run lives by its controller's renewals, and the setup's probe
    # resolution (probe_info) renews nothing.
    # The capture on the node is an async job: it goes on to its own timeout and renews the run it
    # works for meanwhile, then ends and removes what it made; the run ends a lease later.
    capture_timeout_s = 30
    playbook = start_diagnose(ticking_daemon, tmp_path, run_id, timeout_s=capture_timeout_s, inventory=inventory,
                              env={"ANSIBLE_SSH_CONTROL_PATH_DIR": control}, lease=None)
    try:
        deadline = time.time() + 300
        while not is_armed(run_id) and playbook.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert is_armed(run_id), "never armed:\n" + play_log(tmp_path)
        masters = modules_of(control, "ssh")
        assert masters, "no ssh master of ours"
        # The whole controller freezes (Ansible's workers run in sessions of their own), then its link dies.
        # Only the controller's side: the node's modules (run from its remote_tmp) and its daemon go on,
        # as they would on a real node.
        node_side = set(modules_of(str(tmp_path / "remote_tmp"), "")) | set(modules_of(ticking_daemon, ""))
        frozen = [pid for pid in modules_of(str(tmp_path), "")
                  if pid not in masters and pid not in node_side and pid != os.getpid()]
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        for pid in masters:
            os.kill(pid, signal.SIGKILL)
        took = wait_restored(run_id, timeout=capture_timeout_s + PROMISE_S)
        assert took is not None, "still there after %d s: %s" % (capture_timeout_s + PROMISE_S, fingerprint(run_id))
        print("restored %.1f s after the connection dropped (default lease, capture timeout %d s)"
              % (took, capture_timeout_s))
    finally:
        if playbook.poll() is None:
            os.killpg(playbook.pid, signal.SIGKILL)
            playbook.wait()
        kill_strays(tmp_path)       # SIGKILL ends stopped processes too
        if fingerprint(run_id) != EMPTY:
            remove_everything_of(run_id)


@pytest.mark.parametrize("drop", ["ssh-master-killed", "ctrl-c"])
def test_dropped_ssh_connection_during_a_synchronous_audit_window(loopback_sshd, tmp_path, run_token, drop):
    """A fork per host: the audit's window is one synchronous call over ssh. The connection dies
    mid-window (its master killed): the module sees that nobody can read its result any more,
    ends the window at once and removes its instance (a 300 s window is gone within 60 s)."""
    label = "%s_fi_audit_drop" % run_token
    inventory = str(tmp_path / "ssh.ini")
    subprocess.run(["bash", os.path.join(REPO, "scripts", "ssh-loopback.sh"), "inventory", "1", inventory],
                   check=True, stdout=subprocess.PIPE, timeout=60)
    control = str(tmp_path / "cp")     # a master of our own: never another agent's shared one
    os.mkdir(control)
    window_s = 300
    cmd = [os.path.join(REPO, ".venv", "bin", "ansible-playbook"), "-i", inventory,
           os.path.join(REPO, "playbooks", "audit-sched-latency.yml"),
           "-e", json.dumps({"sched_audit_duration": window_s, "sched_audit_instance_label": label,
                             "sched_audit_buffer_size_kb": 256, "fleettrace_report_dir": str(tmp_path / "report")})]
    playbook = subprocess.Popen(cmd, cwd=REPO, env=ansible_env({"ANSIBLE_SSH_CONTROL_PATH_DIR": control,
                                                               "ANSIBLE_FORKS": "5"}),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while not fingerprint(label, SCHED)["instances"] and playbook.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert fingerprint(label, SCHED)["instances"], "the window never started"
        if drop == "ctrl-c":
            os.killpg(playbook.pid, signal.SIGINT)      # as a terminal does; the ssh master lives on
        else:
            masters = modules_of(control, "ssh")
            assert masters, "no ssh master of ours"
            for pid in masters:
                os.kill(pid, signal.SIGKILL)
        took = wait_restored(label, prefix=SCHED)
        assert took is not None, "still there %d s after the drop: %s" % (PROMISE_S, fingerprint(label, SCHED))
        assert playbook.wait(timeout=120) != 0      # unreachable host or killed play: never a success
        print("restored %.1f s after the connection dropped (window %d s)" % (took, window_s))
    finally:
        if playbook.poll() is None:
            os.killpg(playbook.pid, signal.SIGKILL)
            playbook.wait()
        kill_strays(tmp_path)
        if fingerprint(label, SCHED) != EMPTY:
            remove_everything_of(label)


def _seconds(value):
    return "%.1f" % value if value is not None else "?"


# Issue 22, 10: with the defaults (lease 15 s, the capture async and polled, ControlPersist 60 s over
# ssh) the node is restored within this many seconds of the operator's Ctrl-C or kill -9.
DEFAULT_PROMISE_S = 20
DEFAULT_CASES = [(connection, method) for connection in ("local", "ssh")
                 for method in ("ctrl-c", "sigkill-playbook", "sigkill-main")]


# A promise in seconds: judged on the machine alone (in CI's parallel part a local Ctrl-C once took
# 21.7 s beside two other workers; alone and at load 100 of busy loops 14.7-16.1 s).
@pytest.mark.serial
@pytest.mark.parametrize("connection, method", DEFAULT_CASES, ids=["%s-%s" % c for c in DEFAULT_CASES])
def test_default_settings_restore_the_node_within_20_s(connection, method, ticking_daemon, tmp_path, run_token,
                                                       request):
    """The owner is what the operator controls: a local ansible-playbook, or over ssh the controller's
    renewals (the capture action touches the run's claim between polls). Not the sshd session, which
    ControlPersist keeps a minute, nor the async wrapper, which would capture until its timeout."""
    run_id = "%s_fid_%s_%s" % (run_token, connection, {"ctrl-c": "int", "sigkill-playbook": "kill"}.get(method, "main"))
    inventory, env = None, None
    if connection == "ssh":
        request.getfixturevalue("loopback_sshd")
        inventory = str(tmp_path / "ssh.ini")
        subprocess.run(["bash", os.path.join(REPO, "scripts", "ssh-loopback.sh"), "inventory", "1", inventory],
                       check=True, stdout=subprocess.PIPE, timeout=60)
        control = str(tmp_path / "cp")     # a master of our own (ControlPersist 60 s, Ansible's default)
        os.mkdir(control)
        env = {"ANSIBLE_SSH_CONTROL_PATH_DIR": control}
    playbook = start_diagnose(ticking_daemon, tmp_path, run_id, timeout_s=300, inventory=inventory, env=env,
                              lease=None)
    try:
        deadline = time.time() + 300
        while not is_armed(run_id) and playbook.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert is_armed(run_id), "never armed:\n" + play_log(tmp_path)
        time.sleep(3)       # a poll or two of the async capture
        killed = time.time()
        kill(method, playbook, str(tmp_path / "remote_tmp"))
        timeline = restore_timeline(run_id, playbook, killed)
        took = timeline["restored"]
        assert took is not None, "%s over %s: still there %d s after: %s" % (
            method, connection, PROMISE_S, fingerprint(run_id))
        # Where the time went, should the promise ever be missed: a late renewal, a slow exit, a slow removal.
        said = "restored %.1f s after %s (%s, default lease, async capture; last renewal %s s, controller exited %s s after)" % (
            took, method, connection, _seconds(timeline["renewed"]), _seconds(timeline["exited"]))
        print(said)
        assert took <= DEFAULT_PROMISE_S, said
    finally:
        if playbook.poll() is None:
            os.killpg(playbook.pid, signal.SIGKILL)
            playbook.wait()
        kill_strays(tmp_path)
        if fingerprint(run_id) != EMPTY:
            remove_everything_of(run_id)
