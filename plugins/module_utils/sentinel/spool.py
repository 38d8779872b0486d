# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A sentinel's files on the node: ``SPOOL_ROOT/<label>/`` (root only), written atomically.

- ``session.json``: the settings it was armed with, its run tag and nonce;
- ``state.json``: what the watcher says about itself (armed since, until, pids
  followed, captures kept and dropped, how it ended); the watcher is its only
  writer while it lives, the module writes it only when no watcher does;
- ``captures/NNNN.json``: one per stall, the finding as ``capture`` builds it;
- ``latency.json``: the culprit call's latency, measured since the first capture;
- ``sentinel.log``: one line per event worth a line (armed, capture, end);
- ``code/``: the watcher's own copy of the collection's node-side code.

The spool survives a reboot (``/var/lib``); the run manifest and tracefs
objects do not.  Its size is capped: ``choose_drops`` keeps the first and the
longest captures and names what it dropped.
"""


import contextlib
import errno
import fcntl
import json
import os
import shutil
import time

from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError

STATE, SESSION, LATENCY, LOG, CODE, CAPTURES = (
    "state.json", "session.json", "latency.json", "sentinel.log", "code", "captures")
MAX_JSON_BYTES = 64 << 20
MAX_LOG_BYTES = 1 << 20
# Dropped captures listed one by one (the count goes on past it).
MAX_DROPPED_LISTED = 200


class SpoolError(FleettraceError, OSError):
    """The spool cannot be read or written (the message names the file); an OSError with its errno too."""

    def __init__(self, code, message):
        super().__init__(message)
        self.errno = code
        self.strerror = message


def write_atomically(path, data, mode=0o600):
    """Write bytes to a temporary file next to ``path`` (``O_EXCL|O_NOFOLLOW``), fsync, rename."""
    temp = "%s.%d.tmp" % (path, os.getpid())
    try:
        os.unlink(temp)
    except OSError:
        pass
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temp, path)


def read_bounded(path, limit=MAX_JSON_BYTES):
    """A regular file's bytes, at most ``limit`` (never follows a symlink, never blocks on a FIFO)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise SpoolError(errno.EFBIG, "%s is larger than %d bytes" % (path, limit))
    return b"".join(chunks)


def choose_drops(entries, cap_bytes):
    """Ids of captures to drop so that the kept ones fit in ``cap_bytes``.

    ``entries``: [{id, bytes, duration_ms}] oldest first, the newest last.  The
    first capture and the longest are always kept (each is at most half the cap,
    see ``Spool.fit``); among the others the shortest go first, the oldest first
    between equals.
    """
    total = sum(e["bytes"] for e in entries)
    if total <= cap_bytes or not entries:
        return []
    first = entries[0]["id"]
    longest = max(entries, key=lambda e: (e.get("duration_ms") or 0, -e["id"]))["id"]
    candidates = sorted((e for e in entries if e["id"] not in (first, longest)),
                        key=lambda e: (e.get("duration_ms") or 0, e["id"]))
    drops = []
    for entry in candidates:
        if total <= cap_bytes:
            break
        drops.append(entry["id"])
        total -= entry["bytes"]
    return drops


