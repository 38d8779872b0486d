# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The code a process runs, not the file on disk.

A uprobe sits on an inode: it fires in the processes that map that very
inode.  A package upgrade renames a new file over ``/usr/sbin/corosync`` while
the old corosync keeps running the old, now deleted, inode
(``/proc/PID/exe`` says "(deleted)"); a probe placed on the path then lands on
the new file, which nothing runs, and a capture waits for a stall it can never
see.  A library replaced under a running process is the same.

``mapped_code(pid, path)`` finds the mapping of ``path`` in the process
(``/proc/PID/maps``: by name, also "(deleted)", or by inode) and a path that
reaches the mapped inode: ``path`` itself when the file there is still the
one mapped, else ``/proc/PID/map_files/START-END``, a link the kernel follows
to the mapped file even after it was deleted (uprobe_events accepts it; the
probe then holds that inode).  Build-ids of both are read, so a definition
resolved for the file on disk is never put on code of another build.
``unreachable_probes(pid, paths)`` says which probe files a process does not
map: a probe there cannot fire in it.  ``symbolize(pid, addresses)`` names the
code at user-space addresses (``<user stack trace>`` frames) through the same
maps and the ELF symbol tables, which only works while the process lives.
"""


import os
import re

from ansible_collections.fleettrace.tracefs.plugins.module_utils import procfs
from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.elf import reader as elf_reader
from ansible_collections.fleettrace.tracefs.plugins.module_utils.elf import symbols as elf_symbols

DELETED = " (deleted)"
_MAPS_LINE = re.compile(r"^([0-9a-f]+)-([0-9a-f]+)\s+(\S+)\s+([0-9a-f]+)\s+([0-9a-f]+):([0-9a-f]+)\s+(\d+)\s*(.*)$")
# How many of a process's files a refusal lists.
LISTED_FILES = 6


class MappedCodeError(FleettraceError, ValueError):
    """The code a process runs cannot be probed as asked; the message says why and what to do."""


class Mapping:
    """One line of /proc/PID/maps (``name``: the path, ``[stack]``, or '' for anonymous memory)."""

    __slots__ = ("start", "end", "perms", "offset", "device", "inode", "name")

    def __init__(self, start, end, perms, offset, device, inode, name):
        self.start, self.end, self.perms, self.offset = start, end, perms, offset
        self.device, self.inode, self.name = device, inode, name

    @property
    def deleted(self):
        return self.name.endswith(DELETED)

    @property
    def path(self):
        """The file's name as the process saw it, without the " (deleted)" mark."""
        return self.name[:-len(DELETED)] if self.deleted else self.name

    def map_file(self, pid):
        return "/proc/%d/map_files/%x-%x" % (pid, self.start, self.end)


def parse_maps(text, files_only=True):
    """Mappings of a /proc/PID/maps text, in address order: the file-backed ones, or every line."""
    found = []
    for line in text.splitlines():
        match = _MAPS_LINE.match(line)
        if match and (not files_only or (int(match.group(7)) and match.group(8).startswith("/"))):
            found.append(Mapping(int(match.group(1), 16), int(match.group(2), 16), match.group(3),
                                 int(match.group(4), 16), (int(match.group(5), 16), int(match.group(6), 16)),
                                 int(match.group(7)), match.group(8).strip()))
    return found


def _maps(pid):
    text = procfs._read_optional("/proc/%d/maps" % pid)
    if text is None:
        raise MappedCodeError("process %d is not running (no /proc/%d/maps): give the pid of the running process"
                              % (pid, pid))
    return parse_maps(text)


