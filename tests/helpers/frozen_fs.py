"""A small ext4 filesystem that tests can freeze, to put writers into D state.

Writers to a frozen filesystem block in the kernel (``sb_start_write`` ->
``percpu_rwsem_wait``) in uninterruptible sleep until it is thawed: a
reliable, harmless way to make a real process stall in state D.

Usage::

    from tests.helpers.frozen_fs import LoopExt4

    with LoopExt4(tmp_path, size_mb=16) as fs:       # mkfs + loop mount
        path = fs.file("heartbeat")                    # a path inside it
        ...start a writer on path...
        fs.freeze_for(0.3)                             # frozen 300 ms, then thawed
        with fs.frozen():                              # or frozen for a block
            ...

Everything is undone in ``finally`` blocks: the filesystem is thawed,
unmounted and its loop device detached even when the test fails.  Needs
root, ``mkfs.ext4``, ``mount`` and ``fsfreeze`` (Debian: e2fsprogs,
util-linux; see scripts/setup.sh).
"""

import contextlib
import os
import shutil
import subprocess
import tempfile
import time


class FrozenFsUnavailable(RuntimeError):
    """The machine cannot make a loop-mounted ext4 (not root, no tools)."""


def _run(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError("%s failed (rc %d): %s" % (" ".join(cmd), proc.returncode, proc.stderr.strip()))
    return proc.stdout


def missing_requirements():
    """Why a LoopExt4 cannot be made here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root to mount a loop filesystem"
    for tool in ("mkfs.ext4", "mount", "umount", "fsfreeze"):
        if not shutil.which(tool):
            return "needs %s (see DEBIAN_PACKAGES in scripts/setup.sh)" % tool
    return None


class LoopExt4:
    """An ext4 image in ``parent_dir``, loop-mounted on a private directory."""

    def __init__(self, parent_dir=None, size_mb=16):
        self.parent_dir = str(parent_dir) if parent_dir is not None else None
        self.size_mb = size_mb
        self.workdir = None
        self.image = None
        self.mountpoint = None
        self.is_frozen = False
        self._mounted = False

    # -- lifecycle -------------------------------------------------------------
    def __enter__(self):
        reason = missing_requirements()
        if reason:
            raise FrozenFsUnavailable(reason)
        self.workdir = tempfile.mkdtemp(prefix="fleettrace-frozenfs-", dir=self.parent_dir)
        try:
            self.image = os.path.join(self.workdir, "ext4.img")
            self.mountpoint = os.path.join(self.workdir, "mnt")
            os.mkdir(self.mountpoint)
            with open(self.image, "wb") as handle:
                handle.truncate(self.size_mb * 1024 * 1024)
            _run(["mkfs.ext4", "-q", "-F", self.image])
            # mount -o loop attaches the loop device and autoclears it on umount.
            _run(["mount", "-o", "loop", self.image, self.mountpoint])
            self._mounted = True
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False

    def close(self):
        """Thaw, unmount, remove the image. Safe to call more than once."""
        try:
            if self.is_frozen:
                self.thaw()
        finally:
            try:
                if self._mounted:
                    # Lazy unmount as a fallback: a stray writer must not leak the mount.
                    proc = subprocess.run(["umount", self.mountpoint], stderr=subprocess.PIPE, check=False)
                    if proc.returncode != 0:
                        subprocess.run(["umount", "-l", self.mountpoint], stderr=subprocess.PIPE, check=False)
                    self._mounted = False
            finally:
                if self.workdir and os.path.isdir(self.workdir):
                    shutil.rmtree(self.workdir, ignore_errors=True)

    # -- use ---------------------------------------------------------------------
    def file(self, name):
        """Path of ``name`` inside the mounted filesystem."""
        return os.path.join(self.mountpoint, name)

    def freeze(self):
        _run(["fsfreeze", "--freeze", self.mountpoint])
        self.is_frozen = True

    def thaw(self):
        _run(["fsfreeze", "--unfreeze", self.mountpoint])
        self.is_frozen = False

    @contextlib.contextmanager
    def frozen(self):
        """Frozen for the duration of the ``with`` block, thawed even on error."""
        self.freeze()
        try:
            yield self
        finally:
            self.thaw()

    def freeze_for(self, seconds):
        """Freeze, sleep ``seconds``, thaw."""
        with self.frozen():
            time.sleep(seconds)
