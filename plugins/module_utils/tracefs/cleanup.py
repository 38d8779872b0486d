# -*- coding: utf-8 -*-
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Find and remove what this collection left in tracefs.

Everything the collection creates carries ``OWNED_PREFIX`` in its name:
instances under ``instances/`` and the groups of its uprobes.  A run that was
killed half-way can leave any of them behind, with events enabled, filters
and triggers set.  ``find_leftovers`` lists them from nothing but the host;
``remove_leftovers`` removes them in the house order (triggers, filters,
disable, probes, instances) and keeps going past a refusal so one busy item
never blocks the rest.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os
import time

from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import OWNED_PREFIX, TracefsError


def _owned(name, prefix, name_contains):
    return name.startswith(prefix) and (not name_contains or name_contains in name)


def find_leftovers(fs, prefix=OWNED_PREFIX, name_contains=None):
    """What carries ``prefix`` (and ``name_contains``, when given).

    Returns a dict:
      instances: names of owned instances (removed whole, with their events)
      uprobes:   'group/event' of owned probe groups
      events:    'instance:group:event' of owned-group events configured in
                 instances that are not owned (e.g. the top level)
      triggers:  'instance:group:event:trigger' of triggers outside owned
                 instances that target an owned event (enable_event:fleettrace_x:...)
    """
    instances = [n for n in fs.list_instances() if _owned(n, prefix, name_contains)]
    uprobes = ["%s/%s" % (u.group, u.event) for u in fs.list_uprobes() if _owned(u.group, prefix, name_contains)]
    events, triggers = [], []
    foreign = [fs.instance(None)] + [fs.instance(n) for n in fs.list_instances() if n not in instances]
    for inst in foreign:
        label = inst.name or "top"
        if not inst.exists():
            continue
        # Owned groups are found by name (cheap); every other event is only
        # looked at in the top level, the one place a trigger may target ours.
        for event_dir in sorted(glob.glob(inst.path("events", prefix + "*", "*"))):
            group, name = event_dir.split(os.sep)[-2:]
            if not _owned(group, prefix, name_contains) or not os.path.exists(os.path.join(event_dir, "enable")):
                continue
            event = inst.event(group, name)
            if event.enabled or event.filter or event.triggers():
                events.append("%s:%s" % (label, event.spec))
        if inst.name is not None:
            continue
        for event in inst.configured_events():
            if event.group.startswith(prefix):
                continue
            for trigger in event.triggers():
                # enable_event:GROUP:EVENT / disable_event:GROUP:EVENT name their target
                parts = trigger.partition(" if ")[0].split(":")
                if len(parts) >= 3 and _owned(parts[1], prefix, name_contains):
                    triggers.append("%s:%s:%s" % (label, event.spec, trigger))
    return {"instances": instances, "uprobes": uprobes, "events": events, "triggers": triggers}


def commands_for(fs, leftovers):
    """The removals as shell commands, for check mode and the task output."""
    commands = []
    for item in leftovers["triggers"]:
        label, group, name, trigger = item.split(":", 3)
        base = fs.root if label == "top" else fs.path("instances", label)
        commands.append("echo '!%s' >> %s/events/%s/%s/trigger" % (trigger.partition(" if ")[0], base, group, name))
    for item in leftovers["events"]:
        label, group, name = item.split(":", 2)
        base = fs.root if label == "top" else fs.path("instances", label)
        commands.append("clear triggers and filter, echo 0 > %s/events/%s/%s/enable" % (base, group, name))
    for name in leftovers["instances"]:
        commands.append("disable all events and rmdir %s" % fs.path("instances", name))
    for probe in leftovers["uprobes"]:
        commands.append("echo '-:%s' >> %s" % (probe, fs.path("uprobe_events")))
    return commands


def remove_leftovers(fs, leftovers):
    """Remove everything listed; return the list of errors (empty on success)."""
    errors = []

    def attempt(what, action):
        try:
            action()
        except (TracefsError, OSError, IOError) as exc:
            errors.append("%s: %s" % (what, getattr(exc, "message", None) or exc))

    for item in leftovers["triggers"]:
        label, group, name, trigger = item.split(":", 3)
        event = fs.instance(None if label == "top" else label).event(group, name)
        attempt("trigger %s on %s in %s" % (trigger, event.spec, label), lambda e=event, t=trigger: e.remove_trigger(t))
    for item in leftovers["events"]:
        label, group, name = item.split(":", 2)
        event = fs.instance(None if label == "top" else label).event(group, name)
        attempt("event %s in %s" % (event.spec, label), event.clear)
    # Instances before probes: a probe enabled in an instance cannot be removed.
    for name in leftovers["instances"]:
        # A killed run's capture may still poll the instance for a moment: rmdir
        # then says EBUSY; give it a few chances before reporting it.
        for _try in range(5):
            before = len(errors)
            attempt("instance %s" % name, fs.instance(name).remove)
            if len(errors) == before or not fs.instance(name).exists():
                del errors[before:]
                break
            if _try < 4:
                del errors[before:]
                time.sleep(0.2)
    for probe in leftovers["uprobes"]:
        group, event = probe.split("/", 1)
        attempt("uprobe %s" % probe, lambda g=group, e=event: fs.remove_uprobe(g, e))
    return errors
