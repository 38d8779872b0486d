# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Threshold capture on a private instance: arm, wait, read, explain.

``capture_trigger``: clear the buffer, turn tracing on, wait until a
``traceoff`` trigger has turned it off (``tracing_on`` reads 0), enough
events arrived, the watched process exited, or the timeout passed; then read
``trace`` and parse it one line at a time.  ``capture_window``: stream
``trace_pipe`` for a fixed time.  Both leave the instance's tracing off
(capture turned it on) and report lost events from ``per_cpu/cpuN/stats``
and the trace header.  Records go to an ``EventSink`` as they are parsed:
it keeps the last ``max_events``, writes every record to the JSON file and
feeds the stall finder, so memory does not grow with the buffer size.
No Ansible imports.
"""


import errno
import json
from collections import deque
import math
import os
import re
import select
import time

from ansible_collections.fleettrace.tracefs.plugins.module_utils import bounded, procfs
from ansible_collections.fleettrace.tracefs.plugins.module_utils.elf import symbols as elf_symbols
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import per_cpu
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace.text_parser import (
    TraceParser, user_stack_addresses)
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import plans, validate
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import TracefsError

STOP_TRIGGERED = "triggered"
STOP_EVENTS = "event_count"
STOP_TIMEOUT = "timeout"
STOP_PROCESS_EXITED = "process_exited"
STOP_WINDOW = "window_elapsed"


def cpu_stats(instance):
    """{cpu: stats dict} from the instance's per_cpu/cpuN/stats (trace/per_cpu.py)."""
    return per_cpu.all_stats(instance.path())


def lost_counts(before, after):
    """Events overwritten (overrun) and dropped (incl. commit overruns) per CPU between two cpu_stats."""
    return per_cpu.lost_between(before, after)


def suggested_buffer_kb(buffer_kb, lost_by_cpu):
    """A per-CPU buffer_size_kb that would have held everything, with 25 % margin."""
    worst = 1.0
    for counts in lost_by_cpu.values():
        kept = max(1, counts["entries"])
        worst = max(worst, float(kept + counts["overrun"] + counts["dropped"]) / kept)
    return int(math.ceil(buffer_kb * worst * 1.25))


def _entries(instance):
    return sum(stats.get("entries", 0) for stats in cpu_stats(instance).values())


def _count_event_lines(instance, event_name):
    needle = " %s: " % event_name
    count = 0
    with open(instance.path("trace")) as handle:
        for line in handle:
            if needle in line:
                count += 1
    return count


class CaptureResult(dict):
    """The dict a capture returns (module return values, see capture module RETURN)."""


class EventSink:
    """Where a capture's records go, one at a time, in trace order (``TraceParser(on_event=sink.add)``).

    - keeps the last ``max_events`` records (``None``: all of them) for the result;
    - with ``json_path``, writes every record to that file as it arrives
      (``finish_json(result)`` then adds the other result keys);
    - with ``symbolize``, symbolizes user stacks (before a record is written);
    - feeds ``stall_finder`` (``correlate.StallFinder``) every record.
    ``seen`` counts every record, kept or not.
    """

    def __init__(self, max_events=None, json_path=None, symbolize=False, stall_finder=None,
                 pid_alive=procfs.process_alive):
        self.kept = deque(maxlen=max_events)
        self.seen = 0
        self.symbolize = symbolize
        self.stall_finder = stall_finder
        self.pid_alive = pid_alive
        self.gone = set()
        self._elf_cache = {}
        self._json = None
        if json_path:
            self._json = bounded.open_output(json_path, "json_path")
            self._json.write('{"events": [')

    # Records older than this (ns) are kept but not explained: another CPU's events of that time were
    # overwritten (``per_cpu.complete_since_ns``), so an off-CPU interval there may lack its end.
    complete_since_ns = None

    def add(self, record):
        self.seen += 1
        if self.stall_finder is not None and (self.complete_since_ns is None
                                              or record["ts_ns"] >= self.complete_since_ns):
            self.stall_finder.feed(record)
        if self._json is not None:
            if self.symbolize:
                self._symbolize([record])
            self._json.write("\n" if self.seen == 1 else ",\n")
            self._json.write(json.dumps(record, sort_keys=True))
        self.kept.append(record)

    def _symbolize(self, records):
        symbolize_user_stacks(records, pid_alive=self.pid_alive, elf_cache=self._elf_cache, gone=self.gone)

    def events(self):
        """The kept records (the last ``max_events``), symbolized when asked."""
        records = list(self.kept)
        if self.symbolize and self._json is None:
            self._symbolize(records)
        return records

    def finish_json(self, result):
        """Close the JSON file: the events written so far, then every other key of ``result``."""
        handle, self._json = self._json, None
        if handle is None:
            return
        try:
            handle.write("\n]")
            for key in sorted(result):
                if key != "events":
                    handle.write(",\n%s: %s" % (json.dumps(key), json.dumps(result[key], indent=1, sort_keys=True)))
            handle.write("}\n")
        finally:
            handle.close()

    def close(self):
        """Close the JSON file without finishing it (on errors)."""
        if self._json is not None:
            self._json.close()
            self._json = None


