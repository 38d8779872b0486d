"""Runs without a kernel: the manifest record and its checks, expiry, exact matching, claims, refusals,
quarantine (tests/integration/test_fault_injection.py and test_killed_runs.py prove the reapers on the real
tracefs; test_reaper.py proves the pair and its cost)."""

import json
import os
import subprocess
import sys
import time

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import choice, lifecycle, removal
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import owner as run_owner
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import store as store_module
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs.manifest import (
    MAX_BYTES, OLD_SCHEMA, PLAY, SSH_SESSION, Manifest, OwnershipError, Process)
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs.store import Quarantined, RunStore
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import validate
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import Tracefs
from tests.helpers.fake_tracefs import make_fake_tracefs


@pytest.fixture
def dead_process():
    proc = subprocess.Popen(["true"])
    record = run_owner.process(proc.pid, "gone")
    proc.wait()
    return Process(record.pid, record.start or 1, "gone")


@pytest.fixture
def me():
    return run_owner.process(os.getpid(), "test")


@pytest.fixture
def fake(tmp_path):
    """A fake tracefs and a private runs directory."""
    return Tracefs(make_fake_tracefs(str(tmp_path / "tracefs"))), RunStore(str(tmp_path / "runs"))


def record(owner, lease_left, deadline_left, now=1000.0, tag="fleettrace_x", **more):
    fields = dict(tag=tag, kind=PLAY, nonce="ab" * 16, owner=owner, created=now - 10, lease=5.0,
                  lease_until=now + lease_left, deadline=now + deadline_left, tracefs="/sys/kernel/tracing")
    fields.update(more)
    return Manifest(**fields)


@pytest.mark.parametrize("owner_alive, lease_left, deadline_left, expected", [
    (True, -10, 100, None),                           # owner lives: the lease does not matter
    (False, 5, 100, None),                            # owner gone, lease still running
    (False, -1, 100, "owner gone, lease expired"),
    (True, 50, -1, "deadline passed"),                # the deadline ends even a live run
])
def test_expiry(owner_alive, lease_left, deadline_left, expected, me, dead_process, fake):
    owner = me if owner_alive else dead_process
    assert choice.expired(record(owner, lease_left, deadline_left), fake[1], now=1000.0) == expected


def test_an_ssh_session_never_keeps_a_run_alive_only_renewals_do(fake, me):
    """A ControlPersist master outlives its controller by a minute: the session is no sign of life."""
    fs, store = fake
    session = Process(me.pid, me.start, "ssh session", SSH_SESSION)
    run = lifecycle.start(fs, "fleettrace_ssh", instances=["fleettrace_ssh"], deadline=60, lease=5, owner=session,
                          store=store, spawn=False)
    assert choice.expired(run, store, time.time() + 6) == choice.NOT_RENEWED
    os.utime(store.claim_path("fleettrace_ssh"), (time.time() + 4, time.time() + 4))   # the capture action's touch -c
    assert choice.expired(run, store, time.time() + 6) is None
    assert choice.expired(run, store, time.time() + 10) == choice.NOT_RENEWED


def test_reused_pid_is_not_the_owner(me):
    impostor = Process(me.pid, me.start + 1, "impostor")   # same pid, another start time
    assert run_owner.alive(me) and not run_owner.alive(impostor)


def test_exact_match_never_by_substring(fake):
    _fs, store = fake
    names = ["fleettrace_0537555_h_1a2b", "fleettrace_10537555_h_1a2b", "fleettrace_0537555_h_1a2b_x"]
    assert choice.removable("fleettrace_0537555_h_1a2b", names, store) == [
        "fleettrace_0537555_h_1a2b", "fleettrace_0537555_h_1a2b_x"]


