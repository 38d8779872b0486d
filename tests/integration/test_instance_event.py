"""instance and event modules driven through Ansible against the real tracefs."""

import os
import subprocess
import time

import pytest

from tests.helpers import frozen_fs
from tests.helpers.owned import OwnedRun


def instance_dir(tracefs, name):
    return os.path.join(tracefs.root, "instances", name)


def read(path):
    with open(path) as handle:
        return handle.read()


def test_instance_lifecycle_check_diff_idempotence(tracefs, run_module, unique_name):
    name = unique_name("inst")
    args = {"name": name, "buffer_size_kb": 2048, "clock": "global", "tracing_on": False,
            "options": {"userstacktrace": True, "sym-userobj": True}}

    check = run_module("fleettrace.tracefs.instance", args, check=True, diff=True)
    assert check["changed"] is True
    assert "mkdir %s" % instance_dir(tracefs, name) in check["commands"]
    assert check["diff"]["before"] == {"exists": False}
    assert check["diff"]["after"]["buffer_size_kb"] == 2048
    assert not os.path.exists(instance_dir(tracefs, name)), "check mode created the instance"

    try:
        first = run_module("fleettrace.tracefs.instance", args)
        assert first["changed"] is True, first
        path = instance_dir(tracefs, name)
        assert "[global]" in read(os.path.join(path, "trace_clock"))
        assert read(os.path.join(path, "options", "userstacktrace")).strip() == "1"
        assert read(os.path.join(path, "tracing_on")).strip() == "0"
        assert first["instance"]["buffer_size_kb"] >= 2048

        second = run_module("fleettrace.tracefs.instance", args)
        assert second["changed"] is False, second["commands"]
        assert second["commands"] == []

        changed = run_module("fleettrace.tracefs.instance", dict(args, clock="mono"), diff=True)
        assert changed["changed"] is True
        assert changed["diff"]["before"]["clock"] == "global"
        assert changed["diff"]["after"]["clock"] == "mono"
        assert "[mono]" in read(os.path.join(path, "trace_clock"))
    finally:
        removed = run_module("fleettrace.tracefs.instance", {"name": name, "state": "absent"})
    assert removed["changed"] is True
    assert not os.path.exists(instance_dir(tracefs, name))
    again = run_module("fleettrace.tracefs.instance", {"name": name, "state": "absent"})
    assert again["changed"] is False


def test_event_pids_follow_a_real_process(tracefs, run_module, unique_name):
    name = unique_name("pids")
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        result = run_module("fleettrace.tracefs.instance", {"name": name, "event_pids": [sleeper.pid]})
        assert result["changed"] is True
        assert read(os.path.join(instance_dir(tracefs, name), "set_event_pid")).split() == [str(sleeper.pid)]
        assert run_module("fleettrace.tracefs.instance", {"name": name, "event_pids": [sleeper.pid]})["changed"] is False
        cleared = run_module("fleettrace.tracefs.instance", {"name": name, "event_pids": []})
        assert cleared["changed"] is True
        assert read(os.path.join(instance_dir(tracefs, name), "set_event_pid")).split() == []
    finally:
        sleeper.kill()
        sleeper.wait()
        run_module("fleettrace.tracefs.instance", {"name": name, "state": "absent"})


@pytest.mark.parametrize("bad", ["a/b", "..", "has space", "new\nline", ""])
def test_bad_instance_names_change_nothing(tracefs, run_module, bad):
    before = set(tracefs.list_instances())
    result = run_module("fleettrace.tracefs.instance", {"name": bad})
    assert result.get("failed") is True
    assert "instance name" in result["msg"]
    # Other test runs may create instances meanwhile; none may look like ours.
    created = set(tracefs.list_instances()) - before
    assert not [n for n in created if n in (bad, "a", "b", "has", "new") or not n.startswith("fleettrace_")]


def test_unknown_option_and_clock_fail_before_any_write(tracefs, run_module, unique_name):
    name = unique_name("badopt")
    result = run_module("fleettrace.tracefs.instance", {"name": name, "options": {"no-such-option": True}})
    assert result["failed"] is True
    assert "no-such-option" in result["msg"] and "available options" in result["msg"]
    result = run_module("fleettrace.tracefs.instance", {"name": name, "clock": "sundial"})
    assert result["failed"] is True
    assert "sundial" in result["msg"] and "local" in result["msg"]
    assert name not in tracefs.list_instances()


