# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""System calls as strace prints them: name, arguments by name, fds with their path.

x86_64 numbers (arch/x86/entry/syscalls/syscall_64.tbl) for the calls a
stalled daemon is likely to sit in, completed from ``asm/unistd_64.h`` when
the node has kernel headers; argument names for the common calls; flags and
ioctl commands by name.  Pure tables, no tracefs.
"""


import os
import re

from ansible_collections.fleettrace.tracefs.plugins.module_utils import bounded
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import ioctl

X86_64_SYSCALLS = {
    0: "read", 1: "write", 2: "open", 3: "close", 4: "stat", 5: "fstat", 6: "lstat", 7: "poll",
    8: "lseek", 9: "mmap", 10: "mprotect", 11: "munmap", 12: "brk", 13: "rt_sigaction",
    14: "rt_sigprocmask", 16: "ioctl", 17: "pread64", 18: "pwrite64", 19: "readv", 20: "writev",
    21: "access", 22: "pipe", 23: "select", 24: "sched_yield", 25: "mremap", 26: "msync",
    28: "madvise", 32: "dup", 33: "dup2", 34: "pause", 35: "nanosleep", 39: "getpid", 40: "sendfile",
    41: "socket", 42: "connect", 43: "accept", 44: "sendto", 45: "recvfrom", 46: "sendmsg",
    47: "recvmsg", 48: "shutdown", 49: "bind", 50: "listen", 56: "clone", 57: "fork",
    59: "execve", 60: "exit", 61: "wait4", 62: "kill", 72: "fcntl", 73: "flock", 74: "fsync",
    75: "fdatasync", 76: "truncate", 77: "ftruncate", 78: "getdents", 80: "chdir", 81: "fchdir",
    82: "rename", 83: "mkdir", 84: "rmdir", 85: "creat", 86: "link", 87: "unlink",
    91: "fchmod", 93: "fchown", 130: "rt_sigsuspend", 162: "sync", 165: "mount", 166: "umount2",
    202: "futex", 217: "getdents64", 228: "clock_gettime", 230: "clock_nanosleep", 231: "exit_group",
    232: "epoll_wait", 233: "epoll_ctl", 257: "openat", 262: "newfstatat", 270: "pselect6",
    271: "ppoll", 277: "sync_file_range", 281: "epoll_pwait", 285: "fallocate", 288: "accept4",
    292: "dup3", 293: "pipe2", 295: "preadv", 296: "pwritev", 299: "recvmmsg", 306: "syncfs",
    307: "sendmmsg", 318: "getrandom", 332: "statx", 435: "clone3", 441: "epoll_pwait2",
}
UNISTD_HEADERS = ("/usr/include/x86_64-linux-gnu/asm/unistd_64.h", "/usr/include/asm/unistd_64.h")

# Where an event loop waits for its next event or timer: sleeping here is the
# loop being idle, not a stall (the stall is what kept it from getting here).
IDLE_WAITS = frozenset((
    "epoll_wait", "epoll_pwait", "epoll_pwait2", "poll", "ppoll", "select", "pselect6",
    "nanosleep", "clock_nanosleep", "pause", "rt_sigsuspend", "rt_sigtimedwait", "io_getevents",
    "io_uring_enter"))

# Argument names of the common calls (strace's order); others print as hex.
ARGUMENTS = {
    "read": ("fd", "buf", "count"), "write": ("fd", "buf", "count"), "close": ("fd",),
    "ioctl": ("fd", "cmd", "arg"), "open": ("filename", "flags", "mode"),
    "openat": ("dfd", "filename", "flags", "mode"), "pread64": ("fd", "buf", "count", "pos"),
    "pwrite64": ("fd", "buf", "count", "pos"), "readv": ("fd", "vec", "vlen"),
    "writev": ("fd", "vec", "vlen"), "fsync": ("fd",), "fdatasync": ("fd",), "syncfs": ("fd",),
    "fcntl": ("fd", "cmd", "arg"), "flock": ("fd", "cmd"), "lseek": ("fd", "offset", "whence"),
    "ftruncate": ("fd", "length"), "fallocate": ("fd", "mode", "offset", "len"),
    "sendto": ("fd", "buff", "len", "flags", "addr", "addr_len"),
    "recvfrom": ("fd", "ubuf", "size", "flags", "addr", "addr_len"),
    "sendmsg": ("fd", "msg", "flags"), "recvmsg": ("fd", "msg", "flags"),
    "connect": ("fd", "uservaddr", "addrlen"), "accept": ("fd", "upeer_sockaddr", "upeer_addrlen"),
    "accept4": ("fd", "upeer_sockaddr", "upeer_addrlen", "flags"),
    "epoll_wait": ("epfd", "events", "maxevents", "timeout"),
    "epoll_pwait": ("epfd", "events", "maxevents", "timeout", "sigmask", "sigsetsize"),
    "poll": ("ufds", "nfds", "timeout_msecs"), "ppoll": ("ufds", "nfds", "tsp", "sigmask", "sigsetsize"),
    "select": ("n", "inp", "outp", "exp", "tvp"), "pselect6": ("n", "inp", "outp", "exp", "tsp", "sig"),
    "nanosleep": ("rqtp", "rmtp"), "clock_nanosleep": ("which_clock", "flags", "rqtp", "rmtp"),
    "futex": ("uaddr", "op", "val", "utime", "uaddr2", "val3"), "sync_file_range": ("fd", "offset", "nbytes", "flags"),
    "mmap": ("addr", "len", "prot", "flags", "fd", "off"), "munmap": ("addr", "len"),
}
FD_NAMES = ("fd", "dfd", "epfd", "fildes", "out_fd", "in_fd")
AT_FDCWD = -100

# include/uapi/asm-generic/fcntl.h (x86_64 values).
OPEN_ACCESS = {0: "O_RDONLY", 1: "O_WRONLY", 2: "O_RDWR"}
OPEN_FLAGS = ((0o100, "O_CREAT"), (0o200, "O_EXCL"), (0o400, "O_NOCTTY"), (0o1000, "O_TRUNC"),
              (0o2000, "O_APPEND"), (0o4000, "O_NONBLOCK"), (0o10000, "O_DSYNC"), (0o20000, "O_ASYNC"),
              (0o40000, "O_DIRECT"), (0o100000, "O_LARGEFILE"), (0o200000, "O_DIRECTORY"),
              (0o400000, "O_NOFOLLOW"), (0o1000000, "O_NOATIME"), (0o2000000, "O_CLOEXEC"),
              (0o4010000, "O_SYNC"), (0o10000000, "O_PATH"), (0o20200000, "O_TMPFILE"))
# Which argument of a system call is a file descriptor (index into args).
FD_ARGUMENT = {name: names.index(fd) for name, names in ARGUMENTS.items()
               for fd in FD_NAMES if fd in names}
for _name in ("getdents", "getdents64", "fchdir", "fchmod", "fchown", "epoll_ctl", "preadv", "pwritev",
              "recvmmsg", "sendmmsg", "dup", "dup2", "dup3", "shutdown", "bind", "listen", "getsockopt",
              "setsockopt", "getsockname", "getpeername", "epoll_pwait2", "fstat"):
    FD_ARGUMENT.setdefault(_name, 0)
FD_ARGUMENT.pop("openat", None)  # dfd is a directory, not what the call waits on
FD_ARGUMENT["sendfile"] = 0

_table_cache = []


def table(headers=UNISTD_HEADERS):
    """number -> name for x86_64: the node's header if present, else the built-in subset."""
    if _table_cache:
        return _table_cache[0]
    names = dict(X86_64_SYSCALLS)
    for header in headers:
        try:
            with bounded.open_regular(header, "header", bounded.HEADER_MAX) as handle:
                for line in handle.read().decode("utf-8", "replace").splitlines():
                    match = re.match(r"#define __NR_(\w+)\s+(\d+)", line)
                    if match:
                        names[int(match.group(2))] = match.group(1)
            break
        except (OSError, bounded.FileRefused):
            continue
    _table_cache.append(names)
    return names