class Spool:
    """The directory of one label."""

    def __init__(self, root, label):
        self.root = root
        self.label = label
        self.dir = os.path.join(root, label)

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def exists(self):
        return os.path.isdir(self.dir)

    def ensure(self):
        for directory in (self.root, self.dir, self.path(CAPTURES)):
            if not os.path.isdir(directory):
                os.makedirs(directory, 0o700)
        os.chmod(self.dir, 0o700)

    @contextlib.contextmanager
    def locked(self):
        """One arm/disarm of this label at a time (flock: released when its holder dies)."""
        self.ensure()
        fd = os.open(self.path(".lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- JSON files ----------------------------------------------------------------
    def read_json(self, *parts):
        """The parsed file, or None when it is missing or not JSON (a torn write never happens: rename)."""
        try:
            return json.loads(read_bounded(self.path(*parts)).decode("utf-8"))
        except (OSError, ValueError):
            return None

    def write_json(self, data, *parts):
        write_atomically(self.path(*parts), (json.dumps(data, indent=1, sort_keys=True) + "\n").encode("utf-8"))

    def state(self):
        return self.read_json(STATE) or {}

    def save_state(self, state):
        self.write_json(state, STATE)

    def session(self):
        return self.read_json(SESSION)

    # -- captures ------------------------------------------------------------------
    @staticmethod
    def capture_name(capture_id):
        return "%04d.json" % capture_id

    def capture(self, capture_id):
        return self.read_json(CAPTURES, self.capture_name(capture_id))

    @staticmethod
    def fit(document, limit_bytes):
        """The capture's JSON within ``limit_bytes``: its oldest events go first, then its fd list.

        Returns (bytes, what was trimmed).  The finding itself is never trimmed.
        """
        trimmed = []
        text = json.dumps(document, sort_keys=True).encode("utf-8")
        events = document.get("events") or []
        while len(text) > limit_bytes and events:
            cut = max(1, len(events) // 4)
            del events[:cut]
            trimmed.append(cut)
            document["events_kept"] = len(events)
            text = json.dumps(document, sort_keys=True).encode("utf-8")
        what = ["%d oldest events" % sum(trimmed)] if trimmed else []
        fds = (document.get("process") or {}).get("fds") or []
        if len(text) > limit_bytes and len(fds) > 16:
            document["process"]["fds"] = fds[:16]
            document["process"]["fds_trimmed"] = len(fds) - 16
            what.append("%d fds" % (len(fds) - 16))
            text = json.dumps(document, sort_keys=True).encode("utf-8")
        return text, what

    def add_capture(self, capture_id, document, index, cap_bytes):
        """Write capture ``capture_id`` atomically and apply the size cap.

        ``index``: the kept captures' entries (``{id, bytes, duration_ms, ...}``), updated in place.
        Returns the entries of the captures dropped for room.
        """
        document["trimmed"] = []
        data, trimmed = self.fit(document, max(1024, cap_bytes // 2))
        if trimmed:
            document["trimmed"] = trimmed
            data = json.dumps(document, sort_keys=True).encode("utf-8")
        self.ensure()
        write_atomically(self.path(CAPTURES, self.capture_name(capture_id)), data)
        entry = {"id": capture_id, "bytes": len(data), "duration_ms": document.get("duration_ms"),
                 "at": document.get("at"), "pid": document.get("pid"), "summary": document.get("summary"),
                 "file": self.path(CAPTURES, self.capture_name(capture_id)), "trimmed": trimmed}
        index.append(entry)
        dropped = []
        for drop_id in choose_drops(index, cap_bytes):
            gone = [e for e in index if e["id"] == drop_id][0]
            try:
                os.unlink(gone["file"])
            except OSError:
                pass
            index.remove(gone)
            dropped.append(dict(gone, dropped_at=time.time(), why="spool over %d KiB" % (cap_bytes // 1024)))
        return dropped

    def record_capture(self, state, document, cap_bytes):
        """Add capture ``document`` (its ``id`` is ``state``'s next) and count it in ``state``: the index of the
        kept captures, the totals, what was dropped for room (listed, and logged)."""
        capture_id = document["id"]
        state["next_id"] = capture_id + 1
        dropped = self.add_capture(capture_id, document, state.setdefault("captures", []), cap_bytes)
        state["captures_total"] = state.get("captures_total", 0) + 1
        state["session_captures"] = state.get("session_captures", 0) + 1
        state["events_lost"] = state.get("events_lost", 0) + document.get("lost_events", 0)
        if dropped:
            state["dropped_total"] = state.get("dropped_total", 0) + len(dropped)
            state["dropped"] = (state.get("dropped", []) + dropped)[-MAX_DROPPED_LISTED:]
            for gone in dropped:
                self.log("capture %d (%s ms) dropped: %s" % (gone["id"], gone["duration_ms"], gone["why"]))
        return dropped

    # -- log and removal -----------------------------------------------------------
    def log(self, line):
        path = self.path(LOG)
        try:
            if os.path.exists(path) and os.path.getsize(path) > MAX_LOG_BYTES:
                os.rename(path, path + ".1")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, ("%s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), line)).encode("utf-8"))
            finally:
                os.close(fd)
        except OSError:
            pass

    def log_lines(self, limit=50):
        try:
            text = read_bounded(self.path(LOG), MAX_LOG_BYTES * 2).decode("utf-8", "replace")
        except OSError:
            return []
        return text.splitlines()[-limit:]

    def remove(self, keep_captures=False):
        """Remove the spool (with ``keep_captures`` only the watcher's code and its working files)."""
        if not self.exists():
            return False
        if keep_captures:
            shutil.rmtree(self.path(CODE), ignore_errors=True)
            return True
        shutil.rmtree(self.dir, ignore_errors=True)
        return True