def _identity(path):
    """(st_dev, st_ino) of the file ``path`` reaches, or None."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _mapped_identity(pid, mapping):
    """(st_dev, st_ino) of the mapped file through map_files (same numbers as a stat of a path), or None."""
    return _identity(mapping.map_file(pid))


def _task(pid):
    return "%s[%d]" % (procfs._read_optional("/proc/%d/comm" % pid, "?").strip(), pid)


def _build_id(path):
    try:
        return elf_reader.ElfHeaders(path).build_id
    except elf_reader.ElfError:
        return None


class MappedCode:
    """Where the code ``pid`` runs for ``path`` is, and what a probe must name to reach it.

    ``probe_path``: ``path`` when the file there is the one mapped, else the
    mapping's ``/proc/PID/map_files/`` link.  ``replaced``: the file at ``path``
    is another inode (or gone) than the one running; ``build_id`` is the
    running code's, ``disk_build_id`` the file's at ``path`` (None when gone).
    """

    def __init__(self, pid, path, mapping, probe_path, replaced, build_id, disk_build_id):
        self.pid, self.path, self.mapping, self.probe_path = pid, path, mapping, probe_path
        self.replaced, self.build_id, self.disk_build_id = replaced, build_id, disk_build_id
        self.task = _task(pid)

    def facts(self):
        return {"pid": self.pid, "task": self.task, "path": self.path, "mapped_as": self.mapping.name,
                "deleted": self.mapping.deleted, "replaced": self.replaced, "probe_path": self.probe_path,
                "build_id": self.build_id, "disk_build_id": self.disk_build_id}

    def note(self):
        """One sentence for the result when the probe goes onto other code than the file on disk."""
        if not self.replaced:
            return None
        now = ("the file there now is build-id %s" % self.disk_build_id if self.disk_build_id
               else "no file is there now")
        return ("%s runs %s, replaced on disk since it started (%s): the probe goes onto the code it runs "
                "(build-id %s) through %s; restart it to run the new file" % (
                    self.task, self.mapping.name, now, self.build_id, self.probe_path))

    def check_build(self, wanted):
        """Refuse a definition resolved for build ``wanted`` when the running code is another build."""
        if wanted and self.build_id and wanted.lower() != self.build_id:
            what = "the file on disk now" if wanted.lower() == self.disk_build_id else "another build"
            raise MappedCodeError(
                "%s runs a deleted binary %s (build-id %s); the definition was resolved for build-id %s (%s), "
                "so it cannot fire there: restart it to run the file on disk, or pass definitions resolved for "
                "build-id %s (for example by resolving the spec from %s)" % (
                    self.task, self.mapping.path, self.build_id, wanted, what,
                    self.build_id, self.probe_path))


def mapped_code(pid, path):
    """``MappedCode`` of ``path`` in process ``pid``, or ``MappedCodeError`` saying why it cannot be probed."""
    maps = _maps(pid)
    on_disk = _identity(path)
    real = os.path.realpath(path)
    named = [m for m in maps if m.path in (path, real)]
    candidates = named or [m for m in maps if on_disk is not None and m.inode == on_disk[1]]
    mapping, identity = None, None
    for candidate in sorted(candidates, key=lambda m: (m.offset != 0, m.start)):
        identity = _mapped_identity(pid, candidate)
        if identity is not None or mapping is None:
            mapping = candidate
        if identity is not None:
            break
    if mapping is None:
        raise MappedCodeError("%s does not map %s, so a probe there cannot fire in it: it runs %s%s" % (
            _task(pid), path, procfs._readlink_optional("/proc/%d/exe" % pid) or "an unknown binary",
            _other_files(maps)))
    if identity is None:
        if on_disk is not None and not mapping.deleted and on_disk[1] == mapping.inode:
            return MappedCode(pid, path, mapping, path, False, _build_id(path), _build_id(path))
        raise MappedCodeError(
            "%s runs a deleted binary %s (replaced on disk since it started) and its mapped copy %s cannot be "
            "read here (run as root: become: true): restart it to run the file on disk, or pass pid of a "
            "process that runs %s" % (_task(pid), mapping.name, mapping.map_file(pid), path))
    if identity == on_disk:
        build_id = _build_id(path)
        return MappedCode(pid, path, mapping, path, False, build_id, build_id)
    probe_path = mapping.map_file(pid)
    return MappedCode(pid, path, mapping, probe_path, True, _build_id(probe_path),
                      _build_id(path) if on_disk is not None else None)


def _other_files(maps):
    names = []
    for mapping in maps:
        if mapping.name not in names and "x" in mapping.perms:
            names.append(mapping.name)
    if not names:
        return ""
    shown = ", ".join(names[:LISTED_FILES]) + (", ..." if len(names) > LISTED_FILES else "")
    return "; give one of the files it runs code from: %s" % shown


def unreachable_probes(pid, paths):
    """{path: why} for the probe files (a ``ProbeDefinition``'s path) that ``pid`` does not map."""
    maps = _maps(pid)
    by_inode = {}
    for mapping in maps:
        by_inode.setdefault(mapping.inode, []).append(mapping)
    why = {}
    for path in paths:
        identity = _identity(path)
        if identity is None:
            why[path] = "%s does not exist (any more)" % path
            continue
        mapped = [m for m in by_inode.get(identity[1], ()) if _mapped_identity(pid, m) in (identity, None)]
        if not mapped:
            running = sorted({m.name for m in maps if m.path == os.path.realpath(path) or m.path == path})
            why[path] = "%s does not map %s%s" % (
                _task(pid), path, " (it runs %s)" % ", ".join(running) if running else "")
    return why


# -- user-space symbolization ----------------------------------------------------
def symbolize(pid, addresses, cache=None):
    """Addresses of ``pid`` -> [{'address', 'object', 'offset', 'symbol'}].

    ``symbol`` is 'func+0x12' when the ELF file names it.  Needs the process
    alive (its maps); raises procfs.ProcessGone otherwise.
    """
    text = procfs._read_optional("/proc/%d/maps" % pid)
    if text is None:
        raise procfs.ProcessGone(pid)
    maps = parse_maps(text, files_only=False)
    cache = {} if cache is None else cache
    frames = []
    for address in addresses:
        frame = {"address": "0x%x" % address, "object": None, "symbol": None}
        for mapping in maps:
            if mapping.start <= address < mapping.end:
                path = mapping.name
                frame["object"] = path or None
                file_offset = address - mapping.start + mapping.offset
                frame["offset"] = "0x%x" % file_offset
                if mapping.deleted:
                    # Replaced on disk since it was mapped: read the code it runs, through the mapping.
                    frame["symbol"] = elf_symbols.file_symbol(mapping.map_file(pid), file_offset, cache)
                elif path.startswith("/"):
                    frame["symbol"] = elf_symbols.file_symbol(_proc_root_path(pid, path), file_offset, cache)
                break
        frames.append(frame)
    return frames


def _proc_root_path(pid, path):
    # Through /proc/PID/root the file is found even in another mount namespace.
    rooted = "/proc/%d/root" % pid + path
    return rooted if os.path.exists(rooted) else path