def test_start_refuses_a_live_duplicate_and_foreign_names(fake, tmp_path, me):
    fs, store = fake
    first = lifecycle.start(fs, "fleettrace_r1_h", instances=["fleettrace_r1_h"], groups=["fleettrace_r1_h"],
                            deadline=60, owner=me, store=store, spawn=False)
    assert oct(os.stat(store.dir).st_mode & 0o777) == "0o700"
    with pytest.raises(OwnershipError, match="already live on this host"):
        lifecycle.start(fs, "fleettrace_r1_h", instances=["fleettrace_r1_h"], deadline=60, owner=me,
                        store=store, spawn=False)
    with pytest.raises(OwnershipError, match="belongs to another play"):
        lifecycle.finish(fs, "fleettrace_r1_h", "not-the-nonce", store=store)
    assert lifecycle.load("fleettrace_r1_h", store).nonce == first.nonce
    os.mkdir(str(tmp_path / "tracefs" / "instances" / "fleettrace_theirs"))
    with pytest.raises(OwnershipError, match="without a run manifest"):
        lifecycle.start(fs, "fleettrace_theirs", instances=["fleettrace_theirs"], deadline=60, owner=me,
                        store=store, spawn=False)
    done, errors = lifecycle.finish(fs, "fleettrace_r1_h", first.nonce, store=store)
    assert done.tag == "fleettrace_r1_h" and errors == []
    assert lifecycle.load("fleettrace_r1_h", store) is None
    assert os.listdir(store.claims) == []


def test_two_runs_never_own_one_name(fake, me):
    """A name another run claims, existing in tracefs or not yet, is refused naming that run."""
    fs, store = fake
    lifecycle.start(fs, "fleettrace_r1", instances=["fleettrace_r1_h"], deadline=60, owner=me, store=store, spawn=False)
    with pytest.raises(OwnershipError, match=r"already belongs to run fleettrace_r1 .*force: \[fleettrace_r1\]"):
        lifecycle.start(fs, "fleettrace_r1_h", instances=["fleettrace_r1_h"], deadline=60, owner=me, store=store,
                        spawn=False)
    assert store.claimant("fleettrace_r1_h") == "fleettrace_r1"


def test_names_must_carry_the_prefix_and_the_runs_tag(fake, me):
    fs, store = fake
    for tag, names in (("other_run", ["other_run"]), ("fleettrace_a", ["fleettrace_b"]),
                       ("fleettrace_a", ["fleettrace_ab"]), ("fleettrace_a", ["fleettrace_a_%d" % i for i in range(40)])):
        with pytest.raises(validate.ValidationError):
            lifecycle.start(fs, tag, instances=names, deadline=60, owner=me, store=store, spawn=False)
    assert not store.exists() or lifecycle.load("fleettrace_a", store) is None


def test_deadlines_by_kind(fake, me):
    fs, store = fake
    with pytest.raises(validate.ValidationError, match="out of range for a play run"):
        lifecycle.start(fs, "fleettrace_w", deadline=8 * 86400, owner=me, store=store, spawn=False)
    watcher = lifecycle.own(fs, "fleettrace_w", 30 * 86400, kind="watcher", store=store, spawn=False)
    assert watcher.deadline - watcher.created == pytest.approx(30 * 86400 + lifecycle.MODULE_RUN_MARGIN)
    assert lifecycle.load("fleettrace_w", store).kind == "watcher"


def test_expired_runs_are_reaped_and_only_they(fake, me, dead_process):
    fs, store = fake
    lifecycle.start(fs, "fleettrace_live", deadline=60, owner=me, store=store, spawn=False)
    lifecycle.start(fs, "fleettrace_dead", deadline=60, lease=0, owner=dead_process, store=store, spawn=False)
    reaped = removal.reap_expired(fs, store, now=time.time() + 1)
    assert [r[:2] for r in reaped] == [("fleettrace_dead", "owner gone, lease expired")]
    assert [m.tag for m in store.runs()[0]] == ["fleettrace_live"]


