# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Process facts from /proc: what ``ps``, ``ls -l /proc/PID/fd`` and
``cat /proc/PID/stack`` would tell, as plain dicts.

User-space addresses are symbolized through the maps in mapped_code.py.
No Ansible imports; Python 3.8+.
"""


import errno
import os

from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError

PROC = "/proc"

# sched_setscheduler(2) policy numbers (include/uapi/linux/sched.h).
POLICY_NAMES = {
    0: "SCHED_OTHER",
    1: "SCHED_FIFO",
    2: "SCHED_RR",
    3: "SCHED_BATCH",
    5: "SCHED_IDLE",
    6: "SCHED_DEADLINE",
    7: "SCHED_EXT",
}
# ps's "class" column (procps: TS FF RR B ISO IDL DLN).
POLICY_CLASSES = {0: "TS", 1: "FF", 2: "RR", 3: "B", 4: "ISO", 5: "IDL", 6: "DLN", 7: "EXT"}
REALTIME_POLICIES = (1, 2)

STATE_NAMES = {
    "R": "running", "S": "sleeping", "D": "disk sleep (uninterruptible)", "T": "stopped",
    "t": "tracing stop", "X": "dead", "Z": "zombie", "P": "parked", "I": "idle",
}

PRIORITY_EXPLAINED = {
    "class": "scheduling class as ps prints it (TS=SCHED_OTHER, FF=SCHED_FIFO, RR=SCHED_RR, B=BATCH, IDL=IDLE, DLN=DEADLINE)",
    "nice": "nice value -20..19; only meaningful for SCHED_OTHER/BATCH (ps shows '-' for real-time tasks, here null)",
    "rtprio": "real-time priority 1..99 for SCHED_FIFO/RR (higher runs first); null for other policies",
    "stat_priority": "field 18 of /proc/PID/stat: 20+nice for normal tasks, -1-rtprio for real-time ones (ps 'priority')",
    "kernel_prio": ("the kernel's task->prio 0..139 (lower runs first): 120+nice, or 99-rtprio for real-time; "
                    "what sched_switch prints as prev_prio/next_prio (ps 'pri_baz')"),
    "pri": "ps 'pri' = 39 - stat_priority (higher runs first; 19 for nice 0, 40+rtprio for real-time)",
    "opri": "ps 'opri' and the PRI column of 'ps -l' = 60 + stat_priority (80 for nice 0)",
    "pri_foo": "ps 'pri_foo' = stat_priority - 20 (equals nice for normal tasks)",
    "pri_bar": "ps 'pri_bar' = stat_priority + 1 (real-time shows negative)",
    "pri_api": "ps 'pri_api' = -1 - stat_priority (equals rtprio for real-time tasks)",
}


class ProcessGone(FleettraceError):
    """The process exited while it was being read."""

    def __init__(self, pid):
        super().__init__("process %d does not exist (any more)" % pid)
        self.pid = pid


def _read(path):
    with open(path) as handle:
        return handle.read()


def _read_optional(path, default=None):
    try:
        return _read(path)
    except OSError:
        return default


def _pid_dir(pid, *parts):
    return os.path.join(PROC, str(pid), *parts)


def pid_exists(pid):
    return os.path.isdir(_pid_dir(pid))


def process_alive(pid):
    """True while ``pid`` runs: a zombie (exited, not yet reaped) counts as gone."""
    text = _read_optional(_pid_dir(pid, "stat"))
    if not text:
        return False
    return text[text.rindex(")") + 2:][:1] not in ("Z", "X")


def stat(pid):
    """The parsed /proc/PID/stat of ``pid``, or None when it is gone."""
    text = _read_optional(_pid_dir(int(pid), "stat"))
    if not text:
        return None
    try:
        return parse_stat(text)
    except (ValueError, IndexError):
        return None


def comm(pid):
    """The process's name as ``ps`` shows it ('' when it is gone)."""
    return (_read_optional(_pid_dir(int(pid), "comm"), "") or "").strip()


def parse_stat(text):
    """/proc/PID/stat -> dict of the fields used here (comm may hold ') ')."""
    start = text.index("(")
    end = text.rindex(")")
    rest = text[end + 2:].split()
    # rest[0] is field 3 (state); field N is rest[N - 3].
    return {
        "pid": int(text[:start].strip()),
        "comm": text[start + 1:end],
        "state": rest[0],
        "ppid": int(rest[1]),
        "utime": int(rest[11]),
        "stime": int(rest[12]),
        "priority": int(rest[15]),
        "nice": int(rest[16]),
        "num_threads": int(rest[17]),
        # field 22: when the process started, in clock ticks since boot (with the pid, its identity)
        "starttime": int(rest[19]),
        "processor": int(rest[36]) if len(rest) > 36 else None,
        "rt_priority": int(rest[37]) if len(rest) > 37 else 0,
        "policy": int(rest[38]) if len(rest) > 38 else 0,
    }


