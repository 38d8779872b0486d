# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kernel's ``error_log`` and the error that quotes it.

A refused tracefs write is explained (when at all) by the lines the kernel
appended to ``error_log``; ``write_quoting_error_log`` does the write and, on
refusal, raises ``TracefsError`` with exactly those new lines.
"""


import errno
import os

from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import RUN_AS_ROOT, FleettraceError


class TracefsError(FleettraceError):
    """The kernel refused something, or tracefs is not usable.

    ``error_log`` holds the kernel's error_log lines written by the failed
    operation (may be empty: not every refusal is logged).
    """

    def __init__(self, message, error_log=None, hint=None):
        super().__init__(message, hint=hint, error_log=error_log)


def _read(path):
    with open(path) as handle:
        return handle.read()


def _error_log_lines(text):
    return [line for line in text.splitlines() if line.strip()]


def _snapshot_logs(full_paths):
    before = {}
    for log in full_paths:
        try:
            before[log] = _read(log)
        except OSError:
            before[log] = None
    return before


def _new_lines(before):
    lines = []
    for log, old in before.items():
        if old is None:
            continue
        try:
            now = _read(log)
        except OSError:
            continue
        # error_log only grows (bounded ring): the new part is the tail.
        added = now[len(old):] if now.startswith(old) else now
        lines.extend(_error_log_lines(added))
    return lines


def write_quoting_error_log(full, text, append, log_paths, what=None):
    """Write one command to ``full``; on refusal raise ``TracefsError``.

    ``log_paths``: absolute error_log files where the kernel may log the
    reason (top level and/or the instance's own).  An empty write still
    reaches the kernel, for files like set_event_pid whose O_TRUNC open clears them.
    """
    before = _snapshot_logs(log_paths)
    flags = os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC)
    try:
        fd = os.open(full, flags)
        try:
            os.write(fd, text.encode("utf-8") if text else b"")
        finally:
            os.close(fd)
    except OSError as exc:
        new_lines = _new_lines(before)
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        message = "kernel refused %s: writing %r to %s failed (%s)" % (what or "the write", text, full, reason)
        if new_lines:
            message += "; error_log says: " + " | ".join(line.strip() for line in new_lines)
        elif exc.errno == errno.ENOENT:
            message += "; the file does not exist"
        elif exc.errno in (errno.EACCES, errno.EPERM):
            message += "; permission denied: " + RUN_AS_ROOT
        else:
            message += "; error_log has no entry for it"
        raise TracefsError(message, new_lines)
