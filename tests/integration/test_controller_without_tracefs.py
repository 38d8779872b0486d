"""A controller like an execution environment: an unprivileged user that cannot read tracefs.

ansible-playbook runs as user nobody (uid 65534) with Debian's python3 and the
collection copied world-readable; /sys/kernel/tracing is unreadable to it
(asserted, not assumed).  The one node (this machine over the loopback sshd, as
root) has only Python's standard library, so the probe must be resolved on the
controller: diagnose-corosync.yml has to do that with pyelftools and the binary
alone, ship the definition, and the node has to catch the stall the demo
daemon itself logged (runtime truth).
"""

import json
import os
import pwd
import shutil
import subprocess
import tempfile

import pytest

from tests.helpers.paths import REPO, SSH_LOOPBACK
from tests.helpers.tools import tool_path

NOBODY = 65534


def as_nobody(argv, env, cwd, timeout=600):
    return subprocess.run(["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY, "--clear-groups",
                           "--inh-caps=-all", "--bounding-set=-all"] + argv,
                          env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def nobody_home():
    """A world-readable scratch tree: the collection, HOME, results and the ssh key, owned by nobody."""
    top = tempfile.mkdtemp(prefix="fleettrace-controller-")
    os.chmod(top, 0o755)
    collection = os.path.join(top, "collections", "ansible_collections", "fleettrace", "tracefs")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if os.path.isfile(os.path.join(REPO, name)):
            os.makedirs(os.path.join(collection, os.path.dirname(name)), exist_ok=True)
            shutil.copy2(os.path.join(REPO, name), os.path.join(collection, name))
    for sub in ("home", "results", "bin"):
        os.makedirs(os.path.join(top, sub))
    subprocess.run(["chmod", "-R", "a+rX", top], check=True)
    for sub in ("home", "results"):
        os.chown(os.path.join(top, sub), NOBODY, NOBODY)
    try:
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


def inventory_for_nobody(top, node_python):
    """node1 = this machine as root over the loopback sshd, reached with a copy of the key nobody may read."""
    path = os.path.join(top, "inventory.ini")
    subprocess.run(["bash", SSH_LOOPBACK, "inventory", "1", path], check=True, stdout=subprocess.PIPE, timeout=60)
    with open(path) as handle:
        text = handle.read()
    key = [line.split("=", 1)[1] for line in text.splitlines() if line.startswith("ansible_ssh_private_key_file=")][0]
    own_key = os.path.join(top, "home", "id_ed25519")
    shutil.copy(key, own_key)
    os.chown(own_key, NOBODY, NOBODY)
    os.chmod(own_key, 0o600)
    text = text.replace("ansible_ssh_private_key_file=" + key, "ansible_ssh_private_key_file=" + own_key)
    # The node keeps root's own remote tmp (ANSIBLE_REMOTE_TEMP below is the controller user's).
    text = text.replace("node1 ansible_host=", "node1 ansible_python_interpreter=%s ansible_remote_tmp=~/.ansible/tmp "
                        "ansible_host=" % node_python)
    with open(path, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o644)
    return path


def test_diagnose_resolves_on_a_controller_without_tracefs_or_root(loopback_sshd, demo_daemon, nobody_home,
                                                                   tmp_path, run_token):
    if not shutil.which("setpriv") or not os.path.exists("/usr/bin/python3"):
        pytest.skip("setpriv (util-linux) or /usr/bin/python3 missing")
    assert pwd.getpwuid(NOBODY).pw_name == "nobody"
    venv = tool_path("unprivileged-controller")
    top = nobody_home
    # The node: Python's standard library only, so it cannot resolve the probe itself.
    node_venv = str(tmp_path / "node-stdlib-only")
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", node_venv], check=True)
    node_python = os.path.join(node_venv, "bin", "python")
    assert subprocess.run([node_python, "-c", "import elftools"], stderr=subprocess.DEVNULL,
                          check=False).returncode != 0
    # The controller's copy of the binary, readable by nobody (the node's sits under root's tmp dir).
    controller_binary = os.path.join(top, "bin", "demo_daemon")
    shutil.copy2(demo_daemon.binary, controller_binary)
    os.chmod(controller_binary, 0o755)
    env = {"HOME": os.path.join(top, "home"), "PATH": os.path.join(venv, "bin") + ":/usr/bin:/bin",
           "LANG": "C.UTF-8", "ANSIBLE_COLLECTIONS_PATH": os.path.join(top, "collections"),
           "ANSIBLE_LOCAL_TEMP": os.path.join(top, "home", ".ansible-tmp"),
           # nobody's home in passwd is /nonexistent: where modules that run on the controller keep their files.
           "ANSIBLE_REMOTE_TEMP": os.path.join(top, "home", ".ansible-remote"),
           "ANSIBLE_PIPELINING": "1", "ANSIBLE_HOST_KEY_CHECKING": "0",
           "ANSIBLE_STDOUT_CALLBACK": "test_json", "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_CALLBACK_PLUGINS": os.path.join(top, "collections", "ansible_collections", "fleettrace", "tracefs",
                                                    "tests", "callback_plugins")}
    # What an execution environment is: no root, and tracefs out of reach.
    looked = as_nobody(["/usr/bin/python3", "-c", "import os; print(os.getuid(), os.access('/sys/kernel/tracing',"
                        " os.R_OK | os.X_OK))"], env, top)
    assert looked.stdout.split() == [str(NOBODY), "False"], looked.stdout + looked.stderr

    pid = demo_daemon.start(period_ms=100, threshold_ms=400)
    demo_daemon.inject_faults(freeze_ms=1000, pause_ms=2000)
    run_id = "%s_nobody" % run_token
    results = os.path.join(top, "results")
    playbook = os.path.join(top, "collections", "ansible_collections", "fleettrace", "tracefs", "playbooks",
                            "diagnose-corosync.yml")
    extra = {"diagnose_corosync_binary": demo_daemon.binary, "diagnose_controller_binary": controller_binary,
             "diagnose_resolve_on_controller": True, "diagnose_threshold_ms": 400, "diagnose_timeout": 120,
             "diagnose_results_dir": results, "diagnose_run_id": run_id}
    proc = as_nobody([os.path.join(venv, "bin", "ansible-playbook"), "-i", inventory_for_nobody(top, node_python),
                      playbook, "-e", json.dumps(extra)], env, top)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    played = json.loads(proc.stdout)
    resolving = [task["hosts"] for play in played["plays"] for task in play["tasks"]
                 if task["task"]["name"].endswith("Resolve the probe on the controller, once per build-id of the nodes that need it")]
    assert resolving and all(not r.get("failed") and r["resolved_builds"] for hosts in resolving for r in hosts.values()), \
        resolving
    with open(os.path.join(results, "corosync-%s" % run_id, "node1.json")) as handle:
        host = json.load(handle)
    assert host["threshold_reached"] is True, (host["status"], host["message"])
    assert host["debuginfo"]["resolved_on"] == "controller" and host["debuginfo"]["binary_from"] == "controller_copy"
    assert host["probe"]["spec"] == "", "the stdlib-only node resolved the probe itself"
    assert " %s:0x" % demo_daemon.binary in host["probe"]["definitions"][0]
    assert host["target"]["pid"] == pid
    stall = host["findings"][0]
    assert stall["state"] == "D" and stall["file"] == demo_daemon.heartbeat, stall
    # Runtime truth: the traced tv_diff is a delay the daemon itself measured and logged.
    assert any(abs(ms - stall["value"] / 1e6) < 0.001 for ms in demo_daemon.late_ticks_ms()), stall["value"]
