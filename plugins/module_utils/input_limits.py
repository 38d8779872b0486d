# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How big an input may be, checked before any work is done with it.

10^6 event pids took 90-220 s to refuse, with a message of several megabytes
(every missing pid listed, and every pid echoed back); a 100 MB filter took
105 s and 624 MB; 10^5 triggers got no answer in 180 s (a duplicate check
quadratic in their number).  Each input now has a cap, checked first, and a
refusal says what was too big, by how much, and never repeats the input:

- the kernel's own limits: a filter or trigger is one write, refused from a
  page on (``KERNEL_WRITE_MAX``);
- what a diagnosis needs: the pids of a few processes and their threads
  (``MAX_PIDS``), a few triggers per event (``MAX_TRIGGERS``);
- for every other option, generous bounds (``MAX_ITEMS`` list items,
  ``MAX_TEXT`` characters per string, ``MAX_VALUE_BYTES`` of JSON per value).

``oversized(args, caps)`` names the first option over its cap: each module's
action plugin asks it on the controller before the arguments are shipped
(plugin_utils/sized_action.py), the module runner again on the node before
Ansible parses and validates them, and ``trimmed`` cuts them down so that the
refusal's echo is short.
The core's own checks (``validate``, ``plans``) use the same caps.
"""


import json
import os

from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import OptionError

try:
    PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
except (ValueError, OSError, AttributeError):
    PAGE_SIZE = 4096
# event_filter_write and event_trigger_regex_write refuse a write of PAGE_SIZE bytes or more (EINVAL).
KERNEL_WRITE_MAX = PAGE_SIZE - 1
MAX_PIDS = 8192
MAX_TRIGGERS = 64
MAX_ITEMS = 4096
MAX_TEXT = 65536
MAX_VALUE_BYTES = 1 << 20
# How much of a refused value a message shows.
PREVIEW = 60


class Cap:
    """At most ``items`` list items, ``length`` characters per string (or per item), with why."""

    def __init__(self, items=MAX_ITEMS, length=MAX_TEXT, why=None):
        self.items, self.length, self.why = items, length, why


NO_CAP = Cap(items=None, length=None)
CAPS = {
    "event_pids": Cap(MAX_PIDS, why="the pids of the processes to trace and their threads"),
    "watch_pids": Cap(MAX_PIDS, why="the pids of the processes to watch"),
    "filter": Cap(length=KERNEL_WRITE_MAX, why="the kernel refuses a filter of a page or more"),
    "triggers": Cap(MAX_TRIGGERS, KERNEL_WRITE_MAX, why="a few triggers per event; the kernel refuses one of a "
                                                        "page or more"),
    "definition": Cap(256, KERNEL_WRITE_MAX, why="uprobe_events takes one line of at most a page per write"),
    "spec": Cap(length=KERNEL_WRITE_MAX, why="a probe point and its arguments"),
}


# Modules that take data in bulk by design (module name -> caps over CAPS).
MODULE_CAPS = {
    # Every host's result inline: a fleet's worth of data.
    "latency_report": {"results": NO_CAP, "result_paths": Cap(items=100000), "hosts": Cap(items=100000)},
    # Results other modules returned, taken whole (their own caps bounded them).
    "capture_result": {name: NO_CAP for name in ("result", "target", "after", "probe", "capture", "latency",
                                                 "failed_result", "picked")},
}


def preview(value):
    """A value as a message may show it: short, with its size when cut."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) <= PREVIEW:
        return repr(text) if isinstance(value, str) else text
    return "%r... (%d characters)" % (text[:PREVIEW], len(text))


def _refusal(name, what, size, cap, unit):
    why = " (%s)" % cap.why if cap.why else ""
    return ("%s %s %d %s; at most %d are accepted%s. Nothing was changed."
            % (name, what, size, unit, cap.items if unit == "items" else cap.length, why))


def _json_size(value):
    try:
        return len(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return 0


def _check(name, value, cap):
    if cap is NO_CAP:
        return None
    if isinstance(value, str):
        if cap.length is not None and len(value) > cap.length:
            return _refusal(name, "is", len(value), cap, "characters long")
        return None
    if isinstance(value, list):
        if cap.items is not None and len(value) > cap.items:
            return _refusal(name, "has", len(value), cap, "items")
        for index, item in enumerate(value):
            if isinstance(item, str) and cap.length is not None and len(item) > cap.length:
                return _refusal("%s[%d]" % (name, index), "is", len(item), cap, "characters long")
    if isinstance(value, (list, dict)) and _json_size(value) > MAX_VALUE_BYTES:
        return ("%s is %d bytes of data; at most %d are accepted. Nothing was changed."
                % (name, _json_size(value), MAX_VALUE_BYTES))
    return None


def oversized(args, caps=None, prefix=""):
    """The refusal for the first option of ``args`` over its cap, or None.

    ``caps``: option name -> ``Cap`` (or ``NO_CAP``), over ``CAPS`` and the
    defaults; suboptions (a dict) are checked by their own names.  Ansible's
    internal ``_ansible_*`` keys are not options.
    """
    merged = dict(CAPS, **(caps or {}))
    for name, value in sorted((args or {}).items()):
        if name.startswith("_ansible_"):
            continue
        cap = merged.get(name, Cap())
        if isinstance(value, dict) and cap is not NO_CAP:
            problem = oversized(value, caps, prefix + name + ".")  # the suboption by its name first
            if problem:
                return problem
        problem = _check(prefix + name, value, cap)
        if problem:
            return problem
    return None


def trimmed(args, caps=None):
    """``args`` with every value cut to fit its cap (lists to a few items, strings truncated), types kept."""
    merged = dict(CAPS, **(caps or {}))
    cut = {}
    for name, value in args.items():
        cap = merged.get(name, Cap())
        if name.startswith("_ansible_") or cap is NO_CAP:
            cut[name] = value
        elif isinstance(value, str):
            cut[name] = value[:cap.length or MAX_TEXT]
        elif isinstance(value, list):
            cut[name] = [v[:cap.length or MAX_TEXT] if isinstance(v, str) else v
                         for v in value[:min(cap.items or MAX_ITEMS, 8)]]
        elif isinstance(value, dict):
            cut[name] = trimmed(value, caps)
        else:
            cut[name] = value
    return cut


def check_items(values, name):
    """Refuse a list option over its cap (``OptionError``) before any per-item work."""
    problem = _check(name, list(values or []), CAPS.get(name, Cap()))
    if problem:
        raise OptionError(problem)
    return values