def test_a_manifest_of_the_previous_schema_is_understood(fake, me):
    fs, store = fake
    store.ensure()
    old = {"schema": OLD_SCHEMA, "tag": "fleettrace_old", "run_id": "r", "host": "h", "nonce": "cd" * 16,
           "owner": {"pid": me.pid, "start": me.start, "what": "ssh session (sshd 1: sshd)"}, "created": 10.0,
           "lease": 15.0, "lease_until": 25.0, "deadline": 3610.0, "tracefs": "/sys/kernel/tracing",
           "objects": {"instances": ["fleettrace_old"], "groups": ["fleettrace_old"]}, "reaper": None,
           "persistent": True, "holders": []}
    with open(store.path("fleettrace_old"), "w") as handle:
        json.dump(old, handle)
    manifest = store.load("fleettrace_old")
    assert manifest.kind == PLAY and manifest.owner.kind == SSH_SESSION and manifest.names == {"fleettrace_old"}


def test_a_later_schema_is_left_alone_and_an_older_ones_foreign_names_are_never_removed(fake, tmp_path, dead_process):
    """Two fleettrace versions on one node (an upgrade while runs are in flight): a later schema's
    manifest is not ours to judge; an older one's names without the prefix are kept, and so is
    its manifest while they exist (its own reapers remove them), never orphaned."""
    fs, store = fake
    store.ensure()
    with open(store.path("fleettrace_new"), "w") as handle:
        json.dump({"schema": "fleettrace.run/3", "tag": "fleettrace_new", "whatever": 1}, handle)
    assert store.load("fleettrace_new") is None and os.path.exists(store.path("fleettrace_new"))
    old = {"schema": OLD_SCHEMA, "tag": "ft_old", "nonce": "ef" * 16, "owner": dead_process.to_dict(),
           "created": 10.0, "lease": 0.0, "lease_until": 10.0, "deadline": 3610.0, "tracefs": fs.root,
           "objects": {"instances": ["ft_old"], "groups": []}}
    with open(store.path("ft_old"), "w") as handle:
        json.dump(old, handle)
    os.mkdir(str(tmp_path / "tracefs" / "instances" / "ft_old"))
    assert removal.reap_expired(fs, store) == []
    assert os.path.isdir(str(tmp_path / "tracefs" / "instances" / "ft_old"))
    assert store.load("ft_old") is not None, "the manifest of objects still there was dropped"
    os.rmdir(str(tmp_path / "tracefs" / "instances" / "ft_old"))
    removal.reap_expired(fs, store)
    assert store.load("ft_old") is None


@pytest.mark.parametrize("content, why", [
    (b'{"schema": "fleettrace.run/2", "tag": "fleettrace_bad"}', "objects is missing"),
    (b'{"schema": "fleettrace.run/2", "tag": "fleettrace_bad", "objects": {"instan', "not JSON"),
    (b'{"schema": "someone.else/1"}', "schema"),
    (b'[1, 2]', "not a JSON object"),
    (b'{"schema": "fleettrace.run/2", "tag": "../etc", "objects": {}}', "tag"),
    (b" " * (MAX_BYTES + 1), "bytes, more than"),
])
def test_a_malformed_manifest_is_quarantined_never_a_key_error(fake, content, why):
    fs, store = fake
    store.ensure()
    with open(store.path("fleettrace_bad"), "wb") as handle:
        handle.write(content)
    with pytest.raises(Quarantined, match=why):
        store.load("fleettrace_bad")
    assert not os.path.exists(store.path("fleettrace_bad"))
    assert [os.path.basename(p).split(".json.")[0] for p in store.quarantined()] == ["fleettrace_bad"]
    assert lifecycle.load("fleettrace_bad", store) is None
    assert removal.reap_expired(fs, store) == []      # moved aside once: the next reap has nothing to say


