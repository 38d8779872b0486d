# -*- coding: utf-8 -*-
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Collect scheduler events of one host for a time window, in a private instance.

The instance uses the ``mono`` trace clock, the same clock as Python's
``time.monotonic_ns()``: events stamped before "now minus a small margin"
are complete on every CPU (a CPU with nothing to read has nothing older),
so the per-CPU streams can be merged in time order while reading, with a
bounded hold-back instead of buffering the whole window.

Lost events are counted from the pages' missed-events flags and the
per-CPU ``stats`` (overrun, commit overrun, dropped events) and reported.
Cleanup (triggers, filters, events, rmdir) runs in ``close()``; callers use
``with`` or ``try/finally``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import platform
import re
import socket
import time

from ansible_collections.fleettrace.tracefs.plugins.module_utils import procfs
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import ring_buffer
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched import analysis as sched_analysis
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import TracefsError, OWNED_PREFIX
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.changes import shell_write

SCHEMA_VERSION = 1
WAKE_EVENTS = ("sched_waking", "sched_wakeup", "sched_wakeup_new")
SWITCH_FIELDS = ("prev_comm", "prev_pid", "prev_state", "next_comm", "next_pid")
# In offset order, so the struct needs no reordering.
WAKE_FIELDS = ("common_pid", "comm", "pid")
# Hold events this long past "now" before merging: covers the gap between a
# timestamp being taken and its event being committed.
MERGE_MARGIN_NS = 5000000
MAX_STACK_PIDS = 150

POLICY_NAMES = {0: "SCHED_OTHER", 1: "SCHED_FIFO", 2: "SCHED_RR", 3: "SCHED_BATCH",
                5: "SCHED_IDLE", 6: "SCHED_DEADLINE"}


def default_instance_name(label=None):
    """``fleettrace_sched_<label>_<pid>``: unique per run, found again by the prefix."""
    safe = re.sub(r"[^A-Za-z0-9_]", "_", label or socket.gethostname())[:24]
    return "%s_sched_%s_%d" % (OWNED_PREFIX, safe, os.getpid())


def online_cpus(tracefs_root):
    return sorted(int(name[3:]) for name in os.listdir(os.path.join(tracefs_root, "per_cpu"))
                  if name.startswith("cpu") and name[3:].isdigit())


def _read_int(path):
    try:
        with open(path) as handle:
            return int(handle.read().strip())
    except (IOError, OSError, ValueError):
        return None


