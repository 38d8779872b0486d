# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Facts the audit reports beside its numbers: the host's, each watched task's, which tasks are watched.

Nothing here imports Ansible (Python 3.8+).
"""


import os
import re

from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import per_cpu

POLICY_NAMES = {0: "SCHED_OTHER", 1: "SCHED_FIFO", 2: "SCHED_RR", 3: "SCHED_BATCH",
                5: "SCHED_IDLE", 6: "SCHED_DEADLINE"}


def _read_int(path):
    try:
        with open(path) as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def task_facts(pid):
    """Scheduling facts of one task: comm, state, policy, rtprio, nice (procfs.parse_stat)."""
    # Only for watched tasks: an audit of the whole host does not pay for importing procfs (and elf).
    from ansible_collections.fleettrace.tracefs.plugins.module_utils import procfs
    try:
        with open("/proc/%d/stat" % pid) as handle:
            stat = procfs.parse_stat(handle.read())
    except (OSError, ValueError):
        return {"pid": pid, "error": "no such process"}
    policy = stat["policy"]
    rtprio = stat["rt_priority"]
    try:
        policy = os.sched_getscheduler(pid)
        rtprio = os.sched_getparam(pid).sched_priority
    except (OSError, AttributeError):
        pass
    views = procfs.priorities(stat)
    return {"pid": pid, "comm": stat["comm"], "state": stat["state"],
            "policy": POLICY_NAMES.get(policy & 0xff, str(policy)), "rtprio": rtprio,
            "nice": stat["nice"], "prio": stat["priority"], "class": views["class"], "pri": views["pri"]}


def host_facts(tracefs):
    features = tracefs.features()
    return {
        "hostname": os.uname().nodename,   # socket.gethostname(), without importing socket
        "cpu_count": os.cpu_count(),
        "online_cpus": len(per_cpu.online_cpus(tracefs.root)),
        "kernel": os.uname().release,      # what platform.release() gives, without importing it
        "kernel_version": os.uname().version,
        "sched_rt_runtime_us": _read_int("/proc/sys/kernel/sched_rt_runtime_us"),
        "sched_rt_period_us": _read_int("/proc/sys/kernel/sched_rt_period_us"),
        "tracing_features": features,
    }


def resolve_watched(pids=(), comms=(), comm_regexes=()):
    """Thread ids now alive that match the watch list (pids include their threads)."""
    regexes = [re.compile(r) for r in comm_regexes]
    comms = {c[:15] for c in comms}
    found = set()
    for pid in pids:
        tasks = "/proc/%d/task" % int(pid)
        try:
            found.update(int(t) for t in os.listdir(tasks))
        except OSError:
            pass  # gone: the caller reports pids that matched nothing
    if comms or regexes:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                threads = os.listdir("/proc/%s/task" % entry)
            except OSError:
                continue
            for tid in threads:
                try:
                    with open("/proc/%s/task/%s/comm" % (entry, tid)) as handle:
                        comm = handle.read().rstrip("\n")
                except OSError:
                    continue
                if comm in comms or any(r.search(comm) for r in regexes):
                    found.add(int(tid))
    return sorted(found)
