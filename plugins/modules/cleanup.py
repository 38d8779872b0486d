#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: cleanup
short_description: Remove every probe, instance and trigger this collection left in tracefs
version_added: 0.1.0
description:
  - Finds what this collection created on the host, recognised by the C(fleettrace) prefix of its
    names, and removes it. Use it after a run that was killed half-way (for example with
    C(playbooks/cleanup.yml)).
  - Removes private instances whose name starts with O(prefix) (their events are disabled and their
    triggers and filters removed first), uprobes whose group starts with O(prefix), events of those
    groups configured in other instances (including the top level), and triggers elsewhere that
    target such an event.
  - Nothing else is touched; the global tracing state is never reset.
  - One item the kernel refuses to remove (for example a probe still used by a C(perf) session) does
    not stop the others; the task fails afterwards and names each one.
author:
  - fleettrace developers (@fleettrace)
options:
  prefix:
    description:
      - Names starting with this are removed. Must start with C(fleettrace), so the module can never
        remove what other tools created.
    type: str
    default: fleettrace
  name_contains:
    description:
      - Only remove names that also contain this text, for example one run id, so that concurrent
        runs on the same kernel are left alone.
    type: str
attributes:
  check_mode:
    support: full
    description: Lists what would be removed (RV(removed), RV(commands)) and removes nothing.
  diff_mode:
    support: full
    description: Shows the owned instances and uprobes before and after.
notes:
  - Needs root (C(become=true)).
seealso:
  - module: fleettrace.tracefs.instance
  - module: fleettrace.tracefs.event
"""

EXAMPLES = r"""
- name: Remove everything fleettrace left on the node
  fleettrace.tracefs.cleanup:
  become: true

- name: Only what one run left (its run id is part of every name it creates)
  fleettrace.tracefs.cleanup:
    name_contains: r20260126T0815
  become: true

- name: What would be removed
  fleettrace.tracefs.cleanup:
  check_mode: true
  register: leftovers
"""

RETURN = r"""
removed:
  description: What was removed (in check mode, what would be).
  returned: always
  type: dict
  contains:
    instances:
      description: Instance names.
      type: list
      elements: str
    uprobes:
      description: Probes as C(group/event).
      type: list
      elements: str
    events:
      description: Owned events configured outside owned instances, as C(instance:group:event) (C(top) is the top level).
      type: list
      elements: str
    triggers:
      description: Triggers targeting owned events, as C(instance:group:event:trigger).
      type: list
      elements: str
  sample: {"instances": ["fleettrace_r1_node1"], "uprobes": ["fleettrace_r1_node1/timer_function_scheduler_timeout"],
           "events": [], "triggers": []}
commands:
  description: The removals as shell commands.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.cleanup import (
    commands_for, find_leftovers, remove_leftovers)
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import (
    OWNED_PREFIX, Tracefs, TracefsError)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            prefix=dict(type="str", default=OWNED_PREFIX),
            name_contains=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    prefix = module.params["prefix"]
    name_contains = module.params["name_contains"] or None
    if not prefix.startswith(OWNED_PREFIX):
        module.fail_json(msg="prefix %r does not start with %r: this module only removes what fleettrace created; "
                         "use a prefix like %r" % (prefix, OWNED_PREFIX, OWNED_PREFIX + "_myrun"), changed=False)
    try:
        fs = Tracefs(mount=False)
        leftovers = find_leftovers(fs, prefix, name_contains)
    except TracefsError as exc:
        module.fail_json(msg="cannot list tracefs state: %s" % exc.message, changed=False)
    commands = commands_for(fs, leftovers)
    changed = any(leftovers.values())
    result = dict(changed=changed, removed=leftovers, commands=commands)
    if module._diff:
        result["diff"] = dict(
            before={"instances": leftovers["instances"], "uprobes": leftovers["uprobes"]},
            after={"instances": [], "uprobes": []})
    if not changed or module.check_mode:
        module.exit_json(**result)
    errors = remove_leftovers(fs, leftovers)
    remaining = find_leftovers(fs, prefix, name_contains)
    if errors or any(remaining.values()):
        module.fail_json(msg="could not remove everything fleettrace left: %s; still present: %s. "
                         "Stop whatever still uses it (a perf or trace-cmd session, a reader of trace_pipe) and run again."
                         % ("; ".join(errors) or "no error reported", remaining), remaining=remaining, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
