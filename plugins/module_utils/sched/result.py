# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The analysis as plain data: the result document's sched part, and how much of the window it covers.

Nothing here imports Ansible (Python 3.8+).
"""


import collections

from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched.watch import comm_text

# Why a wait was not measured (keys of ``unmeasured_by_reason``).
REWOKEN = "woken_again"              # woken again before any switch-in: it ran unseen in between
RAN_UNTRACED = "ran_without_switch_in"  # seen running (its own event) with no switch-in recorded
MIGRATED = "migrated_while_waiting"  # moved to another run queue after it was enqueued
CPU_MISMATCH = "switched_in_elsewhere"  # switched in on a CPU it was not queued on
IDLE_CPU = "cpu_went_idle"           # its CPU went idle while it was queued there
LOST = "events_lost"                 # events were lost while it waited
CLOCK_ORDER = "clock_order"          # switched in before it was woken, beyond the clock tolerance
UNMEASURED_REASONS = (REWOKEN, RAN_UNTRACED, MIGRATED, CPU_MISMATCH, IDLE_CPU, LOST, CLOCK_ORDER)


def ran_meanwhile(history, since, until):
    """Who held the CPU during [since, until], longest first (bounded history)."""
    spans = collections.Counter()
    names = {}
    entries = list(history)
    covered = bool(entries) and entries[0][0] <= since
    for index, (start, pid, comm) in enumerate(entries):
        end = entries[index + 1][0] if index + 1 < len(entries) else until
        low, high = max(start, since), min(end, until)
        if high > low:
            spans[pid] += high - low
            names[pid] = comm
    ran = [{"pid": pid, "comm": comm_text(names[pid]), "us": round(ns / 1000.0, 3)}
           for pid, ns in spans.most_common(5)]
    return {"tasks": ran, "complete": covered}


def coverage_of(analyzer):
    """How much of the window the latency numbers cover: measured vs unmeasured waits."""
    measured = analyzer.waits.series["all"].count
    unmeasured = analyzer.unmeasured_waits
    total = measured + unmeasured
    return {"measured": measured, "unmeasured": unmeasured,
            "unmeasured_by_reason": {r: analyzer.unmeasured.get(r, 0) for r in UNMEASURED_REASONS},
            "measured_fraction": round(measured / float(total), 4) if total else None}


def analysis_result(analyzer, symbols=None, facts_by_pid=None):
    """The analysis as plain data (JSON-ready), times in us / ms."""
    facts_by_pid = facts_by_pid or {}

    def symbolize(stack):
        if not stack:
            return []
        if symbols is None:
            return ["0x%x" % a for a in stack]
        return [symbols.name(a) for a in stack]

    worst = []
    for record in analyzer.worst.records():
        worst.append({"latency_us": round(record["latency_ns"] / 1000.0, 3), "pid": record["pid"],
                      "comm": comm_text(record["comm"]), "cpu": record["cpu"], "kind": record["kind"],
                      "since_ns": record["since_ns"], "until_ns": record["until_ns"],
                      "ran_meanwhile": record["ran_meanwhile"]["tasks"],
                      "ran_meanwhile_complete": record["ran_meanwhile"]["complete"]})
    longest = []
    watched = analyzer.watched
    for entry in watched.longest_d.records():
        longest.append({"duration_ms": round(entry["duration_ns"] / 1e6, 3), "pid": entry["pid"],
                        "comm": comm_text(entry["comm"]), "state": "D",
                        "blocked_ms": round(entry["blocked_ns"] / 1e6, 3),
                        "since_ns": entry["since_ns"], "until_ns": entry["until_ns"],
                        "ongoing": entry["ongoing"], "kernel_stack": symbolize(entry["stack"])})
    tasks = []
    for pid in sorted(watched.tasks):
        task = watched.tasks[pid]
        item = {"pid": pid, "comm": comm_text(task["comm"]),
                "runqueue": task["runqueue"].summary("us"),
                "worst_waits": [{"latency_us": round(r["latency_ns"] / 1000.0, 3), "cpu": r["cpu"],
                                 "kind": r["kind"], "since_ns": r["since_ns"], "until_ns": r["until_ns"]}
                                for r in task["worst"].records()],
                "offcpu": {"S": task["S"].summary("ms"), "D": task["D"].summary("ms")}}
        item.update(facts_by_pid.get(pid, {}))
        tasks.append(item)
    coverage = coverage_of(analyzer)
    return {
        "latency": {name: series.summary("us") for name, series in analyzer.waits.series.items()},
        "per_cpu": {str(cpu): series.summary("us") for cpu, series in sorted(analyzer.waits.per_cpu.items())},
        "tasks": tasks,
        "tasks_not_tracked": watched.tasks_dropped,
        "worst_waits": worst,
        "longest_d": longest,
        "clock_underflows": analyzer.clock_underflows,
        "inferred_switch_ins": analyzer.inferred_switch_ins,
        "woken_while_running": analyzer.woken_while_running,
        "unmeasured_waits": coverage["unmeasured"],
        "unmeasured_by_reason": coverage["unmeasured_by_reason"],
        "coverage": coverage,
        "event_counts": analyzer.event_counts(),
        "first_ns": analyzer.first_ts,
        "last_ns": analyzer.last_ts,
    }