def test_what_a_quarantined_manifest_named_is_chosen_when_the_names_pass(fake, me):
    """A truncated manifest still says which names it meant; they go when they carry the prefix and
    the file's tag and no live run claims them. Another run's name and another tool's name stay
    (test_manifests_on_disk.py removes them from the real tracefs)."""
    fs, store = fake
    lifecycle.start(fs, "fleettrace_cut_live", instances=["fleettrace_cut_live"], deadline=60, owner=me, store=store,
                    spawn=False)
    with open(store.path("fleettrace_cut"), "w") as handle:
        handle.write('{"schema": "fleettrace.run/2", "tag": "fleettrace_cut", "objects": {"instances": '
                     '["fleettrace_cut", "fleettrace_cut_x", "fleettrace_cut_live", "fleettrace_other", "other_tool"')
    with pytest.raises(Quarantined) as aside:
        store.load("fleettrace_cut")
    assert aside.value.names == ["fleettrace_cut", "fleettrace_cut_live", "fleettrace_cut_x"]
    assert choice.removable("fleettrace_cut", aside.value.names, store) == ["fleettrace_cut", "fleettrace_cut_x"]
    assert "fleettrace_cut" in removal.warnings([("fleettrace_cut", "quarantined: " + aside.value.why, [])])[0]


def test_manifests_are_never_written_through_a_symlink(fake, tmp_path, me):
    fs, store = fake
    store.ensure()
    victim = tmp_path / "victim"
    victim.write_text("precious")
    os.symlink(str(victim), store.path("fleettrace_sym"))
    with pytest.raises(Quarantined, match="not a regular file"):
        store.load("fleettrace_sym")
    manifest = lifecycle.start(fs, "fleettrace_sym", deadline=60, owner=me, store=store, spawn=False)
    assert victim.read_text() == "precious" and not os.path.islink(store.path("fleettrace_sym"))
    os.unlink(store.log_path)       # it said the symlink was quarantined
    os.symlink(str(victim), store.log_path)
    store.log("a line")
    assert victim.read_text() == "precious"
    assert lifecycle.load("fleettrace_sym", store).nonce == manifest.nonce


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


def test_own_records_this_process_with_no_lease(fake):
    fs, store = fake
    before = time.time()
    manifest = lifecycle.own(fs, "fleettrace_r4_h", 30, instances=["fleettrace_r4_h"], what="test process",
                             store=store, spawn=False)
    assert manifest.owner.pid == os.getpid() and run_owner.alive(manifest.owner)
    assert manifest.owner.what.startswith("test process %d" % os.getpid())
    assert manifest.lease == 0.0
    margin = lifecycle.MODULE_RUN_MARGIN
    assert before + 30 + margin <= manifest.deadline <= time.time() + 30 + margin
    assert choice.expired(manifest, store) is None
    gone = manifest.with_changes(owner=Process(manifest.owner.pid, -1, "x"))
    assert choice.expired(gone, store) == "owner gone, lease expired"
    assert lifecycle.finish(fs, "fleettrace_r4_h", manifest.nonce, store=store)[1] == []


def test_new_files_are_never_written_through_an_existing_name(fake, tmp_path):
    """Temporary files and claims are O_EXCL|O_NOFOLLOW: a symlink planted at the name is refused, its
    target untouched (the bug report: a symlink at the manifest's temporary name was followed)."""
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import store as run_store
    _fs, store = fake
    store.ensure()
    victim = tmp_path / "victim"
    victim.write_text("precious")
    planted = os.path.join(store.dir, "planted.tmp")
    os.symlink(str(victim), planted)
    with pytest.raises(FileExistsError):
        run_store._write_new(planted, b"manifest")
    os.symlink(str(victim), store.claim_path("fleettrace_planted"))
    assert store.claim("fleettrace_planted", ["fleettrace_planted"]) == {}   # not a claim: replaced, not followed
    assert victim.read_text() == "precious" and not os.path.islink(store.claim_path("fleettrace_planted"))


