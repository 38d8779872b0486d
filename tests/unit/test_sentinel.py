"""The sentinel's pure parts: settings, the spool's size cap, the journal line, the metric, the code it copies."""

import json
import os
import re
import sys

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils.sentinel import collect, launch, notify, settings, spool
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import owner as run_owner
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import per_cpu
from tests.helpers.paths import COLLECTIONS

DEFINITION = "p:x/tick /usr/sbin/corosync:0x2516c tv_diff=%r12:u64"


def make(**changes):
    values = dict(label="corosync", pid=os.getpid(), binary="/usr/sbin/corosync", definitions=[DEFINITION],
                  field="tv_diff", threshold=2400000000)
    values.update(changes)
    return settings.Settings(**values)


# -- settings ---------------------------------------------------------------------------
@pytest.mark.parametrize("changes, words", [
    ({"label": "core sync"}, "label 'core sync'"),
    ({"label": "x" * 33}, "1 to 32"),
    ({"duration": 31 * 86400.0}, "duration=2678400.0 is out of range"),
    ({"duration": float("nan")}, "not a number"),
    ({"threshold": 0}, "positive whole number"),
    ({"threshold": True}, "positive whole number"),
    ({"unit": "parsec"}, "unit 'parsec'"),
    ({"definitions": []}, "no probe definition"),
    ({"binary": "corosync"}, "absolute path"),
    ({"max_captures": 0}, "max_captures=0 is out of range"),
    ({"spool_dir": "relative"}, "spool_dir 'relative'"),
    ({"frequency": 3}, "unknown setting(s): frequency"),
])
def test_settings_refuse_what_cannot_be_used(changes, words):
    with pytest.raises(settings.SettingsError) as caught:
        make(**changes)
    assert words in str(caught.value)


def test_fingerprint_is_the_settings_not_the_pid_nor_the_paths():
    base = make()
    assert make(pid=1).fingerprint() == base.fingerprint()
    assert make(spool_dir="/tmp/elsewhere", syslog_socket="/tmp/log").fingerprint() == base.fingerprint()
    assert make(threshold=2400000001).fingerprint() != base.fingerprint()
    assert make(max_captures=6).fingerprint() != base.fingerprint()
    assert make(label="other").fingerprint() != base.fingerprint()
    again = settings.Settings.from_dict(base.as_dict())
    assert again.fingerprint() == base.fingerprint() and again.pid == base.pid


def test_names_are_owned_by_the_tag_and_fit_the_kernel_limits():
    names = settings.names("x" * 32)
    assert all(name == names["tag"] or name.startswith(names["tag"] + "_") for name in names.values())
    assert max(len(name) for name in names.values()) <= 63


# -- the spool's cap -------------------------------------------------------------------
def entries(*durations, size=10):
    return [{"id": index, "bytes": size, "duration_ms": ms} for index, ms in enumerate(durations, 1)]


@pytest.mark.parametrize("durations, cap, dropped", [
    ((500, 900, 600, 700), 40, []),             # fits
    ((500, 900, 600, 700), 39, [3]),            # the shortest that is neither first nor longest
    ((500, 900, 600, 700), 20, [3, 4]),         # only the first and the longest remain
    ((500, 900, 600, 600), 30, [3]),            # equal lengths: the older goes first
    ((900, 500, 1200, 400), 20, [4, 2]),        # the newest may be the one dropped
    ((700,), 5, []),                            # the first is never dropped
])
def test_choose_drops_keeps_the_first_and_the_longest(durations, cap, dropped):
    assert spool.choose_drops(entries(*durations), cap) == dropped


def test_add_capture_trims_a_capture_to_half_the_cap_and_drops_whole_ones(tmp_path):
    box = spool.Spool(str(tmp_path), "label")
    box.ensure()
    index, gone = [], []
    for capture_id, ms in enumerate((450, 900, 500, 650), 1):
        doc = {"id": capture_id, "duration_ms": ms, "summary": "stall %d" % capture_id, "finding": {"x": "y" * 500},
               "events": [{"event": "e", "n": n, "pad": "z" * 100} for n in range(300)], "process": {"fds": []}}
        gone += box.add_capture(capture_id, doc, index, 48 * 1024)
    assert [e["id"] for e in index] == [1, 2]
    assert [e["id"] for e in gone] == [3, 4] and all("spool over 48 KiB" in e["why"] for e in gone)
    for entry in index:
        assert entry["bytes"] <= 24 * 1024 and os.path.getsize(entry["file"]) == entry["bytes"]
        kept = box.capture(entry["id"])
        assert kept["finding"] == {"x": "y" * 500} and kept["trimmed"] and kept["events_kept"] < 300
        assert kept["events"][-1]["n"] == 299     # the newest events stay, the oldest go
    assert sorted(os.listdir(box.path("captures"))) == ["0001.json", "0002.json"]


