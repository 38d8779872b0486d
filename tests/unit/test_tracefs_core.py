"""Unit tests of the tracefs core that need no kernel: validation, trigger
normalisation, change plans, feature detection and snapshot diffs on a fake tree."""


import os

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import validate
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.changes import ChangePlan, shell_write
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import (
    Tracefs, TracefsError, normalize_trigger, trigger_key)
from tests.helpers.fake_tracefs import make_fake_tracefs
from tests.helpers.tracefs_state import diff_snapshots


@pytest.mark.parametrize("name", ["fleettrace_x", "a", "web-1.example", "_private", "9lives"])
def test_good_instance_names(name):
    assert validate.instance_name(name) == name


@pytest.mark.parametrize("name, reason", [
    ("a/b", "contains '/'"), ("..", "contains '..'"), ("a..b", "contains '..'"),
    ("has space", "whitespace"), ("new\nline", "newline"), ("-lead", "outside"), ("x" * 65, "outside"),
])
def test_bad_instance_names_say_why(name, reason):
    with pytest.raises(validate.ValidationError) as exc:
        validate.instance_name(name)
    assert reason in str(exc.value)
    assert repr(name) in str(exc.value)


@pytest.mark.parametrize("spec, expected", [
    ("sched:sched_switch", ("sched", "sched_switch")),
    ("sched/sched_switch", ("sched", "sched_switch")),
    ("probe_corosync:timer_function_scheduler_timeout_L19", ("probe_corosync", "timer_function_scheduler_timeout_L19")),
])
def test_split_event(spec, expected):
    assert validate.split_event(spec) == expected


@pytest.mark.parametrize("spec", ["sched_switch", "a:b:c", "sched/../x", "sched:sched switch", "sched:"])
def test_split_event_rejects(spec):
    with pytest.raises(validate.ValidationError):
        validate.split_event(spec)


def test_expression_rejects_newlines_and_control_chars():
    with pytest.raises(validate.ValidationError, match="newline"):
        validate.expression("a == 1\nb == 2", "filter")
    with pytest.raises(validate.ValidationError, match="control"):
        validate.expression("a == \x01", "filter")
    assert validate.expression("  prev_state == 2 ", "filter") == "prev_state == 2"


@pytest.mark.parametrize("shown, given", [
    ("stacktrace:unlimited if prev_state == 2", "stacktrace if prev_state == 2"),
    ("traceoff:count=3 if prev_pid>0", "traceoff:3 if prev_pid>0"),
    ("enable_event:raw_syscalls:sys_enter:count=1 if prev_pid>0", "enable_event:raw_syscalls:sys_enter:1 if prev_pid>0"),
    ("enable_event:raw_syscalls:sys_enter:unlimited", "enable_event:raw_syscalls:sys_enter"),
    ("snapshot:unlimited", "snapshot"),
])
def test_triggers_compare_as_the_kernel_shows_them(shown, given):
    assert normalize_trigger(shown) == normalize_trigger(given)


def test_trigger_key_identifies_removal_target():
    assert trigger_key("traceoff:3 if x > 1") == "traceoff"
    assert trigger_key("enable_event:syscalls:sys_enter_write:2") == "enable_event:syscalls:sys_enter_write"


def test_change_plan_undoes_done_steps_in_reverse_on_failure():
    log = []
    plan = ChangePlan()
    plan.add("one", lambda: log.append("do1"), lambda: log.append("undo1"))
    plan.add("two", lambda: log.append("do2"), lambda: log.append("undo2"))

    def boom():
        raise TracefsError("refused")
    plan.add("three", boom, lambda: log.append("undo3"))
    with pytest.raises(TracefsError) as exc:
        plan.apply()
    assert log == ["do1", "do2", "undo2", "undo1"]
    assert exc.value.failed_command == "three"
    assert exc.value.not_undone == []


def test_change_plan_reports_undo_failures_without_hiding_the_cause():
    plan = ChangePlan()

    def bad_undo():
        raise TracefsError("cannot undo")

    def boom():
        raise TracefsError("refused")
    plan.add("one", lambda: None, bad_undo)
    plan.add("two", boom)
    with pytest.raises(TracefsError, match="refused") as exc:
        plan.apply()
    assert exc.value.not_undone == ["one: cannot undo"]


def test_shell_write_quotes():
    assert shell_write("/t/filter", "comm == 'x'") == "echo 'comm == '\\''x'\\''' > /t/filter"
    assert shell_write("/t/trigger", "!traceoff", append=True) == "echo '!traceoff' >> /t/trigger"


def test_features_without_kprobes_and_hist(tmp_path):
    fs = Tracefs(make_fake_tracefs(str(tmp_path), readme="x8/16/32/64 \\imm-value stacktrace"))
    features = fs.features()
    assert features["uprobes"] and not features["kprobes"] and not features["hist_triggers"]
    assert features["uprobe_x_types"] and features["uprobe_immediate"] and features["stacktrace_trigger"]
    assert features["trace_clocks"] == ["local", "global", "mono"]
    with pytest.raises(TracefsError, match="no kprobes"):
        fs.require("kprobes", "a kernel probe")


def test_features_detect_hist_and_kprobes(tmp_path):
    fs = Tracefs(make_fake_tracefs(str(tmp_path), readme="      hist trigger\t- If set, event hits are aggregated", kprobes=True))
    assert fs.features()["hist_triggers"] and fs.features()["kprobes"]
    assert not fs.features()["synthetic_events"]
    open(os.path.join(fs.root, "synthetic_events"), "w").close()
    assert Tracefs(fs.root).features()["synthetic_events"]


def test_fake_tree_buffer_size_and_uprobes(tmp_path):
    fs = Tracefs(make_fake_tracefs(str(tmp_path)))
    assert fs.instance(None).buffer_size_kb == 1408
    assert [u.line() for u in fs.list_uprobes()] == ["p:probe_x/y /bin/x:0x10 a=%di:s32"]


def snapshot_with(instances=(), probes=(), tracing_on="1"):
    top = {"tracing_on": tracing_on, "events": {}}
    return {"top": top, "instances": {n: {"events": {}} for n in instances}, "uprobe_events": list(probes)}


def test_diff_snapshots_reports_leaks_and_filters_by_owner():
    before = snapshot_with(instances=["theirs"])
    after = snapshot_with(instances=["theirs", "fleettrace_t1_x", "other_run"],
                          probes=["p:fleettrace_t1/ev /bin/x:0x1"], tracing_on="0")
    diffs = diff_snapshots(before, after)
    assert "instance fleettrace_t1_x was left behind" in diffs
    assert "instance other_run was left behind" in diffs
    assert "uprobe left behind: p:fleettrace_t1/ev /bin/x:0x1" in diffs
    assert "top-level tracing_on: '1' -> '0'" in diffs
    only_mine = diff_snapshots(before, after, only=lambda name: "t1" in name)
    assert "instance other_run was left behind" not in only_mine
    assert "instance fleettrace_t1_x was left behind" in only_mine
    assert diff_snapshots(before, before) == []


def test_tracefs_missing_and_not_root(tmp_path, monkeypatch):
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import fs as core
    empty = [str(tmp_path / "a"), str(tmp_path / "b")]
    with pytest.raises(TracefsError, match="not mounted .*allow mounting"):
        core.find_tracefs(mount=False, candidates=empty)
    monkeypatch.setattr(core.os, "geteuid", lambda: 1000)
    with pytest.raises(TracefsError, match="uid 1000 may not mount it: run as root"):
        core.find_tracefs(mount=True, candidates=empty)
