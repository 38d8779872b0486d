"""Run manifests without a kernel: expiry, exact matching, refusals (tests/integration/test_fault_injection.py
proves the reaper on the real tracefs)."""

import os
import subprocess
import sys
import time

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import ownership, validate
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import Tracefs
from tests.helpers.fake_tracefs import make_fake_tracefs


@pytest.fixture
def dead_process():
    proc = subprocess.Popen(["true"])
    record = ownership.process(proc.pid, "gone")
    proc.wait()
    record["start"] = record["start"] or 1
    return record


@pytest.fixture
def me():
    return ownership.process(os.getpid(), "test")


def manifest(owner, lease_left, deadline_left, now=1000.0):
    return {"tag": "fleettrace_x", "owner": owner, "lease_until": now + lease_left, "deadline": now + deadline_left}


@pytest.mark.parametrize("owner_alive, lease_left, deadline_left, expected", [
    (True, -10, 100, None),                           # owner lives: the lease does not matter
    (False, 5, 100, None),                            # owner gone, lease still running
    (False, -1, 100, "owner gone, lease expired"),
    (True, 50, -1, "deadline passed"),                # the deadline ends even a live run
])
def test_expiry(owner_alive, lease_left, deadline_left, expected, me, dead_process):
    owner = me if owner_alive else dead_process
    assert ownership.expired(manifest(owner, lease_left, deadline_left), now=1000.0) == expected


def test_reused_pid_is_not_the_owner(me):
    impostor = dict(me, start=me["start"] + 1)   # same pid, another start time
    assert ownership.alive(me) and not ownership.alive(impostor)


def test_exact_match_never_by_substring():
    match = ownership.matches({"objects": {"instances": ["fleettrace_0537555_h_1a2b"], "groups": ["fleettrace_0537555_h_1a2b"]}})
    assert match("fleettrace_0537555_h_1a2b")
    assert not match("fleettrace_10537555_h_1a2b") and not match("fleettrace_0537555_h_1a2b_x")


def test_start_refuses_a_live_duplicate_and_foreign_names(tmp_path, me):
    fs = Tracefs(make_fake_tracefs(str(tmp_path / "tracefs")))
    runs = str(tmp_path / "runs")
    first = ownership.start(fs, "fleettrace_r1_h", instances=["fleettrace_r1_h"], groups=["fleettrace_r1_h"],
                            deadline=60, owner=me, runs_dir=runs, spawn=False)
    assert oct(os.stat(runs).st_mode & 0o777) == "0o700"
    with pytest.raises(ownership.OwnershipError, match="already live on this host"):
        ownership.start(fs, "fleettrace_r1_h", instances=["fleettrace_r1_h"], deadline=60, owner=me,
                        runs_dir=runs, spawn=False)
    with pytest.raises(ownership.OwnershipError, match="belongs to another play"):
        ownership.finish(fs, "fleettrace_r1_h", "not-the-nonce", runs_dir=runs)
    assert ownership.load("fleettrace_r1_h", runs)["nonce"] == first["nonce"]
    os.mkdir(str(tmp_path / "tracefs" / "instances" / "fleettrace_theirs"))
    with pytest.raises(ownership.OwnershipError, match="without a run manifest"):
        ownership.start(fs, "fleettrace_r2_h", instances=["fleettrace_theirs"], deadline=60, owner=me,
                        runs_dir=runs, spawn=False)
    # An object another run's manifest lists under another tag: that run is named, with how to end it.
    os.mkdir(str(tmp_path / "tracefs" / "instances" / "fleettrace_r1_h"))
    with pytest.raises(ownership.OwnershipError, match=r"already belongs to run fleettrace_r1_h .*force: \[fleettrace_r1_h\]"):
        ownership.start(fs, "fleettrace_r3_h", instances=["fleettrace_r1_h"], deadline=60, owner=me,
                        runs_dir=runs, spawn=False)
    os.rmdir(str(tmp_path / "tracefs" / "instances" / "fleettrace_r1_h"))   # a fake tree: no files to undo
    done, errors = ownership.finish(fs, "fleettrace_r1_h", first["nonce"], runs_dir=runs)
    assert done["tag"] == "fleettrace_r1_h" and errors == []
    assert ownership.load("fleettrace_r1_h", runs) is None


