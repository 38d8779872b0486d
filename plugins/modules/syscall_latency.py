#!/usr/bin/python
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r"""
---
module: syscall_latency
short_description: Measure how long one system call of one task takes on one fd (log2 histogram, percentiles)
version_added: 0.2.0
description:
  - Creates the private instance O(instance), records the task's entries to and exits from O(call) (filtered in the
    kernel by task and, with C(syscalls:sys_enter_CALL), by O(fd) and O(cmd)), pairs them, and removes the
    instance again, whatever happened.
  - Ends after O(duration) seconds or O(samples) samples. Timestamps use the C(mono) trace clock
    (CLOCK_MONOTONIC), so samples line up with a program's own log.
author:
  - fleettrace developers (@fleettrace)
options:
  instance: {description: Name of the instance to create (must not exist)., type: str, required: true}
  pid: {description: The task (thread id) whose calls are measured., type: int, required: true}
  call: {description: "System call name, e.g. C(ioctl).", type: str, required: true}
  fd: {description: Only calls on this fd., type: int}
  cmd: {description: Only ioctl calls with this command., type: int}
  duration: {description: Seconds to measure at most., type: float, default: 10}
  samples:
    description:
      - Stop after this many samples.
      - C(0) means no limit, the same as not given (only O(duration) ends the measurement), so a role can pass its
        default of 0.
    type: int
  buffer_size_kb: {description: Per-CPU buffer of the instance., type: int, default: 1024}
attributes:
  check_mode: {support: full, description: Returns the kernel filters it would use; creates nothing.}
  diff_mode: {support: none, description: Nothing to compare.}
notes:
  - Needs root (C(become=true)).
"""

EXAMPLES = r"""
# Needs first: a finding of the capture module (finding.pid: the stalled corosync, fd 10 its /dev/watchdog).
- name: How long does the watchdog keepalive take?
  fleettrace.tracefs.syscall_latency:
    instance: fleettrace_run1_latency
    pid: "{{ finding.pid }}"
    call: ioctl
    fd: 10
    cmd: 0x80045705
    duration: 30
    samples: 100
  become: true
"""

RETURN = r"""
latency:
  description: count, p50_ms, p90_ms, p99_ms, p99_9_ms, min_ms, max_ms, mean_ms, histogram_log2_us, samples
    (start_ns, ns each), cmd (decoded), kernel_filter, source, lost_events.
  returned: success
  type: dict
message:
  description: One sentence with the count and the percentiles.
  returned: always
  type: str
"""

from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError, OptionError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.module_runner import run_module
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import latency
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import lifecycle
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import validate
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import TRACEFS_PATHS, Tracefs


def body(module, _result):
    params = module.params
    if params["samples"] == 0:     # no limit, as not given (a role's default)
        params = dict(params, samples=None)
    if not params["duration"] > 0 or (params["samples"] is not None and params["samples"] < 0):  # also nan
        raise OptionError("duration must be positive and samples positive or 0 (no limit), got %s and %s"
                          % (params["duration"], params["samples"]))
    try:
        validate.instance_name(params["instance"])
        validate.event_name(params["call"], "call")
        validate.pid(params["pid"])
        latency.check_target(params["pid"], params["call"], TRACEFS_PATHS)
        if module.check_mode:
            enter, leave = latency.filters(params["pid"], params["call"], params["fd"], params["cmd"])
            return dict(changed=True, latency={}, message="would record %s with filters %r / %r in %s" % (
                params["call"], enter, leave, params["instance"]))
        validate.seconds(params["duration"], "duration")
        validate.buffer_size_kb(params["buffer_size_kb"])
        fs = Tracefs()
        # Owned by this process: if it is killed, its reaper removes the instance (docs/tracefs-core.md).
        with lifecycle.module_run(fs, params["instance"], params["duration"], instances=[params["instance"]]):
            result = latency.measure(fs, params["instance"], params["pid"], params["call"], fd=params["fd"],
                                     cmd=params["cmd"], duration=params["duration"], max_samples=params["samples"],
                                     buffer_size_kb=params["buffer_size_kb"])
    except FleettraceError as exc:
        raise exc.reworded("measuring %s of pid %s failed: %s" % (params["call"], params["pid"], exc.message))
    text = "%d %s call(s) in %.1f s" % (result["count"], result["call"], result["duration_s"])
    if result["count"]:
        text += ": p50 %.3f ms, p99 %.3f ms, max %.3f ms" % (result["p50_ms"], result["p99_ms"], result["max_ms"])
    if result["lost_events"]:
        text += "; %d events LOST" % result["lost_events"]
    return dict(changed=True, latency=result, message=text)


def main():
    run_module(
        dict(
            instance=dict(type="str", required=True), pid=dict(type="int", required=True),
            call=dict(type="str", required=True), fd=dict(type="int"), cmd=dict(type="int"),
            duration=dict(type="float", default=10), samples=dict(type="int"),
            buffer_size_kb=dict(type="int", default=1024),
        ),
        body, supports_check_mode=True)


if __name__ == "__main__":
    main()
