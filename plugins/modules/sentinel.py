#!/usr/bin/python
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r"""
---
module: sentinel
short_description: Arm a node to catch a stall by itself for days, collect what it caught, disarm it
version_added: 1.0.0
description:
  - "O(state=armed): installs the probe (ready definitions, guarded by their build-id), a private instance recording
    the target as the C(capture) module does with C(traceoff if FIELD >= THRESHOLD) on the probe, and a second tiny
    instance holding only the probe filtered C(FIELD >= THRESHOLD); then starts a watcher process on the node
    (C(fleettrace-sentinel LABEL) in its command line) and returns within seconds. The watcher blocks on the tiny
    instance's C(trace_pipe), a pidfd of the target and its deadline; when a tick passes the threshold it reads the
    frozen buffer and explains the stall with the same code as C(capture), records the target's C(/proc) facts and
    the counters for the usual guesses, measures the culprit call on its fd for hours, writes the capture to its spool
    C(/var/lib/fleettrace/sentinel/LABEL/), logs one line to the journal, updates a node_exporter metric, and arms
    again, up to O(max_captures)."
  - Arming again with the same settings changes nothing; with other settings the old sentinel is replaced.
    A second sentinel on a target another label watches is refused unless O(force).
  - "O(state=collected): returns what the sentinel caught so far (RV(result): the diagnose workflow's per-host
    document, plus C(sentinel): armed since, until, captures, pids followed, events lost, the watcher's cost) without
    disarming. A sentinel that no longer runs says how it ended (C(deadline_passed), C(target_exited),
    C(binary_replaced), C(max_captures_reached), C(watcher_killed), C(ended_by_reboot), ...)."
  - "O(state=absent): collects, then stops the watcher, which removes every tracefs object of the sentinel; removes
    the metric file and the spool (unless O(keep_spool))."
  - "The sentinel is a run (docs/tracefs-core.md) owned by its watcher with no lease: if the watcher dies, SIGKILL
    included, its reaper removes the probe and instances at once; the deadline (O(duration)) holds in any case."
author:
  - fleettrace developers (@fleettrace)
options:
  state:
    description: C(armed), C(collected) or C(absent).
    type: str
    choices: [armed, collected, absent]
    default: armed
  label:
    description: The sentinel's name on the node (one per label), 1 to 32 letters, digits or C(_).
    type: str
    required: true
  pid:
    description: The target process (O(state=armed)); or find it by O(target_name), O(target_pid), ...
    type: int
  target_name:
    description:
      - Without O(pid), the target is the first process matching every O(target_name), O(target_pid),
        O(target_pidfile) and O(target_cmdline_regex) given (as M(fleettrace.tracefs.proc_info) matches them; empty
        and 0 are not given). When none matches, nothing is armed and RV(target_found) is false.
    type: str
  target_pid:
    description: See O(target_name).
    type: int
  target_pidfile:
    description: See O(target_name).
    type: path
  target_cmdline_regex:
    description: See O(target_name).
    type: str
  binary:
    description:
      - The probed binary's absolute path (O(state=armed)); the target must map this very file. Default the target's
        executable.
    type: path
  definitions:
    description:
      - Ready C(uprobe_events) lines (resolved on the node or the controller); their group is replaced by the
        sentinel's, their event names kept. A single line may be given as a string. Empty lines are ignored (an
        empty string or list means none); with none, the probe of O(probe_spec) or
        O(probe_function) is resolved here, as M(fleettrace.tracefs.probe_info) resolves it.
    type: list
    elements: str
  probe_spec:
    description: Without O(definitions), the perf-probe style spec resolved on the node (needs pyelftools there).
    type: str
  probe_function:
    description:
      - Without O(definitions) and O(probe_spec), the function whose probe line is picked as
        M(fleettrace.tracefs.probe_info) picks it (O(probe_line_match), O(probe_line), O(probe_args)) and resolved.
    type: str
  probe_line_match:
    description: As M(fleettrace.tracefs.probe_info)'s O(fleettrace.tracefs.probe_info#module:line_match).
    type: str
  probe_line:
    description: As M(fleettrace.tracefs.probe_info)'s O(fleettrace.tracefs.probe_info#module:line).
    type: int
    default: 0
  probe_args:
    description: As M(fleettrace.tracefs.probe_info)'s O(fleettrace.tracefs.probe_info#module:args).
    type: list
    elements: str
    default: []
  probe_event:
    description: The event name of the probe resolved here.
    type: str
  debuginfo:
    description: A debug info file for the binary, for the probe resolved here.
    type: path
  debuginfod_urls:
    description: debuginfod servers for the probe resolved here (default C(DEBUGINFOD_URLS) of the module's environment).
    type: list
    elements: str
  build_id:
    description: Build-id the definitions were resolved for; another build is refused.
    type: str
  field:
    description: The probe's field compared with the threshold.
    type: str
    default: tv_diff
  unit:
    description: Unit of O(field) (C(ns), C(us), C(ms), C(s); C(none) for a field that is no time).
    type: str
    default: ns
    choices: [ns, us, ms, s, none]
  threshold:
    description: A stall is a probe hit with O(field) at or above this (in O(unit)).
    type: int
  max_captures:
    description: Captures at most; then the watcher measures the culprit call until its bound and ends.
    type: int
    default: 5
  duration:
    description: Seconds the sentinel stays armed at most (at most 30 days).
    type: float
    default: 604800
  latency_seconds:
    description: How long the culprit call is measured after the first capture that names one (0 not at all).
    type: float
    default: 21600
  latency_samples:
    description: Stop measuring the culprit after this many calls (0 no limit).
    type: int
    default: 0
  buffer_size_kb:
    description: Per-CPU buffer of the recording instance (it holds the seconds before a stall).
    type: int
    default: 2048
  max_events:
    description: Events kept in each capture (the last ones before the late tick).
    type: int
    default: 200
  max_findings:
    description: Findings kept in each capture.
    type: int
    default: 5
  spool_max_kb:
    description: Size cap of the captures in the spool; over it the first and the longest are kept, the others dropped.
    type: int
    default: 20480
  follow_seconds:
    description: How long to look for the target's new process (same binary) after it exited.
    type: float
    default: 120
  rearm:
    description: Times to arm again when a late tick's stall began before the buffer was armed.
    type: int
    default: 3
  token_timeout_ms:
    description: The cluster's token timeout (ms), compared with each stall among the guesses (0 unknown).
    type: int
    default: 0
  syscall_events:
    description: Events recorded to know the system call in flight.
    type: list
    elements: str
    default: [raw_syscalls:sys_enter, raw_syscalls:sys_exit]
  force:
    description: Arm even when another sentinel watches the same target.
    type: bool
    default: false
  keep_spool:
    description: With O(state=absent), keep the captures on the node.
    type: bool
    default: false
  host:
    description: The inventory name written into RV(result) (default the node's host name).
    type: str
  spool_dir:
    description: Where the sentinels' spools live.
    type: path
    default: /var/lib/fleettrace/sentinel
  textfile_dir:
    description: node_exporter's textfile directory; the metric file is written only when it exists.
    type: path
    default: /var/lib/prometheus/node-exporter
  syslog_socket:
    description: The syslog socket the journal line is sent to (journald and rsyslog read C(/dev/log)).
    type: path
    default: /dev/log
  boot_id_path:
    description: Where the boot id is read (a sentinel armed in another boot ended by the reboot). Tests point it elsewhere.
    type: path
    default: /proc/sys/kernel/random/boot_id
attributes:
  check_mode:
    support: full
    description: Armed lists the writes it would make; absent says what it would stop; collected reads only.
  diff_mode:
    support: none
    description: Nothing to compare.
notes:
  - Needs root (C(become=true)). The node needs Python 3.8+ with its standard library only.
seealso:
  - module: fleettrace.tracefs.capture
  - module: fleettrace.tracefs.cleanup
"""

