#!/usr/bin/python
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r"""
---
module: cleanup
short_description: Remove the tracefs objects of ended fleettrace runs, or of runs named explicitly
version_added: 0.1.0
description:
  - Every run records what it creates in a manifest under C(/run/fleettrace/runs/) (exact instance and probe group
    names, its owner process, a lease and a deadline). A run is orphaned when its deadline passed, or when its owner
    is gone and its lease expired. Each run's own reaper removes it then; this module does the same for every orphan
    on the host (for example when the reaper was killed too).
  - By default only orphans are removed. A live run is removed only when named in O(force).
  - Objects without a manifest (made by other tools, or by fleettrace before manifests) are never removed by default;
    name them explicitly with O(name_contains) or O(names). A name request also removes runs whose owner is gone
    (before their lease expired), never a run whose owner lives.
  - Removal matches names exactly; triggers and filters first, then events are disabled, instances removed, probes
    removed. One item the kernel refuses to remove does not stop the others; the task fails afterwards and names each.
  - The global tracing state is never reset.
  - A sentinel (M(fleettrace.tracefs.sentinel)) is a live run of kind C(watcher), listed in RV(sentinels). Named in
    O(force), its watcher is stopped first (SIGTERM, then it removes its own objects; SIGKILL after 30 s, then its
    objects are removed here), so its spool records how it ended.
author:
  - fleettrace developers (@fleettrace)
options:
  force:
    description:
      - Run tags (the manifest names, as returned by M(fleettrace.tracefs.run)) to remove even while they are live.
    type: list
    elements: str
    default: []
  name_contains:
    description:
      - Also remove objects without a manifest whose name starts with O(prefix) and contains this text.
    type: str
  names:
    description:
      - Also remove objects without a manifest with exactly these instance or probe group names.
    type: list
    elements: str
  prefix:
    description:
      - With O(name_contains), names must start with this. Must start with C(fleettrace), so the module can never
        remove what other tools created.
    type: str
    default: fleettrace
attributes:
  check_mode:
    support: full
    description: Lists what would be removed (RV(removed), RV(commands)) and removes nothing.
  diff_mode:
    support: full
    description: Shows the instances and uprobes before and after.
notes:
  - Needs root (C(become=true)).
seealso:
  - module: fleettrace.tracefs.run
  - module: fleettrace.tracefs.instance
"""

EXAMPLES = r"""
- name: Remove what ended (killed, timed out) fleettrace runs left on the node
  fleettrace.tracefs.cleanup:
  become: true

- name: Stop one live run now
  fleettrace.tracefs.cleanup:
    force: [r20260126T0815_node1_3f2a]
  become: true

- name: Objects an old fleettrace version left (no manifest), named by their run id
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
      description: Events of removed groups configured in other instances, as C(instance:group:event) (C(top) is the top level).
      type: list
      elements: str
    triggers:
      description: Top-level triggers targeting removed events, as C(instance:group:event:trigger).
      type: list
      elements: str
  sample: {"instances": ["fleettrace_r1_node1_3f2a"], "uprobes": ["fleettrace_r1_node1_3f2a/timer_function_scheduler_timeout"],
           "events": [], "triggers": []}
runs:
  description: Run manifests removed (orphans and forced), each with its tag and why.
  returned: always
  type: list
  elements: dict
live:
  description: Live runs left alone, as descriptions.
  returned: always
  type: list
  elements: str
sentinels:
  description:
    - The sentinels on the node (runs of kind C(watcher)), each with C(tag), C(label), C(watcher) (pid), C(alive),
      C(deadline) (Unix time) and, when forced, C(stopped) (how its watcher ended).
  returned: always
  type: list
  elements: dict
quarantined:
  description:
    - Files in the runs directory that were not manifests (malformed, cut short, too big, a foreign schema), moved
      aside to C(/run/fleettrace/runs/quarantine/). What they named is removed when the names carry the
      C(fleettrace) prefix and the file's tag and no live run claims them. Delete the files once read.
  returned: always
  type: list
  elements: str
commands:
  description: The removals as shell commands.
  returned: always
  type: list
  elements: str
summary:
  description: One line saying what was removed (in check mode, what would be), what was left alone and why.
  returned: always
  type: str
  sample: "removed: 1 instance(s) ['fleettrace_r1_node1_3f2a'], 0 uprobe(s) [], ..."
"""

