# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which tasks the audit follows closely, and task names as text.

Nothing here imports Ansible (Python 3.8+).
"""


import re


class WatchSpec:
    """Which tasks to follow closely: pids, exact comms, comm regexes."""

    def __init__(self, pids=(), comms=(), comm_regexes=()):
        self.pids = {int(p) for p in pids}
        self.comms = {c.encode("utf-8")[:15] if not isinstance(c, bytes) else c for c in comms}
        self.regexes = [re.compile(r.encode("utf-8") if not isinstance(r, bytes) else r) for r in comm_regexes]
        self._cache = {}

    def __bool__(self):
        return bool(self.pids or self.comms or self.regexes)

    def matches(self, pid, comm):
        if pid in self.pids:
            return True
        found = self._cache.get(comm)
        if found is None:
            # Names decoded from events are the raw char[16]: NUL-padded.
            name = comm.split(b"\0", 1)[0] if isinstance(comm, bytes) else comm
            found = name in self.comms or any(r.search(name) for r in self.regexes)
            self._cache[comm] = found
        return found


def comm_text(comm):
    """A raw ``char comm[16]`` as text."""
    if isinstance(comm, bytes):
        return comm.split(b"\0", 1)[0].decode("utf-8", "replace")
    return comm