EXAMPLES = r"""
# Needs first: corosync running (corosync_pid) from /usr/sbin/corosync, its build id (corosync_build_id) and
# the probe line resolved for that build (probe_info or uprobe in check mode give both).
- name: Arm the node for a week
  fleettrace.tracefs.sentinel:
    label: corosync
    pid: "{{ corosync_pid }}"
    binary: /usr/sbin/corosync
    definitions: ["p:probe/timer_function_scheduler_timeout /usr/sbin/corosync:0x2516c tv_diff=%r12:u64"]
    build_id: "{{ corosync_build_id }}"
    field: tv_diff
    threshold: 2400000000
    token_timeout_ms: 3000
  become: true

- name: Arm on corosync if it runs, the probe line picked and resolved on the node (pyelftools, debug info there)
  fleettrace.tracefs.sentinel:
    label: corosync
    target_name: corosync
    probe_function: timer_function_scheduler_timeout
    probe_line_match: "tv_diff = "
    probe_args: ["tv_diff=tv_diff:u64"]
    probe_event: timer_function_scheduler_timeout
    threshold: 2400000000
  become: true

- name: What did it catch so far?
  fleettrace.tracefs.sentinel:
    label: corosync
    state: collected
  become: true
  register: caught
"""

RETURN = r"""
target_found:
  description: Whether the target process runs here (false with O(target_name) and the like when none matches).
  returned: when state=armed
  type: bool
changed:
  description: True when a sentinel was armed, replaced or disarmed.
  returned: always
  type: bool
status:
  description: The sentinel's status (C(armed), C(measuring), or how it ended).
  returned: always
  type: str
watcher:
  description: The watcher process (pid, start time, argv).
  returned: when state=armed
  type: dict
until:
  description: Unix time the sentinel ends at the latest.
  returned: when state=armed
  type: float
plan:
  description: The tracefs writes of the arming, as shell commands.
  returned: when state=armed
  type: list
  elements: str
result:
  description:
    - The host's result, as the diagnose workflow writes it (schema C(fleettrace.threshold_capture/1), one finding per
      kept capture, C(culprit_latency), C(guesses), C(probe), C(target)), plus C(sentinel) and C(captures).
  returned: when state is collected or absent
  type: dict
message:
  description: What happened, in one sentence.
  returned: always
  type: str
"""

