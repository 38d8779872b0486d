# -*- coding: utf-8 -*-
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kernel's tracefs, as plain Python objects.

``Tracefs`` is one mount point; ``Instance`` is the top level (name ``None``)
or a directory under ``instances/``; ``Event`` is one event of an instance.
Every write goes through ``Tracefs.write`` which turns a refusal into a
``TracefsError`` quoting the kernel's ``error_log``.  Nothing here imports
Ansible, so the core runs and tests on its own (Python 3.8+).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import glob
import os
import re
import subprocess
import time

from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import validate

TRACEFS_PATHS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")

# Prefix of every instance and probe group this collection creates, so that
# cleanup can find them again from nothing but the host.
OWNED_PREFIX = "fleettrace"


class TracefsError(Exception):
    """The kernel refused something, or tracefs is not usable.

    ``error_log`` holds the kernel's error_log lines written by the failed
    operation (may be empty: not every refusal is logged).
    """

    def __init__(self, message, error_log=None):
        super(TracefsError, self).__init__(message)
        self.message = message
        self.error_log = list(error_log or [])


def find_tracefs(mount=True, candidates=TRACEFS_PATHS):
    """Return the path of a usable tracefs, mounting it when allowed.

    Raises ``TracefsError`` naming every place looked at and what to do.
    """
    for path in candidates:
        if os.path.isfile(os.path.join(path, "README")):
            if not os.access(os.path.join(path, "tracing_on"), os.W_OK):
                raise TracefsError(
                    "tracefs at %s is not writable by uid %d: run as root (become: true)"
                    % (path, os.geteuid()))
            return path
    if os.geteuid() != 0:
        raise TracefsError(
            "tracefs is not mounted (looked at %s) and uid %d may not mount it: run as root (become: true)"
            % (", ".join(candidates), os.geteuid()))
    if not mount:
        raise TracefsError(
            "tracefs is not mounted (looked at %s); mount it with "
            "'mount -t tracefs nodev /sys/kernel/tracing' or allow mounting"
            % ", ".join(candidates))
    target = candidates[0]
    result = subprocess.run(["mount", "-t", "tracefs", "nodev", target],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if result.returncode != 0 or not os.path.isfile(os.path.join(target, "README")):
        raise TracefsError(
            "tracefs is not mounted and 'mount -t tracefs nodev %s' failed: %s. "
            "Is CONFIG_TRACING enabled in this kernel?"
            % (target, result.stderr.decode("utf-8", "replace").strip() or "no tracefs README after mount"))
    return target


def _read(path):
    with open(path, "r") as handle:
        return handle.read()


def _error_log_lines(text):
    return [line for line in text.splitlines() if line.strip()]


class Tracefs:
    """One tracefs mount."""

    def __init__(self, root=None, mount=True):
        self.root = root or find_tracefs(mount=mount)
        self._features = None

    # -- raw file access ---------------------------------------------------
    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def read(self, relpath):
        return _read(self.path(relpath))

    def write(self, relpath, text, append=False, error_logs=("error_log",), what=None):
        """Write one command; on refusal raise ``TracefsError`` with error_log.

        ``error_logs``: error_log files (relative) where the kernel may log
        the reason, top level and/or the instance's own.
        """
        full = self.path(relpath)
        before = {}
        for log in error_logs:
            try:
                before[log] = _read(self.path(log))
            except (IOError, OSError):
                before[log] = None
        flags = os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC)
        try:
            fd = os.open(full, flags)
            try:
                os.write(fd, text.encode("utf-8") if text else b"")
                if not text:
                    # An empty write still has to reach the kernel for files
                    # like set_event_pid, whose O_TRUNC open clears them.
                    pass
            finally:
                os.close(fd)
        except (IOError, OSError) as exc:
            new_lines = []
            for log, old in before.items():
                if old is None:
                    continue
                try:
                    now = _read(self.path(log))
                except (IOError, OSError):
                    continue
                # error_log only grows (bounded ring): the new part is the tail.
                added = now[len(old):] if now.startswith(old) else now
                new_lines.extend(_error_log_lines(added))
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            message = "kernel refused %s: writing %r to %s failed (%s)" % (
                what or "the write", text, full, reason)
            if new_lines:
                message += "; error_log says: " + " | ".join(line.strip() for line in new_lines)
            elif exc.errno == errno.ENOENT:
                message += "; the file does not exist"
            else:
                message += "; error_log has no entry for it"
            raise TracefsError(message, new_lines)

    # -- features ----------------------------------------------------------
    def features(self):
        """What this kernel's tracefs offers, from README and present files."""
        if self._features is None:
            readme = self.read("README")
            clocks = [c.strip("[]") for c in self.read("trace_clock").split()]
            self._features = {
                "uprobes": os.path.exists(self.path("uprobe_events")),
                "kprobes": os.path.exists(self.path("kprobe_events")),
                "dynamic_events": os.path.exists(self.path("dynamic_events")),
                # CONFIG_HIST_TRIGGERS adds "hist trigger" to README and a hist file per event.
                "hist_triggers": "hist trigger" in readme or os.path.exists(
                    self.path("events", "sched", "sched_switch", "hist")),
                "instances": os.path.isdir(self.path("instances")),
                "error_log": os.path.exists(self.path("error_log")),
                "snapshot": os.path.exists(self.path("snapshot")),
                "stacktrace_trigger": "stacktrace" in readme,
                "set_event_pid": os.path.exists(self.path("set_event_pid")),
                "syscall_events": os.path.isdir(self.path("events", "syscalls")),
                "raw_syscall_events": os.path.isdir(self.path("events", "raw_syscalls")),
                "uprobe_x_types": "x8/16/32/64" in readme,
                "uprobe_immediate": "\\imm-value" in readme,
                "uprobe_user_memory": "u]<offset>" in readme,
                "uprobe_bitfields": "b<bit-width>@<bit-offset>/<container-size>" in readme,
                "trace_clocks": clocks,
            }
        return dict(self._features)

    def require(self, feature, why):
        if not self.features().get(feature):
            raise TracefsError(
                "this kernel's tracefs has no %s, which %s needs (kernel %s; see %s/README)"
                % (feature.replace("_", " "), why, os.uname()[2], self.root))

    # -- instances ---------------------------------------------------------
    def instance(self, name=None):
        return Instance(self, name)

    def list_instances(self):
        try:
            return sorted(os.listdir(self.path("instances")))
        except OSError:
            return []

    # -- uprobes -------------------------------------------------------------
    def list_uprobes(self):
        """uprobe_events as a list of ``UprobeDefinition``."""
        if not os.path.exists(self.path("uprobe_events")):
            return []
        return [UprobeDefinition.parse(line) for line in self.read("uprobe_events").splitlines() if line.strip()]

    def add_uprobe(self, line):
        """Append one definition line to uprobe_events."""
        self.require("uprobes", "a user-space probe")
        validate.expression(line, "uprobe definition")
        self.write("uprobe_events", line, append=True, what="the uprobe definition")

    def remove_uprobe(self, group, event):
        """Remove one uprobe event; disable it in every instance first."""
        for inst in [self.instance(None)] + [self.instance(n) for n in self.list_instances()]:
            ev = inst.event(group, event)
            if ev.exists():
                ev.clear()
        self.write("uprobe_events", "-:%s/%s" % (group, event), append=True,
                   what="removing uprobe %s/%s" % (group, event))


