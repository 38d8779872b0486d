#!/usr/bin/python
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r"""
---
module: capture
short_description: Arm a tracefs instance, wait for its threshold trigger, return the parsed events
version_added: 0.1.0
description:
  - Works on an instance that is already set up (M(fleettrace.tracefs.instance),
    M(fleettrace.tracefs.event), M(fleettrace.tracefs.uprobe)). Its events, filters and triggers are
    not changed.
  - "O(mode=trigger): turns tracing off, clears the buffer, turns tracing on and waits until a
    C(traceoff) trigger has fired (C(tracing_on) reads 0), O(stop_after_events) events arrived, the
    watched O(pid) exited, or O(timeout) passed. Then reads C(trace) and parses it."
  - "O(mode=window): streams C(trace_pipe) for O(duration) seconds (no trigger wanted)."
  - Events come back as records with timestamp, cpu, pid, comm, event name and typed fields
    (C(gap=20329583) as an integer, C(prev_state) as a letter), with C(<stack trace>) and
    C(<user stack trace>) blocks attached to the event they belong to. User stacks are symbolized
    through C(/proc/PID/maps) and the ELF symbol tables while the process still lives.
  - Lost events are never hidden. RV(lost_events) counts what the buffer overwrote or dropped
    (C(per_cpu/cpuN/stats), the C(entries-in-buffer/entries-written) header, C([LOST N EVENTS]) markers),
    and RV(suggested_buffer_size_kb) names a buffer size that would have held them.
  - Tracing is B(off) in the instance when the module returns, whatever happened; capture turned it on.
  - A timeout without the trigger is not an error; RV(threshold_reached) is false and RV(message) says so.
  - With O(findings), stalls are correlated (see RV(findings)) on the node, where the process's fds can
    still be resolved.
author:
  - fleettrace developers (@fleettrace)
options:
  instance:
    description: Name of the tracefs instance (directory under C(instances/)) to capture from.
    type: str
    required: true
  mode:
    description:
      - C(trigger) waits for a C(traceoff) trigger (or O(stop_after_events) or O(timeout)) and reads C(trace).
      - C(window) streams C(trace_pipe) for O(duration) seconds.
    type: str
    choices: [trigger, window]
    default: trigger
  timeout:
    description:
      - Seconds to wait for the trigger in O(mode=trigger).
      - For waits longer than the connection allows, run the task with C(async) and C(poll).
    type: float
    default: 60
  duration:
    description: Seconds to stream C(trace_pipe) in O(mode=window).
    type: float
  poll_interval:
    description: Seconds between two looks at C(tracing_on) while waiting.
    type: float
    default: 0.1
  stop_after_events:
    description:
      - Stop once this many events are in the buffer (O(stop_event) events only, when given).
    type: int
  stop_event:
    description:
      - Event name (C(tick_gap) or C(group:tick_gap)) that O(stop_after_events) counts.
    type: str
  clear:
    description: Clear the buffer before arming. With C(false) the events already there are returned too.
    type: bool
    default: true
  pid:
    description:
      - The process being watched. When it exits, the wait ends and what was captured is returned with
        RV(process_exited) true. If it is not running at the start, nothing is armed.
      - User stacks of this process are symbolized.
    type: int
  max_events:
    description:
      - Return at most this many events to the controller (the last ones, closest to the trigger).
        RV(event_count) still counts all of them; O(json_path) gets all of them. C(0) returns none.
    type: int
    default: 1000
  raw_path:
    description: Write the raw C(trace) text to this file on the node (for C(ansible.builtin.fetch)).
    type: path
  json_path:
    description: Write the whole result, all events included, as JSON to this file on the node.
    type: path
  symbolize:
    description: Symbolize C(<user stack trace>) frames through C(/proc/PID/maps) and ELF symbols.
    type: bool
    default: true
  findings:
    description:
      - Correlate stalls on a C(traceoff) trigger the events already carry (O(stop) installs its own and
        replaces this). The threshold goes through the same stop condition as O(stop).
      - For each O(findings.probe_event) hit with O(findings.field) >= O(findings.threshold),
        find the preceding switch-out of the same task in state D, its kernel stack, the system call in flight
        and the file behind its fd. Needs C(sched:sched_switch) (with a C(stacktrace) trigger for the stack)
        and C(raw_syscalls:sys_enter) or C(syscalls:sys_enter_*) enabled in the instance.
    type: dict
    suboptions:
      probe_event:
        description: "Event of the probe, C(group:event) (C(probe_corosync:timer_function_scheduler_timeout))."
        type: str
        required: true
      field:
        description: The probe's field holding the measured delay.
        type: str
        required: true
      threshold:
        description: Hits with a field value at or above this are stalls.
        type: int
        required: true
      pid:
        description: Only hits of this process or any of its threads (defaults to O(pid)).
        type: int
      states:
        description: C(prev_state) letters that count as blocked.
        type: list
        elements: str
        default: [D]
  stop:
    description:
      - The threshold, written once (O(mode=trigger)). Installs C(traceoff if FIELD >= THRESHOLD) on each of
        O(stop.events) (removed again at the end), waits, and returns finished RV(findings) (cause, stall length,
        decoded call), RV(status), RV(probe_values) and RV(guesses). Replaces O(findings).
      - When the first late tick's stall began before tracing was armed, the buffer is armed again (O(stop.rearm)).
    type: dict
    suboptions:
      events: {description: "Probe events, C(group:event).", type: list, elements: str, required: true}
      field: {description: The probe's field holding the measured delay., type: str, required: true}
      threshold: {description: Hits with O(stop.field) at or above this are stalls., type: int, required: true}
      unit: {description: "Unit of O(stop.field) (C(ns), C(us), C(ms), C(s); C(none) for a field that is no time);
               a time gives each stall its C(duration_ms).", type: str, default: ns, choices: [ns, us, ms, s, none]}
      states:
        description: C(prev_state) letters that may be blamed (C(R) is runnable, waiting for a CPU).
        type: list
        elements: str
        default: [D, S, T, t, R]
      rearm: {description: Times to arm again when the stall began before tracing., type: int, default: 3}
      max_findings: {description: Findings returned at most., type: int, default: 20}
      token_timeout_ms: {description: The cluster's token timeout (ms) the stall is compared with., type: int}
      cpu_context:
        description:
          - With O(pid), also record every task switch on every CPU in a second private instance (the capture
            instance's name plus C(_cpu), 1 MiB per CPU, removed at the end), armed and stopped with the capture,
            so that a wait for a CPU names who held that CPU, for how long, with policy and priority (the
            finding's C(cpu_holders), longest first, and C(ran_instead)). Without it only the task that ran just
            before the target got the CPU back is known (C(last_before)), often a kworker, not the culprit.
        type: bool
        default: true
attributes:
  check_mode:
    support: full
    description: Checks that the instance exists and reports what it would do; arms and reads nothing.
  diff_mode:
    support: none
    description: Nothing to compare; the result describes the capture.
notes:
  - Needs root (C(become=true)).
  - Returns C(changed=true) after a real capture, because the buffer was cleared and C(tracing_on) toggled.
seealso:
  - module: fleettrace.tracefs.instance
  - module: fleettrace.tracefs.event
  - module: fleettrace.tracefs.proc_info
"""