import socket

from ansible_collections.fleettrace.tracefs.plugins.module_utils import probe_lookup, process_target, procfs
from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError, OptionError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.module_runner import run_module
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sentinel import collect, control, settings as sentinel_settings
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sentinel import target as sentinel_target
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sentinel.spool import Spool
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import removal
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import Tracefs

NUMBERS = tuple(sentinel_settings.NUMBERS)


ARGUMENT_SPEC = dict(
    state=dict(type="str", choices=["armed", "collected", "absent"], default="armed"),
    label=dict(type="str", required=True),
    pid=dict(type="int"), binary=dict(type="path"), definitions=dict(type="list", elements="str"),
    target_name=dict(type="str"), target_pid=dict(type="int"), target_pidfile=dict(type="path"),
    target_cmdline_regex=dict(type="str"),
    probe_spec=dict(type="str"), probe_function=dict(type="str"), probe_line_match=dict(type="str"),
    probe_line=dict(type="int", default=0), probe_args=dict(type="list", elements="str", default=[]),
    probe_event=dict(type="str"), debuginfo=dict(type="path"), debuginfod_urls=dict(type="list", elements="str"),
    build_id=dict(type="str"), field=dict(type="str", default="tv_diff"),
    unit=dict(type="str", default="ns", choices=list(sentinel_settings.UNITS)),
    threshold=dict(type="int"), max_captures=dict(type="int", default=5),
    duration=dict(type="float", default=sentinel_settings.DEFAULT_DURATION),
    latency_seconds=dict(type="float", default=6 * 3600.0), latency_samples=dict(type="int", default=0),
    buffer_size_kb=dict(type="int", default=2048), max_events=dict(type="int", default=200),
    max_findings=dict(type="int", default=5), spool_max_kb=dict(type="int", default=20480),
    follow_seconds=dict(type="float", default=120.0), rearm=dict(type="int", default=3),
    token_timeout_ms=dict(type="int", default=0, no_log=False),
    syscall_events=dict(type="list", elements="str", default=list(sentinel_settings.SYSCALL_EVENTS)),
    force=dict(type="bool", default=False), keep_spool=dict(type="bool", default=False),
    host=dict(type="str"), spool_dir=dict(type="path", default=sentinel_settings.SPOOL_ROOT),
    textfile_dir=dict(type="path", default=sentinel_settings.TEXTFILE_DIR),
    syslog_socket=dict(type="path", default=sentinel_settings.SYSLOG_SOCKET),
    boot_id_path=dict(type="path", default=sentinel_settings.BOOT_ID),
)


