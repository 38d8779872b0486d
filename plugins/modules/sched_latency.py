#!/usr/bin/python
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r"""
---
module: sched_latency
short_description: Measure scheduling latency and D-state stalls of a host for a time window
version_added: 0.1.0
description:
  - Traces C(sched_wakeup), C(sched_wakeup_new), C(sched_switch) and C(sched_migrate_task) for O(duration)
    seconds in a private tracefs instance and computes, on the node, run-queue latency (woken -> on CPU,
    preempted -> back on CPU) as log2 histograms and percentiles (p50, p90, p99, p99.9, max) per host,
    per CPU and per watched task, the worst waits with what ran on that CPU meanwhile, and off-CPU
    intervals of watched tasks split by state (S, D) with the kernel stacks of the longest D intervals.
  - Only waits the trace proves are measured; the others are counted in C(sched_latency.unmeasured_by_reason)
    with their reason (docs/sched-audit.md).
  - During the window the binary pages of C(per_cpu/cpuN/trace_pipe_raw) are only copied, into unlinked
    temporary files; they are decoded after it. Events the kernel dropped are counted and reported in
    C(sched_latency.events.lost), never hidden.
  - The instance is removed at the end, also on failure or interruption. When the connection the result
    goes back on is closed during the window (the ssh session dropped, the play was killed), the window
    ends at once and nothing is analysed. Nothing persistent changes, so the module always reports
    C(changed=false).
author: fleettrace developers (@fleettrace)
attributes:
  check_mode:
    support: full
    description: Reports the tracefs writes it would make and the host facts; traces nothing.
  diff_mode:
    support: none
    description: Nothing persistent changes, so there is no diff.
options:
  duration:
    description: Length of the tracing window in seconds.
    type: float
    default: 10
  watch_pids:
    description: Process ids to follow closely (all their threads); per-task latency, off-CPU intervals, D-state stacks.
    type: list
    elements: int
    default: []
  watch_comms:
    description: Exact task names (C(comm), at most 15 characters) to follow closely.
    type: list
    elements: str
    default: []
  watch_comm_regex:
    description: Python regular expressions searched in task names to follow closely.
    type: list
    elements: str
    default: []
  instance:
    description:
      - Name of the private tracefs instance. Must not exist yet.
      - Default C(fleettrace_sched_<instance_label>_<pid>).
    type: str
  instance_label:
    description: Label put into the default instance name, e.g. the inventory host name (sanitized).
    type: str
  buffer_size_kb:
    description: Per-CPU ring buffer size of the instance in KiB; a larger buffer rides out longer reader stalls.
    type: int
    default: 4096
  stack_traces:
    description: Record the kernel stack when a watched task switches out in D state (stacktrace trigger).
    type: bool
    default: true
  worst_count:
    description: How many worst waits and longest D intervals to keep.
    type: int
    default: 10
  exact_samples:
    description: Samples kept per host series before percentiles below the exact tail fall back to a
      log-linear histogram (relative error at most 0.39%); see docs/sched-audit.md.
    type: int
    default: 100000
  collector_nice:
    description: Nice value of the page copier during the window, so a saturated host does not starve it.
    type: int
    default: -10
  spool_dir:
    description:
      - Directory for the raw pages copied during the window (unlinked temporary files, decoded after it).
      - About 4 KiB per 60 scheduler events; default the system temporary directory.
    type: path
  max_spool_mb:
    description: The window ends early (C(window.ended_early)) once this many MiB of pages were copied.
    type: int
    default: 2048
notes:
  - Needs root and tracefs with instances. Uses the C(mono) trace clock when available.
  - The longest D intervals of watched tasks still blocked at the end of the window are reported with C(ongoing=true).
seealso:
  - name: Scheduling latency audit
    description: docs/sched-audit.md in this collection (result schema, percentile method).
    link: https://example.invalid/fleettrace/tracefs/docs/sched-audit.md
"""