_UPROBE_LINE = re.compile(r"^(?P<type>[pr])\d*:(?P<group>[^/\s]+)/(?P<event>\S+)\s+(?P<place>\S+)(?:\s+(?P<args>.*))?$")


class UprobeDefinition:
    """One line of uprobe_events: ``p:GROUP/EVENT /path:0xOFF ARGS``."""

    def __init__(self, kind, group, event, place, args):
        self.kind = kind
        self.group = group
        self.event = event
        self.place = place
        self.args = args

    @classmethod
    def parse(cls, line):
        match = _UPROBE_LINE.match(line.strip())
        if not match:
            raise TracefsError("cannot parse uprobe definition %r" % line)
        args = (match.group("args") or "").split()
        return cls(match.group("type"), match.group("group"), match.group("event"), match.group("place"), args)

    def line(self):
        return " ".join(["%s:%s/%s" % (self.kind, self.group, self.event), self.place] + self.args)

    def __eq__(self, other):
        return isinstance(other, UprobeDefinition) and self.line() == other.line()

    def __repr__(self):
        return "UprobeDefinition(%r)" % self.line()


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


class Instance:
    """The top-level trace buffer (``name=None``) or a private instance."""

    def __init__(self, tracefs, name=None):
        self.tracefs = tracefs
        self.name = validate.instance_name(name) if name is not None else None
        self.relpath = "" if name is None else os.path.join("instances", name)

    def __repr__(self):
        return "Instance(%r)" % (self.name,)

    @property
    def label(self):
        return "top-level instance" if self.name is None else "instance %r" % self.name

    def rel(self, *parts):
        return os.path.join(self.relpath, *parts)

    def path(self, *parts):
        return self.tracefs.path(self.rel(*parts))

    def read(self, *parts):
        return self.tracefs.read(self.rel(*parts))

    def write(self, parts, text, append=False, what=None):
        if isinstance(parts, str):
            parts = (parts,)
        logs = ("error_log",) if self.name is None else (self.rel("error_log"), "error_log")
        self.tracefs.write(self.rel(*parts), text, append=append, error_logs=logs, what=what)

    # -- lifecycle ---------------------------------------------------------
    def exists(self):
        return os.path.isdir(self.path()) if self.name is not None else True

    def create(self):
        if self.name is None:
            return
        self.tracefs.require("instances", "a private trace buffer")
        try:
            os.mkdir(self.path())
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise TracefsError("cannot create %s at %s: %s" % (self.label, self.path(), os.strerror(exc.errno)))

    def remove(self):
        """Disable everything inside, then rmdir, so rmdir cannot fail half-way."""
        if self.name is None or not self.exists():
            return
        self.reset_events()
        # EBUSY while any process has a file of the instance open, even for a
        # moment (a concurrent reader, a snapshot): retry briefly before failing.
        for attempt in range(20):
            try:
                os.rmdir(self.path())
                return
            except OSError as exc:
                if exc.errno != errno.EBUSY or attempt == 19:
                    raise TracefsError("cannot remove %s at %s: %s (is a process still reading its trace_pipe?)"
                                       % (self.label, self.path(), os.strerror(exc.errno)))
                time.sleep(0.1)

    def reset_events(self):
        """Remove triggers and filters of every event here and disable them."""
        for event in self.configured_events():
            event.clear()
        if self.read("set_event").strip():
            self.write("set_event", "", what="disabling all events")
        if os.path.exists(self.path("set_event_pid")) and self.read("set_event_pid").strip():
            self.write("set_event_pid", "", what="clearing set_event_pid")

    # -- settings ----------------------------------------------------------
    @property
    def buffer_size_kb(self):
        text = self.read("buffer_size_kb").strip()
        # "7 (expanded: 1408)" before first use: the configured size is 1408.
        match = re.search(r"expanded:\s*(\d+)", text)
        return int(match.group(1) if match else text.split()[0])

    def buffer_size_matches(self, current, wanted):
        """The kernel rounds sizes up to whole sub-buffers: 2048 may read back as 2051."""
        if current is None:
            return False
        try:
            granule = int(self.tracefs.read("buffer_subbuf_size_kb").strip())
        except (IOError, OSError, ValueError):
            granule = 4
        return wanted <= current < wanted + max(granule, 4)

    def set_buffer_size_kb(self, size):
        self.write("buffer_size_kb", str(int(size)), what="the buffer size")

    @property
    def clock(self):
        match = re.search(r"\[(\S+)\]", self.read("trace_clock"))
        return match.group(1) if match else None

    def set_clock(self, clock):
        available = self.tracefs.features()["trace_clocks"]
        if clock not in available:
            raise TracefsError("trace clock %r is not available; this kernel offers: %s"
                               % (clock, ", ".join(available)))
        self.write("trace_clock", clock, what="the trace clock")

    def option_names(self):
        return sorted(os.listdir(self.path("options")))

    def option(self, name):
        validate.event_name(name.replace("-", "_"), "option name")
        path = self.path("options", name)
        if not os.path.exists(path):
            raise TracefsError("%s has no option %r; available: %s"
                               % (self.label, name, ", ".join(self.option_names())))
        return _read(path).strip() == "1"

    def set_option(self, name, value):
        self.option(name)
        self.write(("options", name), "1" if value else "0", what="option %s" % name)

    @property
    def tracing_on(self):
        return self.read("tracing_on").strip() == "1"

    def set_tracing_on(self, value):
        self.write("tracing_on", "1" if value else "0", what="tracing_on")

    @property
    def event_pids(self):
        if not os.path.exists(self.path("set_event_pid")):
            return []
        return sorted(int(p) for p in self.read("set_event_pid").split())

    def set_event_pids(self, pids):
        pids = sorted(set(validate.pid(p) for p in pids))
        self.tracefs.require("set_event_pid", "filtering events by pid")
        self.write("set_event_pid", "", what="clearing set_event_pid")
        for pid in pids:
            self.write("set_event_pid", "%d" % pid, append=True, what="pid %d into set_event_pid" % pid)
        missing = set(pids) - set(self.event_pids)
        if missing:
            raise TracefsError("the kernel dropped pid(s) %s from set_event_pid: no such process"
                               % ", ".join(str(p) for p in sorted(missing)))

    def clear_buffer(self):
        self.write("trace", "", what="clearing the trace buffer")

    # -- events ------------------------------------------------------------
    def event(self, group, name=None):
        if name is None:
            group, name = validate.split_event(group)
        return Event(self, group, name)

    def enabled_events(self):
        return [line.strip() for line in self.read("set_event").splitlines() if line.strip()]

    def configured_events(self):
        """Events here that are enabled or carry a filter or trigger."""
        found = []
        for event_dir in glob.glob(self.path("events", "*", "*")):
            # ftrace's own events (events/ftrace/*) have no enable file.
            if not os.path.exists(os.path.join(event_dir, "enable")):
                continue
            group, name = event_dir.split(os.sep)[-2:]
            event = Event(self, group, name, checked=True)
            try:
                if event.enabled or event.filter or event.triggers():
                    found.append(event)
            except (IOError, OSError):
                # Another tracer removed this instance or event meanwhile.
                continue
        return found


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


