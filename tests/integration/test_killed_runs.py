"""A SIGKILLed test leaves nothing in the kernel: the objects test helpers create are runs of their process.

A child process sets up what a test would (StallSetup on a running tick_loop; the
runtime-truth probes of the library suite) and is SIGKILLed while its objects are
live.  Its reapers (plugins/module_utils/runs/reaper.py) must remove exactly
them: every object the child created is gone, an object of ours that the child
did not register (a bystander) is still there, nothing else carrying this run's
token changed, and the top-level settings are as they were.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import cleanup as tracefs_cleanup
from tests.helpers import capture_program, tracefs_state
from tests.helpers.capture_program import TickLoop
from tests.helpers.paths import COLLECTIONS, REPO

# The rule's bound: a probe never outlives its run by more than this.
GONE_WITHIN = 60
BYSTANDER = "fleettrace_%s_bystander"

STALL_CHILD = """
import sys, time
sys.path[:0] = [sys.argv[1], sys.argv[2]]
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import Tracefs
from tests.helpers.stall_setup import StallSetup
name, group, binary, pid = sys.argv[3:7]
StallSetup(Tracefs(), name, group, binary, int(pid))
print("ready", flush=True)
time.sleep(600)
"""

TRUTH_CHILD = """
import sys
from types import SimpleNamespace
sys.path[:0] = [sys.argv[1], sys.argv[2]]
from elftools.elf.elffile import ELFFile
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import Tracefs
from tests.helpers import libtruth
token, binary, driver = sys.argv[3:6]
with open(binary, "rb") as handle:
    tick = ELFFile(handle).get_section_by_name(".symtab").get_symbol_by_name("tick")[0]
function = SimpleNamespace(symbol=(tick["st_value"], tick["st_size"]),
                           params=[("fd", "scalar"), ("previous", "pointer"), ("tick_number", "scalar")])
libtruth.judge_many(Tracefs(), token, binary, driver, [({"spec": "tick", "ours": [], "perf": []}, function)], 7)
"""


@pytest.fixture(scope="module")
def tick_binary(tmp_path_factory, cc):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    return capture_program.build(cc, tmp_path_factory.mktemp("tick_loop"))


def present(tracefs, instance, group):
    return {"instance": instance in tracefs.list_instances(),
            "uprobes": sorted(u.event for u in tracefs.list_uprobes() if u.group == group)}


def bystander(tracefs, binary, run_token):
    """An instance and a probe of ours that no run registered: a reaper must leave them alone."""
    name = BYSTANDER % run_token
    tracefs.instance(name).create()
    tracefs.add_uprobe(capture_program.gap_probe(binary, name))
    return name


def remove_bystander(tracefs, name):
    try:
        tracefs.instance(name).remove()
    finally:
        if any(u.group == name for u in tracefs.list_uprobes()):
            tracefs.remove_uprobe(name, "tick_gap")


def remove_leftovers(tracefs, instance, group):
    """When the reaper failed (the test fails): remove the child's objects by their exact names."""
    found = tracefs_cleanup.find_leftovers(tracefs, match=lambda name: name in (instance, group))
    tracefs_cleanup.remove_all(tracefs_cleanup.plan_removal(tracefs, found))


@contextlib.contextmanager
def child_with_objects(tracefs, run_token, tick_binary, instance, group, argv, **popen_args):
    """Start ``argv`` in its own process group next to a bystander; yield (child, snapshot before).

    Afterwards, also on failure: the child's group is killed, whatever the reaper did not
    remove of ``instance``/``group`` is removed by name, and the bystander too.
    """
    keeper = bystander(tracefs, tick_binary, run_token)
    child = None
    try:
        before = tracefs_state.snapshot(tracefs)
        child = subprocess.Popen(argv, start_new_session=True, **popen_args)
        yield child, before
    finally:
        if child is not None and child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        remove_leftovers(tracefs, instance, group)
        remove_bystander(tracefs, keeper)


def kill_and_check(tracefs, child, instance, group, before, run_token):
    """SIGKILL the child: its objects go within GONE_WITHIN s, and nothing else of ours changes."""
    os.killpg(child.pid, signal.SIGKILL)    # the child and its driver, at once
    child.wait()
    deadline = time.monotonic() + GONE_WITHIN
    while present(tracefs, instance, group) != {"instance": False, "uprobes": []}:
        assert time.monotonic() < deadline, "left behind %d s after SIGKILL: %s" % (
            GONE_WITHIN, present(tracefs, instance, group))
        time.sleep(0.1)
    keeper = BYSTANDER % run_token
    assert present(tracefs, keeper, keeper) == {"instance": True, "uprobes": ["tick_gap"]}
    changes = tracefs_state.diff_snapshots(before, tracefs_state.snapshot(tracefs), only=lambda name: run_token in name)
    assert changes == [], changes


def test_sigkilled_stall_setup_leaves_nothing(tracefs, unique_name, run_token, tick_binary, tmp_path):
    tick = TickLoop(tick_binary, str(tmp_path / "heartbeat"), tmp_path / "gaps.txt")
    instance = unique_name("killed")
    group = instance + "_grp"
    argv = [sys.executable, "-c", STALL_CHILD, REPO, COLLECTIONS, instance, group, tick_binary, str(tick.pid)]
    try:
        with child_with_objects(tracefs, run_token, tick_binary, instance, group, argv, stdout=subprocess.PIPE,
                                text=True) as (child, before):
            assert child.stdout.readline().strip() == "ready", "the child did not set up"
            assert present(tracefs, instance, group) == {"instance": True, "uprobes": ["tick_gap"]}
            switch = tracefs.instance(instance).event("sched", "sched_switch")
            assert [t for t in switch.triggers() if t.startswith("stacktrace")]
            kill_and_check(tracefs, child, instance, group, before, run_token)
    finally:
        tick.stop()


def test_sigkilled_runtime_truth_leaves_nothing(tracefs, run_token, tick_binary, tmp_path):
    """libtruth's probes (truth at tick's entry) and instance, killed while its driver runs."""
    ready = tmp_path / "driver-running"
    driver = tmp_path / "driver.sh"
    driver.write_text("#!/bin/sh\n: > %s\nexec sleep 600\n" % ready)
    driver.chmod(0o755)
    group = "fleettrace_%s_rt7" % run_token      # libtruth's name for index 7
    argv = [sys.executable, "-c", TRUTH_CHILD, REPO, COLLECTIONS, run_token, tick_binary, str(driver)]
    with child_with_objects(tracefs, run_token, tick_binary, group, group, argv) as (child, before):
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert child.poll() is None and time.monotonic() < deadline, "the driver never ran"
            time.sleep(0.05)
        assert present(tracefs, group, group) == {"instance": True, "uprobes": ["t0"]}
        assert tracefs.instance(group).event(group, "t0").enabled
        kill_and_check(tracefs, child, group, group, before, run_token)
