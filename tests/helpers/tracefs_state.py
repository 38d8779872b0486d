"""tracefs state snapshot and diff: what a test run may have changed (test-only code)."""

import os

from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.error_log import _read

_GLOBAL_FILES = ("tracing_on", "current_tracer", "trace_clock", "set_event", "set_event_pid",
                 "buffer_size_kb", "tracing_cpumask", "set_ftrace_pid")


def _instance_state(inst):
    state = {}
    for name in _GLOBAL_FILES:
        path = inst.path(name)
        if os.path.exists(path):
            try:
                state[name] = _read(path).strip()
            except (IOError, OSError):
                pass
    try:
        state["options"] = sorted(n for n in os.listdir(inst.path("options"))
                                  if _read(inst.path("options", n)).strip() == "1")
    except OSError:
        state["options"] = []
    events = {}
    for event in inst.configured_events():
        events[event.spec] = {"enabled": event.enabled, "filter": event.filter, "triggers": event.triggers()}
    state["events"] = events
    return state


def snapshot(tracefs):
    """The tracing state this collection may touch, to compare before/after."""
    state = {
        "top": _instance_state(tracefs.instance(None)),
        "instances": {},
        "uprobe_events": [u.line() for u in tracefs.list_uprobes()],
    }
    for name in tracefs.list_instances():
        inst = tracefs.instance(name)
        try:
            state["instances"][name] = _instance_state(inst)
        except (IOError, OSError):
            continue  # removed while we looked: not ours to report

    return state


def diff_snapshots(before, after, only=None):
    """Human-readable differences between two snapshots.

    ``only``: optional predicate on a name (instance, uprobe line, event spec)
    to restrict the comparison of instances and uprobes, e.g. to one test run.
    """
    keep = only or (lambda _name: True)
    differences = []
    for key in sorted(set(before["top"]) | set(after["top"])):
        if key == "events":
            continue
        if before["top"].get(key) != after["top"].get(key):
            differences.append("top-level %s: %r -> %r" % (key, before["top"].get(key), after["top"].get(key)))
    b_events, a_events = before["top"]["events"], after["top"]["events"]
    for spec in sorted(set(b_events) | set(a_events)):
        if b_events.get(spec) != a_events.get(spec) and (only is None or keep(spec)):
            differences.append("top-level event %s: %r -> %r" % (spec, b_events.get(spec), a_events.get(spec)))
    for name in sorted(set(before["instances"]) | set(after["instances"])):
        if not keep(name):
            continue
        if name not in before["instances"]:
            differences.append("instance %s was left behind" % name)
        elif name not in after["instances"]:
            differences.append("instance %s disappeared" % name)
        elif before["instances"][name] != after["instances"][name]:
            differences.append("instance %s changed" % name)
    b_probes = set(p for p in before["uprobe_events"] if keep(p))
    a_probes = set(p for p in after["uprobe_events"] if keep(p))
    for line in sorted(a_probes - b_probes):
        differences.append("uprobe left behind: %s" % line)
    for line in sorted(b_probes - a_probes):
        differences.append("uprobe removed: %s" % line)
    return differences