# -- snapshot ------------------------------------------------------------------
_GLOBAL_FILES = ("tracing_on", "current_tracer", "trace_clock", "set_event", "set_event_pid",
                 "buffer_size_kb", "tracing_cpumask", "set_ftrace_pid")


def _instance_state(inst):
    state = {}
    for name in _GLOBAL_FILES:
        path = inst.path(name)
        if os.path.exists(path):
            try:
                state[name] = _read(path).strip()
            except (IOError, OSError):
                pass
    try:
        state["options"] = sorted(n for n in os.listdir(inst.path("options"))
                                  if _read(inst.path("options", n)).strip() == "1")
    except OSError:
        state["options"] = []
    events = {}
    for event in inst.configured_events():
        events[event.spec] = {"enabled": event.enabled, "filter": event.filter, "triggers": event.triggers()}
    state["events"] = events
    return state


def snapshot(tracefs):
    """The tracing state this collection may touch, to compare before/after."""
    state = {
        "top": _instance_state(tracefs.instance(None)),
        "instances": {},
        "uprobe_events": [u.line() for u in tracefs.list_uprobes()],
    }
    for name in tracefs.list_instances():
        inst = tracefs.instance(name)
        try:
            state["instances"][name] = _instance_state(inst)
        except (IOError, OSError):
            continue  # removed while we looked: not ours to report

    return state