EXAMPLES = r"""
- name: Measure run-queue latency for 30 s and follow corosync closely
  fleettrace.tracefs.sched_latency:
    duration: 30
    watch_comms: [corosync]
  become: true
  register: latency

- name: Show the host p99
  ansible.builtin.debug:
    msg: "p99 {{ latency.sched_latency.latency.all.p99_us }} us, lost {{ latency.sched_latency.events.lost }}"
"""

RETURN = r"""
sched_latency:
  description:
    - Per-host result document (C(kind=sched_latency)), the input of the report role.
    - Times are in microseconds (C(_us)) or milliseconds (C(_ms)) as the key says.
  returned: success, not in check mode
  type: dict
  contains:
    kind:
      description: Always C(sched_latency).
      type: str
    latency:
      description: Series C(all), C(wakeup), C(preempt), each with count, p50_us, p90_us, p99_us,
        p99_9_us, max_us, mean_us, exact and histogram_log2_us.
      type: dict
    per_cpu:
      description: One series per CPU number (string keys).
      type: dict
    tasks:
      description: Watched tasks with runqueue series, offcpu S/D series (ms), policy, rtprio, nice.
      type: list
      elements: dict
    worst_waits:
      description: Longest waits with C(ran_meanwhile), the tasks that held that CPU.
      type: list
      elements: dict
    longest_d:
      description: Longest D-state intervals of watched tasks with C(kernel_stack).
      type: list
      elements: dict
    events:
      description: processed, lost, lost_by_cpu, complete.
      type: dict
    unmeasured_waits:
      description: Waits not measured because the trace does not prove them (see C(unmeasured_by_reason)).
      type: int
    unmeasured_by_reason:
      description: Unmeasured waits by reason (woken_again, ran_without_switch_in, migrated_while_waiting,
        switched_in_elsewhere, cpu_went_idle, events_lost, clock_order).
      type: dict
    coverage:
      description: measured, unmeasured, unmeasured_by_reason and measured_fraction of the window's waits.
      type: dict
    facts:
      description: cpu_count, kernel, sched_rt_runtime_us, tracing_features.
      type: dict
plan:
  description: The tracefs writes the window makes, as shell commands.
  returned: always
  type: list
  elements: str
facts:
  description: Host facts (also inside RV(sched_latency)).
  returned: always
  type: dict
msg:
  description: One-line summary.
  returned: always
  type: str
"""

import os
import re
import signal

from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError, OptionError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.module_runner import run_module
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched import analysis as sched_analysis
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched import collector as sched_collector
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched import facts as sched_facts
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import lifecycle
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import owner as run_owner
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import validate
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import Tracefs
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.validate import instance_name


def _terminate(signum, _frame):
    # Turn SIGTERM (async timeout, Ctrl-C of the controller) into an exception so cleanup runs.
    raise SystemExit("interrupted by signal %d" % signum)


def _controller_gone():
    # The pipe or socket this module answers on lost its reader (ssh session dropped, play killed):
    # tracing on would cost the node for a result nobody receives.
    if run_owner.answer_unread():
        return "the controller is gone (the connection the result goes back on was closed)"
    return None


