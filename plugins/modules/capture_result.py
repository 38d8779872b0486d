#!/usr/bin/python
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r"""
---
module: capture_result
short_description: Build one host's result of a threshold capture from what the capture's steps returned
version_added: 1.1.0
description:
  - The record the C(threshold_capture) role writes as C(HOST.json) (schema C(fleettrace.threshold_capture/1)), built
    from the results the role's steps registered (M(fleettrace.tracefs.proc_info), M(fleettrace.tracefs.uprobe),
    M(fleettrace.tracefs.capture), M(fleettrace.tracefs.syscall_latency)), so that the role only calls modules.
  - "O(state=started): checks the threshold and the field, names the run's tracefs objects after the run id and the
    host (RV(names)) and returns the record before anything was found (status C(target_not_running))."
  - "O(state=target_not_running): no process matched the target (O(target)); the record says so."
  - "O(state=captured): the record of a finished capture: findings, probe, the target as it is after the capture,
    the culprit call's latency, and why that call was not measured. In check mode the record says in one sentence
    what the run would do (status C(check_mode)) instead."
  - "O(state=failed): a step failed; the record names the task and why (the last line of a killed module's
    traceback)."
  - Computes only; reads and writes nothing. Run it where it is cheapest (C(delegate_to=localhost)).
author: fleettrace developers (@fleettrace)
attributes:
  check_mode:
    support: full
    description: Builds the record; with O(state=captured) the record says what the run would do.
  diff_mode:
    support: none
    description: No diff.
options:
  state:
    description: Which record to build (see the description).
    type: str
    choices: [started, target_not_running, captured, failed]
    required: true
  host:
    description: The host's inventory name (O(state=started), or O(state=failed) without O(result)).
    type: str
  run_id:
    description: The run's name, part of every tracefs name; default a UTC timestamp. Characters other than letters,
      digits and C(_) become C(_).
    type: str
    default: ""
  label:
    description: What is diagnosed.
    type: str
    default: threshold_capture
  field:
    description: The probe's field compared with the threshold (a C(tracefs) field name).
    type: str
    default: tv_diff
  field_unit:
    description: Unit of O(field); C(none) for a field that is no time.
    type: str
    choices: [ns, us, ms, s, none]
    default: ns
  threshold:
    description: The threshold in the field's unit; must be positive with O(state=started).
    type: int
    default: 0
  result:
    description: The record so far (RV(result) of O(state=started)).
    type: dict
  target:
    description: What M(fleettrace.tracefs.proc_info) returned when it looked for the target.
    type: dict
  after:
    description: What M(fleettrace.tracefs.proc_info) returned for the target after the capture.
    type: dict
  probe:
    description: What M(fleettrace.tracefs.uprobe) returned.
    type: dict
  capture:
    description: What M(fleettrace.tracefs.capture) returned.
    type: dict
  latency:
    description: What M(fleettrace.tracefs.syscall_latency) returned (also when it was skipped or failed).
    type: dict
  binary:
    description: The binary probed.
    type: str
    default: ""
  spec:
    description: The probe's spec, when it was given as one.
    type: str
    default: ""
  picked:
    description:
      - What M(fleettrace.tracefs.probe_info) returned when it picked the probe line (registered). When O(spec) is
        empty, its RV(fleettrace.tracefs.probe_info#module:spec) is the probe's spec. A skipped task's result gives none.
    type: dict
  timeout:
    description: Seconds the capture waits (said in check mode).
    type: float
    default: 60
  resolved:
    description: The C(threshold_capture_resolved) fact of the role's resolve entry point, when it ran.
    type: dict
  failed_task:
    description: The name of the task that failed (C(ansible_failed_task.name)), O(state=failed).
    type: str
    default: "?"
  failed_result:
    description: Its result (C(ansible_failed_result)), O(state=failed).
    type: raw
"""

EXAMPLES = r"""
- name: Name the run's objects and start the host's result
  fleettrace.tracefs.capture_result:
    state: started
    host: "{{ inventory_hostname }}"
    run_id: demo
    threshold: 2400000000
  register: started

- name: The host's result when the target does not run
  fleettrace.tracefs.capture_result:
    state: target_not_running
    result: "{{ started.result }}"
    target: {processes: [], message: no process matches name corosync}
  register: not_running

- name: The host's result when a step failed
  fleettrace.tracefs.capture_result:
    state: failed
    result: "{{ started.result }}"
    failed_task: Install the probe
    failed_result: {msg: "cannot resolve spec 'main:12' in /usr/sbin/corosync: no debug info"}
  register: failed
"""

