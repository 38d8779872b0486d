# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Find and remove tracefs objects by exact name.

``find_leftovers(fs, match)`` lists, for a predicate on instance and group
names: the matching instances, the uprobes of matching groups, their events
configured in other instances (the top level included) and top-level
triggers that target them.  ``plan_removal`` turns that into a ``ChangePlan``
in the cleanup order (triggers, filters, disable, instances, probes) that
check mode prints and ``remove_all`` runs past refusals.

Who may be removed is decided by the caller (``runs.choice``): the exact names
a run may remove, or an explicit, named request for objects without a run.
"""


import glob
import os
import time

from ansible_collections.fleettrace.tracefs.plugins.module_utils import probe_definition
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.changes import ChangePlan, shell_write
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.error_log import TracefsError

# A killed run's capture may still hold the instance open for a moment: rmdir
# says EBUSY; try this often, this far apart, before reporting it.
RMDIR_TRIES = 5
RMDIR_PAUSE = 0.2


def find_leftovers(fs, match, trigger_targets=True):
    """What ``match`` selects, as structured items (see ``as_result`` for the text form).

    ``trigger_targets=False`` skips looking for top-level triggers aimed at selected groups (a
    read of every event's trigger file, ~2300 on a typical kernel): for a caller that knows it
    owns no event group, since a trigger can only name a group.
    """
    instances = [n for n in fs.list_instances() if match(n)]
    uprobes = [(u.group, u.event) for u in fs.list_uprobes() if match(u.group)]
    groups = {g for g, _e in uprobes}
    events, triggers = [], []
    foreign = [fs.instance(None)] + [fs.instance(n) for n in fs.list_instances() if n not in instances]
    for inst in foreign:
        if not inst.exists():
            continue
        # Selected groups are looked up by name (cheap); every other event is only
        # looked at in the top level, the one place a trigger may target ours.
        for group in sorted(groups | set(_group_dirs(inst, match))):
            for event_dir in sorted(glob.glob(inst.path("events", group, "*"))):
                if not os.path.exists(os.path.join(event_dir, "enable")):
                    continue
                event = inst.event(group, os.path.basename(event_dir))
                if event.enabled or event.filter or event.triggers():
                    events.append((inst.name, group, event.name))
        if inst.name is not None or not trigger_targets:
            continue
        for event, event_triggers in inst.triggered_events():
            if match(event.group):
                continue
            for trigger in event_triggers:
                # enable_event:GROUP:EVENT / disable_event:GROUP:EVENT name their target
                parts = trigger.partition(" if ")[0].split(":")
                if len(parts) >= 3 and match(parts[1]):
                    triggers.append((inst.name, event.group, event.name, trigger))
    return {"instances": instances, "uprobes": uprobes, "events": events, "triggers": triggers}


def _group_dirs(inst, match):
    try:
        return [g for g in os.listdir(inst.path("events")) if match(g)]
    except OSError:
        return []


def as_result(found):
    """The module's text form: 'group/event', 'instance:group:event' ('top' for the top level)."""
    def label(name):
        return "top" if name is None else name
    return {
        "instances": list(found["instances"]),
        "uprobes": ["%s/%s" % item for item in found["uprobes"]],
        "events": ["%s:%s:%s" % (label(i), g, e) for i, g, e in found["events"]],
        "triggers": ["%s:%s:%s:%s" % (label(i), g, e, t) for i, g, e, t in found["triggers"]],
    }


def _remove_instance(inst):
    for attempt in range(RMDIR_TRIES):
        try:
            inst.remove()
            return
        except TracefsError:
            if attempt == RMDIR_TRIES - 1 or not inst.exists():
                if inst.exists():
                    raise
                return
            time.sleep(RMDIR_PAUSE)


def _remove_trigger(event, trigger):
    if event.exists() and trigger in event.triggers():
        event.remove_trigger(trigger)


def _clear(event):
    if event.exists():
        event.clear()


def _remove_uprobe(fs, group, event):
    # Idempotent: a reaper or another cleanup may have removed it a moment ago.
    if any(u.group == group and u.event == event for u in fs.list_uprobes()):
        fs.remove_uprobe(group, event)


def remove_all(plan):
    """Run every step of a removal plan, going on past refusals (one busy item never blocks the
    rest); return the errors as 'command: reason' strings.

    Not ``ChangePlan.apply()``: a removal cannot be undone, so all-or-nothing means nothing here;
    removing what can be removed and naming the rest is what cleanup owes."""
    errors = []
    for step in plan.steps:
        try:
            step.do()
        except Exception as exc:  # noqa: BLE001 - reported; the next step still runs
            errors.append("%s: %s" % (step.command, exc))
    return errors


def plan_removal(fs, found):
    """The removals as a ChangePlan, in the cleanup order; each step is a no-op when its object is gone."""
    plan = ChangePlan()
    for name, group, event_name, trigger in found["triggers"]:
        event = fs.instance(name).event(group, event_name)
        plan.write(event.instance.path(*event.rel("trigger")), "!" + trigger.partition(" if ")[0],
                   (lambda e=event, t=trigger: _remove_trigger(e, t)), append=True)
    for name, group, event_name in found["events"]:
        event = fs.instance(name).event(group, event_name)
        plan.add("clear triggers and filter, " + shell_write(event.instance.path(*event.rel("enable")), "0"),
                 (lambda e=event: _clear(e)))
    # Instances before probes: a probe enabled in an instance cannot be removed.
    for name in found["instances"]:
        plan.add("disable all events and rmdir %s" % fs.path("instances", name),
                 (lambda inst=fs.instance(name): _remove_instance(inst)))
    for group, event_name in found["uprobes"]:
        plan.write(fs.path("uprobe_events"), probe_definition.removal(group, event_name),
                   (lambda g=group, e=event_name: _remove_uprobe(fs, g, e)), append=True)
    return plan
