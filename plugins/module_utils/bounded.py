# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading a file a user named, without letting it hang or flood the node.

``/dev/zero`` as a pidfile grew a module to 23 GB; a FIFO or ``/proc/kmsg``
blocked it forever.  ``read_user_file`` opens without blocking (``O_NONBLOCK``:
a FIFO without a writer returns at once, a device never waits), refuses
anything but a regular file (the kind of file the option means), and reads at
most ``max_bytes`` (one byte more to know it was too big).
"""


import os
import stat

from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError

# Sizes of what fleettrace reads from user paths.
PIDFILE_MAX = 4096
RESULT_MAX = 256 << 20


class FileRefused(FleettraceError, ValueError):
    """A user-given path that must not be read; the message says why and what to give instead."""


def _kind(mode):
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


def read_user_file(path, what, max_bytes):
    """The bytes of the regular file ``path`` (at most ``max_bytes``) or ``FileRefused``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        raise FileRefused("cannot read %s %s: %s" % (what, path, exc.strerror or exc))
    try:
        info = os.fstat(fd)
        # /proc and /sys files report size 0 and may never end (/proc/kmsg): refuse them too.
        if not stat.S_ISREG(info.st_mode) or path.startswith(("/proc/", "/sys/")):
            raise FileRefused("%s %s is %s; give the path of a regular file"
                              % (what, path, _kind(info.st_mode) if not stat.S_ISREG(info.st_mode) else "a kernel file"))
        if info.st_size > max_bytes:
            raise FileRefused("%s %s is %d bytes; at most %d are read: is it the right file?"
                              % (what, path, info.st_size, max_bytes))
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:
            raise FileRefused("%s %s is larger than %d bytes: is it the right file?" % (what, path, max_bytes))
        return b"".join(chunks)
    finally:
        os.close(fd)
