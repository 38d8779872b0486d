#!/usr/bin/python
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r"""
---
module: proc_info
short_description: Facts about processes from /proc (scheduling, priorities, fds, kernel stack)
version_added: 0.1.0
description:
  - Finds processes by name, pidfile, pid or command-line regular expression and describes each one
    the way C(ps), C(ls -l /proc/PID/fd) and C(cat /proc/PID/stack) would.
  - For each process, its threads, scheduling policy (C(SCHED_OTHER), C(SCHED_FIFO), C(SCHED_RR),
    C(SCHED_BATCH), C(SCHED_IDLE), C(SCHED_DEADLINE)), every priority view C(ps) can print (class, nice,
    rtprio, pri, opri, pri_foo, pri_bar, pri_api, the C(/proc/PID/stat) priority and the kernel's
    C(task->prio) that C(sched_switch) prints), state, wchan, kernel stack, open file descriptors with
    their targets and cgroup membership.
  - Read-only. Never changes anything; always returns C(changed=false).
author:
  - fleettrace developers (@fleettrace)
options:
  name:
    description:
      - Process name, matched like C(pgrep NAME) against the comm (first 15 characters) and against the
        basename of C(argv[0]) and of the executable.
    type: str
  pid:
    description:
      - Process id.
      - C(0) counts as not given (no process has it), so a role can pass its default of 0; so does an empty
        O(name), O(pidfile) or O(cmdline_regex).
      - One of O(name), O(pid), O(pidfile) and O(cmdline_regex) is required. O(pid) and O(pidfile) name one
        process and go with no other of them.
    type: int
  pidfile:
    description: Path of a file whose first word is the process id (for example C(/run/corosync.pid)).
    type: path
  cmdline_regex:
    description:
      - Python regular expression searched in the space-joined command line (like C(pgrep -f)).
      - Combined with O(name), both must match.
    type: str
  threads:
    description: Include every thread (C(/proc/PID/task/*)) with its own policy, priorities, state and wchan.
    type: bool
    default: true
  fds:
    description: Include the open file descriptors and what they point at.
    type: bool
    default: true
  kernel_stack:
    description: Include C(/proc/PID/stack) (needs root; empty otherwise).
    type: bool
    default: true
  allow_missing:
    description:
      - When no process matches, return an empty RV(processes) instead of failing.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: Read-only; there is nothing to diff.
notes:
  - Run with C(become=true) to see other users' fds and kernel stacks.
  - The C(ps) priority columns are explained in RV(priority_legend).
seealso:
  - module: fleettrace.tracefs.capture
"""

EXAMPLES = r"""
- name: How corosync is scheduled and what it has open
  fleettrace.tracefs.proc_info:
    name: corosync
  become: true
  register: corosync

- name: Fail when corosync does not run SCHED_RR at priority 99
  ansible.builtin.assert:
    that:
      - corosync.processes[0].policy == 'SCHED_RR'
      - corosync.processes[0].priorities.rtprio == 99

# Needs corosync running with its pidfile.
- name: The process behind a pidfile, without threads
  fleettrace.tracefs.proc_info:
    pidfile: /run/corosync.pid
    threads: false
  become: true

- name: Every python process running a given script
  fleettrace.tracefs.proc_info:
    cmdline_regex: 'python3? .*/heartbeat\.py'
    allow_missing: true
"""