def test_spool_writes_never_follow_a_planted_symlink(tmp_path):
    box = spool.Spool(str(tmp_path), "label")
    box.ensure()
    victim = tmp_path / "victim"
    victim.write_text("keep")
    os.symlink(str(victim), box.path("state.json") + ".%d.tmp" % os.getpid())
    box.save_state({"status": "armed"})
    assert victim.read_text() == "keep" and box.state() == {"status": "armed"}


# -- journal line and metric -------------------------------------------------------------
def test_journal_line_says_who_how_long_and_why():
    blocked = {"comm": "corosync", "pid": 3687, "duration_ms": 4317.2, "cause": "blocked", "state": "S",
               "syscall": {"short": "ioctl(fd 26 -> /dev/watchdog, WDIOC_KEEPALIVE)"}}
    assert notify.journal_line(blocked) == \
        "corosync[3687] not scheduled for 4317 ms: S in ioctl(fd 26 -> /dev/watchdog, WDIOC_KEEPALIVE)"
    assert notify.journal_line(dict(blocked, syscall=None, state="D", blocked_in="percpu_rwsem_wait")).endswith(
        ": D in percpu_rwsem_wait")
    assert notify.journal_line({"comm": "c", "pid": 1, "duration_ms": 450, "cause": "runnable",
                                "ran_instead": {"comm": "hog", "pid": 9}}) == \
        "c[1] not scheduled for 450 ms: runnable, waiting for a CPU, hog[9] ran instead"
    assert notify.journal_line({"comm": "c", "pid": 1, "duration_ms": 45.26, "cause": "stopped", "state": "T"}) == \
        "c[1] not scheduled for 45.3 ms: stopped (state T: SIGSTOP or a debugger)"
    assert notify.journal_line({"comm": "c", "pid": 1, "duration_ms": 900, "cause": "unexplained"}).endswith(
        ": no cause in the buffer")


def test_metrics_are_prometheus_text_with_help_and_type():
    captures = [{"duration_ms": 1200.5, "at": 1700000000.25}, {"duration_ms": 4317.0, "at": 1700000100.5}]
    state = {"status": "armed", "captures_total": 3, "dropped_total": 1, "until": 1800000000.0,
             "target": {"comm": 'co"ro'}, "captures": captures}
    text = notify.metrics_text("corosync", state)
    samples = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) fleettrace_sentinel_\w+ \S", line), line
            continue
        name, value = line.rsplit(" ", 1)
        samples[name.split("{")[0]] = float(value)
        assert '{label="corosync",target="co\\"ro"}' in name
    assert samples["fleettrace_sentinel_armed"] == 1 and samples["fleettrace_sentinel_captures_total"] == 3
    assert samples["fleettrace_sentinel_last_stall_seconds"] == 4.317
    assert samples["fleettrace_sentinel_longest_stall_seconds"] == 4.317
    assert samples["fleettrace_sentinel_last_capture_timestamp_seconds"] == 1700000100.5
    assert text.count("# TYPE") == len(samples)
    assert notify.metrics_text("c", dict(state, status="deadline_passed")).count("fleettrace_sentinel_armed{") == 1
    assert "fleettrace_sentinel_armed{label=\"c\",target=\"co\\\"ro\"} 0" in notify.metrics_text(
        "c", dict(state, status="deadline_passed"))


def test_write_metrics_only_where_node_exporter_reads(tmp_path):
    assert notify.write_metrics(str(tmp_path / "absent"), "l", {}) is None
    path = notify.write_metrics(str(tmp_path), "l", {"status": "armed"})
    assert path == str(tmp_path / "fleettrace_sentinel_l.prom") and os.stat(path).st_mode & 0o777 == 0o644
    assert notify.remove_metrics(str(tmp_path), "l") and os.listdir(str(tmp_path)) == []


