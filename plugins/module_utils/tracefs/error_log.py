# -*- coding: utf-8 -*-
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kernel's ``error_log`` and the error that quotes it.

A refused tracefs write is explained (when at all) by the lines the kernel
appended to ``error_log``; ``write_quoting_error_log`` does the write and, on
refusal, raises ``TracefsError`` with exactly those new lines.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os


class TracefsError(Exception):
    """The kernel refused something, or tracefs is not usable.

    ``error_log`` holds the kernel's error_log lines written by the failed
    operation (may be empty: not every refusal is logged).
    """

    def __init__(self, message, error_log=None):
        super(TracefsError, self).__init__(message)
        self.message = message
        self.error_log = list(error_log or [])


def _read(path):
    with open(path, "r") as handle:
        return handle.read()


def _error_log_lines(text):
    return [line for line in text.splitlines() if line.strip()]


def _snapshot_logs(full_paths):
    before = {}
    for log in full_paths:
        try:
            before[log] = _read(log)
        except (IOError, OSError):
            before[log] = None
    return before


def _new_lines(before):
    lines = []
    for log, old in before.items():
        if old is None:
            continue
        try:
            now = _read(log)
        except (IOError, OSError):
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
    except (IOError, OSError) as exc:
        new_lines = _new_lines(before)
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        message = "kernel refused %s: writing %r to %s failed (%s)" % (what or "the write", text, full, reason)
        if new_lines:
            message += "; error_log says: " + " | ".join(line.strip() for line in new_lines)
        elif exc.errno == errno.ENOENT:
            message += "; the file does not exist"
        elif exc.errno in (errno.EACCES, errno.EPERM):
            message += "; permission denied: run as root (become: true)"
        else:
            message += "; error_log has no entry for it"
        raise TracefsError(message, new_lines)