def test_touch_renews_the_run_that_claims_a_name(fake, dead_process):
    fs, store = fake
    run = lifecycle.start(fs, "fleettrace_r3_h", instances=["fleettrace_r3_h"], deadline=60, lease=2,
                          owner=dead_process, store=store, spawn=False)
    assert lifecycle.touch(["fleettrace_r3_h", "fleettrace_other"], store) == ["fleettrace_r3_h"]
    assert store.renewed_at(run) >= run.created
    assert choice.expired(run, store, time.time() + 1) is None
    assert choice.expired(run, store, time.time() + 3) == "owner gone, lease expired"
    # A run named after it (syscall_latency's TAG_latency) works for it: touching its names renews it too.
    os.utime(store.claim_path("fleettrace_r3_h"), (time.time() - 10, time.time() - 10))
    assert lifecycle.touch(["fleettrace_r3_h_latency"], store) == ["fleettrace_r3_h"]
    assert choice.expired(run, store, time.time() + 1) is None


def test_a_reaped_runs_names_are_refused_to_a_late_task_until_a_new_run_claims_them(fake, dead_process):
    """Tombstones: a controller back after its lease ran out gets a refusal, never an object no run owns."""
    fs, store = fake
    lifecycle.start(fs, "fleettrace_late", instances=["fleettrace_late"], deadline=60, lease=0, owner=dead_process,
                    store=store, spawn=False)
    assert [r[:2] for r in removal.reap_expired(fs, store)] == [("fleettrace_late", "owner gone, lease expired")]
    with pytest.raises(OwnershipError, match="run fleettrace_late, which ended .owner gone, lease expired"):
        lifecycle.working_on(["fleettrace_late", None], store)
    assert lifecycle.touch_quietly(["fleettrace_late"], store) == []
    again = lifecycle.start(fs, "fleettrace_late", instances=["fleettrace_late"], deadline=60, owner=run_owner.process(
        os.getpid(), "me"), store=store, spawn=False)
    assert lifecycle.working_on(["fleettrace_late"], store) == ["fleettrace_late"]
    lifecycle.finish(fs, "fleettrace_late", again.nonce, store=store)
    assert lifecycle.working_on(["fleettrace_late"], store) == []     # finished by its play: no tombstone
    third = lifecycle.start(fs, "fleettrace_late", instances=["fleettrace_late"], deadline=60, owner=dead_process,
                            store=store, spawn=False)
    store.bury(third.with_changes(deadline=time.time() + 60), "test")
    store.sweep_tombstones()
    assert store.ended("fleettrace_late") == ("fleettrace_late", "test")       # until its deadline
    store.sweep_tombstones(now=time.time() + 61)
    assert os.listdir(store.claims) == []


def test_a_temporary_file_whose_writer_died_goes_at_the_next_reap(fake):
    """A reaper SIGKILLed between writing a manifest and renaming it left NAME.<hex>.tmp behind for good."""
    fs, store = fake
    run = lifecycle.start(fs, "fleettrace_tmp", instances=["fleettrace_tmp"], deadline=60, owner=run_owner.process(
        os.getpid(), "me"), store=store, spawn=False)
    orphan = store.path(run.tag) + ".0123456789ab.tmp"
    claim_orphan = store.claim_path("fleettrace_tmp") + ".ba9876543210.tmp"
    fresh = store.path(run.tag) + ".fedcba987654.tmp"     # a writer at work right now
    unrelated = os.path.join(store.dir, "notes.tmp")
    for path in (orphan, claim_orphan, fresh, unrelated):
        with open(path, "w") as handle:
            handle.write("{}")
    old = time.time() - store_module.STALE_TEMPORARY_S - 1
    for path in (orphan, claim_orphan, unrelated):
        os.utime(path, (old, old))
    removal.reap_expired(fs, store)
    assert not os.path.exists(orphan) and not os.path.exists(claim_orphan)
    assert os.path.exists(fresh) and os.path.exists(unrelated)
    assert lifecycle.load(run.tag, store) is not None       # the live run is untouched
    lifecycle.finish(fs, run.tag, run.nonce, store=store)