def task_facts(pid):
    """Scheduling facts of one task: comm, state, policy, rtprio, nice (procfs.parse_stat)."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            stat = procfs.parse_stat(handle.read())
    except (IOError, OSError, ValueError):
        return {"pid": pid, "error": "no such process"}
    policy = stat["policy"]
    rtprio = stat["rt_priority"]
    try:
        policy = os.sched_getscheduler(pid)
        rtprio = os.sched_getparam(pid).sched_priority
    except (OSError, AttributeError):
        pass
    views = procfs.priorities(stat)
    return {"pid": pid, "comm": stat["comm"], "state": stat["state"],
            "policy": POLICY_NAMES.get(policy & 0xff, str(policy)), "rtprio": rtprio,
            "nice": stat["nice"], "prio": stat["priority"], "class": views["class"], "pri": views["pri"]}


def host_facts(tracefs):
    features = tracefs.features()
    return {
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "online_cpus": len(online_cpus(tracefs.root)),
        "kernel": platform.release(),
        "kernel_version": platform.version(),
        "sched_rt_runtime_us": _read_int("/proc/sys/kernel/sched_rt_runtime_us"),
        "sched_rt_period_us": _read_int("/proc/sys/kernel/sched_rt_period_us"),
        "tracing_features": features,
    }


def resolve_watched(pids=(), comms=(), comm_regexes=()):
    """Thread ids now alive that match the watch list (pids include their threads)."""
    regexes = [re.compile(r) for r in comm_regexes]
    comms = set(c[:15] for c in comms)
    found = set()
    for pid in pids:
        tasks = "/proc/%d/task" % int(pid)
        try:
            found.update(int(t) for t in os.listdir(tasks))
        except OSError:
            pass  # gone: the caller reports pids that matched nothing
    if comms or regexes:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                threads = os.listdir("/proc/%s/task" % entry)
            except OSError:
                continue
            for tid in threads:
                try:
                    with open("/proc/%s/task/%s/comm" % (entry, tid)) as handle:
                        comm = handle.read().rstrip("\n")
                except (IOError, OSError):
                    continue
                if comm in comms or any(r.search(comm) for r in regexes):
                    found.add(int(tid))
    return sorted(found)


class SchedCollector:
    """One tracing window: set up, read and analyse, clean up."""

    def __init__(self, tracefs, instance_name, analyzer, buffer_size_kb=4096, stack_pids=(),
                 poll_interval=0.05):
        self.tracefs = tracefs
        self.instance = tracefs.instance(instance_name)
        self.analyzer = analyzer
        self.buffer_size_kb = int(buffer_size_kb)
        self.stack_pids = sorted(set(int(p) for p in stack_pids))[:MAX_STACK_PIDS]
        self.stack_pids_truncated = len(set(stack_pids)) > MAX_STACK_PIDS
        self.poll_interval = poll_interval
        self.events = [name for name in WAKE_EVENTS + ("sched_switch",)
                       if os.path.isdir(tracefs.path("events", "sched", name))]
        self.reader = None
        self.created = False
        self.missed_in_pages = 0
        self.missed_unknown_pages = 0
        self.pages_read = 0
        self.bytes_read = 0
        self.stats = {}
        self.clock = "mono" if "mono" in tracefs.features()["trace_clocks"] else "global"

    # -- plan ------------------------------------------------------------------
    @property
    def stack_trigger(self):
        if not self.stack_pids:
            return None
        pids = " || ".join("prev_pid == %d" % p for p in self.stack_pids)
        return "stacktrace if prev_state == 2 && (%s)" % pids

    def plan(self):
        """The writes ``setup()`` makes, as shell commands (what check mode shows)."""
        inst = self.instance.path()
        commands = ["mkdir %s" % inst,
                    shell_write(os.path.join(inst, "buffer_size_kb"), str(self.buffer_size_kb)),
                    shell_write(os.path.join(inst, "trace_clock"), self.clock)]
        if self.stack_trigger:
            commands.append(shell_write(os.path.join(inst, "events/sched/sched_switch/trigger"),
                                        self.stack_trigger, append=True))
        for name in self.events:
            commands.append(shell_write(os.path.join(inst, "events/sched", name, "enable"), "1"))
        commands.append("read %s/per_cpu/cpu*/trace_pipe_raw until the window ends" % inst)
        commands.append("rmdir %s (after removing the trigger and disabling the events)" % inst)
        return commands

    # -- lifecycle -------------------------------------------------------------
    def setup(self):
        if "sched_switch" not in self.events:
            raise TracefsError("this kernel has no sched:sched_switch event (see %s/available_events); "
                               "scheduling latency cannot be measured" % self.tracefs.root)
        if self.instance.exists():
            raise TracefsError("%s already exists: another run uses it; choose another instance name"
                               % self.instance.label)
        self.instance.create()
        self.created = True
        self.instance.set_tracing_on(False)
        self.instance.set_buffer_size_kb(self.buffer_size_kb)
        self.instance.set_clock(self.clock)
        if self.stack_trigger:
            self.tracefs.require("stacktrace_trigger", "recording kernel stacks of D-state switches")
            self.instance.event("sched", "sched_switch").add_trigger(self.stack_trigger)
        for name in self.events:
            self.instance.event("sched", name).set_enabled(True)
        self._build_decoders()
        self.reader = ring_buffer.RawReader(self.instance.path(), online_cpus(self.tracefs.root))
        self.instance.set_tracing_on(True)

    def _format(self, group, name):
        return ring_buffer.EventFormat.parse(self.instance.read("events", group, name, "format"))

    def _build_decoders(self):
        self.layout = ring_buffer.PageLayout.parse(self.tracefs.read("events/header_page"))
        self.decoders = {}
        self.names = {}
        switch = self._format("sched", "sched_switch")
        unpacker, index = switch.struct_for(SWITCH_FIELDS)
        self.decoders[switch.id] = (unpacker, index, None)
        self.switch_id = switch.id
        self.wake_ids = {}
        for name in self.events:
            if name == "sched_switch":
                continue
            fmt = self._format("sched", name)
            unpacker, index = fmt.struct_for(WAKE_FIELDS)
            self.decoders[fmt.id] = (unpacker, index, None)
            self.wake_ids[fmt.id] = name
        self.stack_id = None
        if self.stack_trigger:
            stack = self._format("ftrace", "kernel_stack")
            unpacker, index = stack.struct_for(("common_pid", "size"))
            # The caller array may be longer than the 8 entries the format shows.
            tail = stack.fields["caller"][0]
            self.decoders[stack.id] = (unpacker, index, tail)
            self.stack_id = stack.id

    def close(self):
        """Stop, close the readers and remove the instance; safe to call twice."""
        errors = []
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        if self.created:
            try:
                if self.instance.exists():
                    self.instance.set_tracing_on(False)
                self.instance.remove()
                self.created = False
            except TracefsError as exc:
                errors.append(exc.message)
        if errors:
            raise TracefsError("; ".join(errors))

    # -- reading ---------------------------------------------------------------
    def _read_all(self, out):
        """Read every CPU's available pages into ``out``; return the page count."""
        pages_now = 0
        for cpu in self.reader.fds:
            for page in self.reader.read_pages(cpu):
                pages_now += 1
                self.bytes_read += len(page)
                missed = ring_buffer.parse_page(page, self.layout, self.decoders, cpu, out)
                if missed > 0:
                    self.missed_in_pages += missed
                elif missed < 0:
                    self.missed_unknown_pages += 1
        self.pages_read += pages_now
        return pages_now

    def _dispatch(self, events):
        analyzer = self.analyzer
        switch_id = self.switch_id
        wake_ids = self.wake_ids
        stack_id = self.stack_id
        switch = analyzer.switch
        wakeup = analyzer.wakeup
        for ts, cpu, event_id, fields in events:
            if event_id == switch_id:
                switch(ts, cpu, fields[0], fields[1], fields[2], fields[3], fields[4])
            elif event_id == stack_id:
                analyzer.kernel_stack(ts, cpu, fields[0], sched_analysis.stack_addresses(fields[1], fields[2]))
            else:
                wakeup(ts, cpu, fields[2], fields[1], wake_ids[event_id], fields[0])

    def run(self, duration):
        """Trace for ``duration`` seconds, feeding the analyzer in time order."""
        start = time.monotonic()
        deadline = start + duration
        pending = []
        stopped = None
        while True:
            now_ns = time.monotonic_ns()
            finished = time.monotonic() >= deadline
            if finished:
                self.instance.set_tracing_on(False)
                stopped = time.monotonic()
            batch = pending
            pages = self._read_all(batch)
            batch.sort(key=_timestamp)
            if finished:
                self._dispatch(batch)
                break
            if self.clock == "mono":
                watermark = now_ns - MERGE_MARGIN_NS
            else:
                # Without a clock shared with us: merge up to the oldest newest-event of a CPU.
                newest = {}
                for event in batch:
                    newest[event[1]] = event[0]
                watermark = min(newest.values()) if newest else 0
            cut = len(batch)
            while cut and batch[cut - 1][0] > watermark:
                cut -= 1
            self._dispatch(batch[:cut])
            pending = batch[cut:]
            if pages < 8:
                time.sleep(min(self.poll_interval, max(0.0, deadline - time.monotonic())))
        self.stats = dict((cpu, ring_buffer.cpu_stats(self.instance.path(), cpu)) for cpu in online_cpus(self.tracefs.root))
        return stopped - start

    def lost_events(self):
        """Events the kernel could not hand us: max of what stats and pages say."""
        by_cpu = {}
        for cpu, stats in self.stats.items():
            by_cpu[str(cpu)] = stats.get("overrun", 0) + stats.get("commit_overrun", 0) + stats.get("dropped_events", 0)
        total = max(sum(by_cpu.values()), self.missed_in_pages)
        return total, by_cpu


