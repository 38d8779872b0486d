"""The README's main command (scripts/demo.sh) end to end: the finding is printed and true.

Both scenarios: the slow watchdog (the default, the talk's incident: an ioctl
on /dev/watchdog held for a second, S state) and the frozen file system
(SCENARIO=frozen-fs, a write() in D state).
"""

import json
import os
import re
import subprocess

import pytest

from tests.helpers.paths import REPO, ansible_env
from tests.helpers import slow_watchdog as sw
from tests.helpers.armed import wait_armed

DEMO = os.path.join(REPO, "scripts", "demo.sh")
# The trace's text timestamps have microseconds.
CLOCK_RESOLUTION_NS = 1000


@pytest.fixture(autouse=True)
def _no_mount_left(mount_leak_check):
    yield


def run_demo(tmp_path, run_id, scenario=None, wrap=()):
    """scripts/demo.sh with its scratch directory under tmp_path (the mount leak check watches it)."""
    if os.geteuid() != 0:
        pytest.skip("the demo needs root")
    extra = {"FLEETTRACE_DEMO_RESULTS": str(tmp_path), "FLEETTRACE_DEMO_RUN_ID": run_id,
             "FLEETTRACE_DEMO_TMPDIR": str(tmp_path)}
    if scenario:
        extra["FLEETTRACE_DEMO_SCENARIO"] = scenario
    return subprocess.run(list(wrap) + ["bash", DEMO], cwd=REPO, env=ansible_env(extra), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=600, check=False)


def test_demo_prints_the_true_finding(tmp_path, run_token):
    run_id = "%s_demo" % run_token
    proc = run_demo(tmp_path, run_id, scenario="frozen-fs")
    assert proc.returncode == 0, proc.stdout[-6000:]

    # The one line a user reads.
    finding = [line for line in proc.stdout.splitlines() if line.startswith("- stall 1:")]
    assert finding, proc.stdout[-4000:]
    assert re.search(r"not scheduled for \d+\.\d ms; D state in write\(fd 3 -> /\S+/heartbeat\.log\)", finding[-1])
    assert "percpu_rwsem_wait" in finding[-1]

    with open(os.path.join(str(tmp_path), "corosync-%s" % run_id, "summary.json")) as handle:
        summary = json.load(handle)
    host = summary["hosts"][0]
    assert host["host"] == "localhost" and host["threshold_reached"] is True
    stall = host["findings"][0]
    assert stall["state"] == "D"
    assert stall["syscall"]["name"] == "write" and stall["fd"] == 3
    assert stall["file"].endswith("/mnt/heartbeat.log")
    assert any(frame.startswith("percpu_rwsem_wait") for frame in stall["kernel_stack"])
    # Runtime truth: the traced tv_diff is a delay the daemon itself measured and logged.
    logged = [float(ms) for ms in re.findall(r"main process was not scheduled for ([0-9.]+) ms", proc.stdout)]
    assert any(abs(ms - stall["value"] / 1e6) < 0.001 for ms in logged), (stall["value"], logged)
    assert stall["value"] >= 400 * 1000000
    # Probe and instance carried the run id and were removed (the leak check verifies the tracefs side).
    assert run_id in host["probe"]["instance"]


