# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The per-CPU side of a trace buffer: online CPUs, ``per_cpu/cpuN/stats``, lost events.

One place for what capture and the scheduling audit both need.  A CPU's
``stats`` counts three kinds of events that never reached a reader:

* ``overrun``: overwritten by the writer before they were read;
* ``commit overrun``: not stored because the writer lapped its own commit
  (nested events on a page too small for them);
* ``dropped events``: refused because the buffer was full (overwrite off).

All three are lost events.
"""


import os
import re

# stats keys, spelled with underscores (the file uses spaces).
LOST_KEYS = ("overrun", "commit_overrun", "dropped_events")
_CPU_DIR = re.compile(r"^cpu(\d+)$")


def online_cpus(root):
    """CPU numbers that have a ``per_cpu/cpuN`` directory under ``root`` (tracefs or an instance)."""
    try:
        names = os.listdir(os.path.join(root, "per_cpu"))
    except OSError:
        return []
    return sorted(int(m.group(1)) for m in (_CPU_DIR.match(n) for n in names) if m)


def parse_stats(text):
    """``stats`` text -> {'entries': 220, 'overrun': 0, 'commit_overrun': 0, 'dropped_events': 0, ...}.

    Integer lines only (the time stamps lines are left out); keys with underscores.
    """
    stats = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        value = value.strip()
        if sep and value.isdigit():
            stats[key.strip().replace(" ", "_")] = int(value)
    return stats


def cpu_stats(root, cpu):
    """One CPU's ``stats`` under ``root``; {} when it cannot be read."""
    try:
        with open(os.path.join(root, "per_cpu", "cpu%d" % cpu, "stats")) as handle:
            return parse_stats(handle.read())
    except OSError:
        return {}


def all_stats(root):
    """{cpu: stats} of every online CPU under ``root``."""
    return {cpu: cpu_stats(root, cpu) for cpu in online_cpus(root)}


def _get(stats, key):
    # Accept the file's spelling too ("dropped events"), as other parsers keep it.
    return stats.get(key, stats.get(key.replace("_", " "), 0))


def lost_in(stats):
    """Events one CPU's stats say were lost (overrun + commit overrun + dropped)."""
    return sum(_get(stats, key) for key in LOST_KEYS)


def lost_between(before, after):
    """Per CPU, what was lost between two ``all_stats`` snapshots (CPUs that lost something).

    {cpu: {"overrun", "dropped", "entries"}}: ``dropped`` counts both the
    events refused with the buffer full and the commit overruns (both were
    never stored); ``commit_overrun`` is given too when there were any.
    """
    lost = {}
    for cpu, now in after.items():
        then = before.get(cpu, {})
        counts = {key: max(0, _get(now, key) - _get(then, key)) for key in LOST_KEYS}
        if any(counts.values()):
            item = {"overrun": counts["overrun"], "dropped": counts["dropped_events"] + counts["commit_overrun"],
                    "entries": _get(now, "entries")}
            if counts["commit_overrun"]:
                item["commit_overrun"] = counts["commit_overrun"]
            lost[cpu] = item
    return lost


def oldest_event_ns(stats_text):
    """The ``oldest event ts`` of a ``stats`` text in ns (the instance's trace clock), or None."""
    for line in stats_text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "oldest event ts":
            seconds, _dot, fraction = value.strip().partition(".")
            if seconds.isdigit():
                return int(seconds) * 1000000000 + int((fraction + "000000000")[:9] or 0)
    return None


def complete_since_ns(root, before):
    """The time from which the buffer under ``root`` holds every event of every CPU, or None (all of it).

    Each CPU's buffer overwrites on its own: a busy CPU's oldest events are gone while a quiet
    CPU still holds older ones, so before the latest oldest event among the CPUs that overwrote
    something since ``before`` (an ``all_stats``), the merged trace misses events (a switch-in
    seen on one CPU without the switch-out another CPU lost).
    """
    since = None
    for cpu in online_cpus(root):
        try:
            with open(os.path.join(root, "per_cpu", "cpu%d" % cpu, "stats")) as handle:
                text = handle.read()
        except OSError:
            continue
        overrun = _get(parse_stats(text), "overrun") - _get(before.get(cpu, {}), "overrun")
        oldest = oldest_event_ns(text)
        if overrun > 0 and oldest:
            since = oldest if since is None else max(since, oldest)
    return since