from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError, OptionError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.module_runner import run_module
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import choice, lifecycle, removal
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import owner as run_owner
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs.manifest import WATCHER
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sentinel import running as sentinel_running
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs.store import RunStore
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import validate
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.cleanup import as_result, find_leftovers
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import (
    OWNED_PREFIX, Tracefs)


def body(module, result):
    params = module.params
    if not params["prefix"].startswith(OWNED_PREFIX):
        raise OptionError("prefix %r does not start with %r: this module only removes what fleettrace created; "
                          "use a prefix like %r" % (params["prefix"], OWNED_PREFIX, OWNED_PREFIX + "_myrun"))
    for tag in params["force"] + (params["names"] or []):
        validate.instance_name(tag)
    if params["name_contains"] is not None and not params["name_contains"]:
        raise validate.ValidationError("name_contains is empty: it would name every fleettrace object; "
                                       "give a run id, or use names")
    named = None
    if params["name_contains"] or params["names"]:
        named = choice.named_request(params["name_contains"], params["names"], params["prefix"])
    store = RunStore(move_aside=not module.check_mode)
    try:
        fs = Tracefs(mount=False)
        # What goes is decided in runs.choice, as for the reapers; this module only shows and applies it.
        cleanup = removal.Cleanup(fs, store, force=params["force"], named=named)
    except OSError as exc:
        raise FleettraceError("cannot list tracefs state or the runs: %s" % exc)
    removed = as_result(cleanup.found)
    for warning in removal.warnings([(a.tag, "%s: %s (moved to %s)" % (removal.QUARANTINED, a.why, a.path), [])
                                     for a in cleanup.quarantined]):
        module.warn(warning)
    changed = bool(cleanup.plan) or bool(cleanup.chosen) or bool(cleanup.quarantined)
    forced = {m.tag for m, _why in cleanup.chosen if m.tag in params["force"]}
    sentinels = [{"tag": m.tag, "label": m.details.get("label"), "watcher": m.owner.pid,
                  "alive": run_owner.alive(m.owner), "deadline": m.deadline, "owner": m.owner}
                 for m in [m for m, _why in cleanup.chosen] + list(cleanup.live) if m.kind == WATCHER]
    for sentinel in sentinels:
        owner = sentinel.pop("owner")
        if sentinel["tag"] in forced and sentinel["alive"]:
            # Its watcher holds its instance open (EBUSY): it ends first, removing what it owns.
            sentinel["stopped"] = ("would stop" if module.check_mode
                                   else sentinel_running.stop({"watcher": owner.to_dict()}))
    result.update(changed=changed, removed=removed, commands=cleanup.plan.commands,
                  runs=[{"tag": m.tag, "run_id": m.run_id, "why": why} for m, why in cleanup.chosen],
                  live=[lifecycle.describe(m) for m in cleanup.live], quarantined=store.quarantined(),
                  sentinels=sentinels)
    result["summary"] = removal.summary(result, module.check_mode)
    if module._diff:
        result["diff"] = dict(before={"instances": removed["instances"], "uprobes": removed["uprobes"]},
                              after={"instances": [], "uprobes": []})
    if not changed or module.check_mode:
        return
    errors = cleanup.apply()
    gone = set(removed["instances"]) | {r.split("/")[0] for r in removed["uprobes"]}
    remaining = as_result(find_leftovers(fs, gone.__contains__))
    if errors or any(remaining.values()):
        result["remaining"] = remaining
        raise FleettraceError("could not remove everything: %s; still present: %s"
                              % ("; ".join(errors) or "no error reported", remaining),
                              hint="stop whatever still uses it (a perf or trace-cmd session, a reader of trace_pipe) "
                                   "and run again")


def main():
    run_module(
        dict(
            force=dict(type="list", elements="str", default=[]),
            name_contains=dict(type="str"),
            names=dict(type="list", elements="str"),
            prefix=dict(type="str", default=OWNED_PREFIX),
        ),
        body, supports_check_mode=True)


if __name__ == "__main__":
    main()
