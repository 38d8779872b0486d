"""The cgroup freezer, as an operator's tooling uses it, to stall a real process.

``systemctl freeze``, container runtimes pausing a container (``docker pause``)
and checkpointing all freeze a cgroup.  A task that is frozen leaves the CPU
in the kernel's ``__refrigerator`` (cgroup v1: state D) or ``do_freezer_trap``
(cgroup v2: state S), outside any system call: the wait it was in returns
-EINTR first.  A task asleep in a freezable wait (``clock_nanosleep``) is
frozen where it sleeps, without leaving the CPU again.

Usage::

    with CgroupFreezer("fleettrace_<token>_freeze") as freezer:
        freezer.add(pid)                # every thread of the process
        freezer.freeze_for(2.0)         # frozen 2 s, then thawed

The cgroup is made under the v1 ``freezer`` hierarchy when it is mounted,
else under the v2 hierarchy (``cgroup.freeze``).  Leaving always thaws, moves
the processes back where they were and removes the cgroup, also on failure.
"""

import os
import time

V1_ROOT = "/sys/fs/cgroup/freezer"
V2_ROOTS = ("/sys/fs/cgroup/unified", "/sys/fs/cgroup")


class FreezerUnavailable(RuntimeError):
    """No cgroup freezer this test can use (not root, no hierarchy with one)."""


def _write(path, value):
    with open(path, "w") as handle:
        handle.write(value)


def _v2_root():
    for root in V2_ROOTS:
        if os.path.exists(os.path.join(root, "cgroup.procs")) and not os.path.exists(os.path.join(root, "tasks")):
            return root
    return None


def _cgroup_of(pid, hierarchy):
    """The pid's cgroup path in one hierarchy ('freezer' for v1, '' for v2), from /proc/PID/cgroup."""
    with open("/proc/%d/cgroup" % pid) as handle:
        for line in handle:
            controllers, path = line.rstrip("\n").split(":", 2)[1:]
            if (hierarchy == "" and controllers == "") or hierarchy in controllers.split(","):
                return path
    return "/"


class CgroupFreezer:
    def __init__(self, name):
        if os.geteuid() != 0:
            raise FreezerUnavailable("freezing a cgroup needs root")
        if os.path.exists(os.path.join(V1_ROOT, "freezer.state")) or os.path.isdir(V1_ROOT):
            self.version, self.root = 1, V1_ROOT
        else:
            self.version, self.root = 2, _v2_root()
            if self.root is None:
                raise FreezerUnavailable("no cgroup freezer: neither %s nor a cgroup v2 mount" % V1_ROOT)
        self.path = os.path.join(self.root, name)
        self._moved = []  # (pid, the cgroup it came from)

    @property
    def state_letter(self):
        """The state a task frozen outside a freezable wait leaves the CPU in."""
        return "D" if self.version == 1 else "S"

    @property
    def frames(self):
        """The kernel function a frozen task sleeps in."""
        return ("__refrigerator",) if self.version == 1 else ("do_freezer_trap",)

    def __enter__(self):
        os.mkdir(self.path)
        return self

    def add(self, pid):
        origin = _cgroup_of(pid, "freezer" if self.version == 1 else "")
        _write(os.path.join(self.path, "cgroup.procs"), str(pid))
        self._moved.append((pid, origin))

    def freeze(self):
        if self.version == 1:
            _write(os.path.join(self.path, "freezer.state"), "FROZEN")
        else:
            _write(os.path.join(self.path, "cgroup.freeze"), "1")

    def thaw(self):
        if self.version == 1:
            _write(os.path.join(self.path, "freezer.state"), "THAWED")
        else:
            _write(os.path.join(self.path, "cgroup.freeze"), "0")

    def freeze_for(self, seconds):
        self.freeze()
        try:
            time.sleep(seconds)
        finally:
            self.thaw()

    def __exit__(self, *exc):
        try:
            self.thaw()
        finally:
            for pid, origin in self._moved:
                try:
                    _write(os.path.join(self.root, origin.lstrip("/"), "cgroup.procs"), str(pid))
                except (ProcessLookupError, FileNotFoundError):
                    pass  # the process ended
            for _attempt in range(50):
                try:
                    os.rmdir(self.path)
                    break
                except OSError:
                    time.sleep(0.1)  # an exiting task still counts for a moment
        return False