def test_dead_pid_rolls_back_the_new_instance(tracefs, run_module, unique_name):
    """The kernel drops pids that do not exist: the new instance must not stay behind."""
    name = unique_name("deadpid")
    dead = subprocess.Popen(["true"])
    dead.wait()
    result = run_module("fleettrace.tracefs.instance", {"name": name, "event_pids": [dead.pid]})
    assert result["failed"] is True
    assert str(dead.pid) in result["msg"]
    assert name not in tracefs.list_instances()


STEP4 = """
- name: The talk's step 4 by hand
  hosts: localhost
  gather_facts: false
  vars:
    name: "{{ instance_name }}"
  tasks:
    - name: instance
      fleettrace.tracefs.instance:
        name: "{{ name }}"
        event_pids: ["{{ watched_pid | int }}"]
        tracing_on: true
    - name: sched_switch
      fleettrace.tracefs.event:
        instance: "{{ name }}"
        event: sched:sched_switch
        filter: prev_state == 2
        triggers:
          - stacktrace if prev_state == 2
        enabled: true
"""

REMOVE = """
- name: Remove
  hosts: localhost
  gather_facts: false
  tasks:
    - name: remove
      fleettrace.tracefs.instance:
        name: "{{ instance_name }}"
        state: absent
"""


def test_step4_playbook_check_apply_idempotent_and_clean(tracefs, run_playbook, unique_name):
    name = unique_name("step4")
    sleeper = subprocess.Popen(["sleep", "60"])
    extra = {"instance_name": name, "watched_pid": sleeper.pid}
    try:
        check = run_playbook(STEP4, check=True, diff=True, extra_vars=extra)
        assert check.rc == 0, check.stdout[-2000:]
        event_check = check.task("sched_switch")
        assert event_check["changed"] is True
        assert event_check["diff"]["after"] == {"enabled": True, "filter": "prev_state == 2",
                                                "triggers": ["stacktrace if prev_state == 2"]}
        assert any(c.endswith("/events/sched/sched_switch/filter") and "prev_state == 2" in c
                   for c in event_check["commands"])
        assert name not in tracefs.list_instances()

        first = run_playbook(STEP4, extra_vars=extra)
        assert first.rc == 0, first.stdout[-2000:]
        event_dir = os.path.join(instance_dir(tracefs, name), "events", "sched", "sched_switch")
        assert read(os.path.join(event_dir, "filter")).strip() == "prev_state == 2"
        assert "stacktrace:unlimited if prev_state == 2" in read(os.path.join(event_dir, "trigger"))
        assert read(os.path.join(event_dir, "enable")).strip().startswith("1")

        second = run_playbook(STEP4, extra_vars=extra)
        assert second.rc == 0
        assert second.task("instance")["changed"] is False
        assert second.task("sched_switch")["changed"] is False

        # The sleeper only ever sleeps in S: the filter must keep it out.
        time.sleep(0.2)
        trace = read(os.path.join(instance_dir(tracefs, name), "trace"))
        assert "prev_state=S" not in trace
    finally:
        sleeper.kill()
        sleeper.wait()
        removed = run_playbook(REMOVE, extra_vars=extra)
    assert removed.rc == 0
    assert name not in tracefs.list_instances()


def test_event_filter_refused_by_kernel_quotes_error_log_and_restores(tracefs, run_module, unique_name):
    name = unique_name("badfilter")
    inst = tracefs.instance(name)
    run = OwnedRun(tracefs, instances=[inst.name])
    try:
        inst.create()
        ok = run_module("fleettrace.tracefs.event", {"instance": name, "event": "sched/sched_switch",
                                                     "filter": "prev_state == 2", "enabled": True})
        assert ok["changed"] is True
        bad = run_module("fleettrace.tracefs.event", {"instance": name, "event": "sched:sched_switch",
                                                      "filter": "prev_statex == 2",
                                                      "triggers": ["stacktrace"]})
        assert bad["failed"] is True
        assert "Field not found" in bad["msg"], bad["msg"]
        assert "nothing was changed" in bad["msg"]
        event = inst.event("sched:sched_switch")
        assert event.filter == "prev_state == 2"
        assert event.triggers() == []
        assert event.enabled
    finally:
        inst.remove()
        run.end()


