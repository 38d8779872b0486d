# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where runs are recorded on a node: one root-only directory, read as untrusted data.

``RUNS_DIR`` (mode 0700) holds ``TAG.json`` (the manifests), ``claims/NAME``
(which run owns a tracefs name: created with O_EXCL, so two runs never own one
name; its mtime is the run's last renewal: a renewal is a ``touch -c`` of a
name the renewer works on, cheap enough for every poll of a controller, and
no rewrite of the manifest), ``quarantine/`` (files that were not manifests)
and ``.lock`` (one writer at a time; an flock, released when its holder dies).
``../reaped.log`` says what was removed and why.

A run that was reaped (not finished by its play) leaves its claims behind as
*tombstones* until its deadline: a late task of its play (a controller that
came back after its lease ran out) is refused instead of creating an object
that no run owns.

Nothing here follows a symlink, writes through a name it did not just create
(temporary files are O_EXCL|O_NOFOLLOW), or reads more than a cap.  A
read-only or full file system is reported as OSError to the caller, which
decides whether it matters (it never stops objects from being removed).

One piece: every file of the directory (manifests, claims, tombstones, temporaries, quarantine, log)
is read and written through the same few guarded helpers, and its sweeps run under its one lock.
"""


import contextlib
import errno
import fcntl
import os
import re
import stat
import time
import uuid

from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs.manifest import (
    MAX_BYTES, Manifest, ManifestError, NewerSchema, owns_name)
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.fs import OWNED_PREFIX

RUNS_DIR = "/run/fleettrace/runs"
# Another directory for a play's runs (tests keep their adversarial manifests apart from the node's).
RUNS_DIR_VARIABLE = "FLEETTRACE_RUNS_DIR"
SUFFIX = ".json"
MAX_LOG_BYTES = 1 << 20
# A file that is not a manifest is still searched this far for the names it meant to own.
MAX_SCAN_BYTES = 1 << 20
MAX_SCAN_NAMES = 1024
_NAME_IN_TEXT = re.compile(r"(%s[A-Za-z0-9_.-]{0,64})" % re.escape(OWNED_PREFIX))
_TAG_FILE = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.-]{0,63})\.json$")
# A manifest or claim being written: NAME.<12 hex>.tmp, renamed over NAME at once (``save``, ``bury``).
_TEMPORARY = re.compile(r"\.[0-9a-f]{12}\.tmp$")
# A temporary file this old lost its writer (SIGKILL between write and rename): it goes.
STALE_TEMPORARY_S = 60.0


def _read_capped(path, cap):
    """At most ``cap`` + 1 bytes of a regular file, never through a symlink nor blocking on a FIFO."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        chunks, size = [], 0
        while size <= cap:
            chunk = os.read(fd, cap + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _write_new(path, data, mode=0o600):
    """Create ``path`` (never an existing file or a symlink) holding ``data``, on disk before it returns."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink(path)
        raise
    os.close(fd)


def _unlink(path):
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


class Quarantined(Exception):
    """A file in the runs directory that is not a manifest; it was moved aside."""

    def __init__(self, tag, path, why, names):
        super().__init__("%s: %s" % (path, why))
        self.tag, self.path, self.why, self.names = tag, path, why, names


class RunStore:
    def __init__(self, runs_dir=None, move_aside=True):
        """``move_aside=False`` (check mode): a file that is no manifest is reported, not moved."""
        self.dir = runs_dir or os.environ.get(RUNS_DIR_VARIABLE) or RUNS_DIR
        self.move_aside = move_aside
        self.claims = os.path.join(self.dir, "claims")
        self.quarantine_dir = os.path.join(self.dir, "quarantine")
        self.log_path = os.path.join(os.path.dirname(self.dir.rstrip("/")), "reaped.log")
        # Files this store moved aside since it was made: named in the caller's warnings.
        self.quarantined_now = []

    # -- the directory -------------------------------------------------------------------------
    def exists(self):
        return os.path.isdir(self.dir)

    def ensure(self):
        for path in (self.dir, self.claims, self.quarantine_dir):
            if not os.path.isdir(path):
                os.makedirs(path, 0o700)
            if os.lstat(path).st_mode & 0o777 != 0o700:
                os.chmod(path, 0o700)

    @contextlib.contextmanager
    def locked(self):
        """One writer of manifests at a time (flock: released when a holder dies). A read-only
        directory still locks: the lock file is opened read-only when it exists."""
        path = os.path.join(self.dir, ".lock")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            self.ensure()
            fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def path(self, tag):
        return os.path.join(self.dir, tag + SUFFIX)

    def tags(self):
        """Tags of the files that look like manifests (a name that could not be a tag is quarantined)."""
        try:
            names = sorted(os.listdir(self.dir))
        except OSError:
            return []
        tags = []
        for name in names:
            if not name.endswith(SUFFIX):
                continue
            match = _TAG_FILE.match(name)
            if match and ".." not in name:
                tags.append(match.group(1))
            else:
                self._move_aside(os.path.join(self.dir, name), name, "its name is not a run tag", b"")
        return tags

    # -- manifests -----------------------------------------------------------------------------
    def load(self, tag):
        """The run's manifest, or None when there is none. A file that is not a manifest is
        quarantined and raised as ``Quarantined`` (with the names it meant to own)."""
        path = self.path(tag)
        try:
            data = _read_capped(path, MAX_BYTES)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EINVAL):    # a symlink, a FIFO, a directory
                raise self._move_aside(path, tag, "not a regular file", b"")
            raise
        try:
            return Manifest.parse(data, tag)
        except NewerSchema:
            return None         # a later fleettrace's run: it has its own reapers
        except ManifestError as exc:
            if len(data) > MAX_BYTES:
                data = _read_capped(path, MAX_SCAN_BYTES)[:MAX_SCAN_BYTES]
            raise self._move_aside(path, tag, str(exc), data)

    def runs(self):
        """(manifests, quarantined): every readable manifest, and what was moved aside reading them."""
        manifests, quarantined = [], []
        for tag in self.tags():
            try:
                manifest = self.load(tag)
            except Quarantined as aside:
                quarantined.append(aside)
                continue
            if manifest is not None:
                manifests.append(manifest)
        return manifests, quarantined

    def save(self, manifest):
        """Write the manifest whole or not at all: a new temporary file, fsync, rename."""
        tmp = "%s.%s.tmp" % (self.path(manifest.tag), uuid.uuid4().hex[:12])
        _write_new(tmp, manifest.to_json())
        try:
            os.rename(tmp, self.path(manifest.tag))
        except BaseException:
            _unlink(tmp)
            raise

    def delete(self, manifest, ended=None):
        """Drop a run's manifest and its claims; ``ended`` (why it was reaped): leave tombstones instead."""
        if ended:
            self.bury(manifest, ended)
        else:
            self.release(manifest.tag, manifest.names)
        _unlink(self.path(manifest.tag))

    def _move_aside(self, path, tag, why, data):
        found = [n for n in _NAME_IN_TEXT.findall(data.decode("utf-8", "replace")) if owns_name(tag, n)]
        names = list(dict.fromkeys(found))      # once each, in the order written
        if len(names) > MAX_SCAN_NAMES:
            why += "; only the first %d of its %d names are looked for" % (MAX_SCAN_NAMES, len(names))
            names = names[:MAX_SCAN_NAMES]
        names = sorted(names)
        target = os.path.join(self.quarantine_dir, "%s.%d" % (os.path.basename(path), int(time.time() * 1000)))
        try:
            if not self.move_aside:
                raise OSError("check mode")
            self.ensure()
            os.rename(path, target)
        except OSError:
            target = path       # check mode, or read-only: it stays where it is, and is reported again
        aside = Quarantined(tag, target, why, names)
        self.quarantined_now.append(aside)
        if self.move_aside:
            self.log("%s: quarantined (%s) as %s; names it meant to own: %s" % (tag, why, target, names or "none"))
        return aside

    def quarantined(self):
        """Files moved aside so far (for cleanup's report)."""
        try:
            return sorted(os.path.join(self.quarantine_dir, n) for n in os.listdir(self.quarantine_dir))
        except OSError:
            return []

    # -- claims: one run per name ----------------------------------------------------------------
    def claim(self, tag, names):
        """Claim every name for ``tag``; return {name: other tag} for names another run holds
        (then nothing is claimed).  Call under ``locked``."""
        self.ensure()
        taken, made = {}, []
        for name in sorted(names):
            path = self.claim_path(name)
            try:
                _write_new(path, tag.encode("ascii"))
                made.append(path)
            except FileExistsError:
                holder = self.claimant(name)
                if holder == tag:
                    continue
                if holder is None:      # a tombstone, or a claim left by nobody: a new run may take the name
                    _unlink(path)
                    _write_new(path, tag.encode("ascii"))
                    made.append(path)
                    continue
                taken[name] = holder
        if taken:
            for path in made:
                _unlink(path)
        return taken

    def _claim_text(self, name):
        try:
            return _read_capped(self.claim_path(name), 512).decode("ascii", "replace").split("\n")
        except OSError:
            return [""]

    def claimant(self, name):
        """The tag of the live run that claims ``name``, or None (none, or a tombstone)."""
        lines = self._claim_text(name)
        if len(lines) > 1 and lines[1].startswith("ended "):
            return None
        return lines[0] if _TAG_FILE.match(lines[0] + SUFFIX) else None

    def ended(self, name):
        """(tag, why) of the reaped run whose tombstone ``name`` carries, or None."""
        lines = self._claim_text(name)
        if len(lines) < 2 or not lines[1].startswith("ended ") or not _TAG_FILE.match(lines[0] + SUFFIX):
            return None
        return lines[0], lines[1].split(" ", 2)[2] if lines[1].count(" ") >= 2 else "reaped"

    def bury(self, manifest, why):
        """Turn the run's claims into tombstones (until its deadline, at most a day from now)."""
        until = min(manifest.deadline, time.time() + 86400.0)
        text = ("%s\nended %d %s\n" % (manifest.tag, until, why.replace("\n", " ")[:200])).encode("ascii", "replace")
        for name in manifest.names:
            if self.claimant(name) != manifest.tag:
                continue
            tmp = "%s.%s.tmp" % (self.claim_path(name), uuid.uuid4().hex[:12])
            _write_new(tmp, text)
            os.rename(tmp, self.claim_path(name))

    def sweep_tombstones(self, now=None):
        """Tombstones past their run's deadline go."""
        now = time.time() if now is None else now
        try:
            names = os.listdir(self.claims)
        except OSError:
            return
        for name in names:
            lines = self._claim_text(name)
            if len(lines) > 1 and lines[1].startswith("ended "):
                parts = lines[1].split(" ")
                if len(parts) < 2 or not parts[1].isdigit() or int(parts[1]) <= now:
                    _unlink(self.claim_path(name))

    def sweep_temporaries(self, now=None):
        """Temporary files whose writer died before its rename (a SIGKILLed reaper or module) go once they
        are STALE_TEMPORARY_S old: a writer renames within milliseconds, under the lock."""
        now = time.time() if now is None else now
        for directory in (self.dir, self.claims):
            try:
                names = os.listdir(directory)
            except OSError:
                continue
            for name in names:
                if not _TEMPORARY.search(name):
                    continue
                path = os.path.join(directory, name)
                try:
                    info = os.lstat(path)
                except OSError:
                    continue
                if stat.S_ISREG(info.st_mode) and info.st_mtime <= now - STALE_TEMPORARY_S:
                    _unlink(path)

    def release(self, tag, names):
        for name in names:
            if self.claimant(name) == tag:
                _unlink(self.claim_path(name))

    def drop_claim(self, name):
        """A claim whose run is gone (no manifest names it any more)."""
        _unlink(self.claim_path(name))

    # -- leases: the claims' mtimes ------------------------------------------------------------
    def claim_path(self, name):
        return os.path.join(self.claims, name)

    def renew(self, manifest):
        """The run was renewed now: the mtime of each of its claims."""
        for name in manifest.names:
            if self.claimant(name) == manifest.tag:
                try:
                    os.utime(self.claim_path(name), follow_symlinks=False)
                except FileNotFoundError:
                    pass

    def renewed_at(self, manifest):
        """When the run was last renewed (None: it has no claims, e.g. a manifest of the version before)."""
        times = []
        for name in manifest.names:
            if self.claimant(name) != manifest.tag:
                continue
            try:
                info = os.lstat(self.claim_path(name))
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                times.append(info.st_mtime)
        return max(times) if times else None

    # -- the log -------------------------------------------------------------------------------
    def log(self, line):
        """One line in reaped.log (rotated at 1 MiB); a log that cannot be written is no error."""
        try:
            try:
                info = os.lstat(self.log_path)
                if stat.S_ISREG(info.st_mode) and info.st_size > MAX_LOG_BYTES:
                    os.rename(self.log_path, self.log_path + ".1")
            except FileNotFoundError:
                pass
            fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
            try:
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    os.write(fd, ("%s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), line))
                             .encode("utf-8", "replace")[:4096])
            finally:
                os.close(fd)
        except OSError:
            pass