def target_criteria(p):
    """The target_* options as procfs criteria; a role's empty defaults ('' and 0) are not given."""
    return process_target.given_criteria({key: p["target_" + key] for key in process_target.TARGET_CRITERIA})


def find_target(p):
    """The target's pid: O(pid), else the first process the target_* options match; None when none does."""
    if p["pid"] is not None:
        return p["pid"]
    criteria = target_criteria(p)
    if all(value is None for value in criteria.values()):
        raise OptionError("state=armed needs pid, or target_name, target_pid, target_pidfile or "
                          "target_cmdline_regex to find the target")
    process_target.check_target(criteria)
    for pid in process_target.find_target(criteria):
        if procfs.pid_exists(pid):   # not exited between the search and now
            return pid
    return None


def body(module, _result):
    p = module.params
    host = p["host"] or socket.gethostname()
    try:
        label = sentinel_settings.check_label(p["label"])
        target = None
        if p["state"] == "armed":
            target = find_target(p)
            if target is None:
                return dict(changed=False, target_found=False, label=label, status="not armed",
                            message="not armed: no process matches %s" % process_target.describe_target(target_criteria(p)))
        fs = Tracefs(mount=False)
        if not module.check_mode:
            removal.reap_expired_quietly(fs, warn=module.warn)
        if p["state"] == "armed":
            binary = p["binary"] or sentinel_target.exe_path(target) or ""
            definitions, build_id = probe_lookup.ready_or_resolved(
                p["definitions"], p["build_id"], binary, spec=p["probe_spec"], function=p["probe_function"],
                line_match=p["probe_line_match"], line=p["probe_line"], args=p["probe_args"], event=p["probe_event"],
                debuginfo=p["debuginfo"], debuginfod_urls=p["debuginfod_urls"])
            settings = sentinel_settings.Settings(
                label, target, binary, definitions, p["field"], p["threshold"], build_id=build_id,
                unit=p["unit"], syscall_events=p["syscall_events"], spool_dir=p["spool_dir"],
                textfile_dir=p["textfile_dir"], syslog_socket=p["syslog_socket"], boot_id_path=p["boot_id_path"],
                **{name: p[name] for name in NUMBERS})
            return dict(control.arm(fs, settings, force=p["force"], check_mode=module.check_mode), target_found=True)
        spool = Spool(p["spool_dir"], label)
        document = collect.document(spool, host, p["boot_id_path"])
        if p["state"] == "collected":
            return dict(changed=False, status=document["sentinel"]["status"], result=document,
                        message=document["message"])
        outcome = control.disarm(fs, p["spool_dir"], label, p["textfile_dir"], keep_spool=p["keep_spool"],
                                 check_mode=module.check_mode)
        if outcome["changed"] and not module.check_mode:
            collect.disarmed(document, outcome)
        return dict(outcome, label=label, status=document["sentinel"]["status"], result=document,
                    message=document["message"])
    except FleettraceError as exc:
        raise exc.reworded("sentinel %s (%s): %s" % (p["label"], p["state"], exc.message))
    except OSError as exc:
        raise FleettraceError("sentinel %s (%s): %s" % (p["label"], p["state"], exc))


def main():
    run_module(ARGUMENT_SPEC, body,
               required_if=[("state", "armed", ("threshold",))],
               supports_check_mode=True)


if __name__ == "__main__":
    main()