def read_trace(path, sink, raw_path=None):
    """Parse the ``trace`` file at ``path`` line by line into ``sink``; returns the closed parser.

    Only one line, the records still waiting for a stack (``TraceParser``
    lookahead) and what ``sink`` keeps are in memory; with ``raw_path`` each
    line is copied to that file as it is read.
    """
    parser = TraceParser(keep_events=False, on_event=sink.add)
    raw = bounded.open_output(raw_path, "raw_path") if raw_path else None
    try:
        with open(path) as handle:
            for line in handle:
                if raw is not None:
                    raw.write(line)
                parser.feed(line.rstrip("\n"))
    finally:
        if raw is not None:
            raw.close()
    parser.close()
    return parser


def _require_instance(instance):
    if not instance.exists():
        raise TracefsError(
            "%s does not exist at %s; create it first (fleettrace.tracefs.instance) and enable the "
            "events to capture (fleettrace.tracefs.event)" % (instance.label, instance.path()))


def _finish(instance, parser, sink, stop_reason, started, stats_before, extra):
    parsed = parser.result()
    events = sink.events()
    stats_after = cpu_stats(instance)
    lost_by_cpu = lost_counts(stats_before, stats_after)
    lost_stats = sum(c["overrun"] + c["dropped"] for c in lost_by_cpu.values())
    lost_markers = sum(item["count"] for item in parsed["lost_markers"])
    header_lost = 0
    if parsed["entries_written"] is not None and parsed["entries_in_buffer"] is not None:
        header_lost = max(0, parsed["entries_written"] - parsed["entries_in_buffer"])
    result = CaptureResult(
        stop_reason=stop_reason,
        triggered=stop_reason == STOP_TRIGGERED,
        threshold_reached=stop_reason == STOP_TRIGGERED,
        events=events,
        event_count=parsed["event_count"],
        events_truncated=len(events) < parsed["event_count"],
        entries_in_buffer=parsed["entries_in_buffer"],
        entries_written=parsed["entries_written"],
        # Each source sees part of the loss; the largest is the best lower bound.
        lost_events=max(lost_stats, lost_markers, header_lost),
        lost_by_cpu={str(cpu): counts for cpu, counts in sorted(lost_by_cpu.items())},
        unparsed_lines=parsed["unparsed"],
        duration=round(time.time() - started, 3),
        buffer_size_kb=instance.buffer_size_kb,
    )
    if result["lost_events"]:
        result["suggested_buffer_size_kb"] = suggested_buffer_kb(
            result["buffer_size_kb"], lost_by_cpu or {-1: {"entries": parsed["entries_in_buffer"] or 1,
                                                           "overrun": result["lost_events"], "dropped": 0}})
    result.update(extra)
    return result


def arm(instance, clear=True):
    """Tracing off, the buffer cleared, tracing on: returns the per-CPU stats read in between
    (the baseline ``read_back`` counts losses from)."""
    instance.set_tracing_on(False)
    if clear:
        instance.clear_buffer()
    stats_before = cpu_stats(instance)
    instance.set_tracing_on(True)
    return stats_before