EXAMPLES = r"""
# Needs first: corosync running (corosync_pid), the instance fleettrace_corosync with the probe
# probe_corosync:timer_function_scheduler_timeout_L21 (instance, uprobe and event modules' examples).
- name: The directory the capture writes into
  ansible.builtin.file:
    path: /var/tmp/fleettrace
    state: directory
    mode: "0700"
  become: true

- name: Wait up to 10 minutes for corosync's late tick, keep its D-state stack and syscall
  fleettrace.tracefs.capture:
    instance: fleettrace_corosync
    timeout: 600
    pid: "{{ corosync_pid }}"
    raw_path: /var/tmp/fleettrace/trace.txt
    json_path: /var/tmp/fleettrace/capture.json
    max_events: 200
    findings:
      probe_event: probe_corosync:timer_function_scheduler_timeout_L21
      field: tv_diff_u64
      threshold: 1000100000
  async: 900
  poll: 10
  become: true
  register: capture

- name: Show what blocked corosync
  ansible.builtin.debug:
    msg: "{{ capture.findings | map(attribute='summary') | list }}"

- name: Ten seconds of scheduler events, no trigger
  fleettrace.tracefs.capture:
    instance: fleettrace_audit
    mode: window
    duration: 10
    max_events: 0
    json_path: /var/tmp/fleettrace/sched.json
  become: true
"""

