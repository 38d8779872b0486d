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


import errno
import os
import re
import time

from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import page_spool, per_cpu
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched import analysis as sched_analysis
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched import facts as sched_facts
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched import pages as sched_pages
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import TracefsError, OWNED_PREFIX
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.changes import ChangePlan

SCHEMA_VERSION = 1
# The enqueue (sched_wakeup, sched_wakeup_new) starts a wait; sched_waking is
# not traced (a third of the events, and not the run-queue wait); migrations
# tell a wait that moved.  docs/sched-audit.md explains each.
EVENTS = ("sched_wakeup", "sched_wakeup_new", "sched_switch", "sched_migrate_task")
MAX_STACK_PIDS = 150
DEFAULT_MAX_SPOOL_MB = 2048
RMDIR_ATTEMPTS = 20   # rmdir is EBUSY while any file of the instance is open, briefly


def default_instance_name(label=None):
    """``fleettrace_sched_<label>_<pid>``: unique per run, found again by the prefix."""
    safe = re.sub(r"[^A-Za-z0-9_]", "_", label or os.uname().nodename)[:24]
    return "%s_sched_%s_%d" % (OWNED_PREFIX, safe, os.getpid())


class WindowAbandoned(FleettraceError):
    """The window was ended early because nobody is left to read its result."""


