"""The write order the instance and event modules plan, on a fake tracefs tree."""

import os

from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import instance_event_plans as plans
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import Tracefs

from tests.helpers.fake_tracefs import make_fake_tracefs


def event_params(**overrides):
    params = {"state": "present", "enabled": None, "filter": None, "triggers": None}
    params.update(overrides)
    return params


def test_present_writes_filter_then_triggers_then_enable(tmp_path):
    fs = Tracefs(make_fake_tracefs(str(tmp_path)))
    event = fs.instance(None).event("sched:sched_switch")
    before = plans.event_state(event)
    assert before == plans.FRESH_EVENT
    wanted = plans.check_triggers(fs, ["stacktrace if prev_state == 2"])
    plan, after = plans.plan_event(event, before, event_params(filter="prev_state == 2", enabled=True,
                                                               triggers=["stacktrace if prev_state == 2"]), wanted)
    files = [command.rsplit("/", 1)[-1] for command in plan.commands]
    assert files == ["filter", "trigger", "enable"]
    assert after == {"enabled": True, "filter": "prev_state == 2", "triggers": ["stacktrace if prev_state == 2"]}


def test_absent_removes_triggers_then_filter_then_disables(tmp_path):
    root = make_fake_tracefs(str(tmp_path))
    event_dir = os.path.join(root, "events", "sched", "sched_switch")
    for name, text in {"enable": "1\n", "filter": "prev_state == 2\n",
                       "trigger": "stacktrace:unlimited if prev_state == 2\ntraceoff:count=2\n"}.items():
        with open(os.path.join(event_dir, name), "w") as handle:
            handle.write(text)
    event = Tracefs(root).instance(None).event("sched:sched_switch")
    plan, after = plans.plan_event(event, plans.event_state(event), event_params(state="absent"), None)
    assert [c.split()[1] for c in plan.commands] == ["'!stacktrace'", "'!traceoff'", "'0'", "'0'"]
    assert [c.rsplit("/", 1)[-1] for c in plan.commands] == ["trigger", "trigger", "filter", "enable"]
    assert after == plans.FRESH_EVENT


def test_unchanged_event_plans_nothing(tmp_path):
    fs = Tracefs(make_fake_tracefs(str(tmp_path)))
    event = fs.instance(None).event("sched:sched_switch")
    plan, _after = plans.plan_event(event, plans.event_state(event), event_params(filter="", enabled=False,
                                                                                  triggers=[]), [])
    assert not plan and plan.commands == []


def test_new_instance_is_created_first_and_switched_on_last(tmp_path):
    fs = Tracefs(make_fake_tracefs(str(tmp_path)))
    inst = fs.instance("fleettrace_new")
    params = {"state": "present", "buffer_size_kb": 4096, "clock": "global", "options": None,
              "event_pids": None, "tracing_on": True}
    before = plans.instance_settings(inst, [])
    plan, after = plans.plan_instance(inst, before, params)
    assert plan.commands[0] == "mkdir %s" % inst.path()
    assert plan.commands[-1].endswith("/tracing_on")
    assert after["buffer_size_kb"] == 4096 and after["tracing_on"] is True
    absent, gone = plans.plan_instance(inst, before, dict(params, state="absent"))
    assert not absent and gone == {"exists": False}
