"""A private instance on tick_loop's gap probe, as a role would set it up before a capture.

``StallSetup`` (for the capture module's ``stop`` option, which installs the
``traceoff`` trigger itself): the probe on tick_loop's gap, every switch of the
task with the kernel stack of its switch-outs, its wakeups and its system calls.
``armed_instance`` is the talk's step 4 with the threshold trigger written by
the test: ``traceoff if gap >= N`` on the probe, stacks of D-state switch-outs.

Probe group and instance are registered as a run of this process before they
are created (tests/helpers/owned.py): a SIGKILLed test leaves nothing behind.
``remove()`` undoes it all (call it in ``finally``).
"""

from tests.helpers import capture_program
from tests.helpers.owned import OwnedRun

# What StallSetup traces next to the probe and the switches.
STALL_EVENTS = (("sched", "sched_wakeup"), ("raw_syscalls", "sys_enter"), ("raw_syscalls", "sys_exit"))
# What armed_instance traces with syscalls=True.
ARMED_SYSCALLS = (("syscalls", "sys_enter_write"), ("raw_syscalls", "sys_enter"))
TASK_STATE_UNINTERRUPTIBLE = 2


def cap_and_group(unique_name):
    """An instance name and its probe group named after it: one run owns both (runs/manifest.py)."""
    name = unique_name("cap")
    return name, name + "_grp"


class StallSetup:
    def __init__(self, tracefs, name, group, binary, pid, buffer_size_kb=2048, events=STALL_EVENTS,
                 stack_if=None, traceoff_at=None, options=()):
        """``stack_if``: the sched_switch stacktrace condition (default: every switch-out of ``pid``);
        ``traceoff_at``: a gap (ns) at which the probe turns tracing off."""
        self.tracefs = tracefs
        self.group = group
        self.probe_added = False
        self.instance = tracefs.instance(name)
        self.run = OwnedRun(tracefs, instances=[name], groups=[group])
        try:
            tracefs.add_uprobe(capture_program.gap_probe(binary, group))
            self.probe_added = True
            inst = self.instance
            inst.create()
            inst.set_tracing_on(False)
            if buffer_size_kb:
                inst.set_buffer_size_kb(buffer_size_kb)
            for option in options:
                inst.set_option(option, True)
            inst.set_event_pids([pid])
            probe = inst.event(group, "tick_gap")
            if traceoff_at is not None:
                probe.add_trigger("traceoff if gap >= %d" % traceoff_at)
            probe.set_enabled(True)
            switch = inst.event("sched", "sched_switch")
            switch.add_trigger("stacktrace if %s" % (stack_if or "prev_pid == %d" % pid))
            switch.set_enabled(True)
            for system, event in events:
                inst.event(system, event).set_enabled(True)
        except BaseException:
            self.remove()
            raise

    @property
    def probe_event(self):
        return "%s:tick_gap" % self.group

    def remove(self):
        try:
            try:
                self.instance.remove()
            finally:
                if self.probe_added:
                    self.tracefs.remove_uprobe(self.group, "tick_gap")
                    self.probe_added = False
        finally:
            self.run.end()


def armed_instance(tracefs, name, group, binary, pid, threshold, buffer_size_kb=None, syscalls=True, options=()):
    """The talk's step-4 setup on the tick_loop probe, its traceoff trigger included (core API)."""
    return StallSetup(tracefs, name, group, binary, pid, buffer_size_kb=buffer_size_kb,
                      events=ARMED_SYSCALLS if syscalls else (),
                      stack_if="prev_state == %d" % TASK_STATE_UNINTERRUPTIBLE,
                      traceoff_at=threshold, options=options)