def body(module, result):
    params = module.params
    if not params["duration"] > 0 or params["duration"] > 86400:  # also refuses nan
        raise OptionError("duration=%s is out of range: give the window length in seconds, 0 < duration <= 86400"
                          % params["duration"])
    if params["buffer_size_kb"] < 64:
        raise OptionError("buffer_size_kb=%d is too small: give at least 64 (KiB per CPU)" % params["buffer_size_kb"])
    validate.buffer_size_kb(params["buffer_size_kb"])
    if params["max_spool_mb"] < 1:
        raise OptionError("max_spool_mb=%d is too small: give at least 1 (MiB)" % params["max_spool_mb"])
    if params["spool_dir"] and not os.path.isdir(params["spool_dir"]):
        raise OptionError("spool_dir %s is not a directory: give an existing directory with free space"
                          % params["spool_dir"])
    if params["worst_count"] < 1 or params["exact_samples"] < 1000:
        raise OptionError("worst_count must be >= 1 and exact_samples >= 1000 (got %d and %d)"
                          % (params["worst_count"], params["exact_samples"]))
    for regex in params["watch_comm_regex"]:
        try:
            re.compile(regex)
        except re.error as exc:
            raise OptionError("watch_comm_regex %r is not a valid regular expression: %s" % (regex, exc))
    name = params["instance"] or sched_collector.default_instance_name(params["instance_label"])
    try:
        instance_name(name)
    except FleettraceError as exc:
        raise exc.reworded("instance: %s" % exc.message)

    tracefs = Tracefs(check_mode=module.check_mode)
    facts = sched_facts.host_facts(tracefs)

    watched = sched_facts.resolve_watched(params["watch_pids"], params["watch_comms"], params["watch_comm_regex"])
    missing = sorted(set(params["watch_pids"]) - set(watched))
    if missing:
        result["facts"] = facts
        raise OptionError("watch_pids %s: no such process on this host; list running pids with "
                          "'pgrep' or watch by name with watch_comms" % ", ".join(str(p) for p in missing))
    # What the window writes, for check mode and for the record (building it touches nothing).
    planner = sched_collector.SchedCollector(tracefs, name, sched_analysis.SchedAnalyzer(), params["buffer_size_kb"],
                                             stack_pids=watched if params["stack_traces"] else ())
    plan = planner.plan_commands()
    if module.check_mode:
        return dict(changed=False, plan=plan, facts=facts, watched_pids=watched,
                    msg="would trace %s for %s s in instance %s (check mode: nothing traced)"
                        % (", ".join(planner.events), params["duration"], name))

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        # Owned by this process: if an async timeout kills it, its reaper removes the instance.
        with lifecycle.module_run(tracefs, name, params["duration"], instances=[name]):
            collected = sched_collector.collect(
                tracefs, params["duration"], instance_name=name, watch_pids=params["watch_pids"],
                watch_comms=params["watch_comms"], watch_comm_regex=params["watch_comm_regex"],
                buffer_size_kb=params["buffer_size_kb"], stack_traces=params["stack_traces"],
                worst_count=params["worst_count"], exact_samples=params["exact_samples"],
                collector_nice=params["collector_nice"], spool_dir=params["spool_dir"],
                max_spool_mb=params["max_spool_mb"], abandon_when=_controller_gone)
    except sched_collector.WindowAbandoned as exc:
        # Nobody reads this any more; said for the node's logs and a controller that may still listen.
        raise exc.reworded("scheduling latency window in instance %s abandoned: %s" % (name, exc.message))
    except FleettraceError as exc:
        result["facts"] = facts
        raise exc.reworded("scheduling latency window in instance %s failed: %s" % (name, exc.message))
    finally:
        signal.signal(signal.SIGTERM, previous)
    overall = collected["latency"]["all"]
    msg = "%d events in %.1f s, %d lost; run-queue latency p99 %s us, max %s us over %d waits (%d unmeasured)" % (
        collected["events"]["processed"], collected["window"]["duration_s"], collected["events"]["lost"],
        overall["p99_us"], overall["max_us"], overall["count"], collected["unmeasured_waits"])
    if collected["longest_d"]:
        msg += "; longest D-state stall of a watched task %s ms" % collected["longest_d"][0]["duration_ms"]
    return dict(changed=False, sched_latency=collected, plan=plan, facts=facts, msg=msg)


def main():
    run_module(
        dict(
            duration=dict(type="float", default=10),
            watch_pids=dict(type="list", elements="int", default=[]),
            watch_comms=dict(type="list", elements="str", default=[]),
            watch_comm_regex=dict(type="list", elements="str", default=[]),
            instance=dict(type="str"),
            instance_label=dict(type="str"),
            buffer_size_kb=dict(type="int", default=4096),
            stack_traces=dict(type="bool", default=True),
            worst_count=dict(type="int", default=10),
            exact_samples=dict(type="int", default=100000),
            collector_nice=dict(type="int", default=-10),
            spool_dir=dict(type="path"),
            max_spool_mb=dict(type="int", default=2048),
        ),
        body, mutually_exclusive=[("instance", "instance_label")], supports_check_mode=True)


if __name__ == "__main__":
    main()
