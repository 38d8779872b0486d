# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The process a run belongs to, from procfs: pid and start time (a reused pid is another process)."""


import os
import select
import stat

from ansible_collections.fleettrace.tracefs.plugins.module_utils import procfs
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs.manifest import (
    CONTROLLER, NODE_PROCESS, SSH_SESSION, Process)

_CONTROLLERS = ("ansible-playbook", "ansible", "ansible-console", "ansible-pull")
_PASS_THROUGH = ("sh", "bash", "dash", "sudo", "su", "python", "python3", "env", "timeout")


def start_time(pid):
    """When ``pid`` started (clock ticks since boot), or None when it is gone (a zombie is gone)."""
    facts = procfs.stat(pid)
    if facts is None or facts["state"] in ("Z", "X"):
        return None
    return facts["starttime"]


def process(pid, what, kind=NODE_PROCESS):
    return Process(int(pid), start_time(pid), what, kind)


def alive(proc):
    """True while the very process recorded (same pid and start time) runs."""
    return proc is not None and proc.start is not None and start_time(proc.pid) == proc.start


def pidfd_of(proc):
    """A pidfd of the recorded process (readable once it exits), or None (gone, or no pidfd_open:
    Python < 3.9, Linux < 5.3; then look at ``alive`` now and then)."""
    if not hasattr(os, "pidfd_open") or not alive(proc):
        return None
    try:
        return os.pidfd_open(proc.pid)
    except OSError:
        return None


def describe_self(what):
    """This process, as the owner of a run it makes and removes itself (a module, a test, a benchmark)."""
    pid = os.getpid()
    return process(pid, "%s %d (%s)" % (what, pid, procfs.comm(pid)))


def _parent(pid):
    facts = procfs.stat(pid)
    return facts["ppid"] if facts else 0


def _is_ansible_controller(pid):
    argv = procfs.cmdline(pid)[:2]
    return any(os.path.basename(arg) in _CONTROLLERS for arg in argv)


def _command(pid):
    return " ".join(procfs.cmdline(pid))[:80]


def find_owner(pid=None):
    """The process that stands for the play, seen from a module process.

    Locally: the outermost ``ansible-playbook``/``ansible`` ancestor (its per-task
    workers come and go): a controller, whose end is the operator's.  Over SSH:
    the ``sshd`` process of the session, recorded to say where the play came
    from, never as a sign of life (with ControlPersist it outlives the controller
    by a minute); such a run lives by the lease its controller renews.  Otherwise
    the module's first ancestor that is not a shell, sudo or python wrapper.
    """
    chain = []
    current = _parent(pid or os.getpid())
    while current > 1 and len(chain) < 64:
        chain.append(current)
        current = _parent(current)
    for ancestor in chain:
        if procfs.comm(ancestor).startswith("sshd"):
            return process(ancestor, "ssh session (sshd %d: %s)" % (ancestor, _command(ancestor)), SSH_SESSION)
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
        return process(outer, "ansible controller (pid %d: %s)" % (outer, _command(outer)), CONTROLLER)
    for ancestor in chain:
        if procfs.comm(ancestor) not in _PASS_THROUGH:
            return process(ancestor, "parent process %d (%s)" % (ancestor, procfs.comm(ancestor)))
    parent = os.getppid()
    return process(parent, "parent process %d" % parent)


def under_async():
    """True in a module Ansible runs with ``async``: its answer goes to async_wrapper, which reads
    it whether or not anybody waits for it (Ansible sets ANSIBLE_ASYNC_DIR for async tasks only)."""
    return "ANSIBLE_ASYNC_DIR" in os.environ


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