def read_back(instance, sink, stop_reason, started, stats_before, raw_path=None, extra=None):
    """Read the stopped buffer's ``trace`` into ``sink``: the capture's result, losses counted.

    ``started``: wall time of the arming (``time.time()``); ``extra``: more result keys.
    """
    complete = per_cpu.complete_since_ns(instance.path(), stats_before)
    if hasattr(sink, "complete_since_ns"):
        sink.complete_since_ns = complete
    parser = read_trace(instance.path("trace"), sink, raw_path=raw_path)
    extra = dict(extra or {}, complete_since=complete / 1e9 if complete is not None else None)
    return _finish(instance, parser, sink, stop_reason, started, stats_before, extra)


def capture_trigger(instance, timeout, poll_interval=0.1, clear=True, stop_after_events=None,
                    stop_event=None, pid=None, raw_path=None, sink=None, companions=()):
    """Arm the instance, wait for its traceoff trigger (or count/timeout/exit), read the buffer.

    Records go to ``sink`` (an ``EventSink``; default: one keeping all of them).
    ``companions``: instances armed just before and stopped with it (the CPU context).
    """
    _require_instance(instance)
    started = time.time()
    process_missing_at_start = pid is not None and not procfs.process_alive(pid)
    armed = False
    stop_reason = STOP_TIMEOUT
    if process_missing_at_start:
        stats_before = cpu_stats(instance)
        stop_reason = STOP_PROCESS_EXITED
    else:
        for companion in companions:
            arm(companion, clear)
        stats_before = arm(instance, clear)
        armed = True
        try:
            deadline = time.monotonic() + timeout
            while True:
                if not instance.tracing_on:
                    stop_reason = STOP_TRIGGERED
                    break
                if stop_after_events:
                    seen = _count_event_lines(instance, stop_event) if stop_event else _entries(instance)
                    if seen >= stop_after_events:
                        stop_reason = STOP_EVENTS
                        break
                if pid is not None and not procfs.process_alive(pid):
                    stop_reason = STOP_PROCESS_EXITED
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                time.sleep(min(poll_interval, remaining))
        finally:
            # Capture turned tracing on; it is off again whatever happened.
            for stopped in (instance,) + tuple(companions):
                if stopped.exists():
                    stopped.set_tracing_on(False)
    if sink is None:
        sink = EventSink()
    return read_back(instance, sink, stop_reason, started, stats_before, raw_path=raw_path,
                     extra={"armed": armed, "process_missing_at_start": process_missing_at_start})


def capture_window(instance, duration, clear=True, stop_after_events=None, stop_event=None, pid=None,
                   raw_path=None, sink=None, until=None):
    """Stream ``trace_pipe`` for ``duration`` seconds (no trigger wanted); records go to ``sink``."""
    _require_instance(instance)
    started = time.time()
    instance.set_tracing_on(False)
    if clear:
        instance.clear_buffer()
    stats_before = cpu_stats(instance)
    if sink is None:
        sink = EventSink()
    parser = TraceParser(keep_events=False, on_event=sink.add)
    raw = bounded.open_output(raw_path, "raw_path") if raw_path else None
    pending = [""]
    stop_reason = STOP_WINDOW
    counted = [0]

    def consume(chunk):
        if raw is not None:
            raw.write(chunk)
        lines = (pending[0] + chunk).split("\n")
        pending[0] = lines.pop()
        for line in lines:
            parser.feed(line)
            if stop_event and (" %s: " % stop_event) in line:
                counted[0] += 1

    fd = os.open(instance.path("trace_pipe"), os.O_RDONLY | os.O_NONBLOCK)
    try:
        instance.set_tracing_on(True)
        try:
            deadline = time.monotonic() + duration
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                ready, _w, _x = select.select([fd], [], [], min(remaining, 0.2))
                if ready:
                    _read_available(fd, consume)
                if stop_after_events and (counted[0] if stop_event else parser.event_count) >= stop_after_events:
                    stop_reason = STOP_EVENTS
                    break
                if until is not None and until():
                    stop_reason = STOP_EVENTS
                    break
                if pid is not None and not procfs.process_alive(pid):
                    stop_reason = STOP_PROCESS_EXITED
                    break
        finally:
            if instance.exists():
                instance.set_tracing_on(False)
        _read_available(fd, consume)  # what is still in the buffer after tracing stopped
    finally:
        os.close(fd)
        if pending[0]:
            parser.feed(pending[0])
        parser.close()
        if raw is not None:
            raw.close()
    return _finish(instance, parser, sink, stop_reason, started, stats_before,
                   {"armed": True, "process_missing_at_start": False})