RETURN = r"""
processes:
  description: One entry per matching process, sorted by pid.
  returned: always
  type: list
  elements: dict
  contains:
    pid:
      description: Process id.
      type: int
    ppid:
      description: Parent process id.
      type: int
    comm:
      description: Command name (C(/proc/PID/comm), at most 15 characters).
      type: str
    cmdline:
      description: Command line joined by spaces.
      type: str
    argv:
      description: Command line as a list.
      type: list
      elements: str
    exe:
      description:
        - Executable path (null when not readable).
        - A file replaced or removed since the process started (an upgrade without a restart) is named by its
          path, and RV(processes[].exe_deleted) is true, because the process still runs the old code.
      type: str
    exe_deleted:
      description: The executable was replaced or removed on disk since the process started (C(/proc/PID/exe) says
        "(deleted)"); probe it with the O(fleettrace.tracefs.uprobe#module:pid) option of the uprobe module.
      type: bool
    policy:
      description: Scheduling policy name, for example C(SCHED_RR).
      type: str
    priorities:
      description: Every priority view ps knows; see RV(priority_legend).
      type: dict
      sample: {"class": "RR", "nice": null, "rtprio": 99, "stat_priority": -100, "kernel_prio": 0,
               "pri": 139, "opri": -40, "pri_foo": -120, "pri_bar": -99, "pri_api": 99}
    state:
      description: State letter (R, S, D, T, Z, ...).
      type: str
    state_name:
      description: State in words.
      type: str
    wchan:
      description: Kernel function the process waits in, or null.
      type: str
    kernel_stack:
      description: Frames of C(/proc/PID/stack), innermost first.
      type: list
      elements: str
    fds:
      description: Open file descriptors and their targets (C(10 -> /dev/watchdog)).
      type: list
      elements: dict
      sample: [{"fd": 10, "target": "/dev/watchdog"}]
    cgroup:
      description: Lines of C(/proc/PID/cgroup) as dicts (hierarchy, controllers, path).
      type: list
      elements: dict
    num_threads:
      description: Number of threads.
      type: int
    threads:
      description: Per thread (tid, comm, state, state_name, policy, priorities, processor, wchan, kernel_stack).
      type: list
      elements: dict
pids:
  description: The pids of RV(processes).
  returned: always
  type: list
  elements: int
  sample: [3796]
priority_legend:
  description: What each key of C(priorities) means and how C(ps) computes it.
  returned: always
  type: dict
message:
  description: Human-readable summary.
  returned: always
  type: str
  sample: "1 process: corosync[3796] SCHED_RR rtprio 99, state S"
"""


from ansible_collections.fleettrace.tracefs.plugins.module_utils import process_target, procfs
from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.module_runner import run_module


def body(module, result):
    params = module.params
    criteria = process_target.given_criteria(params)
    process_target.check_exclusive(criteria)
    process_target.check_target(criteria)
    pids = process_target.find_target(criteria)

    processes = []
    for pid in pids:
        try:
            processes.append(procfs.process_facts(pid, threads=params["threads"], fds=params["fds"],
                                                  kernel_stack=params["kernel_stack"]))
        except procfs.ProcessGone:
            continue  # exited between the search and the read: it no longer matches
    result.update(processes=processes, pids=[p["pid"] for p in processes], priority_legend=procfs.PRIORITY_EXPLAINED)
    if not processes:
        result["message"] = "no process matches %s" % process_target.describe_target(criteria)
        if not params["allow_missing"]:
            raise FleettraceError(result["message"], hint="check that it runs on this host, or set allow_missing: true")
        return
    summaries = []
    for proc in processes[:5]:
        rank = proc["priorities"]["rtprio"]
        rank_text = "rtprio %d" % rank if rank is not None else "nice %d" % proc["priorities"]["nice"]
        summaries.append("%s[%d] %s %s, state %s" % (proc["comm"], proc["pid"], proc["policy"], rank_text, proc["state"]))
    result["message"] = "%d process%s: %s%s" % (len(processes), "" if len(processes) == 1 else "es",
                                                "; ".join(summaries), "; ..." if len(processes) > 5 else "")


def main():
    run_module(
        dict(
            name=dict(type="str"),
            pid=dict(type="int"),
            pidfile=dict(type="path"),
            cmdline_regex=dict(type="str"),
            threads=dict(type="bool", default=True),
            fds=dict(type="bool", default=True),
            kernel_stack=dict(type="bool", default=True),
            allow_missing=dict(type="bool", default=False),
        ),
        # One of them, and which go together, is checked by process_target.check_exclusive (empty values are not given).
        body,
        supports_check_mode=True)


if __name__ == "__main__":
    main()