def priorities(stat):
    """Every priority view ps can print, from one parsed stat (see PRIORITY_EXPLAINED)."""
    prio = stat["priority"]
    policy = stat["policy"]
    realtime = policy in REALTIME_POLICIES
    return {
        "class": POLICY_CLASSES.get(policy, str(policy)),
        "nice": None if realtime else stat["nice"],
        "rtprio": stat["rt_priority"] if realtime else None,
        "stat_priority": prio,
        "kernel_prio": prio + 100,
        "pri": 39 - prio,
        "opri": 60 + prio,
        "pri_foo": prio - 20,
        "pri_bar": prio + 1,
        "pri_api": -1 - prio,
    }


def parse_kernel_stack(text):
    """'[<0>] percpu_rwsem_wait+0x15f/0x1d0' lines -> ['percpu_rwsem_wait+0x15f/0x1d0', ...]."""
    frames = []
    for line in (text or "").splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("[<"):
            line = line.split("]", 1)[-1].strip()
        frames.append(line)
    return frames


def fd_targets(pid):
    """[{'fd': 10, 'target': '/mnt/x'}, ...] sorted by fd; [] when not allowed."""
    fd_dir = _pid_dir(pid, "fd")
    try:
        names = os.listdir(fd_dir)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise ProcessGone(pid)
        return []
    result = []
    for name in sorted(names, key=lambda n: int(n) if n.isdigit() else -1):
        try:
            target = os.readlink(os.path.join(fd_dir, name))
        except OSError:
            continue  # closed between listdir and readlink
        result.append({"fd": int(name), "target": target})
    return result


def fd_target(pid, fd):
    """What fd ``fd`` of ``pid`` points at, or None."""
    try:
        return os.readlink(_pid_dir(pid, "fd", str(int(fd))))
    except (OSError, ValueError):
        return None


def cmdline(pid):
    text = _read_optional(_pid_dir(pid, "cmdline"), "")
    return [arg for arg in text.split("\0") if arg] if text else []


def parse_cgroup(text):
    """'0::/system.slice/x.service' lines -> [{'hierarchy': 0, 'controllers': [], 'path': ...}]."""
    groups = []
    for line in (text or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        groups.append({"hierarchy": int(parts[0]) if parts[0].isdigit() else parts[0],
                       "controllers": [c for c in parts[1].split(",") if c], "path": parts[2]})
    return groups


def _task_facts(task_dir):
    stat = parse_stat(_read(os.path.join(task_dir, "stat")))
    facts = {
        "comm": stat["comm"],
        "state": stat["state"],
        "state_name": STATE_NAMES.get(stat["state"], stat["state"]),
        "policy": POLICY_NAMES.get(stat["policy"], "policy %d" % stat["policy"]),
        "priorities": priorities(stat),
        "processor": stat["processor"],
        "wchan": (_read_optional(os.path.join(task_dir, "wchan"), "") or "").strip() or None,
    }
    if facts["wchan"] == "0":
        facts["wchan"] = None
    return facts, stat


def thread_ids(pid):
    """The thread ids of ``pid`` ([pid] alone when it is gone or not readable)."""
    try:
        return sorted(int(t) for t in os.listdir(_pid_dir(pid, "task")) if t.isdigit())
    except OSError:
        return [int(pid)]


def thread_facts(pid, kernel_stack=True):
    threads = []
    task_root = _pid_dir(pid, "task")
    try:
        tids = sorted(int(t) for t in os.listdir(task_root) if t.isdigit())
    except OSError:
        raise ProcessGone(pid)
    for tid in tids:
        task_dir = os.path.join(task_root, str(tid))
        try:
            facts, _stat = _task_facts(task_dir)
        except OSError:
            continue  # the thread ended meanwhile
        facts["tid"] = tid
        if kernel_stack:
            facts["kernel_stack"] = parse_kernel_stack(_read_optional(os.path.join(task_dir, "stack"), ""))
        threads.append(facts)
    return threads


def process_facts(pid, threads=True, fds=True, kernel_stack=True):
    """Everything about one process; raises ProcessGone if it is not there."""
    pid = int(pid)
    try:
        facts, stat = _task_facts(_pid_dir(pid))
        argv = cmdline(pid)
        facts.update({
            "pid": pid,
            "ppid": stat["ppid"],
            "cmdline": " ".join(argv),
            "argv": argv,
            "exe": None,
            "exe_deleted": False,
            "num_threads": stat["num_threads"],
            "cgroup": parse_cgroup(_read_optional(_pid_dir(pid, "cgroup"), "")),
        })
        exe = _readlink_optional(_pid_dir(pid, "exe"))
        if exe is not None:
            # A binary replaced on disk since the start (an upgrade without a restart) reads "PATH (deleted)".
            facts["exe_deleted"] = exe.endswith(" (deleted)")
            facts["exe"] = exe[:-len(" (deleted)")] if facts["exe_deleted"] else exe
        if kernel_stack:
            facts["kernel_stack"] = parse_kernel_stack(_read_optional(_pid_dir(pid, "stack"), ""))
        if fds:
            facts["fds"] = fd_targets(pid)
        if threads:
            facts["threads"] = thread_facts(pid, kernel_stack=kernel_stack)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ESRCH) or not pid_exists(pid):
            raise ProcessGone(pid)
        raise
    return facts


def _readlink_optional(path):
    try:
        return os.readlink(path)
    except OSError:
        return None


def all_pids():
    return sorted(int(name) for name in os.listdir(PROC) if name.isdigit())