RETURN = r"""
result:
  description:
    - The host's record (C(schema), C(host), C(label), C(run_id), C(status), C(threshold_reached), C(field),
      C(field_unit), C(threshold), C(findings), C(message); a capture adds C(stop_reason), C(probe_values),
      C(guesses), C(culprit_latency), C(capture_attempts), C(lost_events), C(event_count), C(events), C(probe),
      C(target)); every state but C(started) adds C(debuginfo).
  returned: always
  type: dict
names:
  description: The run's names on this host (C(run_id), C(tag), C(instance), C(group)).
  returned: always
  type: dict
  sample: {"run_id": "demo", "tag": "fleettrace_demo_node1_5f1c", "instance": "fleettrace_demo_node1_5f1c",
           "group": "fleettrace_demo_node1_5f1c"}
line:
  description: The record in one line (host, status, message).
  returned: always
  type: str
"""

import re

from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import OptionError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.input_limits import MODULE_CAPS
from ansible_collections.fleettrace.tracefs.plugins.module_utils.module_runner import run_module
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import capture_result, findings
from ansible_collections.fleettrace.tracefs.plugins.module_utils.probe_definition import chosen_spec

FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def start(params):
    if not params["host"]:
        raise OptionError("host is required to start a record (give inventory_hostname)")
    names = capture_result.run_names(params["run_id"], params["host"])
    return names, capture_result.started(params["host"], params["label"], names.run_id, params["field"],
                                         params["field_unit"], params["threshold"])


def body(module, result):
    params = module.params
    state = params["state"]
    if state == "started":
        if params["threshold"] <= 0:
            raise OptionError("threshold must be positive (in the field's unit), got %d" % params["threshold"])
        if not FIELD_NAME.match(params["field"]):
            raise OptionError("field %r is not a field name (letters, digits and _)" % params["field"])
    if params["result"] is None:
        if state not in ("started", "failed"):
            raise OptionError("state=%s needs result (the result of state=started)" % state)
        names, record = start(params)
    else:
        record = params["result"]
        names = capture_result.run_names(record.get("run_id"), record.get("host") or "")
    if state == "target_not_running":
        record = capture_result.target_not_running(record, params["target"])
    elif state == "captured" and module.check_mode:
        record = capture_result.planned(record, params["probe"] or {}, params["target"], names.instance,
                                        params["timeout"])
    elif state == "captured":
        if not params["capture"] or params["capture"].get("skipped"):
            raise OptionError("state=captured needs capture (what fleettrace.tracefs.capture returned)")
        record = capture_result.captured(record, params["capture"], params["probe"] or {}, params["target"],
                                         params["after"], params["latency"], params["binary"],
                                         chosen_spec(params["spec"], params["picked"]), names)
    elif state == "failed":
        record = capture_result.failed(record, params["failed_task"], params["failed_result"])
    if state != "started":
        record = dict(record, debuginfo=capture_result.debuginfo(params["resolved"], params["probe"]))
    result.update(result=record, names=dict(names._asdict()), line=capture_result.one_line(record), changed=False)


def main():
    run_module(dict(state=dict(type="str", required=True, choices=["started", "target_not_running", "captured",
                                                                   "failed"]),
                    host=dict(type="str"),
                    run_id=dict(type="str", default=""),
                    label=dict(type="str", default="threshold_capture"),
                    field=dict(type="str", default="tv_diff"),
                    field_unit=dict(type="str", default="ns", choices=list(findings.UNITS)),
                    threshold=dict(type="int", default=0),
                    result=dict(type="dict"),
                    target=dict(type="dict"),
                    after=dict(type="dict"),
                    probe=dict(type="dict"),
                    capture=dict(type="dict"),
                    latency=dict(type="dict"),
                    binary=dict(type="str", default=""),
                    spec=dict(type="str", default=""),
                    picked=dict(type="dict"),
                    timeout=dict(type="float", default=60),
                    resolved=dict(type="dict"),
                    failed_task=dict(type="str", default="?"),
                    failed_result=dict(type="raw")),
               body, supports_check_mode=True, caps=MODULE_CAPS["capture_result"])


if __name__ == "__main__":
    main()
