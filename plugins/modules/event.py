#!/usr/bin/python
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r"""
---
module: event
short_description: Enable a trace event and set its filter and triggers
version_added: 0.1.0
description:
  - Manages one trace event (C(sched:sched_switch), a uprobe event, a syscall event, ...) of a tracefs
    instance or of the top-level buffer; it sets whether it is enabled, its filter, and the exact list of its triggers.
  - Triggers are compared with what the kernel shows back (C(stacktrace) reads back as
    C(stacktrace:unlimited)); missing ones are added, ones not in the list are removed (C(!cmd)).
  - Applied all-or-nothing. If the kernel refuses a filter or trigger, everything already written is
    restored and the error quotes the kernel's C(error_log). Note that the kernel itself drops an event's
    old filter when a new one fails to parse; this module puts the old filter back.
  - Writes are ordered so that an event never records unfiltered for a moment;
    C(present) writes the filter, then triggers, then enables; C(absent) removes triggers, then the
    filter, then disables.
author:
  - fleettrace developers (@fleettrace)
options:
  instance:
    description:
      - Name of the tracefs instance (see M(fleettrace.tracefs.instance)). It must exist.
      - Omit to manage the event in the top-level buffer (shared with every other tracing user of the host).
    type: str
  event:
    description: The event as C(GROUP:EVENT) or C(GROUP/EVENT), for example C(sched:sched_switch).
    type: str
    required: true
  state:
    description:
      - C(present) applies O(enabled), O(filter) and O(triggers).
      - C(absent) removes every trigger and the filter and disables the event.
    type: str
    choices: [present, absent]
    default: present
  enabled:
    description: Whether the event is recorded. Omit to leave as it is.
    type: bool
  filter:
    description:
      - The event filter (for example C(prev_state == 2)). An empty string removes the filter.
      - Omit to leave the filter as it is.
    type: str
  triggers:
    description:
      - The exact list of triggers wanted, for example C(traceoff if tv_diff_u64 >= 1000100000),
        C(stacktrace if prev_state == 2), C(snapshot), C(enable_event:syscalls:sys_enter_ioctl).
        An empty list removes all triggers. Omit to leave triggers as they are.
      - A counted trigger (C(traceoff:1)) counts down as it fires; running the task again re-arms it.
      - C(hist) triggers need a kernel with hist triggers (detected; the error says when missing).
    type: list
    elements: str
attributes:
  check_mode:
    support: full
    description: Reports the exact writes it would make (RV(commands)) and writes nothing.
  diff_mode:
    support: full
    description: Shows enabled, filter and triggers before and after.
notes:
  - Needs root (C(become=true)).
  - A trigger fires even while its event is disabled (the kernel puts the event into soft mode);
    set triggers after the filters they rely on, which this module does.
seealso:
  - module: fleettrace.tracefs.instance
  - module: fleettrace.tracefs.uprobe
"""

EXAMPLES = r"""
- name: Keep only D-state switches of the watched process and grab their kernel stack (the talk's step 4)
  fleettrace.tracefs.event:
    instance: fleettrace_corosync
    event: sched:sched_switch
    filter: prev_state == 2
    triggers:
      - stacktrace if prev_state == 2
    enabled: true
  become: true

- name: Stop tracing the moment corosync's timer measures a late tick
  fleettrace.tracefs.event:
    instance: fleettrace_corosync
    event: probe_corosync/timer_function_scheduler_timeout_L19
    triggers:
      - traceoff if tv_diff_u64 >= 1000100000
    enabled: true
  become: true

- name: Remove filter and triggers and disable
  fleettrace.tracefs.event:
    instance: fleettrace_corosync
    event: sched:sched_switch
    state: absent
  become: true
"""

RETURN = r"""
event:
  description: The event as C(GROUP:EVENT).
  returned: always
  type: str
  sample: sched:sched_switch
instance:
  description: The instance name, or null for the top-level buffer.
  returned: always
  type: str
  sample: fleettrace_corosync
commands:
  description: The writes made (or, in check mode, that would be made), as shell commands.
  returned: always
  type: list
  elements: str
  sample: ["echo 'prev_state == 2' > /sys/kernel/tracing/instances/x/events/sched/sched_switch/filter"]
state:
  description: Enabled, filter and triggers after the task (as the kernel shows them; predicted in check mode).
  returned: always
  type: dict
  sample: {"enabled": true, "filter": "prev_state == 2", "triggers": ["stacktrace if prev_state == 2"]}
"""

from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.module_runner import run_module
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import lifecycle, removal
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import validate
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.changes import failure_message
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.instance_event_plans import (
    FRESH_EVENT, check_triggers, event_state, plan_event)
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import Tracefs, TracefsError


def body(module, result):
    params = module.params
    result.update(event=params["event"], instance=params["instance"], commands=[])
    group, name = validate.split_event(params["event"])
    result["event"] = "%s:%s" % (group, name)
    if params["instance"] is not None:
        validate.instance_name(params["instance"])
    if params["filter"] is not None:
        validate.expression(params["filter"], "filter")
    fs = Tracefs()
    if not module.check_mode:
        removal.reap_expired_quietly(fs, warn=module.warn)
        if params["state"] == "present":
            lifecycle.working_on([params["instance"], group])   # renewed; refused when its run ended
        else:
            lifecycle.touch_quietly([params["instance"], group])
    inst = fs.instance(params["instance"])
    event = inst.event(group, name)
    instance_pending = not inst.exists()
    if instance_pending and not module.check_mode:
        raise TracefsError("instance %r does not exist; create it first with fleettrace.tracefs.instance"
                           % params["instance"])
    if instance_pending:
        # Check mode after an instance task that was only predicted: a new
        # instance offers the top-level events, all disabled and bare.
        fs.instance(None).event(group, name).require()
        module.warn("instance %r does not exist yet; showing the writes for a new instance" % params["instance"])
    else:
        event.require()
    wanted_triggers = None
    if params["triggers"] is not None and params["state"] == "present":
        wanted_triggers = check_triggers(fs, params["triggers"])

    before = FRESH_EVENT if instance_pending else event_state(event)
    plan, after = plan_event(event, before, params, wanted_triggers)
    result.update(changed=bool(plan), commands=plan.commands, state=after)
    if module._diff:
        label = "%s in %s" % (result["event"], inst.label)
        result["diff"] = dict(before=before, after=after, before_header=label, after_header=label)
    if plan and not module.check_mode:
        try:
            plan.apply()
        except FleettraceError as exc:
            result.update(changed=False, state=event_state(event))
            raise exc.reworded(failure_message(exc))
        result["state"] = event_state(event)


def main():
    run_module(
        dict(
            instance=dict(type="str"),
            event=dict(type="str", required=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            enabled=dict(type="bool"),
            filter=dict(type="str"),
            triggers=dict(type="list", elements="str"),
        ),
        body, supports_check_mode=True)


if __name__ == "__main__":
    main()
