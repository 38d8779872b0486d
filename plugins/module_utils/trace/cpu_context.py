# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who held the target's CPU while it waited for one: every task switch, recorded beside the capture.

The capture instance records only the target (``set_event_pid``): the kernel
keeps a ``sched_switch`` when the target is its previous or its next task.
Of a wait for a CPU it therefore sees the target's switch-out (or wakeup) and
its switch-in, whose previous task is whoever ran *last*: a ``kworker`` that
ran 50 µs after a SCHED_FIFO hog had spun for a second was named as the task
that "ran instead".  The pid filter cannot be lifted for one event, and
recording every switch in the capture's own buffer would push the target's
events (its D-state stack) out of it on a busy node.

So a second, private instance (``<capture instance>_cpu``) records
``sched_switch`` of every task, armed and stopped together with the capture:
the stop probe carries the same ``traceoff`` trigger there, so both stop at
the same late tick.  Its clock is the capture's, so timestamps compare.
Afterwards only the buffers of the CPUs the findings waited on are read
(``per_cpu/cpuN/trace``), and each wait is cut into who ran on that CPU for
how long, with policy and priority (from the switch's ``prio``, and from
``/proc`` while the task lives), the longest first.
"""


import contextlib
import hashlib

from ansible_collections.fleettrace.tracefs.plugins.module_utils import procfs
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace.text_parser import TraceParser
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import lifecycle
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import validate
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.changes import ChangePlan

SUFFIX = "_cpu"
# Per CPU: about 14,000 switches (some seconds of a busy CPU); a CPU held by a hog switches rarely.
DEFAULT_BUFFER_KB = 1024
MAX_RT_PRIO = 100           # kernel prio below this: a realtime task (rtprio = 99 - prio)
DEFAULT_PRIO = 120          # kernel prio of nice 0
IDLE = "<idle>"


def context_name(capture_name):
    """The context instance's name: the capture's plus ``_cpu`` (shortened with a hash to fit)."""
    name = capture_name + SUFFIX
    if len(name) <= validate.MAX_INSTANCE_NAME:
        return name
    digest = hashlib.sha1(capture_name.encode("utf-8")).hexdigest()[:8]
    return capture_name[:validate.MAX_INSTANCE_NAME - len(SUFFIX) - 9] + "_" + digest + SUFFIX


class CpuContext:
    """The context instance of one capture: ``plan()`` creates it, ``holders()`` reads it."""

    def __init__(self, capture, stop, buffer_size_kb=DEFAULT_BUFFER_KB):
        self.capture = capture
        self.stop = stop
        self.instance = capture.tracefs.instance(context_name(capture.name))
        self.buffer_size_kb = buffer_size_kb

    @property
    def name(self):
        return self.instance.name

    def plan(self):
        """``ChangePlan``: the instance (tracing off, the capture's clock), every switch, the stop probes."""
        inst = self.instance
        clock = self.capture.clock
        plan = ChangePlan()
        plan.mkdir(inst.path(), inst.create, inst.remove)
        plan.write(inst.path("tracing_on"), "0", lambda: inst.set_tracing_on(False))
        plan.write(inst.path("buffer_size_kb"), str(self.buffer_size_kb),
                   lambda: inst.set_buffer_size_kb(self.buffer_size_kb))
        plan.write(inst.path("trace_clock"), clock, lambda: inst.set_clock(clock))
        switch = inst.event("sched", "sched_switch")
        plan.write(inst.path("events/sched/sched_switch/enable"), "1", lambda: switch.set_enabled(True))
        return plan

    def explain(self, found, resolve_fds=True):
        """Name the holders of the CPU each finding waited for (``findings.add_cpu_holders``)."""
        from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import findings as stall_findings
        waiting = [f for f in found if f.get("runnable_wait") and (
            f["cause"] == stall_findings.CAUSE_RUNNABLE or f["runnable_ns"] >= stall_findings.WORTH_SAYING_NS)]
        waits = self.holders([{"cpu": f["runnable_wait"]["cpu"], "start_ns": f["runnable_wait"]["from_ns"],
                               "end_ns": f["runnable_wait"]["until_ns"]} for f in waiting])
        for finding, wait in zip(waiting, waits):
            stall_findings.add_cpu_holders(finding, wait, resolve_fds)

    def facts(self):
        return {"instance": self.name, "buffer_size_kb": self.buffer_size_kb, "events": ["sched:sched_switch"]}

    def holders(self, waits):
        """Fill each wait dict ({cpu, start_ns, end_ns}) with ``holders`` and ``recorded_from_ns``.

        Reads the buffer of each CPU once.  A wait whose start the buffer no
        longer holds (overwritten) gets the holders of the part it still has.
        """
        by_cpu = {}
        for wait in waits:
            by_cpu.setdefault(wait["cpu"], []).append(wait)
        for cpu, cpu_waits in sorted(by_cpu.items()):
            switches, overwritten = self._switches(cpu)
            for wait in cpu_waits:
                wait.update(holders_in(switches, wait["start_ns"], wait["end_ns"], overwritten))
        return waits

    def _switches(self, cpu):
        switches = []

        def keep(record):
            if record["event"] == "sched_switch":
                switches.append((record["ts_ns"], record["fields"]))
        parser = TraceParser(keep_events=False, on_event=keep)
        try:
            with open(self.instance.path("per_cpu", "cpu%d" % cpu, "trace")) as handle:
                for line in handle:
                    parser.feed(line.rstrip("\n"))
        except (OSError, TypeError):
            return [], False
        parser.close()
        switches.sort(key=lambda item: item[0])
        return switches, bool(parser.buffer_started or parser.lost_events)


@contextlib.contextmanager
def recording(capture, stop, seconds, buffer_size_kb=DEFAULT_BUFFER_KB):
    """A ``CpuContext`` beside ``capture`` for at most ``seconds``, owned by this process, removed after.

    Registered as a run of this process before it is created: if the module
    is killed (an async timeout, SIGKILL), its reaper removes the instance.
    """
    context = CpuContext(capture, stop, buffer_size_kb)
    fs = capture.tracefs
    with lifecycle.module_run(fs, context.name, seconds, instances=[context.name]):
        plan = context.plan()
        plan.apply()
        try:
            context.stop.plan(context.instance).apply()  # its own trigger: both stop at the same tick
            yield context
        finally:
            if context.instance.exists():
                context.instance.remove()


def holders_in(switches, start_ns, end_ns, overwritten=False):
    """{holders, recorded_from_ns, covered_ns}: who ran on one CPU in [start_ns, end_ns], longest first.

    ``switches``: that CPU's (ts_ns, sched_switch fields) in time order.  The
    ``prev`` task of a switch ran from the switch before it (or the wait's
    start) until that switch; the first switch at or after the end (the
    target's own switch-in) closes the wait.  ``overwritten``: the CPU's
    buffer lost its oldest records, so time before its first record is not
    counted (``recorded_from_ns`` says from when the wait is covered).
    """
    totals = {}
    since = start_ns
    if not switches:
        return {"holders": [], "recorded_from_ns": None, "covered_ns": 0}
    if overwritten and switches[0][0] > start_ns:
        since = min(switches[0][0], end_ns)
    recorded_from = since
    running = None
    for ts, fields in switches:
        if ts <= since:
            running = fields
            continue
        if ts >= end_ns:
            _add(totals, fields, "prev", since, end_ns)
            running = None
            break
        _add(totals, fields, "prev", since, ts)
        running, since = fields, ts
    else:
        if running is not None:
            _add(totals, running, "next", since, end_ns)
    holders = sorted(totals.values(), key=lambda h: (-h["ran_ns"], h["first_ns"]))
    for holder in holders:
        holder.update(_policy(holder["pid"], holder["comm"], holder.pop("prio")))
        holder["ran_ms"] = round(holder["ran_ns"] / 1e6, 3)
        holder["first_ran_at"] = holder.pop("first_ns") / 1e9
        holder["last_ran_until"] = holder.pop("last_ns") / 1e9
    return {"holders": holders, "recorded_from_ns": recorded_from, "covered_ns": sum(h["ran_ns"] for h in holders)}


def _add(totals, fields, side, begin, end):
    pid = fields.get("%s_pid" % side)
    if pid is None or end <= begin:
        return
    comm = IDLE if pid == 0 else str(fields.get("%s_comm" % side))
    entry = totals.get(pid)
    if entry is None:
        entry = totals[pid] = {"pid": pid, "comm": comm, "ran_ns": 0, "first_ns": begin, "last_ns": end,
                               "prio": fields.get("%s_prio" % side)}
    entry["ran_ns"] += end - begin
    entry["last_ns"] = max(entry["last_ns"], end)


def _policy(pid, comm, prio):
    """{policy, rtprio, nice, prio}: from /proc while the same task lives, else what ``prio`` tells."""
    facts = {"prio": prio, "policy": None, "rtprio": None, "nice": None}
    if pid == 0:
        facts["policy"] = "idle"
        return facts
    stat_text = procfs._read_optional("/proc/%d/stat" % pid)
    if stat_text:
        try:
            stat = procfs.parse_stat(stat_text)
        except (ValueError, IndexError):
            stat = None
        if stat is not None and stat["comm"] == comm:
            facts["policy"] = procfs.POLICY_NAMES.get(stat["policy"], "policy %d" % stat["policy"])
            if stat["policy"] in procfs.REALTIME_POLICIES:
                facts["rtprio"] = stat["rt_priority"]
            else:
                facts["nice"] = stat["nice"]
            return facts
    if isinstance(prio, int):
        if prio < 0:
            facts["policy"] = "SCHED_DEADLINE"
        elif prio < MAX_RT_PRIO:
            facts.update(policy="SCHED_FIFO or SCHED_RR (task gone)", rtprio=MAX_RT_PRIO - 1 - prio)
        else:
            facts.update(policy="SCHED_OTHER, BATCH or IDLE (task gone)", nice=prio - DEFAULT_PRIO)
    return facts


def describe(holder):
    """'hog[123] (SCHED_FIFO rtprio 50) 398.2 ms'."""
    if holder["pid"] == 0:
        return "the CPU idle %.1f ms" % holder["ran_ms"]
    if holder["rtprio"] is not None:
        how = "%s rtprio %d" % (holder["policy"], holder["rtprio"])
    elif holder["nice"] is not None:
        how = "%s nice %d" % (holder["policy"], holder["nice"])
    else:
        how = holder["policy"] or "prio %s" % holder["prio"]
    return "%s[%d] (%s) %.1f ms" % (holder["comm"], holder["pid"], how, holder["ran_ms"])