def diff_snapshots(before, after, only=None):
    """Human-readable differences between two snapshots.

    ``only``: optional predicate on a name (instance, uprobe line, event spec)
    to restrict the comparison of instances and uprobes, e.g. to one test run.
    """
    keep = only or (lambda _name: True)
    differences = []
    for key in sorted(set(before["top"]) | set(after["top"])):
        if key == "events":
            continue
        if before["top"].get(key) != after["top"].get(key):
            differences.append("top-level %s: %r -> %r" % (key, before["top"].get(key), after["top"].get(key)))
    b_events, a_events = before["top"]["events"], after["top"]["events"]
    for spec in sorted(set(b_events) | set(a_events)):
        if b_events.get(spec) != a_events.get(spec) and (only is None or keep(spec)):
            differences.append("top-level event %s: %r -> %r" % (spec, b_events.get(spec), a_events.get(spec)))
    for name in sorted(set(before["instances"]) | set(after["instances"])):
        if not keep(name):
            continue
        if name not in before["instances"]:
            differences.append("instance %s was left behind" % name)
        elif name not in after["instances"]:
            differences.append("instance %s disappeared" % name)
        elif before["instances"][name] != after["instances"][name]:
            differences.append("instance %s changed" % name)
    b_probes = set(p for p in before["uprobe_events"] if keep(p))
    a_probes = set(p for p in after["uprobe_events"] if keep(p))
    for line in sorted(a_probes - b_probes):
        differences.append("uprobe left behind: %s" % line)
    for line in sorted(b_probes - a_probes):
        differences.append("uprobe removed: %s" % line)
    return differences