def test_demo_by_default_tells_the_talks_story(tmp_path, run_token):
    if sw.fuse_unavailable():
        pytest.skip(sw.fuse_unavailable())
    run_id = "%s_demo_wd" % run_token
    proc = run_demo(tmp_path, run_id)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert "demo: scenario watchdog" in proc.stdout

    # The one line a user reads: the talk's culprit, in the talk's terms.
    finding = [line for line in proc.stdout.splitlines() if line.startswith("- stall 1:")]
    assert finding, proc.stdout[-4000:]
    assert re.search(r"not scheduled for \d+\.\d ms; S state in ioctl\(fd 4 -> /dev/watchdog, WDIOC_KEEPALIVE\), "
                     r"off CPU \d+\.\d ms: waiting for a FUSE daemon's answer; kernel stack: request_wait_answer <- __fuse_simple_request <- fuse_do_ioctl",
                     finding[-1]), finding[-1]
    tail = proc.stdout[proc.stdout.index("demo: in words:"):]
    assert re.search(r"It slept \d+\.\d ms in state S \(sleeping\) in ioctl\(fd 4 -> /dev/watchdog, WDIOC_KEEPALIVE, 0x[0-9a-f]+\)",
                     tail), tail
    assert "The guess 'token timeout too low': ruled out" in tail
    histogram = re.search(r"^- ioctl on fd 4 \(WDIOC_KEEPALIVE\): (\d+) calls in [0-9.]+ s, p50 [0-9.]+ ms, p99 ([0-9.]+) ms", tail, re.M)
    assert histogram, tail
    assert re.search(r"^ +524288 -> 1048576 +us : [1-9]", tail, re.M), tail  # the held keepalives, ~1 s

    with open(os.path.join(str(tmp_path), "corosync-%s" % run_id, "summary.json")) as handle:
        host = json.load(handle)["hosts"][0]
    assert host["threshold_reached"] is True
    stall = host["findings"][0]
    pid = host["target"]["pid"]
    assert stall["state"] == "S" and stall["cause"] == "blocked", stall
    assert stall["fd"] == 4 and stall["file"] == "/dev/watchdog"
    assert stall["syscall"]["short"] == "ioctl(fd 4 -> /dev/watchdog, WDIOC_KEEPALIVE)"
    assert stall["excluded"]["syscall"] == "clock_nanosleep"  # the loop's own idle wait, said and left out
    # Runtime truth 1: the stall is a delay the daemon itself measured and logged.
    logged = [float(ms) for ms in re.findall(r"main process was not scheduled for ([0-9.]+) ms", proc.stdout)]
    assert any(abs(ms - stall["value"] / 1e6) < 0.001 for ms in logged), (stall["value"], logged)
    # Runtime truth 2: the slow watchdog held one of this daemon's keepalives inside that stall.
    with open(os.path.join(str(tmp_path), "corosync-%s" % run_id, "slow_watchdog.log")) as handle:
        keepalives = sw.parse_log(handle.read())[0]
    held = [ka for ka in keepalives if ka["slow"]]
    assert held and all(ka["pid"] == pid for ka in keepalives)
    assert any(1000e6 <= ka["duration_ns"] <= stall["value"] for ka in held), (stall["value"], held)
    nearest = min(held, key=lambda ka: abs(ka["duration_ns"] - stall["asleep_ns"]))
    assert abs(stall["asleep_ns"] - nearest["duration_ns"]) <= 0.01 * nearest["duration_ns"], (stall, nearest)
    served = re.search(r"(\d+) keepalives served, (\d+) held", proc.stdout)
    assert served and int(served.group(1)) == len(keepalives) and int(served.group(2)) == len(held)
    # Runtime truth 3: the histogram counts exactly the keepalives the watchdog served in that window
    # (same clock, CLOCK_MONOTONIC), each call traced around one served keepalive.
    measured = host["culprit_latency"]
    assert measured["trace_clock"] == "mono" and measured["count"] == len(measured["samples"]) == int(histogram.group(1))
    samples = measured["samples"]
    for sample in samples:
        inside = [ka for ka in keepalives if sample["start_ns"] <= ka["start_ns"]
                  and ka["end_ns"] <= sample["start_ns"] + sample["ns"] + CLOCK_RESOLUTION_NS]
        assert len(inside) == 1, (sample, inside)
    first, last = samples[0]["start_ns"], samples[-1]["start_ns"] + samples[-1]["ns"] + CLOCK_RESOLUTION_NS
    assert len([ka for ka in keepalives if first <= ka["start_ns"] and ka["end_ns"] <= last]) == len(samples)
    slow_in_window = [ka for ka in held if first <= ka["start_ns"] and ka["end_ns"] <= last]
    # ~1 in 30 keepalives is held: the p99 printed is one of the held ones the watchdog logged.
    p99_ns = float(histogram.group(2)) * 1e6
    assert any(abs(p99_ns - ka["duration_ns"]) <= 0.01 * ka["duration_ns"] for ka in slow_in_window), (p99_ns, held)