class SchedCollector:
    """One tracing window: plan and set up, copy pages, analyse, clean up."""

    def __init__(self, tracefs, instance_name, analyzer, buffer_size_kb=4096, stack_pids=(),
                 poll_interval=0.2, spool_dir=None, max_spool_mb=DEFAULT_MAX_SPOOL_MB):
        self.tracefs = tracefs
        self.instance = tracefs.instance(instance_name)
        self.analyzer = analyzer
        self.buffer_size_kb = int(buffer_size_kb)
        self.stack_pids = sorted({int(p) for p in stack_pids})[:MAX_STACK_PIDS]
        self.stack_pids_truncated = len(set(stack_pids)) > MAX_STACK_PIDS
        self.poll_interval = poll_interval
        self.spool_dir = spool_dir
        self.max_spool_bytes = int(max_spool_mb) << 20 if max_spool_mb else None
        available = [name for name in EVENTS if os.path.isdir(tracefs.path("events", "sched", name))]
        if "sched_wakeup" not in available and os.path.isdir(tracefs.path("events", "sched", "sched_waking")):
            available.insert(0, "sched_waking")  # no enqueue event: the wait starts at the wakeup
        self.events = available
        self.spool = None
        self.created = False
        self.applied = None     # the ChangePlan setup() applied, until close() undoes it
        self.missed_in_pages = 0
        self.missed_unknown_pages = 0
        self.pages_read = 0
        self.bytes_read = 0
        self.stats = {}
        self.ended_early = None
        self.abandoned = None
        self.window_cpu_seconds = None
        self.clock = "mono" if "mono" in tracefs.features()["trace_clocks"] else "global"

    # -- plan ------------------------------------------------------------------
    @property
    def stack_trigger(self):
        if not self.stack_pids:
            return None
        pids = " || ".join("prev_pid == %d" % p for p in self.stack_pids)
        return "stacktrace if prev_state == 2 && (%s)" % pids

    def plan(self):
        """The ``ChangePlan`` of the window: check mode shows its commands, ``setup()`` applies it."""
        inst = self.instance
        plan = ChangePlan()
        plan.mkdir(inst.path(), self._create, self._rmdir)
        plan.write(inst.path("tracing_on"), "0", lambda: inst.set_tracing_on(False))
        plan.write(inst.path("buffer_size_kb"), str(self.buffer_size_kb),
                   lambda: inst.set_buffer_size_kb(self.buffer_size_kb))
        plan.write(inst.path("trace_clock"), self.clock, lambda: inst.set_clock(self.clock))
        if self.stack_trigger:
            switch = inst.event("sched", "sched_switch")
            plan.write(inst.path("events/sched/sched_switch/trigger"), self.stack_trigger,
                       self._add_stack_trigger, lambda: switch.remove_trigger(self.stack_trigger), append=True)
        for name in self.events:
            event = inst.event("sched", name)
            plan.write(inst.path("events/sched", name, "enable"), "1",
                       _setter(event.set_enabled, True), _setter(event.set_enabled, False))
        plan.write(inst.path("tracing_on"), "1", self._start_window, lambda: inst.set_tracing_on(False))
        return plan

    def plan_commands(self):
        """What check mode shows: the writes, then what the window does with them."""
        inst = self.instance.path()
        return self.plan().commands + [
            "copy %s/per_cpu/cpu*/trace_pipe_raw to temporary files until the window ends, then "
            "echo 0 > %s/tracing_on" % (inst, inst),
            "rmdir %s (after removing the trigger and disabling the events)" % inst]

    def _create(self):
        self.instance.create()
        self.created = True

    def _add_stack_trigger(self):
        self.tracefs.require("stacktrace_trigger", "recording kernel stacks of D-state switches")
        self.instance.event("sched", "sched_switch").add_trigger(self.stack_trigger)

    # -- lifecycle -------------------------------------------------------------
    def setup(self):
        if "sched_switch" not in self.events:
            raise TracefsError("this kernel has no sched:sched_switch event (see %s/available_events); "
                               "scheduling latency cannot be measured" % self.tracefs.root)
        if self.instance.exists():
            raise TracefsError("%s already exists: another run uses it; choose another instance name"
                               % self.instance.label)
        plan = self.plan()
        plan.apply()
        self.applied = plan

    def _start_window(self):
        """The plan's last step: decoders from the instance's formats, the spool open, then tracing on."""
        self._build_decoders()
        self.spool = page_spool.PageSpool(self.instance.path(), per_cpu.online_cpus(self.tracefs.root),
                                          directory=self.spool_dir, max_bytes=self.max_spool_bytes)
        self.instance.set_tracing_on(True)

    def _build_decoders(self):
        self.layout, self.decoders, self.kinds = sched_pages.build_decoders(
            lambda group, name: self.instance.read("events", group, name, "format"),
            self.tracefs.read("events/header_page"), self.events, stacks=bool(self.stack_trigger))

    def close(self, keep_spool=False):
        """Stop, close the readers and remove the instance; safe to call twice.

        ``keep_spool``: keep the copied pages for ``analyse()`` (call ``close()`` again after).
        """
        errors = []
        if self.spool is not None:
            if keep_spool:
                self.spool.close_sources()
            else:
                self.spool.close()
                self.spool = None
        if self.created:
            try:
                self._remove_instance()
                self.created = False
            except TracefsError as exc:
                errors.append(exc.message)
        if errors:
            raise TracefsError("; ".join(errors))

    def _remove_instance(self):
        """Undo the applied plan: a handful of writes, newest first, then the rmdir (``_rmdir``).

        ``Instance.remove()`` first resets every event of the instance (reading
        thousands of files, a third of a second on a busy host); we know what
        we set, so we undo just that, and fall back to it only if rmdir fails.
        A write whose undo failed is not reported once the instance is gone.
        """
        inst = self.instance
        if not inst.exists():
            return
        inst.set_tracing_on(False)
        not_undone = self.applied.undo() if self.applied is not None else []
        self.applied = None
        if not_undone:
            raise TracefsError("removing %s: %s" % (inst.label, "; ".join(not_undone)))
        if inst.exists():   # setup() failed and its rollback could not remove it: ours all the same
            self._rmdir()

    def _rmdir(self):
        """The plan's mkdir undone: rmdir, retried while the kernel says busy, else ``Instance.remove()``."""
        inst = self.instance
        for _attempt in range(RMDIR_ATTEMPTS):
            try:
                os.rmdir(inst.path())
                return
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    break
                time.sleep(0.05)
        inst.remove()

    # -- the window ------------------------------------------------------------
    def run(self, duration):
        """Trace for ``duration`` seconds copying pages, then analyse them; return the window length."""
        elapsed = self.record(duration)
        self.analyse()
        return elapsed

    def record(self, duration, abandon_when=None):
        """The window: copy pages for ``duration`` seconds, stop, drain; return its length.

        ``abandon_when``: called at every copy; a reason it returns ends the window at once and
        marks it ``abandoned`` (nobody is left to read the result: see ``collect``).
        """
        cpu_start = os.times()
        start = time.monotonic()
        deadline = start + duration
        spool = self.spool
        buffer_bytes = self.buffer_size_kb * 1024
        last_pump = start
        while True:
            spool.pump()
            now = time.monotonic()
            since, last_pump = now - last_pump, now
            if spool.full:
                self.ended_early = "the spool reached %d MiB (max_spool_mb)" % (self.max_spool_bytes >> 20)
                break
            reason = abandon_when() if abandon_when is not None else None
            if reason:
                self.ended_early = self.abandoned = reason
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(spool.next_pause(since, buffer_bytes, self.poll_interval), left))
        self.instance.set_tracing_on(False)
        stopped = time.monotonic()
        spool.drain()
        self.stats = per_cpu.all_stats(self.instance.path())
        cpu_end = os.times()
        self.window_cpu_seconds = (cpu_end[0] - cpu_start[0]) + (cpu_end[1] - cpu_start[1])
        self.bytes_read = spool.bytes
        self.pages_read = spool.bytes // page_spool.PAGE_SIZE
        spool.close_sources()
        return stopped - start

    def analyse(self):
        """Feed the copied pages to the analyzer (``pages.analyse_pages``)."""
        self.missed_in_pages, self.missed_unknown_pages = sched_pages.analyse_pages(
            self.analyzer, self.spool, self.layout, self.decoders, self.kinds, self.stats)

    def lost_events(self):
        """Events the kernel could not hand us: max of what stats and pages say."""
        by_cpu = {str(cpu): per_cpu.lost_in(stats) for cpu, stats in self.stats.items()}
        total = max(sum(by_cpu.values()), self.missed_in_pages)
        return total, by_cpu


