"""make demo SCENARIO=sentinel (scripts/demo.sh) end to end: the node catches the held keepalive alone.

The playbook arms and exits; the slow watchdog holds one keepalive by itself
20-40 s later (``hold_in_ms``); the demo prints the node's journal line, then
collects and prints the finding and the culprit's histogram, and disarms.  The
finding must be the keepalive the watchdog says it held, and nothing of the
sentinel may be left.
"""

import json
import os
import re
import subprocess

import pytest

from tests.helpers import sentinel as sh
from tests.helpers import slow_watchdog as sw
from tests.helpers.paths import REPO, ansible_env


@pytest.fixture(autouse=True)
def _no_mount_left(mount_leak_check):
    yield


def test_demo_sentinel_catches_the_held_keepalive_alone(tmp_path, run_token):
    if os.geteuid() != 0:
        pytest.skip("the demo needs root")
    if sw.fuse_unavailable():
        pytest.skip(sw.fuse_unavailable())
    label = "%s_demo" % run_token
    proc = subprocess.run(["bash", os.path.join(REPO, "scripts", "demo.sh")], cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=900, check=False,
                          env=ansible_env({"FLEETTRACE_DEMO_SCENARIO": "sentinel", "FLEETTRACE_DEMO_LABEL": label,
                                           "FLEETTRACE_DEMO_RESULTS": str(tmp_path),
                                           "FLEETTRACE_DEMO_TMPDIR": str(tmp_path), "FLEETTRACE_DEMO_LATENCY_S": "8"}))
    out = proc.stdout
    assert proc.returncode == 0, out[-6000:]
    # The play returned before the stall; a watcher named after the label was on its own.
    watching = out[out.index("the node watches by itself:"):]
    assert re.search(r"\n +\d+ \S+ -I \S+/sentinel_entry\.py fleettrace-sentinel %s " % label, watching), out[-4000:]
    line = re.search(r"journal: <28>fleettrace: demo_daemon\[(\d+)\] not scheduled for (\d+) ms: S in ioctl\(fd 4 -> "
                     r"/dev/watchdog, WDIOC_KEEPALIVE\)", out)
    assert line, out[-4000:]
    held = re.search(r"\d+ held; the first held: seq \d+ for ([0-9.]+) ms", out)
    assert held, out[-4000:]

    run_dir = [name for name in os.listdir(str(tmp_path)) if name.startswith("sentinel-%s-" % label)][0]
    with open(os.path.join(str(tmp_path), run_dir, "summary.json")) as handle:
        host = json.load(handle)["hosts"][0]
    stall = host["findings"][0]
    assert stall["pid"] == int(line.group(1)) and round(stall["duration_ms"]) == int(line.group(2))
    # The sleep inside the stall is the keepalive the watchdog held (its own log), within 1 %.
    assert abs(stall["asleep_ns"] / 1e6 - float(held.group(1))) <= 0.01 * float(held.group(1)), (stall, held.group(1))
    assert stall["syscall"]["short"] == "ioctl(fd 4 -> /dev/watchdog, WDIOC_KEEPALIVE)"
    # The culprit measured afterwards, while the watchdog held every 20th keepalive: the histogram has them.
    latency = host["culprit_latency"]
    assert latency["count"] > 20 and latency["max_ms"] >= 1000, latency
    assert "- ioctl on fd 4 (WDIOC_KEEPALIVE):" in out
    # Disarmed: no watcher, no spool (the leak check looks at tracefs).
    assert sh.processes_with("fleettrace-sentinel %s " % label) == []
    assert not os.path.exists(os.path.join("/var/lib/fleettrace/sentinel", label))
