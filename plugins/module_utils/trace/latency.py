# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How long one system call takes on one fd: the talk's culprit histogram.

Once a finding names the call (``ioctl`` on fd 10, ``WDIOC_KEEPALIVE``),
``measure`` records the task's entries to and exits from that call in a
private instance, filtered in the kernel by task and, with
``syscalls:sys_enter_<name>``, by fd and ioctl command too (``raw_syscalls``
is the fallback: filtered by task and number, the fd checked here).  Each
entry paired with the task's next exit is one sample: log2 histogram, exact
percentiles, count, and every sample's start (CLOCK_MONOTONIC: the instance
uses the ``mono`` trace clock, so samples line up with a program's own log).
"""


from ansible_collections.fleettrace.tracefs.plugins.module_utils.series import LatencySeries
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import instance_capture
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import ioctl, syscalls
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.changes import ChangePlan
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import TracefsError

TRACE_CLOCK = "mono"
# Samples listed one by one in the result (the histogram holds all of them).
MAX_LISTED = 10000


def filters(pid, call, fd=None, cmd=None, named=True):
    """(enter filter, exit filter) for the call: by task, and by fd / command when the event has them."""
    task = "common_pid == %d" % int(pid)
    if not named:
        number = [n for n, name in syscalls.table().items() if name == call]
        if not number:
            raise TracefsError("no x86_64 number known for system call %r" % call)
        return "%s && id == %d" % (task, number[0]), "%s && id == %d" % (task, number[0])
    enter = [task]
    if fd is not None:
        enter.append("fd == %d" % int(fd))
    if cmd is not None and call == "ioctl":
        enter.append("cmd == %d" % int(cmd))
    return " && ".join(enter), task


class Pairing:
    """Sink for the capture: pairs each entry with the same task's next exit."""

    def __init__(self, call, fd=None, cmd=None, max_samples=None, pid=None, max_listed=MAX_LISTED):
        self.call = call
        self.pid = pid
        self.max_listed = max_listed
        self.fd = fd
        self.cmd = cmd
        self.max_samples = max_samples
        self.pending = {}
        self.series = LatencySeries()
        self.samples = []
        self.seen = 0
        self.gone = set()

    def _matches(self, record):
        event, fields = record["event"], record["fields"]
        if event == "sys_enter_" + self.call:
            return True
        if event != "sys_enter" or syscalls.name(fields.get("id")) != self.call:
            return False
        args = fields.get("args") or []
        if self.fd is not None and (len(args) < 1 or args[0] != self.fd):
            return False
        return self.cmd is None or self.call != "ioctl" or (len(args) > 1 and args[1] == self.cmd)

    def add(self, record):
        self.seen += 1
        if self.done():
            return
        event = record["event"]
        if event.startswith("sys_enter"):
            if self._matches(record):
                self.pending[record["pid"]] = record["ts_ns"]
        elif event.startswith("sys_exit") and record["pid"] in self.pending:
            start = self.pending.pop(record["pid"])
            self.series.add(record["ts_ns"] - start)
            if len(self.samples) < self.max_listed:
                self.samples.append({"start_ns": start, "ns": record["ts_ns"] - start})

    def events(self):
        return []  # the samples are the result; no record is kept

    def done(self):
        return self.max_samples is not None and self.series.count >= self.max_samples


def prepare(tracefs, name, pid, call, fd=None, cmd=None, buffer_size_kb=1024):
    """The plan that creates instance ``name`` recording ``call`` of task ``pid`` (filtered in the kernel).

    Returns (instance, plan, info): ``info`` has the kernel filter and the events' source, for the summary.
    """
    instance = tracefs.instance(name)
    if instance.exists():
        raise TracefsError("%s already exists; give a name no other run uses" % instance.label)
    # The instance does not exist yet: ask the top level which events the kernel has.
    named = tracefs.instance(None).event("syscalls", "sys_enter_" + call).exists()
    enter_filter, exit_filter = filters(pid, call, fd, cmd, named)
    if named:
        enter, leave = instance.event("syscalls", "sys_enter_" + call), instance.event("syscalls", "sys_exit_" + call)
    else:
        enter, leave = instance.event("raw_syscalls", "sys_enter"), instance.event("raw_syscalls", "sys_exit")
    plan = ChangePlan()
    plan.mkdir(instance.path(), instance.create, instance.remove)
    plan.write(instance.path("tracing_on"), "0", lambda: instance.set_tracing_on(False))
    plan.write(instance.path("buffer_size_kb"), str(buffer_size_kb), lambda: instance.set_buffer_size_kb(buffer_size_kb))
    plan.write(instance.path("trace_clock"), TRACE_CLOCK, lambda: instance.set_clock(TRACE_CLOCK))
    for event, text in ((enter, enter_filter), (leave, exit_filter)):
        plan.write(instance.path(*event.rel("filter")), text, lambda e=event, t=text: e.set_filter(t))
        plan.write(instance.path(*event.rel("enable")), "1", lambda e=event: e.set_enabled(True))
    info = {"source": "syscalls:sys_enter_%s" % call if named else "raw_syscalls", "kernel_filter": enter_filter,
            "plan": plan.commands}
    return instance, plan, info


def summarize(pairing, info, duration_s, lost_events, stop_reason):
    """The measurement's summary dict (percentiles in ms, log2 histogram, the samples listed)."""
    summary = pairing.series.summary(unit="ms")
    summary.update(info)
    summary.update({
        "call": pairing.call, "pid": pairing.pid, "fd": pairing.fd, "samples": pairing.samples,
        "duration_s": duration_s, "lost_events": lost_events, "stop_reason": stop_reason, "trace_clock": TRACE_CLOCK,
    })
    if pairing.cmd is not None and pairing.call == "ioctl":
        summary["cmd"] = ioctl.decode(pairing.cmd)
    return summary


def measure(tracefs, name, pid, call, fd=None, cmd=None, duration=10.0, max_samples=None, buffer_size_kb=1024):
    """Create instance ``name``, record ``call`` of task ``pid``, remove the instance; returns a summary dict.

    Ends after ``duration`` seconds or ``max_samples`` samples, whichever comes first.
    """
    instance, plan, info = prepare(tracefs, name, pid, call, fd, cmd, buffer_size_kb)
    pairing = Pairing(call, fd, cmd, max_samples, pid=pid)
    plan.apply()
    try:
        result = instance_capture.capture_window(instance, duration, pid=pid, sink=pairing, until=pairing.done)
    finally:
        instance.remove()
    return summarize(pairing, info, result["duration"], result["lost_events"], result["stop_reason"])


def distribution(series, unit_ns=1):
    """The probed value's distribution (a ``LatencySeries`` of ns) as a summary dict in ms."""
    summary = series.summary(unit="ms")
    summary["unit_ns"] = unit_ns
    return summary
