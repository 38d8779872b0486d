"""Check mode never mounts tracefs: a missing mount is reported among the commands it would run (issue 20).

Run in a private mount namespace (``unshare -m``) where tracefs is unmounted: the machine's own mount is
never touched, and what the namespace has mounted afterwards is read from inside it.
"""

import json
import os
import shutil
import subprocess

import pytest

from tests.helpers.paths import REPO, VENV_BIN, ansible_env

# Inside the namespace: drop tracefs (and debugfs, whose tracing directory would mount it on access),
# run the command, then print what is mounted there.
SCRIPT = """
set -e
for m in /sys/kernel/debug/tracing /sys/kernel/tracing /sys/kernel/debug; do umount -l "$m" 2>/dev/null || true; done
if grep -q ' tracefs ' /proc/self/mounts; then echo "NAMESPACE-STILL-MOUNTED"; exit 3; fi
set +e
"$@"
echo "RC=$?"
echo "MOUNTS:"; grep -E ' (tracefs|debugfs) ' /proc/self/mounts || true
"""


def in_private_namespace(argv, env):
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare (util-linux)")
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", SCRIPT, "sh"] + argv,
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=600, check=False)
    assert "RC=" in proc.stdout, proc.stdout + proc.stderr
    head, mounts = proc.stdout.rsplit("MOUNTS:", 1)
    return head, mounts.split()


@pytest.mark.parametrize("module, args", [
    ("instance", "name={name}"),
    ("event", "instance={name} event=sched:sched_switch enabled=true"),
    ("sched_latency", "duration=1 instance_label={name}"),
])
def test_check_mode_of_a_module_lists_the_mount_and_mounts_nothing(module, args, unique_name, tmp_path):
    name = unique_name("ns")
    play = tmp_path / "play.yml"
    options = dict(item.split("=", 1) for item in args.format(name=name).split())
    play.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False,
                                 "tasks": [{"name": "the module", "fleettrace.tracefs." + module: options}]}]) + "\n")
    env = ansible_env({"ANSIBLE_STDOUT_CALLBACK": "test_json",
                       "ANSIBLE_CALLBACK_PLUGINS": os.path.join(REPO, "tests", "callback_plugins")})
    out, mounts = in_private_namespace(
        [os.path.join(VENV_BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local", "--check", str(play)], env)
    assert "RC=0" in out, out
    result = json.loads(out[out.index("{"):out.rindex("RC=")])["plays"][0]["tasks"][0]["hosts"]["localhost"]
    assert result["commands"] == ["mount -t tracefs nodev /sys/kernel/tracing"], result
    assert result["msg"].startswith("check mode: tracefs is not mounted; would run 'mount -t tracefs nodev ")
    assert not result.get("failed")
    assert mounts == [], mounts


def test_audit_playbook_in_check_mode_mounts_nothing(unique_name, tmp_path):
    report = tmp_path / "report"
    env = ansible_env()
    out, mounts = in_private_namespace(
        [os.path.join(VENV_BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local", "--check",
         os.path.join(REPO, "playbooks", "audit-sched-latency.yml"),
         "-e", json.dumps({"fleettrace_report_dir": str(report), "sched_audit_duration": 1,
                           "sched_audit_instance_label": unique_name("ns")})], env)
    assert "RC=0" in out, out[-3000:]
    assert "would run 'mount -t tracefs nodev /sys/kernel/tracing'" in out
    assert mounts == [] and not report.exists()
