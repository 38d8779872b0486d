"""Argument sizes: the caps, the refusal's wording, the cut-down echo, and the runner refusing before Ansible."""

import json
import re

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils import input_limits, module_runner
from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import OptionError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import instance_event_plans as plans
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import validate


def test_each_cap_names_the_option_its_size_and_the_limit_never_the_value():
    assert input_limits.oversized({"event_pids": list(range(8192))}) is None
    assert input_limits.oversized({"event_pids": list(range(8193))}) == (
        "event_pids has 8193 items; at most 8192 are accepted (the pids of the processes to trace and their "
        "threads). Nothing was changed.")
    refusal = input_limits.oversized({"filter": "x" * (input_limits.KERNEL_WRITE_MAX + 1)})
    assert refusal.startswith("filter is %d characters long; at most %d" % (
        input_limits.KERNEL_WRITE_MAX + 1, input_limits.KERNEL_WRITE_MAX)) and "xxx" not in refusal
    assert input_limits.oversized({"triggers": ["a"] * 65}).startswith("triggers has 65 items; at most 64")
    assert input_limits.oversized({"triggers": ["a" * 5000]}).startswith("triggers[0] is 5000 characters long")
    assert input_limits.oversized({"anything": "y" * 70000}).startswith("anything is 70000 characters long")
    assert input_limits.oversized({"_ansible_selinux_special_fs": list(range(10 ** 5))}) is None


def test_suboptions_are_named_and_bulk_data_can_be_exempt():
    assert input_limits.oversized({"stop": {"events": list(range(10 ** 6)), "field": "gap"}}).startswith(
        "stop.events has 1000000 items; at most 4096")
    assert input_limits.oversized({"stop": {"big": "z" * (2 << 20)}}).startswith("stop.big is")
    results = [{"host": "h%d" % i, "data": "x" * 1000} for i in range(5000)]
    assert input_limits.oversized({"results": results}).startswith("results has 5000 items")
    assert input_limits.oversized({"results": results}, {"results": input_limits.NO_CAP}) is None


def test_the_echo_is_cut_down():
    args = {"event_pids": list(range(10 ** 6)), "filter": "f" * 10 ** 6, "name": "x", "_ansible_check_mode": False}
    cut = input_limits.trimmed(args)
    assert len(cut["event_pids"]) == 8 and len(cut["filter"]) == input_limits.KERNEL_WRITE_MAX and cut["name"] == "x"
    assert cut["_ansible_check_mode"] is False


def test_the_core_checks_the_same_caps_before_any_per_item_work():
    with pytest.raises(OptionError, match="event_pids has 100000 items"):
        plans.check_instance_request(None, None, {"options": None, "clock": None, "buffer_size_kb": None,
                                                  "event_pids": list(range(1, 100001))})
    with pytest.raises(OptionError, match="triggers has 100000 items"):
        plans.check_triggers(None, ["traceon"] * 100000)
    with pytest.raises(validate.ValidationError, match="filter is 10000000 characters long; tracefs takes at most"):
        validate.expression("a\n" * 5000000, "filter")  # the length first: no repr of 10 MB in the message


def test_missing_pids_are_named_ten_at_most(tmp_path):
    gone = list(range(4194000, 4194100))
    with pytest.raises(validate.ValidationError) as refused:
        plans.check_instance_request(None, None, {"options": None, "clock": None, "buffer_size_kb": None,
                                                  "event_pids": gone})
    assert len(re.findall(r"\b419\d{4}\b", refused.value.message)) == 10 and "and 90 more" in refused.value.message


def test_the_runner_refuses_before_ansible_parses_the_arguments(monkeypatch):
    """AnsibleModule only ever sees the arguments cut down; the body never runs."""
    from ansible.module_utils import basic
    raw = json.dumps({"ANSIBLE_MODULE_ARGS": {"name": "n", "event_pids": list(range(10 ** 6)),
                                              "_ansible_check_mode": False}}).encode()
    monkeypatch.setattr(basic, "_ANSIBLE_ARGS", raw)
    seen = {}

    class Module:
        def __init__(self, argument_spec, **options):
            seen["args"] = json.loads(basic._ANSIBLE_ARGS)["ANSIBLE_MODULE_ARGS"]

        def fail_json(self, msg, **result):
            raise SystemExit(msg)

    def body(module, result):
        raise AssertionError("the body ran on an oversized argument")
    monkeypatch.setattr(module_runner, "AnsibleModule", Module)
    with pytest.raises(SystemExit) as ended:
        module_runner.run_module({"name": {}, "event_pids": {}}, body)
    assert str(ended.value).startswith("event_pids has 1000000 items")
    assert seen["args"]["event_pids"] == list(range(8)) and seen["args"]["name"] == "n"
    assert seen["args"]["_ansible_check_mode"] is False
