# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Opening a file a user named, without letting it hang or flood the node.

``/dev/zero`` as a pidfile grew a module to 23 GB; a FIFO or ``/proc/kmsg``
blocked it forever, and a FIFO given as the binary to probe kept ``uprobe``
and ``probe_info`` stuck for half an hour after their controller was gone.
Every user-given path is therefore opened without blocking (``O_NONBLOCK``: a
FIFO without a writer, or for writing without a reader, answers at once, a
device never waits) and used only when it is a regular file, the kind of file
every option means:

- ``open_regular``: a file object to read (an ELF file, debug info, a source
  file), optionally refused above ``max_bytes``;
- ``read_user_file``: the bytes of a small file (at most ``max_bytes``, one
  byte more read to know it was too big), kernel files refused;
- ``open_output``: a file object to write (a result, a raw trace), created if
  missing, truncated only once it is known to be a regular file;
- ``read_available``: what a non-blocking pipe (``trace_pipe``, a wake-up
  pipe) holds now, never waiting for more.
"""


import errno
import fcntl
import os
import stat

from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError

# Sizes of what fleettrace reads from user paths.
PIDFILE_MAX = 4096
RESULT_MAX = 256 << 20
SOURCE_MAX = 64 << 20       # one source file shown next to its line numbers
HEADER_MAX = 4 << 20        # a system header read for a table (syscall numbers)


class FileRefused(FleettraceError, ValueError):
    """A user-given path that must not be read; the message says why and what to give instead."""


def _kind(mode):
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


def _open_fd(path, what, flags, mode=0o644):
    try:
        return os.open(path, flags | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, mode)
    except OSError as exc:
        try:  # a FIFO opened for writing without a reader answers ENXIO: say what it is
            mode = os.stat(path).st_mode
        except OSError:
            mode = stat.S_IFREG
        if not stat.S_ISREG(mode):
            raise FileRefused("%s %s is %s; give the path of a regular file" % (what, path, _kind(mode)))
        raise FileRefused("cannot %s %s %s: %s" % ("write" if flags & os.O_WRONLY else "read", what, path,
                                                   exc.strerror or exc))


def _regular(fd, path, what, max_bytes=None):
    """fstat of ``fd`` when it is a regular file of at most ``max_bytes``; else close it and refuse."""
    info = os.fstat(fd)
    why = None
    if not stat.S_ISREG(info.st_mode):
        why = "%s %s is %s; give the path of a regular file" % (what, path, _kind(info.st_mode))
    elif max_bytes is not None and info.st_size > max_bytes:
        why = "%s %s is %d bytes; at most %d are read: is it the right file?" % (what, path, info.st_size, max_bytes)
    if why is not None:
        os.close(fd)
        raise FileRefused(why)
    return info


def open_regular(path, what, max_bytes=None):
    """A binary file object for reading the regular file ``path``, or ``FileRefused`` (never blocks).

    ``what`` names the option in messages ("binary", "debuginfo").  On a
    regular file ``O_NONBLOCK`` changes nothing, so the object reads as usual.
    """
    fd = _open_fd(path, what, os.O_RDONLY)
    _regular(fd, path, what, max_bytes)
    return os.fdopen(fd, "rb")


def read_user_file(path, what, max_bytes):
    """The bytes of the regular file ``path`` (at most ``max_bytes``) or ``FileRefused``."""
    # /proc and /sys files report size 0 and may never end (/proc/kmsg): refuse them too.
    fd = _open_fd(path, what, os.O_RDONLY)
    try:
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode) and path.startswith(("/proc/", "/sys/")):
            raise FileRefused("%s %s is a kernel file; give the path of a regular file" % (what, path))
    except BaseException:
        os.close(fd)
        raise
    _regular(fd, path, what, max_bytes)
    try:
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


def open_output(path, what, mode=0o644):
    """A text file object writing the regular file ``path`` from its start, or ``FileRefused``.

    A FIFO, device or socket there is refused before anything is written (a
    FIFO without a reader would block the write forever).
    """
    fd = _open_fd(path, what, os.O_WRONLY | os.O_CREAT, mode)
    _regular(fd, path, what)
    try:
        os.ftruncate(fd, 0)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "w")


def open_new(path, what, mode=0o644, binary=False):
    """A file object (text, or bytes with ``binary``) writing the new file ``path`` (a temporary name).

    A file or symlink already there (left by a killed run, or planted) is
    removed first and never followed (``O_EXCL|O_NOFOLLOW``): the write lands
    in a file this call made.
    """
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise FileRefused("cannot replace %s %s: %s" % (what, path, exc.strerror or exc))
    fd = _open_fd(path, what, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return os.fdopen(fd, "wb" if binary else "w")


def check_output(path, what):
    """Refuse early (before a capture arms) an output path that ``open_output`` would refuse."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileRefused("%s %s: directory %s does not exist; create it first (ansible.builtin.file)"
                          % (what, path, directory))
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise FileRefused("cannot use %s %s: %s" % (what, path, exc.strerror or exc))
    if not stat.S_ISREG(info.st_mode):
        raise FileRefused("%s %s is %s; give the path of a regular file (it is written from its start)"
                          % (what, path, _kind(info.st_mode)))


def read_available(fd, consume=None):
    """Read what the non-blocking ``fd`` holds now, chunk by chunk, to ``consume(text)`` (None: dropped)."""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                return
            raise
        if not chunk:
            return
        if consume is not None:
            consume(chunk.decode("utf-8", "replace"))