RETURN = r"""
triggered:
  description: Whether a C(traceoff) trigger stopped tracing.
  returned: always
  type: bool
threshold_reached:
  description: Same as RV(triggered) (the threshold trigger fired); false after a timeout.
  returned: always
  type: bool
stop_reason:
  description: Why the wait ended (C(triggered), C(event_count), C(timeout), C(process_exited), C(window_elapsed)).
  returned: always
  type: str
events:
  description:
    - Parsed events (at most O(max_events), the last ones), each with C(timestamp) (seconds), C(ts_ns),
      C(cpu), C(pid), C(comm), C(flags), C(event), C(fields) (typed), and when present C(kernel_stack)
      (list of frames), C(user_stack) (list of dicts address/object/offset/symbol), C(probe_ip).
  returned: always
  type: list
  elements: dict
  sample: [{"timestamp": 604.762541, "ts_ns": 604762541000, "cpu": 1, "pid": 11067, "comm": "tick_loop",
            "flags": "d..2.", "event": "sched_switch",
            "fields": {"prev_pid": 11067, "prev_state": "D", "next_pid": 0},
            "kernel_stack": ["__schedule", "schedule", "percpu_rwsem_wait", "vfs_write"]}]
event_count:
  description: Number of events captured (all of them, not only those returned).
  returned: always
  type: int
events_truncated:
  description: Whether RV(events) holds fewer events than RV(event_count).
  returned: always
  type: bool
lost_events:
  description: Events the kernel overwrote or dropped during the capture (0 when nothing was lost).
  returned: always
  type: int
lost_by_cpu:
  description: Per CPU, C(overrun) and C(dropped) counts from C(per_cpu/cpuN/stats), for CPUs that lost events.
  returned: always
  type: dict
suggested_buffer_size_kb:
  description: A per-CPU C(buffer_size_kb) that would have held the lost events too.
  returned: when RV(lost_events) > 0
  type: int
buffer_size_kb:
  description: The instance's per-CPU buffer size during the capture.
  returned: always
  type: int
entries_written:
  description: The C(entries-written) count of the trace header (null in window mode).
  returned: always
  type: int
entries_in_buffer:
  description: The C(entries-in-buffer) count of the trace header (null in window mode).
  returned: always
  type: int
unparsed_lines:
  description: Lines of the trace text the parser did not understand (kept, never dropped).
  returned: always
  type: list
  elements: str
process_exited:
  description: Whether O(pid) was gone before or during the capture.
  returned: always
  type: bool
status:
  description: C(threshold_reached), C(threshold_not_reached) or C(target_exited) (with O(stop)).
  returned: when O(stop) is given
  type: str
earlier_stall:
  description:
    - True when a capture re-armed for a stall recorded whole saw none before its timeout, and reports the first
      stall's findings; RV(events) are then the last attempt's.
  returned: when that happened
  type: bool
probe_values:
  description: Distribution of O(stop.field) over every hit in the buffer (count, p50_ms, p99_ms, max_ms, log2 histogram).
  returned: when O(stop) is given
  type: dict
guesses:
  description: For each usual guess (overloaded host, overloaded VM host, memory not locked, token timeout too low,
    KSM) what the node showed during the capture and whether it is ruled out.
  returned: when O(stop) is given and O(pid) runs
  type: list
  elements: dict
findings:
  description:
    - One per stall (O(findings) given), with C(pid), C(comm), C(value), C(threshold), C(timestamp),
      C(cause) (C(blocked), C(stopped), C(runnable), C(unexplained)), C(duration_ms), C(explanation) (sentences),
      C(state) (C(D), C(S), C(T), C(R)), C(state_name), C(switched_out_at), C(blocked_ns) (off-CPU time until switched back in,
      or until the probe hit), C(blocked_until), C(kernel_stack), C(blocked_in) (first frame below the
      scheduler), C(kernel_wait) (what the sleep waited for, in words, when the stack says so - the cgroup freezer, a FUSE
      daemon, a frozen file system, reclaim, block I/O, a kernel lock; with C(in a page fault)),
      C(syscall) (name, nr, args, fd, source), C(fd), C(file) and a one-line C(summary).
    - A wait for a CPU has C(runnable_wait) (C(cpu), C(from_ns), C(until_ns)); with O(stop.cpu_context),
      C(cpu_holders) lists who ran on that CPU during the wait (C(comm), C(pid), C(ran_ms), C(policy), C(rtprio)
      or C(nice), C(prio)), longest first, C(ran_instead) is the longest and C(last_before) the last one.
  returned: when O(findings) is given
  type: list
  elements: dict
culprit_call:
  description:
    - The first finding's system call as M(fleettrace.tracefs.syscall_latency) options (C(pid), C(call), C(fd),
      C(cmd)), when the stall blocked in a call on an fd; null for a stall outside a system call (cgroup freezer,
      a page fault on a file), a runnable or a stopped one.
  returned: when O(stop) is given
  type: dict
culprit_call_found:
  description: Whether RV(culprit_call) names a call to measure (a boolean for C(when:)).
  returned: when O(stop) is given
  type: bool
raw_path:
  description: Where the raw trace text was written.
  returned: when O(raw_path) is given
  type: str
json_path:
  description: Where the JSON result was written.
  returned: when O(json_path) is given
  type: str
duration:
  description: Seconds the capture took.
  returned: always
  type: float
message:
  description: What happened, in one sentence (threshold reached or not, losses, process gone).
  returned: always
  type: str
  sample: "threshold reached: traceoff trigger fired after 3.2 s; 14 events captured, none lost"
"""


