# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the ``instance`` and ``event`` modules read and plan to write.

Each ``*_state`` function reads what the kernel has now; each ``plan_*``
function turns that and the module's parameters into a ``ChangePlan`` (the
writes in the order the kernel needs: triggers removed before the filter and
the enable they depend on, the filter before new triggers, enable last; each
write with its undo) and the state expected after
it.  Keeping this here keeps the modules thin and the plans testable on a
fake tracefs tree.
"""


import os

from ansible_collections.fleettrace.tracefs.plugins.module_utils import input_limits
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import validate
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.changes import ChangePlan
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import normalize_trigger, trigger_key

# Missing pids a refusal names (the rest are counted).
NAMED_PIDS = 10


# -- instance ----------------------------------------------------------------------
def instance_settings(inst, wanted_options):
    """The settings the instance module manages, as the kernel has them now."""
    if not inst.exists():
        return {"exists": False}
    return {
        "exists": True,
        "buffer_size_kb": inst.buffer_size_kb,
        "clock": inst.clock,
        "tracing_on": inst.tracing_on,
        "event_pids": inst.event_pids,
        "options": {name: inst.option(name) for name in sorted(wanted_options)},
    }


def check_instance_request(fs, inst, params):
    """Fail before any write on names the kernel would refuse."""
    input_limits.check_items(params["event_pids"], "event_pids")  # before a stat per pid
    gone = [pid for pid in params["event_pids"] or [] if not os.path.isdir("/proc/%d" % validate.pid(pid))]
    if gone:
        named = ", ".join(str(pid) for pid in gone[:NAMED_PIDS])
        raise validate.ValidationError(
            "event_pids: no process with pid %s on this host (the kernel would silently record nothing); "
            "look the pid up right before this task, e.g. with fleettrace.tracefs.proc_info"
            % (named + (" and %d more" % (len(gone) - NAMED_PIDS) if len(gone) > NAMED_PIDS else "")))
    # A new instance offers a subset of the top-level options; setting one it
    # lacks fails later and rolls the creation back.
    available = (inst if inst.exists() else fs.instance(None)).option_names()
    for name, value in (params["options"] or {}).items():
        if name not in available:
            raise validate.ValidationError(
                "trace option %r does not exist on this kernel; available options: %s" % (name, ", ".join(available)))
        if not isinstance(value, bool):
            raise validate.ValidationError("trace option %r must be true or false, got %r" % (name, value))
    if params["clock"] is not None and params["clock"] not in fs.features()["trace_clocks"]:
        raise validate.ValidationError("trace clock %r is not available; this kernel offers: %s"
                                       % (params["clock"], ", ".join(fs.features()["trace_clocks"])))
    if params["buffer_size_kb"] is not None:
        validate.buffer_size_kb(params["buffer_size_kb"])


def desired_instance_settings(inst, before, params):
    after = dict(before, exists=True)
    wanted_size = params["buffer_size_kb"]
    if wanted_size is not None and not inst.buffer_size_matches(before.get("buffer_size_kb"), wanted_size):
        after["buffer_size_kb"] = wanted_size
    for key in ("clock", "tracing_on"):
        if params[key] is not None:
            after[key] = params[key]
    if params["event_pids"] is not None:
        after["event_pids"] = sorted(set(params["event_pids"]))
    if params["options"]:
        after["options"] = dict(before.get("options") or {}, **params["options"])
    return after


def plan_instance(inst, before, params):
    """(plan, after) for ``state`` present or absent."""
    if params["state"] == "absent":
        plan = ChangePlan()
        if before["exists"]:
            plan.rmdir(inst.path(), inst.remove)
        return plan, {"exists": False}
    after = desired_instance_settings(inst, before, params)
    return _plan_present(inst, before, after), after


def _plan_present(inst, before, after):
    plan = ChangePlan()
    created = not before["exists"]
    if created:
        plan.mkdir(inst.path(), inst.create, inst.remove)
    old = before if not created else {}

    def setting(key, filename, text, apply, restore):
        if created or before.get(key) != after.get(key):
            plan.write(inst.path(filename), text, apply, None if created else restore)

    if after.get("buffer_size_kb") is not None:
        setting("buffer_size_kb", "buffer_size_kb", str(after["buffer_size_kb"]),
                lambda: inst.set_buffer_size_kb(after["buffer_size_kb"]),
                lambda: inst.set_buffer_size_kb(old["buffer_size_kb"]))
    if after.get("clock") is not None:
        setting("clock", "trace_clock", after["clock"],
                lambda: inst.set_clock(after["clock"]), lambda: inst.set_clock(old["clock"]))
    for name, value in sorted((after.get("options") or {}).items()):
        if created or (before.get("options") or {}).get(name) != value:
            plan.write(inst.path("options", name), "1" if value else "0",
                       (lambda n=name, v=value: inst.set_option(n, v)),
                       None if created else (lambda n=name, v=value: inst.set_option(n, not v)))
    if after.get("event_pids") is not None and (not created or after["event_pids"]):
        setting("event_pids", "set_event_pid", " ".join(str(p) for p in after["event_pids"]),
                lambda: inst.set_event_pids(after["event_pids"]),
                lambda: inst.set_event_pids(old["event_pids"]))
    # tracing_on last: the buffer starts recording only once it is fully set up.
    if after.get("tracing_on") is not None:
        setting("tracing_on", "tracing_on", "1" if after["tracing_on"] else "0",
                lambda: inst.set_tracing_on(after["tracing_on"]),
                lambda: inst.set_tracing_on(old["tracing_on"]))
    return plan


# -- event -------------------------------------------------------------------------
FRESH_EVENT = {"enabled": False, "filter": "", "triggers": []}


def event_state(event):
    return {"enabled": event.enabled, "filter": event.filter, "triggers": event.triggers()}


def check_triggers(fs, triggers):
    input_limits.check_items(triggers, "triggers")  # before the per-trigger checks
    normalized = []
    for text in triggers:
        trigger = normalize_trigger(validate.expression(text, "trigger"))
        if not trigger:
            raise validate.ValidationError("an empty trigger was given; remove it from the list")
        if trigger.startswith("hist") and not fs.features()["hist_triggers"]:
            raise validate.ValidationError(
                "trigger %r needs hist triggers, which this kernel does not have (CONFIG_HIST_TRIGGERS); "
                "use sched_latency or a capture to build histograms in user space instead" % text)
        if trigger.partition(" if ")[0].split(":")[0] == "snapshot" and not fs.features()["snapshot"]:
            raise validate.ValidationError(
                "trigger %r needs the snapshot buffer, which this kernel does not have (CONFIG_TRACER_SNAPSHOT)" % text)
        normalized.append(trigger)
    keys = [trigger_key(t) for t in normalized]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise validate.ValidationError(
            "the kernel keeps one trigger per command and target; %s given more than once: %s"
            % ("this one is" if len(duplicates) == 1 else "these are", ", ".join(duplicates)))
    return normalized


def plan_event(event, before, params, wanted_triggers):
    """Writes needed to go from ``before`` to what params ask, in the order of the module docstring."""
    plan = ChangePlan()
    path = event.instance.path(*event.rel())
    after = dict(before)

    def write_filter(text):
        return lambda: event.set_filter(text)

    def add_trigger(text):
        return lambda: event.add_trigger(text)

    def remove_trigger(text):
        return lambda: event.remove_trigger(text)

    if params["state"] == "absent":
        for trigger in before["triggers"]:
            plan.write(path + "/trigger", "!" + trigger_key(trigger), remove_trigger(trigger), add_trigger(trigger), append=True)
        if before["filter"]:
            plan.write(path + "/filter", "0", write_filter(""), write_filter(before["filter"]))
        if before["enabled"]:
            plan.write(path + "/enable", "0", lambda: event.set_enabled(False), lambda: event.set_enabled(True))
        return plan, {"enabled": False, "filter": "", "triggers": []}

    if params["filter"] is not None:
        wanted_filter = validate.expression(params["filter"], "filter")
        if wanted_filter != before["filter"]:
            plan.write(path + "/filter", wanted_filter or "0", write_filter(wanted_filter), write_filter(before["filter"]))
        after["filter"] = wanted_filter
    if wanted_triggers is not None:
        for trigger in before["triggers"]:
            if trigger not in wanted_triggers:
                plan.write(path + "/trigger", "!" + trigger_key(trigger), remove_trigger(trigger), add_trigger(trigger), append=True)
        for trigger in wanted_triggers:
            if trigger not in before["triggers"]:
                plan.write(path + "/trigger", trigger, add_trigger(trigger), remove_trigger(trigger), append=True)
        after["triggers"] = list(wanted_triggers)
    if params["enabled"] is not None and params["enabled"] != before["enabled"]:
        plan.write(path + "/enable", "1" if params["enabled"] else "0",
                   lambda: event.set_enabled(params["enabled"]), lambda: event.set_enabled(before["enabled"]))
        after["enabled"] = params["enabled"]
    return plan, after
