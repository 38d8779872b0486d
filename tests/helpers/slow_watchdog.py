"""The slow watchdog (tests/programs/slow_watchdog): a FUSE watchdog device for tests.

Usage::

    from tests.helpers import slow_watchdog

    binary = slow_watchdog.build(cc, tmp_path)              # pkg-config fuse3
    with slow_watchdog.SlowWatchdog(binary, tmp_path, "ft_" + run_token) as wd:
        fd = os.open(wd.device, os.O_WRONLY)                # MNT/watchdog
        wd.control(delay_ms=1000, every=1)                  # keepalives now block 1 s
        ...
        wd.keepalives()                                     # the daemon's own log: the truth

Leaving the ``with`` block (also on failure) stops the daemon and unmounts
(``fusermount3 -u``, then ``umount -l`` as a fallback).  ``mounts_of(marker)``
lists mounts whose source or mount point carries a marker, for leak checks.
"""

import os
import re
import shutil
import signal
import subprocess
import time

PROGRAMS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "programs", "slow_watchdog")
SOURCE = os.path.join(PROGRAMS, "slow_watchdog.c")
WITH_DEV_WATCHDOG = os.path.join(PROGRAMS, "with_dev_watchdog.sh")

# linux/watchdog.h, as the kernel encodes them (_IOR/_IOWR('W', n, size)).
WDIOC_GETSUPPORT = 0x80285700
WDIOC_SETOPTIONS = 0x80045704
WDIOC_KEEPALIVE = 0x80045705
WDIOC_SETTIMEOUT = 0xC0045706
WDIOC_GETTIMEOUT = 0x80045707

_KEEPALIVE = re.compile(r"^keepalive seq=(\d+) pid=(\d+) start_ns=(\d+) end_ns=(\d+) duration_ns=(\d+) slow=([01])$")
_IOCTL = re.compile(r"^ioctl cmd=(0x[0-9a-f]+) name=(\S+) pid=(\d+) result=(-?\d+)$")
START_TIMEOUT_S = 30


class FuseUnavailable(RuntimeError):
    """This machine cannot run a FUSE file system (what is missing is in the message)."""


def fuse_unavailable():
    """Why the slow watchdog cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (FUSE mount, namespaces)"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse: load the fuse module (modprobe fuse) or give the container the device"
    with open("/proc/filesystems") as handle:
        if not re.search(r"\bfuse$", handle.read(), re.M):
            return "the kernel has no fuse file system (modprobe fuse)"
    for tool in ("pkg-config", "fusermount3"):
        if not shutil.which(tool):
            return "needs %s (scripts/setup.sh installs fuse3, libfuse3-dev, pkgconf)" % tool
    if subprocess.run(["pkg-config", "--exists", "fuse3"], check=False).returncode != 0:
        return "no libfuse3 development files (scripts/setup.sh installs libfuse3-dev)"
    return None


def build(cc, out_dir):
    """Compile slow_watchdog.c into out_dir; raises FuseUnavailable when FUSE cannot work here."""
    reason = fuse_unavailable()
    if reason:
        raise FuseUnavailable(reason)
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "fuse3"], stdout=subprocess.PIPE,
                           text=True, check=True).stdout.split()
    binary = os.path.join(str(out_dir), "slow_watchdog")
    subprocess.run([cc, "-O2", "-g", "-Wall", "-o", binary, SOURCE] + flags, check=True)
    return binary


def mounts_of(marker):
    """Mount points (host namespace) whose source or mount point contains marker."""
    found = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            fields = line.split()
            sep = fields.index("-")
            mount_point, source = fields[4], fields[sep + 2]
            if marker in mount_point or marker in source:
                found.append(mount_point)
    return found


def parse_log(text):
    """(keepalives, ioctls) from the daemon's log text."""
    keepalives, ioctls = [], []
    for line in text.splitlines():
        match = _KEEPALIVE.match(line)
        if match:
            seq, pid, start, end, duration, slow = (int(group) for group in match.groups())
            keepalives.append({"seq": seq, "pid": pid, "start_ns": start, "end_ns": end,
                               "duration_ns": duration, "slow": bool(slow)})
            continue
        match = _IOCTL.match(line)
        if match:
            ioctls.append({"cmd": int(match.group(1), 16), "name": match.group(2), "pid": int(match.group(3)),
                           "result": int(match.group(4))})
    return keepalives, ioctls


class SlowWatchdog:
    """A running slow_watchdog mounted on a private directory under workdir."""

    def __init__(self, binary, workdir, fsname, delay_ms=0, every=1, enabled=True):
        self.binary = binary
        self.workdir = os.path.join(str(workdir), "watchdog_fs")
        self.mountpoint = os.path.join(self.workdir, "mnt")
        self.device = os.path.join(self.mountpoint, "watchdog")
        self.control_file = os.path.join(self.mountpoint, "control")
        self.log = os.path.join(self.workdir, "keepalives.log")
        self.stderr = os.path.join(self.workdir, "daemon.err")
        self.fsname = fsname
        self.settings = {"delay_ms": delay_ms, "every": every, "enabled": enabled}
        self.proc = None

    def __enter__(self):
        os.makedirs(self.mountpoint)
        args = [self.binary, self.mountpoint, "--log", self.log, "--fsname", self.fsname,
                "--delay-ms", str(self.settings["delay_ms"]), "--every", str(self.settings["every"])]
        if not self.settings["enabled"]:
            args.append("--disabled")
        try:
            with open(self.stderr, "w") as err:
                self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err)
            deadline = time.time() + START_TIMEOUT_S
            while self.mountpoint not in mounts_of(self.mountpoint):
                if self.proc.poll() is not None or time.time() > deadline:
                    raise AssertionError("slow_watchdog did not mount (rc %s): %s"
                                         % (self.proc.poll(), self.read(self.stderr)))
                time.sleep(0.05)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False

    def control(self, **settings):
        """Change delay_ms / every / enabled at run time (written to MNT/control)."""
        text = " ".join("%s=%d" % (key, int(value)) for key, value in sorted(settings.items()))
        with open(self.control_file, "w") as handle:
            handle.write(text + "\n")

    def try_control(self, **settings):
        """control() for cleanup paths: False instead of an error when the daemon is gone."""
        try:
            self.control(**settings)
            return True
        except OSError:
            return False

    def state(self):
        """The daemon's counters and settings, as it reports them in MNT/control."""
        with open(self.control_file) as handle:
            return {key: int(value) for key, value in (item.split("=") for item in handle.read().split())}

    @staticmethod
    def read(path):
        try:
            with open(path) as handle:
                return handle.read()
        except OSError:
            return ""

    def keepalives(self):
        return parse_log(self.read(self.log))[0]

    def ioctls(self):
        return parse_log(self.read(self.log))[1]

    def close(self):
        """Stop the daemon and make sure the mount is gone. Safe to call twice."""
        if self.proc is not None and self.proc.poll() is None:
            # SIGTERM: the daemon leaves its loop and unmounts itself.
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        # mountinfo, not os.path.ismount: a dead daemon's mount fails stat (ENOTCONN).
        if self.mountpoint in mounts_of(self.mountpoint):
            if subprocess.run(["fusermount3", "-u", self.mountpoint], stderr=subprocess.DEVNULL,
                              check=False).returncode != 0:
                subprocess.run(["umount", "-l", self.mountpoint], stderr=subprocess.DEVNULL, check=False)