from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError, OptionError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.module_runner import run_module
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import capture_modes, correlate, findings
from ansible_collections.fleettrace.tracefs.plugins.module_utils import bounded
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import removal
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import validate
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import Tracefs


ARGUMENT_SPEC = dict(
    instance=dict(type="str", required=True),
    mode=dict(type="str", choices=["trigger", "window"], default="trigger"),
    timeout=dict(type="float", default=60),
    duration=dict(type="float"),
    poll_interval=dict(type="float", default=0.1),
    stop_after_events=dict(type="int"),
    stop_event=dict(type="str"),
    clear=dict(type="bool", default=True),
    pid=dict(type="int"),
    max_events=dict(type="int", default=1000),
    raw_path=dict(type="path"),
    json_path=dict(type="path"),
    symbolize=dict(type="bool", default=True),
    findings=dict(type="dict", options=dict(
        probe_event=dict(type="str", required=True),
        field=dict(type="str", required=True),
        threshold=dict(type="int", required=True),
        pid=dict(type="int"),
        states=dict(type="list", elements="str", default=["D"]),
    )),
    stop=dict(type="dict", options=dict(
        events=dict(type="list", elements="str", required=True),
        field=dict(type="str", required=True),
        threshold=dict(type="int", required=True),
        unit=dict(type="str", default="ns", choices=list(findings.UNITS)),
        states=dict(type="list", elements="str", default=list(correlate.ALL_STATES)),
        rearm=dict(type="int", default=3),
        max_findings=dict(type="int", default=20),
        token_timeout_ms=dict(type="int", no_log=False),
        cpu_context=dict(type="bool", default=True),
    )),
)


def body(module, _result):
    params = module.params
    # 0, nan, inf and 1e308 would never end; pid 0 and -1 are no process
    validate.numbers(params, durations=("timeout", "poll_interval", "duration"), pids=("pid",))
    if params["max_events"] < 0:
        raise OptionError("max_events must be 0 or more, got %d" % params["max_events"])
    if params["stop_after_events"] is not None and params["stop_after_events"] <= 0:
        raise OptionError("stop_after_events must be a positive count, got %d" % params["stop_after_events"])
    for key in ("raw_path", "json_path"):
        if params[key]:
            bounded.check_output(params[key], key)
    validate.instance_name(params["instance"])
    if params["stop_event"]:
        validate.event_name(params["stop_event"].split(":")[-1], "stop_event")
    stop = capture_modes.stop_condition(params)
    fs = Tracefs(check_mode=module.check_mode)
    instance = fs.instance(params["instance"])

    # Like every module that touches tracefs: expired runs (owner gone, deadline passed) go first.
    reaped = removal.reap_expired_quietly(fs, warn=module.warn)
    if not instance.exists():
        why = "".join("; expired run %s (%s) was removed just now" % (tag, reason) for tag, reason, _errors in reaped)
        raise FleettraceError("instance %r does not exist at %s%s; create it first with fleettrace.tracefs.instance "
                              "and enable the events to capture with fleettrace.tracefs.event"
                              % (params["instance"], instance.path(), why))
    enabled = instance.enabled_events()
    if module.check_mode:
        return capture_modes.planned(params, stop, enabled)
    if not enabled:
        raise FleettraceError("instance %r has no enabled events, a capture would stay empty; enable them with "
                              "fleettrace.tracefs.event first" % params["instance"])
    return capture_modes.capture(instance, params, stop, enabled)


def main():
    run_module(ARGUMENT_SPEC, body,
               mutually_exclusive=[("stop", "findings")],
               required_if=[("mode", "window", ("duration",))],
               required_by={"stop_event": ("stop_after_events",)},
               supports_check_mode=True)


if __name__ == "__main__":
    main()
