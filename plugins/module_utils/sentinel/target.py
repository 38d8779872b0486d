# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which process a sentinel follows, and whether it still runs the build the probe was placed in.

A uprobe sits on one inode: a process of a new file at the same path (a
package upgrade, then a restart) never hits it.  So the sentinel records the
probed file's identity (device, inode, build-id) when it is armed, and when
its target exits it looks for the same executable's new process: the same
inode is followed; a new inode with the same build-id gets the probe again
(the offsets hold); another build-id ends the sentinel (never a stale offset).
"""


import os

from ansible_collections.fleettrace.tracefs.plugins.module_utils import procfs
from ansible_collections.fleettrace.tracefs.plugins.module_utils.elf.reader import ElfError, ElfHeaders

DELETED = " (deleted)"
SAME, REINSTALL, REPLACED = "same", "same_build_new_file", "replaced"


def build_id(path):
    try:
        return ElfHeaders(path).build_id
    except (ElfError, OSError):
        return None


def identity(path):
    """{path, dev, ino, build_id} of a file (``/proc/PID/exe`` works for a deleted one too)."""
    st = os.stat(path)
    return {"path": path, "dev": st.st_dev, "ino": st.st_ino, "build_id": build_id(path)}


def exe_path(pid):
    """The executable's path as the process started it (without the kernel's ' (deleted)')."""
    try:
        text = os.readlink("/proc/%d/exe" % pid)
    except OSError:
        return None
    return text[:-len(DELETED)] if text.endswith(DELETED) else text


def mapped_file(pid, path):
    """Identity of the file ``pid`` maps from ``path`` (its executable or a library, deleted or not), or None."""
    try:
        with open("/proc/%d/maps" % pid) as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(None, 5)
        if len(parts) < 6:
            continue
        mapped = parts[5][:-len(DELETED)] if parts[5].endswith(DELETED) else parts[5]
        if mapped == path:
            try:    # map_files/RANGE is the mapped file itself, even when its path now names another
                return identity("/proc/%d/map_files/%s" % (pid, parts[0]))
            except OSError:
                continue
    return None


def maps_probed(pid, probed):
    """Whether ``pid`` maps the very inode the probe sits on."""
    current = mapped_file(pid, probed["path"])
    return bool(current) and (current["dev"], current["ino"]) == (probed["dev"], probed["ino"])


def successors(exe, gone_pid):
    """Processes (oldest first) running the executable at path ``exe``, other than ``gone_pid``."""
    found = []
    for pid in procfs.all_pids():
        if pid != gone_pid and procfs.process_alive(pid) and exe_path(pid) == exe:
            found.append(pid)
    return found


def compare(pid, probed):
    """How ``pid`` relates to the probed file: (SAME | REINSTALL | REPLACED, its mapped identity or None)."""
    current = mapped_file(pid, probed["path"])
    if current is None:
        return REPLACED, None
    if current["dev"] == probed["dev"] and current["ino"] == probed["ino"]:
        return SAME, current
    if current["build_id"] and current["build_id"] == probed["build_id"]:
        return REINSTALL, current
    return REPLACED, current