def _timestamp(event):
    return event[0]


def collect(tracefs, duration, instance_name=None, watch_pids=(), watch_comms=(), watch_comm_regex=(),
            buffer_size_kb=4096, stack_traces=True, worst_count=10, exact_samples=100000,
            poll_interval=0.05, collector_nice=-10):
    """Run one window and return the per-host result document (``kind: sched_latency``).

    ``collector_nice``: the reader runs at this nice value during the window so
    that a host saturated with runnable tasks (the case worth auditing) does
    not starve it into losing events; it still sleeps between reads.
    """
    watched_now = resolve_watched(watch_pids, watch_comms, watch_comm_regex)
    watch = sched_analysis.WatchSpec(pids=set(watched_now) | set(int(p) for p in watch_pids),
                                     comms=watch_comms, comm_regexes=watch_comm_regex)
    analyzer = sched_analysis.SchedAnalyzer(watch=watch, worst_count=worst_count,
                                            longest_d_count=worst_count, exact_cap=exact_samples)
    collector = SchedCollector(tracefs, instance_name or default_instance_name(), analyzer,
                               buffer_size_kb=buffer_size_kb,
                               stack_pids=watched_now if stack_traces else (),
                               poll_interval=poll_interval)
    facts = host_facts(tracefs)
    task_facts_before = dict((pid, task_facts(pid)) for pid in watched_now)
    cpu_start = os.times()
    nice_before = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        if collector_nice is not None and collector_nice < nice_before:
            os.setpriority(os.PRIO_PROCESS, 0, collector_nice)
        collector.setup()
        elapsed = collector.run(duration)
    finally:
        try:
            collector.close()
        finally:
            os.setpriority(os.PRIO_PROCESS, 0, nice_before)
    cpu_end = os.times()
    analyzer.finish()
    symbols = sched_analysis.KernelSymbols() if analyzer.longest_d else None
    facts_by_pid = {}
    for pid, item in task_facts_before.items():
        facts_by_pid[pid] = dict((k, v) for k, v in item.items() if k in ("policy", "rtprio", "nice", "prio", "class"))
    result = analyzer.result(symbols=symbols, facts_by_pid=facts_by_pid)
    lost, lost_by_cpu = collector.lost_events()
    processed = sum(result["event_counts"].values())
    collector_cpu = (cpu_end[0] - cpu_start[0]) + (cpu_end[1] - cpu_start[1])
    result.update({
        "kind": "sched_latency",
        "schema_version": SCHEMA_VERSION,
        "host": facts["hostname"],
        "facts": facts,
        "watched": {"pids": watch_pids and [int(p) for p in watch_pids] or [], "comms": list(watch_comms),
                    "comm_regex": list(watch_comm_regex), "tasks_at_start": [task_facts_before[p] for p in watched_now],
                    "stack_pids": collector.stack_pids, "stack_pids_truncated": collector.stack_pids_truncated},
        "window": {"duration_s": round(elapsed, 3), "clock": collector.clock, "instance": collector.instance.name,
                   "events_enabled": collector.events, "buffer_size_kb": collector.buffer_size_kb},
        "events": {"processed": processed, "per_second": round(processed / elapsed, 1) if elapsed else None,
                   "lost": lost, "lost_by_cpu": lost_by_cpu,
                   "pages_with_unknown_loss": collector.missed_unknown_pages,
                   "complete": lost == 0 and collector.missed_unknown_pages == 0,
                   "bytes_read": collector.bytes_read},
        "collector": {"cpu_seconds": round(collector_cpu, 3),
                      "cpu_per_wall_second": round(collector_cpu / elapsed, 3) if elapsed else None},
    })
    return result
