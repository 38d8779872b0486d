# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The top-level trace buffer or a private instance under ``instances/``.
"""


import errno
import glob
import os
import re
import time

from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import validate
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.error_log import TracefsError, _read
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.event import Event


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
        except (OSError, ValueError):
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
        pids = sorted({validate.pid(p) for p in pids})
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

    def _events_with(self, control_file):
        """Every event here that has ``control_file`` (ftrace's own events have no enable file)."""
        for event_dir in glob.glob(self.path("events", "*", "*")):
            if os.path.exists(os.path.join(event_dir, control_file)):
                group, name = event_dir.split(os.sep)[-2:]
                yield Event(self, group, name, checked=True)

    def triggered_events(self):
        """(event, its triggers) for every event here that carries a trigger: one read per event."""
        found = []
        for event in self._events_with("trigger"):
            try:
                triggers = event.triggers()
            except OSError:     # another tracer removed this instance or event meanwhile
                continue
            if triggers:
                found.append((event, triggers))
        return found

    def configured_events(self):
        """Events here that are enabled or carry a filter or trigger."""
        found = []
        for event in self._events_with("enable"):
            try:
                if event.enabled or event.filter or event.triggers():
                    found.append(event)
            except OSError:     # another tracer removed this instance or event meanwhile
                continue
        return found
