#!/usr/bin/python
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r"""
---
module: instance
short_description: Manage a private tracefs instance (trace buffer)
version_added: 0.1.0
description:
  - Creates or removes a directory under C(/sys/kernel/tracing/instances/) and sets its buffer size,
    trace clock, options, event pid filter and C(tracing_on).
  - A private instance has its own buffer, events, filters and triggers, so tracing there never
    disturbs the top-level buffer or other users' instances.
  - Removing an instance first removes the triggers and filters of its events and disables them, so
    the C(rmdir) cannot fail half-way.
  - Every setting is applied all-or-nothing. If the kernel refuses one, the settings already written
    are restored, a newly created instance is removed again, and the error quotes the kernel's C(error_log).
  - tracefs is mounted at C(/sys/kernel/tracing) when it is not mounted yet.
author:
  - fleettrace developers (@fleettrace)
options:
  name:
    description:
      - Name of the instance (the directory under C(instances/)).
      - 1 to 64 characters from letters, digits, C(_), C(-) and C(.); no C(/), no C(..), no whitespace.
    type: str
    required: true
  state:
    description:
      - C(present) creates the instance if needed and applies the settings.
      - C(absent) disables everything in it and removes it.
    type: str
    choices: [present, absent]
    default: present
  buffer_size_kb:
    description: Per-CPU ring buffer size in KiB.
    type: int
  clock:
    description:
      - Trace clock (C(local), C(global), C(mono), C(boot), ...). Must be one this kernel offers.
      - Use C(global) or C(mono) when events from several CPUs are compared in time.
    type: str
  options:
    description:
      - Trace options to set, as a mapping of option name to C(true)/C(false),
        for example C(userstacktrace), C(sym-userobj), C(record-tgid).
      - Options not named are left as they are.
    type: dict
  event_pids:
    description:
      - The exact list of pids whose events are recorded (C(set_event_pid)). An empty list records all pids.
      - Omit to leave the pid filter as it is.
    type: list
    elements: int
  tracing_on:
    description: Whether the instance records events (C(tracing_on)).
    type: bool
attributes:
  check_mode:
    support: full
    description: Reports the exact writes it would make (RV(commands)) and writes nothing.
  diff_mode:
    support: full
    description: Shows the instance settings before and after.
notes:
  - Needs root (C(become=true)) and a kernel with tracefs instances.
seealso:
  - module: fleettrace.tracefs.event
"""

EXAMPLES = r"""
- name: A private 8 MiB buffer with the global clock, recording only corosync's events
  fleettrace.tracefs.instance:
    name: fleettrace_corosync
    buffer_size_kb: 8192
    clock: global
    event_pids: ["{{ corosync_pid }}"]
    options:
      userstacktrace: true
      sym-userobj: true
    tracing_on: false
  become: true

- name: Remove the instance and everything configured in it
  fleettrace.tracefs.instance:
    name: fleettrace_corosync
    state: absent
  become: true
"""

RETURN = r"""
name:
  description: Name of the instance.
  returned: always
  type: str
  sample: fleettrace_corosync
instance_path:
  description: Directory of the instance.
  returned: always
  type: str
  sample: /sys/kernel/tracing/instances/fleettrace_corosync
commands:
  description: The writes made (or, in check mode, that would be made), as shell commands.
  returned: always
  type: list
  elements: str
  sample: ["mkdir /sys/kernel/tracing/instances/fleettrace_corosync",
           "echo '8192' > /sys/kernel/tracing/instances/fleettrace_corosync/buffer_size_kb"]
instance:
  description: The instance's settings after the task (the ones this module manages).
  returned: when state is present
  type: dict
  sample: {"exists": true, "buffer_size_kb": 8192, "clock": "global", "tracing_on": false,
           "event_pids": [3796], "options": {"userstacktrace": true}}
"""

from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.module_runner import run_module
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import lifecycle, removal
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import validate
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.changes import failure_message
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.instance_event_plans import (
    check_instance_request, instance_settings, plan_instance)
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import Tracefs


def body(module, result):
    params = module.params
    result.update(name=params["name"], commands=[])
    validate.instance_name(params["name"])
    fs = Tracefs()
    fs.require("instances", "a private trace buffer")
    if not module.check_mode:
        removal.reap_expired_quietly(fs, warn=module.warn)
        if params["state"] == "present":
            lifecycle.working_on([params["name"]])     # renewed; refused when its run ended
        else:
            lifecycle.touch_quietly([params["name"]])
    inst = fs.instance(params["name"])
    if params["state"] == "present":
        check_instance_request(fs, inst, params)

    before = instance_settings(inst, (params["options"] or {}).keys())
    plan, after = plan_instance(inst, before, params)

    # Not "path": Ansible would add file attributes of that path to the result.
    result.update(changed=bool(plan), name=params["name"], instance_path=inst.path(), commands=plan.commands)
    if module._diff:
        result["diff"] = dict(before=before, after=after,
                              before_header="instance %s" % params["name"], after_header="instance %s" % params["name"])
    if plan and not module.check_mode:
        try:
            plan.apply()
        except FleettraceError as exc:
            result["changed"] = False
            raise exc.reworded(failure_message(exc))
    if params["state"] == "present":
        result["instance"] = instance_settings(inst, (params["options"] or {}).keys()) if not module.check_mode else after


def main():
    run_module(
        dict(
            name=dict(type="str", required=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            buffer_size_kb=dict(type="int"),
            clock=dict(type="str"),
            options=dict(type="dict"),
            event_pids=dict(type="list", elements="int"),
            tracing_on=dict(type="bool"),
        ),
        body, supports_check_mode=True)


if __name__ == "__main__":
    main()
