# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The process a run belongs to, identified by pid and start time (a reused pid is another process)."""


import os
import select
import stat

_CONTROLLERS = ("ansible-playbook", "ansible", "ansible-console", "ansible-pull")
_PASS_THROUGH = ("sh", "bash", "dash", "sudo", "su", "python", "python3", "env", "timeout")


def process_start(pid):
    """The start time of ``pid`` in clock ticks since boot, or None when it is gone."""
    try:
        with open("/proc/%d/stat" % int(pid), "rb") as handle:
            data = handle.read(4096)
    except (OSError, ValueError):
        return None
    # comm may hold spaces and ')': the fields after the last ')' are fixed.
    fields = data[data.rindex(b")") + 2:].split()
    if fields and fields[0] == b"Z":
        return None     # a zombie has finished all it will do
    return int(fields[19])


def _ppid(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            data = handle.read(4096)
        return int(data[data.rindex(b")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return handle.read(4096).replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as handle:
            return handle.read(64).strip()
    except OSError:
        return ""


def _is_ansible_controller(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            argv = handle.read(4096).split(b"\0")
    except OSError:
        return False
    names = [os.path.basename(arg).decode("utf-8", "replace") for arg in argv[:2]]
    return any(name in _CONTROLLERS for name in names)


def process(pid, what):
    return {"pid": int(pid), "start": process_start(pid), "what": what}


def alive(proc):
    """True while the very process recorded (same pid and start time) runs."""
    return bool(proc) and proc.get("start") is not None and process_start(proc["pid"]) == proc["start"]


def pidfd_of(proc):
    """A pidfd of the recorded process (readable once it exits), or None (gone, or no pidfd_open)."""
    if not hasattr(os, "pidfd_open") or not alive(proc):
        return None
    try:
        return os.pidfd_open(proc["pid"])
    except OSError:
        return None


def find_owner(pid=None):
    """The process whose death ends the run, seen from a module process.

    Over SSH: the ``sshd`` process of the session (it ends when the connection
    drops; with ControlPersist it lives as long as the controller uses it).
    Locally: the outermost ``ansible-playbook``/``ansible`` ancestor (its
    per-task workers come and go).  Otherwise the module's first ancestor that
    is not a shell, sudo or python wrapper.
    """
    chain = []
    current = _ppid(pid or os.getpid())
    while current > 1 and len(chain) < 64:
        chain.append(current)
        current = _ppid(current)
    for ancestor in chain:
        if _comm(ancestor).startswith("sshd"):
            return process(ancestor, "ssh session (sshd %d: %s)" % (ancestor, _cmdline(ancestor)[:80]))
    controllers = [a for a in chain if _is_ansible_controller(a)]
    if controllers:
        # The per-task worker is a fork of the controller: take the outermost
        # of the contiguous controller ancestors.
        first = chain.index(controllers[0])
        outer = controllers[0]
        for ancestor in chain[first:]:
            if not _is_ansible_controller(ancestor):
                break
            outer = ancestor
        return process(outer, "ansible controller (pid %d: %s)" % (outer, _cmdline(outer)[:80]))
    for ancestor in chain:
        if _comm(ancestor) not in _PASS_THROUGH:
            return process(ancestor, "parent process %d (%s)" % (ancestor, _comm(ancestor)))
    parent = os.getppid()
    return process(parent, "parent process %d" % parent)


def answer_unread(fd=1):
    """True once nobody can read what this process will print on ``fd``: the pipe or socket its
    answer goes back on (the ssh session, Ansible's local worker) has been closed. A file, a tty
    or /dev/null is never "unread"; nor is a pipe an async wrapper still reads."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        return False
    poller = select.poll()
    # POLLERR (a pipe without readers) and POLLHUP (a socket closed by its peer) are always reported.
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _fd, events in poller.poll(0))
