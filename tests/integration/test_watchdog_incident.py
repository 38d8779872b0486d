"""The talk's incident end to end: a loop stalled by a slow watchdog keepalive (S state), named and measured.

The demo daemon (tests/programs/demo) tickles the slow watchdog (tests/programs/
slow_watchdog, FUSE) after every tick with ioctl(fd 4, WDIOC_KEEPALIVE), as
corosync's wd_tickle_fn() does.  Once diagnose-corosync.yml has armed, every
third keepalive is held for 600 ms.  The finding must name the ioctl decoded,
the S state and the FUSE wait; the culprit's latency histogram must equal the
slow watchdog's own log of the keepalives it served (count exact, each
duration within the FUSE round trip); and the usual guesses come with numbers.
"""

import json
import os
import subprocess

import pytest

from tests.helpers.paths import REPO, ansible_env
from tests.helpers import slow_watchdog as sw
from tests.helpers.armed import wait_armed

HELD_MS = 600
EVERY = 3
PERIOD_MS = 100
THRESHOLD_MS = 400
LATENCY_SECONDS = 4
# Timestamps of the trace text are truncated to microseconds.
CLOCK_RESOLUTION_NS = 1000


@pytest.fixture
def watchdog_binary(tmp_path, cc):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    reason = sw.fuse_unavailable()
    if reason:
        pytest.skip(reason)
    return sw.build(cc, tmp_path)


def test_slow_keepalive_is_named_and_measured(tmp_path, run_token, watchdog_binary, cc, mount_leak_check):
    run_id = "%s_wd" % run_token
    demo = str(tmp_path / "demo_daemon")
    subprocess.run([cc, "-g", "-O2", "-o", demo, os.path.join(REPO, "tests", "programs", "demo", "demo_daemon.c")],
                   check=True)
    with sw.SlowWatchdog(watchdog_binary, tmp_path, "ft_%s" % run_token, delay_ms=0, every=1) as wd:
        with open(str(tmp_path / "daemon.log"), "w") as log:
            daemon = subprocess.Popen([demo, str(tmp_path / "heartbeat.log"), str(PERIOD_MS), str(THRESHOLD_MS),
                                       wd.device], stderr=log)
        playbook = None
        try:
            inventory = tmp_path / "inventory.ini"
            inventory.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n"
                                 % os.path.join(REPO, ".venv", "bin", "python"))
            playbook = subprocess.Popen(
                [os.path.join(REPO, ".venv", "bin", "ansible-playbook"), "-i", str(inventory),
                 os.path.join(REPO, "playbooks", "diagnose-corosync.yml"), "-e", json.dumps({
                     "diagnose_corosync_binary": demo, "diagnose_threshold_ms": THRESHOLD_MS, "diagnose_timeout": 60,
                     "diagnose_results_dir": str(tmp_path / "results"), "diagnose_run_id": run_id,
                     "threshold_capture_latency_seconds": LATENCY_SECONDS, "threshold_capture_token_timeout_ms": 1000})],
                cwd=REPO, env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
            assert wait_armed(run_id, playbook), "the run never armed"
            wd.control(delay_ms=HELD_MS, every=EVERY)
            out = playbook.communicate(timeout=600)[0]
            assert playbook.returncode == 0, out[-6000:]
        finally:
            if playbook is not None and playbook.poll() is None:
                playbook.kill()
                playbook.wait()
            daemon.terminate()
            daemon.wait(timeout=30)
        keepalives = wd.keepalives()

    with open(os.path.join(str(tmp_path / "results"), "corosync-%s" % run_id, "summary.json")) as handle:
        host = json.load(handle)["hosts"][0]
    assert host["status"] == "threshold_reached", host["message"]
    stall = host["findings"][0]
    assert stall["cause"] == "blocked" and stall["state"] == "S", stall["explanation"]
    assert stall["syscall"]["short"] == "ioctl(fd 4 -> %s, WDIOC_KEEPALIVE)" % wd.device
    assert stall["syscall"]["ioctl"]["macro"] == "_IOR('W', 5, int)"
    assert "request_wait_answer" in " ".join(stall["kernel_stack"]), stall["kernel_stack"]
    assert stall["excluded"] and stall["excluded"]["syscall"] in ("clock_nanosleep", "nanosleep", "epoll_wait",
                                                                  "poll", "select"), stall["excluded"]
    # The keepalive held inside the stall is one the watchdog logged, and the stall covers it.
    held = [ka for ka in keepalives if ka["slow"] and ka["pid"] == daemon.pid]
    assert any(stall["asleep_ns"] >= ka["duration_ns"] and stall["value"] >= ka["duration_ns"] for ka in held)
    assert "Action failed" not in host["message"]

    # The culprit's histogram against the watchdog's own log of the keepalives it served.
    latency = host["culprit_latency"]
    assert latency["call"] == "ioctl" and latency["fd"] == 4 and latency["cmd"]["name"] == "WDIOC_KEEPALIVE"
    assert "fd == 4" in latency["kernel_filter"] and "cmd == %d" % sw.WDIOC_KEEPALIVE in latency["kernel_filter"]
    samples = latency["samples"]
    assert latency["count"] == len(samples) >= EVERY, latency
    first, last = samples[0]["start_ns"], samples[-1]["start_ns"] + samples[-1]["ns"]
    served = [ka for ka in keepalives if first <= ka["start_ns"] and ka["end_ns"] <= last]
    assert len(served) == latency["count"], (len(served), latency["count"])
    # Each call we timed encloses exactly one keepalive the watchdog served (trace text has 1 us resolution);
    # the difference is the FUSE round trip, not clock error.
    for sample in samples:
        inside = [ka for ka in served if sample["start_ns"] <= ka["start_ns"]
                  and ka["end_ns"] <= sample["start_ns"] + sample["ns"] + CLOCK_RESOLUTION_NS]
        assert len(inside) == 1, (sample, inside)
        assert sample["ns"] + CLOCK_RESOLUTION_NS >= inside[0]["duration_ns"]
    assert latency["max_ms"] >= HELD_MS and sum(b["count"] for b in latency["histogram_log2_us"]) == latency["count"]
    slow = sum(1 for ka in served if ka["slow"])
    assert slow >= 1 and latency["count"] - slow >= 1  # both kinds of keepalive are in the histogram

    # The probed value over the capture, and the guesses settled with numbers.
    assert host["probe_values"]["max_ms"] == round(stall["value"] / 1e6, 3)
    guesses = {g["guess"]: g for g in host["guesses"]}
    assert guesses["token timeout too low"]["ruled_out"] is True
    assert "1000 ms" in guesses["token timeout too low"]["seen"]
    assert guesses["overloaded host"]["ruled_out"] is True

    # The HTML report shows both histograms as inline SVG, with the same numbers.
    with open(os.path.join(str(tmp_path / "results"), "corosync-%s" % run_id, "report", "report.html")) as handle:
        page = handle.read()
    assert '<h3 class="culprit-latency">ioctl on fd 4 (WDIOC_KEEPALIVE): %d samples' % latency["count"] in page
    assert '<h3 class="probe-values">' in page and page.count('<svg class="hist"') >= 2