def name(number):
    """The x86_64 name of a syscall number (None elsewhere: numbers differ per architecture)."""
    if os.uname()[4] not in ("x86_64",):
        return None
    return table().get(number)


def open_flags(value):
    """``O_WRONLY|O_CREAT|O_APPEND`` for an open flags word."""
    value = int(value)
    parts = [OPEN_ACCESS.get(value & 3, "0x%x" % (value & 3))]
    rest = value & ~3
    for bit, flag in sorted(OPEN_FLAGS, key=lambda item: -bin(item[0]).count("1")):
        if rest & bit == bit:
            parts.append(flag)
            rest &= ~bit
    if rest:
        parts.append("0x%x" % rest)
    return "|".join(parts)


def named_args(call_name, args):
    """[(name, value)] of a call's arguments: a dict (syscalls:* event) or a list (raw_syscalls)."""
    if isinstance(args, dict):
        return [(key, value) for key, value in args.items() if key != "__syscall_nr"]
    names = ARGUMENTS.get(call_name)
    if names is None:
        return [("arg%d" % index, value) for index, value in enumerate(args or [])]
    return list(zip(names, args or []))


def _signed32(value):
    value = int(value) & 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def format_call(call_name, args, fd_paths=None):
    """``ioctl(fd 10 -> /dev/watchdog, WDIOC_KEEPALIVE)``: one call as strace would show it.

    ``fd_paths``: {fd: path} known for the process (paths shown after ``->``).
    Buffers and pointers print as hex (their contents were not recorded).
    """
    fd_paths = fd_paths or {}
    shown = []
    for key, value in named_args(call_name, args):
        if not isinstance(value, int):
            shown.append(str(value))
            continue
        if key in FD_NAMES:
            fd = _signed32(value)
            if key == "dfd" and fd == AT_FDCWD:
                shown.append("AT_FDCWD")
                continue
            path = fd_paths.get(fd)
            shown.append("fd %d -> %s" % (fd, path) if path else "fd %d" % fd)
        elif call_name == "ioctl" and key == "cmd":
            shown.append(ioctl.decode(value)["text"])
        elif call_name in ("open", "openat") and key == "flags":
            shown.append(open_flags(value))
        elif key in ("count", "size", "len", "maxevents", "nfds", "vlen", "timeout", "timeout_msecs", "n"):
            shown.append(str(_signed32(value)))
        else:
            shown.append("0x%x" % value)
    return "%s(%s)" % (call_name, ", ".join(shown))


def short_call(call_name, args, fd_paths=None):
    """The call with only what was decoded (fds, ioctl command, open flags), as the talk's slide shows it:
    ``ioctl(fd 10 -> /dev/watchdog, WDIOC_KEEPALIVE)``, ``write(fd 3 -> /var/log/x)``."""
    kept = {key: value for key, value in named_args(call_name, args)
            if key in FD_NAMES or (call_name == "ioctl" and key == "cmd")
            or (call_name in ("open", "openat") and key in ("flags", "dfd"))}
    text = format_call(call_name, kept, fd_paths)
    return text


def describe(call, fd_paths=None):
    """Decoded facts of a call dict (correlate's ``{'name', 'args', 'fd', ...}``): text, short and ioctl."""
    facts = {"text": format_call(call["name"], call["args"], fd_paths),
             "short": short_call(call["name"], call["args"], fd_paths)}
    if call["name"] == "ioctl":
        cmd = dict(named_args("ioctl", call["args"])).get("cmd")
        if isinstance(cmd, int):
            facts["ioctl"] = ioctl.decode(cmd)
    return facts