# -- the watcher's code and command line -------------------------------------------------
def test_code_files_are_the_loaded_sources_byte_for_byte():
    files = launch.code_files()
    root = COLLECTIONS
    for needed in ("sentinel/watcher.py", "sentinel/moment.py", "trace/threshold.py", "trace/instance_capture.py",
                   "trace/stop_condition.py", "trace/event_sink.py",
                   "runs/lifecycle.py", "runs/reaper.py", "procfs.py"):
        relative = "ansible_collections/fleettrace/tracefs/plugins/module_utils/" + needed
        assert relative in files, sorted(files)
        with open(os.path.join(root, relative), "rb") as handle:
            assert files[relative] == handle.read()
    assert not any("ansible/" in path.split("ansible_collections")[0] for path in files)


def test_the_watcher_shows_what_it_is_in_ps():
    argv = launch.command("/var/lib/fleettrace/sentinel/corosync/code", "corosync", "/var/lib/fleettrace/sentinel")
    assert argv[0] == sys.executable and argv[1] == "-I"
    assert " ".join(argv).endswith("sentinel_entry.py fleettrace-sentinel corosync /var/lib/fleettrace/sentinel")


def test_where_systemd_is_pid_1_the_watcher_is_a_transient_unit_with_the_deadline(tmp_path):
    """This machine has no systemd: a stand-in systemd-run records what it was asked to start."""
    record = tmp_path / "asked"
    runner = tmp_path / "systemd-run"
    runner.write_text("#!/bin/sh\nprintf '%%s\\n' \"$@\" > %s\n" % record)
    runner.chmod(0o755)
    box = spool.Spool(str(tmp_path), "corosync")
    box.ensure()
    how, proc = launch.start(box, "corosync", str(tmp_path), 604860.0, runner=str(runner))
    assert how == "systemd unit fleettrace-sentinel-corosync" and proc is None
    asked = record.read_text().splitlines()
    assert asked[:asked.index("--")] == ["--unit", "fleettrace-sentinel-corosync", "--collect", "--quiet",
                                         "--no-block", "--property", "RuntimeMaxSec=604860", "--property",
                                         "KillMode=process"]
    assert asked[asked.index("--") + 1:] == launch.command(box.path("code"), "corosync", str(tmp_path))
    assert launch.systemd_unit(str(tmp_path / "no-systemd")) is None


# -- how a sentinel ended ---------------------------------------------------------------
def test_status_of_a_sentinel_that_no_longer_runs(tmp_path):
    boot = tmp_path / "boot_id"
    boot.write_text("b1\n")
    me = run_owner.process(os.getpid(), "test").to_dict()
    gone = {"pid": 4194303, "start": 1, "what": "gone"}
    session = {"boot_id": "b1"}
    assert collect.status_of(None, {}, str(boot)) == ("not_armed", False)
    assert collect.status_of(session, {"status": "armed", "watcher": me}, str(boot)) == ("armed", True)
    assert collect.status_of(session, {"status": "armed", "watcher": gone}, str(boot)) == ("watcher_killed", False)
    assert collect.status_of(session, {"status": "deadline_passed", "watcher": gone}, str(boot)) == \
        ("deadline_passed", False)
    boot.write_text("b2\n")
    assert collect.status_of(session, {"status": "measuring", "watcher": gone}, str(boot)) == ("ended_by_reboot", False)


# -- the part of a buffer every CPU still holds ---------------------------------------------
def test_complete_since_is_the_latest_oldest_event_of_the_cpus_that_overwrote(tmp_path):
    def cpu(n, overrun, oldest):
        directory = tmp_path / "per_cpu" / ("cpu%d" % n)
        directory.mkdir(parents=True)
        (directory / "stats").write_text("entries: 10\noverrun: %d\ncommit overrun: 0\nbytes: 1\n"
                                         "oldest event ts:  %s\nnow ts:  5000.000000\ndropped events: 0\n"
                                         % (overrun, oldest))
    cpu(0, 0, "4093.484720")        # quiet: still holds its oldest events
    cpu(1, 120, "4110.000001")      # busy: lost what came before 4110.000001
    cpu(2, 7, "4101.5")
    before = {1: {"overrun": 0}, 2: {"overrun": 7}}     # cpu2 lost nothing since the baseline
    assert per_cpu.complete_since_ns(str(tmp_path), before) == 4110000001000
    assert per_cpu.complete_since_ns(str(tmp_path), {1: {"overrun": 120}, 2: {"overrun": 7}}) is None


def test_session_and_state_are_json_files(tmp_path):
    box = spool.Spool(str(tmp_path), "l")
    box.ensure()
    box.write_json({"a": 1}, spool.SESSION)
    with open(box.path(spool.SESSION)) as handle:
        assert json.load(handle) == {"a": 1}
    assert box.read_json("missing.json") is None