def test_expired_runs_are_reaped_and_only_they(tmp_path, me, dead_process):
    fs = Tracefs(make_fake_tracefs(str(tmp_path / "tracefs")))
    runs = str(tmp_path / "runs")
    ownership.start(fs, "fleettrace_live", deadline=60, owner=me, runs_dir=runs, spawn=False)
    ownership.start(fs, "fleettrace_dead", deadline=60, lease=0, owner=dead_process, runs_dir=runs, spawn=False)
    reaped = ownership.reap_expired(fs, runs, now=time.time() + 1)
    assert [r[:2] for r in reaped] == [("fleettrace_dead", "owner gone, lease expired")]
    assert [m["tag"] for m in ownership.list_runs(runs)] == ["fleettrace_live"]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 1e308, 0, -1, "x"])
def test_seconds_refuse_what_never_ends(value):
    with pytest.raises(validate.ValidationError, match="out of range|not a number"):
        validate.seconds(value, "timeout")


def test_buffer_size_capped_against_memory_with_the_numbers():
    assert validate.buffer_size_kb(4096, cpus=2, available_kb=1 << 20) == 4096
    with pytest.raises(validate.ValidationError) as exc:
        validate.buffer_size_kb(6 << 20, cpus=2, available_kb=1 << 20)
    assert "x 2 CPUs" in str(exc.value) and "MemAvailable (1024 MiB)" in str(exc.value) and "at most 262144 KiB" in str(exc.value)
    with pytest.raises(validate.ValidationError, match="at most"):
        validate.buffer_size_kb(2 ** 63, cpus=2, available_kb=1 << 20)
    for bad in (0, -5, True, 1.5):
        with pytest.raises(validate.ValidationError):
            validate.buffer_size_kb(bad, cpus=2, available_kb=1 << 20)


def test_names_say_which_kernel_limit():
    validate.group_name("g" * 63)
    with pytest.raises(validate.ValidationError, match="at most 63 .*MAX_EVENT_NAME_LEN"):
        validate.group_name("g" * 64)
    with pytest.raises(validate.ValidationError, match="65 characters long"):
        validate.instance_name("r" * 65)


@pytest.mark.parametrize("pid", [0, -1, 2 ** 40, "abc", 1.5])
def test_pids_must_name_a_process(pid):
    with pytest.raises(validate.ValidationError):
        validate.pid(pid)


def test_a_run_over_per_task_sessions_lives_while_its_modules_work(tmp_path, me, dead_process):
    """Without a persistent connection each task has its own owner: a touch hands the run over,
    and a holder (capture's wait) keeps it alive after that owner is gone; the deadline still ends it."""
    fs = Tracefs(make_fake_tracefs(str(tmp_path / "tracefs")))
    runs = str(tmp_path / "runs")
    ownership.start(fs, "fleettrace_r3_h", instances=["fleettrace_r3_h"], deadline=60, lease=2,
                    owner=dead_process, runs_dir=runs, spawn=False)
    assert ownership.touch(["fleettrace_r3_h"], runs, holder=me) == ["fleettrace_r3_h"]
    manifest = ownership.load("fleettrace_r3_h", runs)
    assert manifest["persistent"] is False and ownership.alive(manifest["owner"]) and manifest["holders"] == [me]
    manifest["owner"] = dead_process              # that task's session ended too
    later = time.time() + 5                       # lease (2 s) long gone
    assert ownership.expired(manifest, now=later) is None
    assert ownership.expired(dict(manifest, holders=[]), now=later) == "owner gone, lease expired"
    assert ownership.expired(manifest, now=time.time() + 61) == "deadline passed"
    # A persistent run (the default) ignores holders once its owner is gone: the controller died.
    assert ownership.expired(dict(manifest, persistent=True), now=later) == "owner gone, lease expired"
    assert ownership.touch(["fleettrace_other"], runs) == []


