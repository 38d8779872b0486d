"""A private instance ready for a threshold capture of tick_loop, without the stop trigger.

The capture module's ``stop`` option installs the ``traceoff`` trigger itself;
this sets up what a role would before it: the probe on tick_loop's gap, every
switch of the task with the kernel stack of its switch-outs, its wakeups and
its system calls.  ``remove()`` undoes it all (call it in ``finally``).
"""

from tests.helpers import capture_program


class StallSetup:
    def __init__(self, tracefs, name, group, binary, pid, buffer_size_kb=2048):
        self.tracefs = tracefs
        self.group = group
        self.probe_added = False
        self.instance = tracefs.instance(name)
        tracefs.add_uprobe(capture_program.gap_probe(binary, group))
        self.probe_added = True
        try:
            inst = self.instance
            inst.create()
            inst.set_tracing_on(False)
            inst.set_buffer_size_kb(buffer_size_kb)
            inst.set_event_pids([pid])
            inst.event(group, "tick_gap").set_enabled(True)
            switch = inst.event("sched", "sched_switch")
            switch.add_trigger("stacktrace if prev_pid == %d" % pid)
            switch.set_enabled(True)
            inst.event("sched", "sched_wakeup").set_enabled(True)
            inst.event("raw_syscalls", "sys_enter").set_enabled(True)
            inst.event("raw_syscalls", "sys_exit").set_enabled(True)
        except BaseException:
            self.remove()
            raise

    @property
    def probe_event(self):
        return "%s:tick_gap" % self.group

    def remove(self):
        try:
            self.instance.remove()
        finally:
            if self.probe_added:
                self.tracefs.remove_uprobe(self.group, "tick_gap")
                self.probe_added = False
