# -*- coding: utf-8 -*-
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One trace event of one instance: enable, filter, triggers.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import validate
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.error_log import TracefsError


def normalize_trigger(text):
    """A trigger as the kernel shows it back, for comparison.

    The kernel prints ``stacktrace if x`` as ``stacktrace:unlimited if x`` and
    ``traceoff:3`` as ``traceoff:count=3``; counts it decrements as they fire,
    so the count is compared as given, not as now shown.
    """
    text = " ".join(validate.expression(text, "trigger").split())
    command, _sep, condition = text.partition(" if ")
    parts = command.split(":")
    name = parts[0]
    count = None
    if parts and len(parts) > 1:
        last = parts[-1]
        if last == "unlimited":
            parts = parts[:-1]
        elif last.startswith("count="):
            count = last[len("count="):]
            parts = parts[:-1]
        elif last.isdigit() and name in ("traceon", "traceoff", "stacktrace", "snapshot", "dump", "cpudump") + (
                ("enable_event", "disable_event") if len(parts) == 4 else ()):
            count = last
            parts = parts[:-1]
    result = ":".join(parts)
    if count is not None:
        result += ":%s" % count
    if condition:
        result += " if " + condition.strip()
    return result


def trigger_key(text):
    """What identifies a trigger for removal: its command (and target event)."""
    command = normalize_trigger(text).partition(" if ")[0]
    parts = command.split(":")
    if parts[0] in ("enable_event", "disable_event", "enable_hist", "disable_hist") and len(parts) >= 3:
        return ":".join(parts[:3])
    if parts[0].startswith("hist"):
        return command
    return parts[0]


class Event:
    """One trace event of one instance."""

    def __init__(self, instance, group, name, checked=False):
        self.instance = instance
        if not checked:
            validate.group_name(group)
            validate.event_name(name)
        self.group = group
        self.name = name

    def __repr__(self):
        return "Event(%s:%s in %r)" % (self.group, self.name, self.instance.name)

    @property
    def spec(self):
        return "%s:%s" % (self.group, self.name)

    def rel(self, filename=None):
        parts = ["events", self.group, self.name] + ([filename] if filename else [])
        return parts

    def exists(self):
        return os.path.isdir(self.instance.path(*self.rel()))

    def require(self):
        if not self.exists():
            groups = os.listdir(self.instance.path("events"))
            hint = ""
            if self.group not in groups:
                hint = " (no event group %r here" % self.group
                if self.group.startswith("probe") or self.instance.tracefs.features()["uprobes"]:
                    hint += "; a uprobe must be created first with fleettrace.tracefs.uprobe"
                hint += ")"
            raise TracefsError("event %s does not exist in %s%s; see %s/available_events"
                               % (self.spec, self.instance.label, hint, self.instance.tracefs.root))

    def _read(self, filename):
        return self.instance.read(*self.rel(filename))

    def _write(self, filename, text, append=False, what=None):
        self.instance.write(tuple(self.rel(filename)), text, append=append, what=what)

    # -- enable --------------------------------------------------------------
    @property
    def enabled(self):
        # "0*" / "1*": soft mode (a trigger of another event controls it).
        return self._read("enable").strip().startswith("1")

    def set_enabled(self, value):
        self._write("enable", "1" if value else "0",
                    what="%s %s in %s" % ("enabling" if value else "disabling", self.spec, self.instance.label))

    # -- filter ------------------------------------------------------------
    @property
    def filter(self):
        text = self._read("filter")
        first = text.splitlines()[0].strip() if text.strip() else ""
        return "" if first == "none" else first

    def set_filter(self, text):
        """Set (or clear with ``''``) the filter; on refusal restore the old one.

        The kernel drops the old filter when a new one fails to parse, so a
        refused filter would otherwise leave the event unfiltered.
        """
        text = validate.expression(text, "filter")
        previous = self.filter
        try:
            self._write("filter", text if text else "0",
                        what="filter %r on %s in %s" % (text, self.spec, self.instance.label))
        except TracefsError:
            self._write("filter", previous if previous else "0", what="restoring the previous filter")
            raise

    # -- triggers ------------------------------------------------------------
    def triggers(self):
        lines = self._read("trigger").splitlines()
        return [normalize_trigger(line) for line in lines if line.strip() and not line.startswith("#")]

    def add_trigger(self, text):
        text = validate.expression(text, "trigger")
        self._write("trigger", text, append=True,
                    what="trigger %r on %s in %s" % (text, self.spec, self.instance.label))

    def remove_trigger(self, text):
        command = normalize_trigger(text).partition(" if ")[0]
        parts = command.split(":")
        # Counted triggers are removed by their command; the kernel ignores the filter.
        if parts[-1].isdigit():
            parts = parts[:-1]
        # An enable_event trigger that fired leaves its target soft-enabled
        # ("1*"), and removing the trigger turns that into a plain enable:
        # what the trigger switched on is switched off with it.
        target = None
        if parts[0] == "enable_event" and len(parts) >= 3:
            target = Event(self.instance, parts[1], parts[2], checked=True)
            if not target.exists() or not target._read("enable").strip().endswith("*"):
                target = None
        self._write("trigger", "!" + ":".join(parts), append=True,
                    what="removing trigger %r from %s in %s" % (text, self.spec, self.instance.label))
        if target is not None and target.enabled:
            target.set_enabled(False)

    def clear(self):
        """Triggers off, filter off, disabled: the cleanup order of the house."""
        for trigger in self.triggers():
            self.remove_trigger(trigger)
        if self.filter:
            self._write("filter", "0", what="clearing the filter of %s" % self.spec)
        if self.enabled:
            self.set_enabled(False)