def _setter(method, value):
    return lambda: method(value)


def collect(tracefs, duration, instance_name=None, watch_pids=(), watch_comms=(), watch_comm_regex=(),
            buffer_size_kb=4096, stack_traces=True, worst_count=10, exact_samples=100000,
            poll_interval=0.2, collector_nice=-10, spool_dir=None, max_spool_mb=DEFAULT_MAX_SPOOL_MB,
            abandon_when=None):
    """Run one window and return the per-host result document (``kind: sched_latency``).

    ``abandon_when`` (see ``SchedCollector.record``): when it gives a reason the window ends, the
    instance is removed and ``WindowAbandoned`` is raised instead of analysing for nobody.

    ``collector_nice``: the page copier runs at this nice value during the
    window so that a host saturated with runnable tasks (the case worth
    auditing) does not starve it into losing events; it sleeps between
    copies.  The analysis runs after the window at the caller's priority,
    once the instance is gone.
    """
    watched_now = sched_facts.resolve_watched(watch_pids, watch_comms, watch_comm_regex)
    watch = sched_analysis.WatchSpec(pids=set(watched_now) | {int(p) for p in watch_pids},
                                     comms=watch_comms, comm_regexes=watch_comm_regex)
    analyzer = sched_analysis.SchedAnalyzer(watch=watch, worst_count=worst_count,
                                            longest_d_count=worst_count, exact_cap=exact_samples)
    collector = SchedCollector(tracefs, instance_name or default_instance_name(), analyzer,
                               buffer_size_kb=buffer_size_kb,
                               stack_pids=watched_now if stack_traces else (),
                               poll_interval=poll_interval, spool_dir=spool_dir, max_spool_mb=max_spool_mb)
    facts = sched_facts.host_facts(tracefs)
    task_facts_before = {pid: sched_facts.task_facts(pid) for pid in watched_now}
    for pid, item in task_facts_before.items():
        if "comm" in item:
            # Names known before the window: a task the kernel shows running without a switch-in
            # (a CPU leaving idle on some kernels) is still named in "ran meanwhile".
            analyzer.comms[pid] = item["comm"].encode("utf-8", "replace")
    cpu_start = os.times()
    nice_before = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        try:
            if collector_nice is not None and collector_nice < nice_before:
                os.setpriority(os.PRIO_PROCESS, 0, collector_nice)
            collector.setup()
            elapsed = collector.record(duration, abandon_when=abandon_when)
        finally:
            try:
                collector.close(keep_spool=collector.abandoned is None)
            finally:
                os.setpriority(os.PRIO_PROCESS, 0, nice_before)
        if collector.abandoned:
            raise WindowAbandoned("window ended after %.1f s: %s" % (elapsed, collector.abandoned))
        collector.analyse()
    finally:
        collector.close()
    cpu_end = os.times()
    analyzer.finish()
    symbols = None
    if analyzer.watched.longest_d:
        from ansible_collections.fleettrace.tracefs.plugins.module_utils.elf import symbols as elf_symbols
        symbols = elf_symbols.KernelSymbols()   # only now: reading /proc/kallsyms is not free
    facts_by_pid = {}
    for pid, item in task_facts_before.items():
        facts_by_pid[pid] = {k: v for k, v in item.items() if k in ("policy", "rtprio", "nice", "prio", "class")}
        if "comm" in item:
            # Every watched task is listed, also one whose waits the trace could not prove (its
            # series are then empty and its unmeasured waits are counted with their reasons).
            analyzer.watched_task(pid, item["comm"].encode("utf-8", "replace"))
    result = analyzer.result(symbols=symbols, facts_by_pid=facts_by_pid)
    lost, lost_by_cpu = collector.lost_events()
    processed = sum(result["event_counts"].values())
    collector_cpu = (cpu_end[0] - cpu_start[0]) + (cpu_end[1] - cpu_start[1])
    window_cpu = collector.window_cpu_seconds
    result.update({
        "kind": "sched_latency",
        "schema_version": SCHEMA_VERSION,
        "host": facts["hostname"],
        "facts": facts,
        "watched": {"pids": watch_pids and [int(p) for p in watch_pids] or [], "comms": list(watch_comms),
                    "comm_regex": list(watch_comm_regex), "tasks_at_start": [task_facts_before[p] for p in watched_now],
                    "stack_pids": collector.stack_pids, "stack_pids_truncated": collector.stack_pids_truncated},
        "window": {"duration_s": round(elapsed, 3), "clock": collector.clock, "instance": collector.instance.name,
                   "events_enabled": collector.events, "buffer_size_kb": collector.buffer_size_kb,
                   "ended_early": collector.ended_early},
        "events": {"processed": processed, "per_second": round(processed / elapsed, 1) if elapsed else None,
                   "lost": lost, "lost_by_cpu": lost_by_cpu,
                   "pages_with_unknown_loss": collector.missed_unknown_pages,
                   "complete": lost == 0 and collector.missed_unknown_pages == 0,
                   "bytes_read": collector.bytes_read},
        # cpu_seconds: the whole run (window + analysis); window_*: only while tracing.
        "collector": {"cpu_seconds": round(collector_cpu, 3),
                      "cpu_per_wall_second": round(collector_cpu / elapsed, 3) if elapsed else None,
                      "window_cpu_seconds": round(window_cpu, 3),
                      "window_cpu_per_wall_second": round(window_cpu / elapsed, 3) if elapsed else None,
                      "cpu_us_per_event": round(collector_cpu * 1e6 / processed, 3) if processed else None},
    })
    return result