def test_demo_without_fuse_says_what_is_missing(tmp_path, run_token):
    # A machine without /dev/fuse, made in a private mount namespace: an empty file hides the device.
    blank = tmp_path / "no-fuse"
    blank.write_text("")
    wrap = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" /dev/fuse && exec "$@"', str(blank)]
    run_id = "%s_demo_nofuse" % run_token
    proc = run_demo(tmp_path, run_id, wrap=wrap)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "the slow-watchdog scenario needs FUSE" in proc.stdout and "/dev/fuse is missing" in proc.stdout
    assert "make demo SCENARIO=frozen-fs" in proc.stdout
    assert "Traceback" not in proc.stdout and "ansible-playbook" not in proc.stdout
    assert not os.path.exists(os.path.join(str(tmp_path), "corosync-%s" % run_id))
    assert not [name for name in os.listdir(str(tmp_path)) if name.startswith("fleettrace-demo.")]


def run_diagnose(tmp_path, run_id, binary, timeout=30, background=False, extra_args=()):
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n"
                         % os.path.join(REPO, ".venv", "bin", "python"))
    cmd = [os.path.join(REPO, ".venv", "bin", "ansible-playbook"), "-i", str(inventory),
           os.path.join(REPO, "playbooks", "diagnose-corosync.yml"),
           "-e", json.dumps({"diagnose_corosync_binary": binary, "diagnose_threshold_ms": 400,
                             "diagnose_timeout": timeout, "diagnose_results_dir": str(tmp_path / "results"),
                             "diagnose_run_id": run_id})] + list(extra_args)
    if background:
        return subprocess.Popen(cmd, cwd=REPO, env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                universal_newlines=True)
    return subprocess.run(cmd, cwd=REPO, env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=600, check=False)


def host_result(tmp_path, run_id):
    with open(os.path.join(str(tmp_path / "results"), "corosync-%s" % run_id, "summary.json")) as handle:
        return json.load(handle)["hosts"][0]


def test_node_without_the_daemon_is_reported_not_failed(tmp_path, run_token):
    run_id = "%s_absent" % run_token
    proc = run_diagnose(tmp_path, run_id, "/usr/sbin/fleettrace-no-such-daemon")
    assert proc.returncode == 0, proc.stdout[-4000:]
    host = host_result(tmp_path, run_id)
    assert host["status"] == "target_not_running" and host["threshold_reached"] is False
    assert "localhost: target not running" in proc.stdout


def test_target_dying_while_armed_is_reported_and_cleaned(demo_daemon, tmp_path, run_token):
    demo_daemon.start(period_ms=100, threshold_ms=400)  # no faults: it only dies
    run_id = "%s_dies" % run_token
    playbook = run_diagnose(tmp_path, run_id, demo_daemon.binary, timeout=120, background=True)
    try:
        assert wait_armed(run_id, playbook, timeout=300, interval=0.05), "never armed"
        demo_daemon.proc.kill()
        output = playbook.communicate(timeout=600)[0]
    finally:
        if playbook.poll() is None:
            playbook.kill()
            playbook.wait()
    assert playbook.returncode == 0, output[-4000:]
    host = host_result(tmp_path, run_id)
    assert host["status"] == "target_exited", host
    assert host["target"]["alive"] is False
    # The leak check (autouse) verifies that the instance and probe are gone.


def test_check_mode_says_what_it_would_do_and_writes_nothing(demo_daemon, tmp_path, run_token):
    pid = demo_daemon.start(period_ms=100, threshold_ms=400)
    run_id = "%s_check" % run_token
    proc = run_diagnose(tmp_path, run_id, demo_daemon.binary, extra_args=["--check"])
    assert proc.returncode == 0, proc.stdout[-4000:]
    match = re.search(r"check mode: would install p:(fleettrace_%s_\S+)/timer_function_scheduler_timeout %s:0x[0-9a-f]+ "
                      r"tv_diff=\S+:u64, trace demo_daemon\[%d\]" % (run_id, re.escape(demo_daemon.binary), pid),
                      proc.stdout)
    assert match, proc.stdout[-4000:]
    assert not os.path.exists(str(tmp_path / "results" / ("corosync-%s" % run_id) / "summary.json"))
    # Nothing in tracefs either: the autouse leak check compares before and after.
