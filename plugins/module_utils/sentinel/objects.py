# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A sentinel's tracefs instances, as ``ChangePlan`` steps the module and the watcher share.

- the **main** instance records what the capture role records for one target
  (every switch with the kernel stack where it leaves the CPU, its wakeups, its
  system calls, the probe) in overwrite mode, so when the probe's
  ``traceoff if FIELD >= THRESHOLD`` fires the buffer holds the seconds before
  the late tick;
- the **bell** holds the probe alone, filtered in the kernel by the same
  ``FIELD >= THRESHOLD``: its ``trace_pipe`` becomes readable only on a late
  tick, which is what the watcher blocks on (no polling of tracefs).

Both record only the target's pid; ``retarget`` moves them to a restarted
target, ``probe_steps`` puts the probe's events back after it is installed on
a new file of the same build.
"""


from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import cleanup as tracefs_cleanup
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs.store import RunStore
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import instance_event_plans, validate
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.changes import ChangePlan

TRACE_CLOCK = "mono"
# The bell holds a handful of late ticks; the kernel rounds this up to one page per CPU.
BELL_BUFFER_KB = 4


def probe_filter(field, threshold):
    return validate.expression("%s >= %d" % (field, threshold), "bell filter")


def stack_trigger(pid):
    return "stacktrace if prev_pid == %d" % int(pid)


def _instance_steps(plan, instance, buffer_kb, pid):
    plan.mkdir(instance.path(), instance.create, instance.remove)
    plan.write(instance.path("tracing_on"), "0", lambda: instance.set_tracing_on(False))
    plan.write(instance.path("buffer_size_kb"), str(buffer_kb), lambda: instance.set_buffer_size_kb(buffer_kb))
    plan.write(instance.path("trace_clock"), TRACE_CLOCK, lambda: instance.set_clock(TRACE_CLOCK))
    plan.write(instance.path("set_event_pid"), str(pid), lambda: instance.set_event_pids([pid]))


def _enable(plan, event):
    plan.write(event.instance.path(*event.rel("enable")), "1", lambda: event.set_enabled(True),
               lambda: event.set_enabled(False))


def _trigger(plan, event, text):
    plan.write(event.instance.path(*event.rel("trigger")), text, lambda: event.add_trigger(text),
               lambda: event.remove_trigger(text), append=True)


def probe_steps(plan, fs, settings, stop):
    """The probe's events in both instances: the traceoff trigger in main, the filter in the bell."""
    main, bell = fs.instance(settings.names["instance"]), fs.instance(settings.names["bell"])
    (trigger,) = instance_event_plans.check_triggers(fs, [stop.trigger])
    text = probe_filter(stop.field, stop.threshold)
    for group, name in stop.split:
        event = main.event(group, name)
        _trigger(plan, event, trigger)
        _enable(plan, event)
        quiet = bell.event(group, name)
        plan.write(bell.path(*quiet.rel("filter")), text, lambda e=quiet: e.set_filter(text), lambda e=quiet: e.set_filter(""))
        _enable(plan, quiet)
    return plan


def setup_steps(plan, fs, settings, stop, pid):
    """Create both instances around the installed probe (tracing off: the watcher arms them)."""
    main, bell = fs.instance(settings.names["instance"]), fs.instance(settings.names["bell"])
    _instance_steps(plan, main, settings.buffer_size_kb, pid)
    switch = main.event("sched", "sched_switch")
    (trigger,) = instance_event_plans.check_triggers(fs, [stack_trigger(pid)])
    _trigger(plan, switch, trigger)
    _enable(plan, switch)
    _enable(plan, main.event("sched", "sched_wakeup"))
    for spec in settings.syscall_events:
        _enable(plan, main.event(spec))
    _instance_steps(plan, bell, BELL_BUFFER_KB, pid)
    return probe_steps(plan, fs, settings, stop)


def retarget(fs, settings, old_pid, new_pid):
    """Both instances record ``new_pid`` instead of ``old_pid`` (a restarted target); all or nothing."""
    main, bell = fs.instance(settings.names["instance"]), fs.instance(settings.names["bell"])
    plan = ChangePlan()
    for instance in (main, bell):
        plan.write(instance.path("set_event_pid"), str(new_pid), lambda i=instance: i.set_event_pids([new_pid]),
                   lambda i=instance: i.set_event_pids([]))
    switch = main.event("sched", "sched_switch")
    old, new = stack_trigger(old_pid), stack_trigger(new_pid)
    plan.write(main.path(*switch.rel("trigger")), "!" + old, lambda: switch.remove_trigger(old),
               lambda: switch.add_trigger(old), append=True)
    _trigger(plan, switch, new)
    plan.apply()
    return plan


def reinstall_probe(fs, settings, stop, definitions):
    """Put the probe on the file now at its path (same build-id, new inode): off, removed, added, on."""
    main, bell = fs.instance(settings.names["instance"]), fs.instance(settings.names["bell"])
    for group, name in stop.split:
        for instance in (main, bell):
            instance.event(group, name).clear()
    for group, name in stop.split:
        fs.remove_uprobe(group, name)
    for line in definitions:
        fs.add_uprobe(line)
    probe_steps(ChangePlan(), fs, settings, stop).apply()


def remove_own(fs, settings, store=None):
    """Remove the sentinel's own objects when its manifest is gone (quarantined, removed by hand).

    Only its exact names, and only those no other run claims.  Returns the errors.
    """
    store = store or RunStore()
    mine = {settings.names[key] for key in ("instance", "bell", "latency", "group")}
    others = {name: store.claimant(name) for name in mine}
    taken = sorted(name for name, tag in others.items() if tag not in (None, settings.names["tag"]))
    free = mine - set(taken)
    found = tracefs_cleanup.find_leftovers(fs, match=lambda name: name in free, trigger_targets=True)
    errors = tracefs_cleanup.remove_all(tracefs_cleanup.plan_removal(fs, found))
    return errors + ["%s claimed by another run now; left to it" % name for name in taken]