def test_own_records_this_process_with_no_lease(tmp_path):
    fs = Tracefs(make_fake_tracefs(str(tmp_path / "tracefs")))
    runs = str(tmp_path / "runs")
    before = time.time()
    manifest = ownership.own(fs, "fleettrace_r4_h", 30, instances=["fleettrace_r4_h"], what="test process",
                             runs_dir=runs, spawn=False)
    assert manifest["owner"]["pid"] == os.getpid() and ownership.alive(manifest["owner"])
    assert manifest["owner"]["what"].startswith("test process %d" % os.getpid())
    assert manifest["lease"] == 0.0
    assert before + 30 + ownership.MODULE_RUN_MARGIN <= manifest["deadline"] <= time.time() + 30 + ownership.MODULE_RUN_MARGIN
    assert ownership.expired(manifest) is None
    assert ownership.expired(dict(manifest, owner=dict(manifest["owner"], start=-1))) == "owner gone, lease expired"
    assert ownership.finish(fs, "fleettrace_r4_h", manifest["nonce"], runs_dir=runs)[1] == []


OWNER = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import ownership
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import Tracefs
ownership.own(Tracefs(sys.argv[2]), "fleettrace_r5_h", 60, runs_dir=sys.argv[3])
print("owned", flush=True)
time.sleep(120)
"""


def test_sigkill_of_the_owner_ends_its_run_at_once(tmp_path):
    """The reaper ``own`` starts sees its owner SIGKILLed and ends the run (well before lease or deadline)."""
    from tests.helpers.paths import COLLECTIONS
    root = make_fake_tracefs(str(tmp_path / "tracefs"))
    runs = str(tmp_path / "runs")
    owner = subprocess.Popen([sys.executable, "-c", OWNER, COLLECTIONS, root, runs], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "owned"
        manifest = ownership.load("fleettrace_r5_h", runs)
        assert manifest["owner"]["pid"] == owner.pid
        deadline = time.monotonic() + 10
        while ownership.load("fleettrace_r5_h", runs)["reaper"] is None:
            assert time.monotonic() < deadline, "no reaper registered"
            time.sleep(0.05)
    finally:
        owner.kill()
        owner.wait()
    deadline = time.monotonic() + 30
    while ownership.load("fleettrace_r5_h", runs) is not None:
        assert time.monotonic() < deadline, "the run outlived its SIGKILLed owner"
        time.sleep(0.05)


def test_top_level_triggers_aimed_at_a_runs_group_are_found_only_for_runs_with_groups(tmp_path):
    """A top-level trigger can target a run's uprobe group; a run without groups skips that scan
    (one read per event of the kernel, at every module's end)."""
    fs = Tracefs(make_fake_tracefs(str(tmp_path)))
    trigger = "enable_event:fleettrace_x_grp:tick"
    with open(os.path.join(str(tmp_path), "events", "sched", "sched_switch", "trigger"), "w") as handle:
        handle.write("# Available triggers:\n%s:unlimited\n" % trigger)
    with_group = {"objects": {"instances": [], "groups": ["fleettrace_x_grp"]}}
    found = ownership.leftovers_of(fs, with_group)
    assert [t[:3] for t in found["triggers"]] == [(None, "sched", "sched_switch")]
    assert found["triggers"][0][3].startswith(trigger)
    assert ownership.leftovers_of(fs, {"objects": {"instances": ["fleettrace_x_grp"], "groups": []}})["triggers"] == []


def test_answer_unread_when_the_reader_of_a_pipe_or_socket_is_gone(tmp_path):
    import socket
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import owner
    read_end, write_end = os.pipe()
    assert not owner.answer_unread(write_end)
    os.close(read_end)
    assert owner.answer_unread(write_end)
    os.close(write_end)
    ours, theirs = socket.socketpair()
    assert not owner.answer_unread(ours.fileno())
    theirs.close()
    assert owner.answer_unread(ours.fileno())
    ours.close()
    with open(str(tmp_path / "file"), "w") as handle:
        assert not owner.answer_unread(handle.fileno())
    with open(os.devnull, "w") as handle:
        assert not owner.answer_unread(handle.fileno())