OWNER = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import lifecycle
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs.store import RunStore
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import Tracefs
lifecycle.own(Tracefs(sys.argv[2]), "fleettrace_r5_h", 60, store=RunStore(sys.argv[3]))
print("owned", flush=True)
time.sleep(120)
"""


def test_sigkill_of_the_owner_ends_its_run_at_once(tmp_path):
    """The reapers ``own`` starts see their owner SIGKILLed and end the run (well before the deadline)."""
    from tests.helpers.paths import COLLECTIONS
    root = make_fake_tracefs(str(tmp_path / "tracefs"))
    store = RunStore(str(tmp_path / "runs"))
    owner = subprocess.Popen([sys.executable, "-c", OWNER, COLLECTIONS, root, store.dir], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert owner.stdout.readline().strip() == "owned"
        assert store.load("fleettrace_r5_h").owner.pid == owner.pid
        deadline = time.monotonic() + 10
        while len(store.load("fleettrace_r5_h").reapers) < 2:
            assert time.monotonic() < deadline, "no pair of reapers registered"
            time.sleep(0.05)
    finally:
        owner.kill()
        owner.wait()
    deadline = time.monotonic() + 30
    while store.load("fleettrace_r5_h") is not None:
        assert time.monotonic() < deadline, "the run outlived its SIGKILLed owner"
        time.sleep(0.05)


def test_top_level_triggers_aimed_at_a_runs_group_are_found_only_for_runs_with_groups(tmp_path):
    """A top-level trigger can target a run's uprobe group; a run without groups skips that scan
    (one read per event of the kernel, at every module's end)."""
    fs = Tracefs(make_fake_tracefs(str(tmp_path)))
    trigger = "enable_event:fleettrace_x_grp:tick"
    with open(os.path.join(str(tmp_path), "events", "sched", "sched_switch", "trigger"), "w") as handle:
        handle.write("# Available triggers:\n%s:unlimited\n" % trigger)
    store = RunStore(str(tmp_path / "runs"))
    with_group = record(None, 1, 1, tag="fleettrace_x_grp", groups=("fleettrace_x_grp",))
    found = removal.leftovers_of(fs, with_group, store)
    assert [t[:3] for t in found["triggers"]] == [(None, "sched", "sched_switch")]
    assert found["triggers"][0][3].startswith(trigger)
    without = record(None, 1, 1, tag="fleettrace_x_grp", instances=("fleettrace_x_grp",))
    assert removal.leftovers_of(fs, without, store)["triggers"] == []


def test_answer_unread_when_the_reader_of_a_pipe_or_socket_is_gone(tmp_path):
    import socket
    read_end, write_end = os.pipe()
    assert not run_owner.answer_unread(write_end)
    os.close(read_end)
    assert run_owner.answer_unread(write_end)
    os.close(write_end)
    ours, theirs = socket.socketpair()
    assert not run_owner.answer_unread(ours.fileno())
    theirs.close()
    assert run_owner.answer_unread(ours.fileno())
    ours.close()
    with open(str(tmp_path / "file"), "w") as handle:
        assert not run_owner.answer_unread(handle.fileno())
    with open(os.devnull, "w") as handle:
        assert not run_owner.answer_unread(handle.fileno())


def test_cleanup_summary_names_what_went_and_what_stayed():
    result = {"removed": {"instances": ["fleettrace_r1_a"], "uprobes": ["fleettrace_r1_a/tick"], "events": [],
                          "triggers": ["top:g:e:t"]},
              "runs": [{"tag": "fleettrace_r1_a", "why": "owner gone"}], "live": ["fleettrace_r2_b: live"],
              "quarantined": [], "sentinels": [{"tag": "fleettrace_sentinel_corosync"}]}
    text = removal.summary(result, check_mode=True)
    assert text.startswith("would remove: 1 instance(s) ['fleettrace_r1_a'], 1 uprobe(s)")
    assert "1 trigger(s); runs ['fleettrace_r1_a']; live runs left alone: ['fleettrace_r2_b: live']" in text
    assert "sentinels: ['fleettrace_sentinel_corosync']" in text
    assert removal.summary(result, check_mode=False).startswith("removed: ")