class StopCondition:
    """Stop tracing when ``field >= threshold`` on the probe ``events`` ('group:event').

    ``plan(instance)`` is the ``ChangePlan`` that installs the ``traceoff``
    trigger on each event; ``trigger`` is its text.  The same numbers drive
    the stall finder, so the threshold is written once.
    """

    def __init__(self, events, field, threshold, unit=None):
        self.events = [events] if isinstance(events, str) else list(events)
        self.field = validate.event_name(field, "stop field")
        self.threshold = int(threshold)
        self.unit = unit
        if not self.events:
            raise validate.ValidationError("stop: at least one probe event ('group:event') is needed")
        if self.threshold <= 0:
            raise validate.ValidationError("stop: threshold must be a positive number, got %d" % self.threshold)
        self.split = [validate.split_event(spec) for spec in self.events]

    @property
    def trigger(self):
        return "traceoff if %s >= %d" % (self.field, self.threshold)

    def plan(self, instance):
        plan = None
        for group, name in self.split:
            event = instance.event(group, name)
            event.require()
            before = plans.event_state(event)
            wanted = [t for t in before["triggers"] if not t.startswith("traceoff")] + [self.trigger]
            step, _after = plans.plan_event(event, before, {"state": "present", "filter": None, "enabled": True},
                                            plans.check_triggers(instance.tracefs, wanted))
            if plan is None:
                plan = step
            else:
                plan.extend(step)
        return plan


def _read_available(fd, consume):
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                return
            raise
        if not chunk:
            return
        consume(chunk.decode("utf-8", "replace"))


_OBJECT_FRAME = re.compile(r"^(?P<path>/.*)\[\+0x(?P<offset>[0-9a-fA-F]+)\]$")


def _bare(address):
    return {"address": "0x%x" % address, "object": None, "symbol": None}


def symbolize_user_stacks(events, pid_alive=procfs.process_alive, elf_cache=None, gone=None):
    """Turn ``user_stack`` frames into {'address', 'object', 'offset', 'symbol'} dicts.

    Bare addresses need the process's maps, so they are symbolized only while
    it lives; 'path[+0xoff]' frames (option sym-userobj) are symbolized from
    the file alone.  Frames of neither form keep their text.  Returns the pids
    that were gone (their address frames stay bare).  ``elf_cache`` and
    ``gone`` may be shared between calls (records symbolized one at a time).
    """
    elf_cache = {} if elf_cache is None else elf_cache
    gone = set() if gone is None else gone
    for record in events:
        if "user_stack" not in record:
            continue
        pid = record.get("tgid", record["pid"])
        frames = []
        addresses = []  # (index in frames, address) to resolve through the maps
        for text in record["user_stack"]:
            if isinstance(text, dict):
                frames.append(text)
                continue
            address = user_stack_addresses({"user_stack": [text]})
            if address:
                addresses.append((len(frames), address[0]))
                frames.append(_bare(address[0]))
                continue
            match = _OBJECT_FRAME.match(text.strip())
            if match:
                offset = int(match.group("offset"), 16)
                frames.append({"address": None, "object": match.group("path"), "offset": "0x%x" % offset,
                               "symbol": elf_symbols.file_symbol(match.group("path"), offset, elf_cache)})
            else:
                frames.append({"address": None, "object": None, "symbol": None, "text": text.strip()})
        if addresses and pid not in gone and pid_alive(pid):
            try:
                resolved = procfs.symbolize(pid, [a for _i, a in addresses], elf_cache)
                for (index, _address), frame in zip(addresses, resolved):
                    frames[index] = frame
            except procfs.ProcessGone:
                gone.add(pid)
        elif addresses:
            gone.add(pid)
        record["user_stack"] = frames
    return sorted(gone)


def write_json(path, result):
    with bounded.open_output(path, "json_path") as handle:
        json.dump(result, handle, indent=1, sort_keys=True)
        handle.write("\n")