def test_event_triggers_exact_list_and_rollback(tracefs, run_module, unique_name):
    name = unique_name("trig")
    inst = tracefs.instance(name)
    run = OwnedRun(tracefs, instances=[inst.name])
    try:
        inst.create()
        args = {"instance": name, "event": "sched:sched_switch",
                "triggers": ["stacktrace if prev_state == 2", "traceoff:5 if prev_pid == 1"]}
        first = run_module("fleettrace.tracefs.event", args)
        assert first["changed"] is True
        assert sorted(inst.event("sched:sched_switch").triggers()) == sorted(args["triggers"])
        # traceoff counted on pid 1 (init rarely switches) keeps its count.
        assert run_module("fleettrace.tracefs.event", args)["changed"] is False

        # A bad trigger after a good one: the good one must be undone.
        bad = run_module("fleettrace.tracefs.event", {"instance": name, "event": "sched:sched_switch",
                                                      "triggers": ["stacktrace if prev_state == 2",
                                                                   "traceoff:5 if prev_pid == 1",
                                                                   "enable_event:sched:sched_wakeup",
                                                                   "nonsense_trigger"]})
        assert bad["failed"] is True
        assert "nonsense_trigger" in bad["msg"]
        assert sorted(inst.event("sched:sched_switch").triggers()) == sorted(args["triggers"])
        assert not inst.event("sched:sched_wakeup").enabled

        only = run_module("fleettrace.tracefs.event", {"instance": name, "event": "sched:sched_switch",
                                                       "triggers": ["stacktrace if prev_state == 2"]},
                          diff=True)
        assert only["changed"] is True
        assert only["diff"]["after"]["triggers"] == ["stacktrace if prev_state == 2"]
        assert inst.event("sched:sched_switch").triggers() == ["stacktrace if prev_state == 2"]

        absent = run_module("fleettrace.tracefs.event", {"instance": name, "event": "sched:sched_switch",
                                                         "state": "absent"})
        assert absent["changed"] is True
        assert inst.event("sched:sched_switch").triggers() == []
    finally:
        inst.remove()
        run.end()


@pytest.mark.parametrize("args, words", [
    ({"event": "sched:no_such_event"}, ["does not exist", "available_events"]),
    ({"event": "sched_switch"}, ["GROUP:EVENT"]),
    ({"event": "sched:sched_switch", "filter": "prev_state == 2\nprev_pid == 1"}, ["newline"]),
    ({"event": "sched:sched_switch", "triggers": ["stacktrace\ntraceoff"]}, ["newline"]),
    ({"event": "sched:sched_switch", "triggers": ["hist:keys=pid"]}, ["hist triggers"]),
    ({"event": "sched:sched_switch", "triggers": ["traceoff", "traceoff if prev_pid == 1"]}, ["more than once"]),
])
def test_event_bad_input_clear_error(tracefs, run_module, unique_name, args, words):
    name = unique_name("badev")
    inst = tracefs.instance(name)
    run = OwnedRun(tracefs, instances=[inst.name])
    try:
        inst.create()
        before = [e.spec for e in inst.configured_events()]
        result = run_module("fleettrace.tracefs.event", dict(args, instance=name))
        assert result.get("failed") is True
        for word in words:
            assert word in result["msg"], result["msg"]
        assert [e.spec for e in inst.configured_events()] == before
    finally:
        inst.remove()
        run.end()


def test_event_in_missing_instance(tracefs, run_module, unique_name):
    result = run_module("fleettrace.tracefs.event", {"instance": unique_name("missing"), "event": "sched:sched_switch",
                                                     "enabled": True})
    assert result["failed"] is True
    assert "create it first" in result["msg"]


def test_instance_removal_disables_events_and_triggers_first(tracefs, run_module, unique_name):
    name = unique_name("rm")
    inst = tracefs.instance(name)
    with OwnedRun(tracefs, instances=[name]):
        inst.create()
        event = inst.event("sched:sched_switch")
        event.set_filter("prev_state == 2")
        event.add_trigger("stacktrace if prev_state == 2")
        event.set_enabled(True)
        inst.event("sched:sched_wakeup").set_enabled(True)
        result = run_module("fleettrace.tracefs.instance", {"name": name, "state": "absent"})
        assert result["changed"] is True
        assert name not in tracefs.list_instances()


WRITER = """
import sys, time
with open(sys.argv[1], "a") as out:
    while True:
        out.write("beat\\n")
        out.flush()
        time.sleep(0.02)
"""


