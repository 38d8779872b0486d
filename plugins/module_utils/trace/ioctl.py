# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ioctl commands decoded the way strace prints them.

A command packs direction, type, number and argument size
(include/uapi/asm-generic/ioctl.h): ``0x80045705`` is ``_IOR('W', 5, int)``,
which the watchdog API names ``WDIOC_KEEPALIVE``.  Common families carry
their names (watchdog, terminals, block devices, file systems); anything else
comes back as its decoded fields.  Pure tables, x86_64 / generic layout.
"""


# Field widths and shifts of the generic layout (x86_64, arm64, riscv).
NR_BITS, TYPE_BITS, SIZE_BITS, DIR_BITS = 8, 8, 14, 2
NR_SHIFT = 0
TYPE_SHIFT = NR_SHIFT + NR_BITS
SIZE_SHIFT = TYPE_SHIFT + TYPE_BITS
DIR_SHIFT = SIZE_SHIFT + SIZE_BITS
DIR_NONE, DIR_WRITE, DIR_READ = 0, 1, 2
# _IOW means the caller writes (copy_from_user), _IOR the caller reads.
DIR_MACRO = {DIR_NONE: "_IO", DIR_WRITE: "_IOW", DIR_READ: "_IOR", DIR_READ | DIR_WRITE: "_IOWR"}
DIR_NAME = {DIR_NONE: "none", DIR_WRITE: "write", DIR_READ: "read", DIR_READ | DIR_WRITE: "read|write"}

# Sizes as C type names, for the usual cases (anything else: the byte count).
SIZE_TYPES = {4: "int", 8: "long"}


def _ioc(direction, kind, number, size):
    return (direction << DIR_SHIFT) | (ord(kind) << TYPE_SHIFT) | (number << NR_SHIFT) | (size << SIZE_SHIFT)


def _io(kind, number):
    return _ioc(DIR_NONE, kind, number, 0)


def _ior(kind, number, size):
    return _ioc(DIR_READ, kind, number, size)


def _iow(kind, number, size):
    return _ioc(DIR_WRITE, kind, number, size)


def _iowr(kind, number, size):
    return _ioc(DIR_READ | DIR_WRITE, kind, number, size)


# include/uapi/linux/watchdog.h (struct watchdog_info is 40 bytes).
WATCHDOG = {
    _ior("W", 0, 40): "WDIOC_GETSUPPORT", _ior("W", 1, 4): "WDIOC_GETSTATUS",
    _ior("W", 2, 4): "WDIOC_GETBOOTSTATUS", _ior("W", 3, 4): "WDIOC_GETTEMP",
    _ior("W", 4, 4): "WDIOC_SETOPTIONS", _ior("W", 5, 4): "WDIOC_KEEPALIVE",
    _iowr("W", 6, 4): "WDIOC_SETTIMEOUT", _ior("W", 7, 4): "WDIOC_GETTIMEOUT",
    _iowr("W", 8, 4): "WDIOC_SETPRETIMEOUT", _ior("W", 9, 4): "WDIOC_GETPRETIMEOUT",
    _ior("W", 10, 4): "WDIOC_GETTIMELEFT",
}

# include/uapi/asm-generic/ioctls.h: terminals use bare numbers, not _IOC.
TERMINAL = {
    0x5401: "TCGETS", 0x5402: "TCSETS", 0x5403: "TCSETSW", 0x5404: "TCSETSF", 0x5405: "TCGETA",
    0x5406: "TCSETA", 0x5407: "TCSETAW", 0x5408: "TCSETAF", 0x5409: "TCSBRK", 0x540A: "TCXONC",
    0x540B: "TCFLSH", 0x540C: "TIOCEXCL", 0x540D: "TIOCNXCL", 0x540E: "TIOCSCTTY", 0x540F: "TIOCGPGRP",
    0x5410: "TIOCSPGRP", 0x5411: "TIOCOUTQ", 0x5412: "TIOCSTI", 0x5413: "TIOCGWINSZ",
    0x5414: "TIOCSWINSZ", 0x5415: "TIOCMGET", 0x5416: "TIOCMBIS", 0x5417: "TIOCMBIC",
    0x5418: "TIOCMSET", 0x5419: "TIOCGSOFTCAR", 0x541A: "TIOCSSOFTCAR", 0x541B: "FIONREAD",
    0x541C: "TIOCLINUX", 0x541D: "TIOCCONS", 0x541E: "TIOCGSERIAL", 0x541F: "TIOCSSERIAL",
    0x5420: "TIOCPKT", 0x5421: "FIONBIO", 0x5422: "TIOCNOTTY", 0x5423: "TIOCSETD", 0x5424: "TIOCGETD",
    0x5425: "TCSBRKP", 0x5427: "TIOCSBRK", 0x5428: "TIOCCBRK", 0x5429: "TIOCGSID",
    _ior("T", 0x30, 4): "TIOCGPTN", _iow("T", 0x31, 4): "TIOCSPTLCK", 0x5437: "TIOCVHANGUP",
    0x5450: "FIONCLEX", 0x5451: "FIOCLEX", 0x5452: "FIOASYNC", 0x545C: "TIOCMIWAIT",
    0x545D: "TIOCGICOUNT",
}

# include/uapi/linux/fs.h: block devices ('\x12') and file systems ('X', 'f').
BLOCK = {
    _io("\x12", 93): "BLKROSET", _io("\x12", 94): "BLKROGET", _io("\x12", 95): "BLKRRPART",
    _io("\x12", 96): "BLKGETSIZE", _io("\x12", 97): "BLKFLSBUF", _io("\x12", 98): "BLKRASET",
    _io("\x12", 99): "BLKRAGET", _io("\x12", 104): "BLKSSZGET", _io("\x12", 119): "BLKDISCARD",
    _io("\x12", 120): "BLKIOMIN", _io("\x12", 121): "BLKIOOPT", _io("\x12", 123): "BLKPBSZGET",
    _io("\x12", 127): "BLKZEROOUT", _ior("\x12", 112, 8): "BLKBSZGET", _iow("\x12", 113, 8): "BLKBSZSET",
    _ior("\x12", 114, 8): "BLKGETSIZE64",
}
FILESYSTEM = {
    _iowr("X", 119, 4): "FIFREEZE", _iowr("X", 120, 4): "FITHAW", _iowr("X", 121, 24): "FITRIM",
    _iowr("f", 11, 32): "FS_IOC_FIEMAP", _ior("f", 1, 8): "FS_IOC_GETFLAGS", _iow("f", 2, 8): "FS_IOC_SETFLAGS",
    _ior("v", 1, 8): "FS_IOC_GETVERSION", _iow("v", 2, 8): "FS_IOC_SETVERSION",
    _ior("X", 31, 28): "FS_IOC_FSGETXATTR", _iow("X", 32, 28): "FS_IOC_FSSETXATTR",
    _ior("\x94", 49, 256): "FS_IOC_GETFSLABEL", _iow("\x94", 50, 256): "FS_IOC_SETFSLABEL",
    _iow("\x94", 9, 4): "FICLONE", _iow("\x94", 13, 32): "FICLONERANGE",
}

NAMES = {}
for _table in (WATCHDOG, TERMINAL, BLOCK, FILESYSTEM):
    NAMES.update(_table)


def fields(cmd):
    """{'dir', 'type', 'nr', 'size'} of a command (type as a character when printable)."""
    cmd = int(cmd) & 0xFFFFFFFF
    direction = (cmd >> DIR_SHIFT) & ((1 << DIR_BITS) - 1)
    kind = (cmd >> TYPE_SHIFT) & ((1 << TYPE_BITS) - 1)
    return {
        "dir": DIR_NAME[direction],
        "type": chr(kind) if 0x20 < kind < 0x7F else "0x%02x" % kind,
        "nr": (cmd >> NR_SHIFT) & ((1 << NR_BITS) - 1),
        "size": (cmd >> SIZE_SHIFT) & ((1 << SIZE_BITS) - 1),
    }


def macro(cmd):
    """``_IOR('W', 5, int)``: the command as the C macro that builds it."""
    cmd = int(cmd) & 0xFFFFFFFF
    parts = fields(cmd)
    direction = (cmd >> DIR_SHIFT) & ((1 << DIR_BITS) - 1)
    kind = parts["type"] if len(parts["type"]) > 1 else "'%s'" % parts["type"].replace("'", "\\'")
    if direction == DIR_NONE:
        return "_IO(%s, %d)" % (kind, parts["nr"])
    size = SIZE_TYPES.get(parts["size"], str(parts["size"]))
    return "%s(%s, %d, %s)" % (DIR_MACRO[direction], kind, parts["nr"], size)


def decode(cmd):
    """{'cmd' (hex text), 'value', 'name' (or None), 'macro', 'dir', 'type', 'nr', 'size', 'text'}; text is what strace prints."""
    cmd = int(cmd) & 0xFFFFFFFF
    name = NAMES.get(cmd)
    result = {"cmd": "0x%x" % cmd, "value": cmd, "name": name, "macro": macro(cmd)}
    result.update(fields(cmd))
    result["text"] = name or result["macro"]
    return result
