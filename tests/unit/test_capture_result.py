"""One host's threshold-capture record (trace/capture_result.py): what the role used to compute in Jinja."""

import calendar
import time

from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import capture_result

TARGET = {"processes": [{"pid": 41, "comm": "corosync", "exe": "/usr/sbin/corosync", "policy": "SCHED_RR",
                         "priorities": {"rtprio": 99}, "state": "S", "fds": [{"fd": 3, "target": "/dev/watchdog"}]}],
          "message": "1 process: corosync[41]"}
PROBE = {"definitions": ["p:fleettrace_r_h/tick /usr/sbin/corosync:0x10 tv_diff=%ax:u64"], "events": ["tick"],
         "group": "fleettrace_r_h", "variables": ["tv_diff"], "build_id": "ab12", "mapped": None,
         "debuginfo_source": "binary"}
CAPTURE = {"status": "stall_found", "threshold_reached": True, "stop_reason": "threshold", "findings": [{"cause": "blocked"}],
           "probe_values": [2500000000], "guesses": [{"name": "token timeout too low"}], "attempts": 1,
           "lost_events": 0, "event_count": 7, "events": [{"event": "tick"}], "message": "1 stall"}


def start(threshold=2400000000):
    names = capture_result.run_names("run 1", "node-1.example")
    return names, capture_result.started("node-1.example", "corosync", names.run_id, "tv_diff", "ns", threshold)


def test_names_carry_the_run_and_the_host_so_hosts_sharing_a_kernel_never_collide():
    one = capture_result.run_names("run 1", "node-1.example")
    assert one.run_id == "run_1" and one.tag.startswith("fleettrace_run_1_node_1_example_")
    assert one.instance == one.group == one.tag
    long_a = capture_result.run_names("r", "a" * 30 + "x")
    long_b = capture_result.run_names("r", "a" * 30 + "y")
    assert long_a.tag != long_b.tag and len(long_a.tag) == len("fleettrace_r_") + 20 + 5


def test_a_run_without_id_is_named_after_the_utc_time():
    now = calendar.timegm((2026, 12, 7, 10, 30, 5, 0, 0, 0))
    assert capture_result.run_names("", "h", now=now).run_id == "20261207T103005"
    assert capture_result.run_names(None, "h", now=time.time()).run_id.startswith(time.strftime("%Y", time.gmtime()))


def test_the_record_starts_as_target_not_running():
    _names, record = start()
    assert record == {"schema": capture_result.SCHEMA, "host": "node-1.example", "label": "corosync", "run_id": "run_1",
                      "status": "target_not_running", "threshold_reached": False, "field": "tv_diff",
                      "field_unit": "ns", "threshold": 2400000000, "findings": [], "message": ""}
    assert tuple(record) == capture_result.RECORD_KEYS


def test_a_missing_target_says_what_proc_info_said():
    _names, record = start()
    said = capture_result.target_not_running(record, {"processes": [], "message": "no process matches name x"})
    assert said["status"] == "target_not_running" and said["message"] == "no process matches name x"
    assert capture_result.target_not_running(record, {})["message"] == "no process matches the target"


def test_check_mode_says_what_the_run_would_do():
    names, record = start()
    planned = capture_result.planned(record, PROBE, TARGET, names.instance, 60.0)
    assert planned["status"] == "check_mode"
    wanted = ("check mode: would install %s, trace corosync[41] in instance %s until tv_diff >= 2400000000 "
              "(at most 60 s), then remove everything")
    assert planned["message"] == wanted % (PROBE["definitions"][0], names.instance)
    assert "at most 1.5 s" in capture_result.planned(record, PROBE, TARGET, names.instance, 1.5)["message"]
    assert capture_result.one_line(planned).startswith("node-1.example: check_mode: check mode: would install p:")


def test_a_capture_gives_findings_probe_and_the_target_after_it():
    names, record = start()
    after = {"processes": [dict(TARGET["processes"][0], state="D", fds=[])]}
    latency = {"latency": {"count": 3}, "changed": True}
    done = capture_result.captured(record, CAPTURE, PROBE, TARGET, after, latency, "/usr/sbin/corosync", "", names)
    assert set(done) == set(capture_result.RECORD_KEYS + capture_result.CAPTURE_KEYS)
    assert done["status"] == "stall_found" and done["threshold_reached"] is True and done["findings"] == [{"cause": "blocked"}]
    assert done["culprit_latency"] == {"count": 3} and done["message"] == "1 stall"
    assert done["target"]["state"] == "D" and done["target"]["alive"] is True and done["target"]["fds"] == []
    assert done["probe"] == {"binary": "/usr/sbin/corosync", "spec": "", "definitions": PROBE["definitions"],
                             "variables": ["tv_diff"], "build_id": "ab12", "mapped": None, "group": names.group,
                             "events": ["tick"], "instance": names.instance}


def test_a_target_that_ended_is_described_as_it_was_found():
    names, record = start()
    zombie = {"processes": [dict(TARGET["processes"][0], state="Z")]}
    for after in ({"processes": []}, zombie):
        done = capture_result.captured(record, dict(CAPTURE, status="target_exited"), PROBE, TARGET, after, None,
                                       "/b", "f:1", names)
        assert done["target"]["alive"] is False and done["target"]["pid"] == 41
        assert done["culprit_latency"] is None and done["probe"]["spec"] == "f:1"


def test_an_unmeasured_culprit_call_says_why_a_skipped_one_says_nothing():
    names, record = start()
    failed = {"failed": True, "msg": "/run is read-only"}
    done = capture_result.captured(record, CAPTURE, PROBE, TARGET, TARGET, failed, "/b", "", names)
    assert done["message"] == "1 stall; the culprit call was not measured: /run is read-only"
    skipped = {"skipped": True, "msg": "Conditional result was False"}
    assert capture_result.captured(record, CAPTURE, PROBE, TARGET, TARGET, skipped, "/b", "", names)["message"] == "1 stall"


def test_a_failed_step_names_the_task_and_the_last_line_of_a_killed_module():
    _names, record = start()
    plain = capture_result.failed(record, "Install the probe", {"failed": True, "msg": "no debug info"})
    assert plain["status"] == "failed" and plain["message"] == "task Install the probe failed: no debug info"
    killed = {"msg": "Traceback (most recent call last):\n  File x\nKeyError: 'events'\n"}
    assert capture_result.failed(record, None, killed)["message"] == (
        "task ? failed: the module ended without a result (killed?): KeyError: 'events'")
    assert capture_result.failure_reason({"msg": "Unknown error"}) == \
        "the module ended without a result (killed?): Unknown error"
    assert capture_result.failure_reason(None) == "no message"
    assert capture_result.failure_reason({"rc": 2}) == "{'rc': 2}"


def test_debuginfo_says_where_the_probe_was_resolved():
    controller = {"debuginfo": {"resolved_on": "controller", "binary_from": "fetched_from_node", "source": "file",
                                "server": None}}
    assert capture_result.debuginfo(controller, PROBE) == controller["debuginfo"]
    assert capture_result.debuginfo({"debuginfo": {"resolved_on": "node"}}, PROBE) == {
        "resolved_on": "node", "binary_from": "node", "source": "binary", "server": None}
    assert capture_result.debuginfo(None, {"definitions": []}) == {
        "resolved_on": "given", "binary_from": "node", "source": None, "server": None}