def test_step4_catches_a_real_d_state_stall_with_its_stack(tracefs, run_playbook, unique_name, tmp_path):
    """Runtime truth: a writer blocked on a frozen filesystem shows up in D with the freeze in its stack."""
    reason = frozen_fs.missing_requirements()
    if reason:
        pytest.skip(reason)
    name = unique_name("dstate")
    with frozen_fs.LoopExt4(tmp_path, size_mb=16) as fs:
        writer = subprocess.Popen(["python3", "-c", WRITER, fs.file("heartbeat.log")])
        extra = {"instance_name": name, "watched_pid": writer.pid}
        try:
            time.sleep(0.3)
            setup = run_playbook(STEP4, extra_vars=extra)
            assert setup.rc == 0, setup.stdout[-2000:]
            fs.freeze_for(0.5)
            time.sleep(0.2)
            trace = read(os.path.join(instance_dir(tracefs, name), "trace"))
        finally:
            writer.kill()
            writer.wait()
            removed = run_playbook(REMOVE, extra_vars=extra)
    assert removed.rc == 0
    # set_event_pid keeps a switch when either side is watched: the writer's own
    # switches out are the ones that matter, and the filter keeps only D.
    switches = [line for line in trace.splitlines() if "sched_switch:" in line]
    writer_out = [line for line in switches if "prev_pid=%d " % writer.pid in line]
    assert writer_out, trace[-3000:]
    assert all("prev_state=D" in line for line in switches), switches
    assert "<stack trace>" in trace
    assert "percpu_rwsem" in trace or "sb_start_write" in trace, trace[-3000:]


def test_removing_a_fired_enable_event_trigger_disables_its_target(tracefs, unique_name):
    """Kernel behaviour: the fired trigger's soft enable turns into a plain enable on removal."""
    inst = tracefs.instance(unique_name("enev"))
    run = OwnedRun(tracefs, instances=[inst.name])
    try:
        inst.create()
        switch, wakeup = inst.event("sched:sched_switch"), inst.event("sched:sched_wakeup")
        switch.add_trigger("enable_event:sched:sched_wakeup")
        deadline = time.time() + 5
        while not wakeup._read("enable").strip() == "1*" and time.time() < deadline:
            time.sleep(0.05)  # any context switch on the machine fires it
        assert wakeup._read("enable").strip() == "1*"
        switch.remove_trigger("enable_event:sched:sched_wakeup")
        assert switch.triggers() == []
        assert not wakeup.enabled
    finally:
        inst.remove()
        run.end()


def test_a_plan_refused_half_way_leaves_tracefs_as_found(tracefs, unique_name):
    """ChangePlan on the real tracefs: a new instance set up, an existing one's buffer, event and
    trigger changed, then a filter the kernel refuses: everything applied is undone, newest first."""
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import instance_event_plans as plans
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.changes import ChangePlan
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import TracefsError
    from tests.helpers import tracefs_state

    existing_name = unique_name("asfound")
    existing, fresh = tracefs.instance(existing_name), tracefs.instance(existing_name + "_new")
    run = OwnedRun(tracefs, instances=[existing.name, fresh.name])
    try:
        existing.create()
        existing.set_buffer_size_kb(64)
        size = existing.buffer_size_kb      # the kernel rounds to whole pages
        before = tracefs_state.snapshot(tracefs)

        instance_plan, _after = plans.plan_instance(fresh, plans.instance_settings(fresh, ()), {
            "state": "present", "buffer_size_kb": 128, "clock": "mono", "tracing_on": False, "event_pids": None,
            "options": None})
        switch = existing.event("sched", "sched_switch")
        event_plan, _after = plans.plan_event(
            switch, plans.event_state(switch), {"state": "present", "filter": "prev_state == 2", "enabled": True},
            plans.check_triggers(tracefs, ["stacktrace if prev_state == 2"]))
        plan = ChangePlan()
        plan.extend(instance_plan)
        plan.write(existing.path("buffer_size_kb"), "128", lambda: existing.set_buffer_size_kb(128),
                   lambda: existing.set_buffer_size_kb(64))
        plan.extend(event_plan)
        wakeup = existing.event("sched", "sched_wakeup")
        plan.write(existing.path(*wakeup.rel("filter")), "no_such_field == 1",
                   lambda: wakeup.set_filter("no_such_field == 1"), lambda: wakeup.set_filter(""))
        assert len(plan.steps) >= 6
        with pytest.raises(TracefsError) as refused:
            plan.apply()
        assert "no_such_field" in refused.value.failed_command
        assert refused.value.not_undone == []
        assert not fresh.exists()
        assert tracefs_state.diff_snapshots(before, tracefs_state.snapshot(tracefs),
                                            only=lambda name: existing_name in name) == []
        assert switch.triggers() == [] and not switch.enabled and existing.buffer_size_kb == size
    finally:
        run.end()
