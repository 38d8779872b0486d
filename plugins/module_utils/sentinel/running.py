# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A running watcher, seen from outside: is it alive, write your state now, stop.

Identified by pid and start time (``runs.owner.alive``), so a reused pid is
never signalled.  ``stop`` is how ``absent``, a new arming and ``cleanup``
with ``force`` end a sentinel: SIGTERM, and the watcher removes its own
objects; SIGKILL only when it does not end in time (its reaper then removes them).
"""


import os
import signal
import time

from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import owner as run_owner
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs.manifest import Process

STOP_TIMEOUT_S = 30.0


def watcher_alive(state):
    """Whether the watcher recorded in ``state`` (pid and start time) still runs."""
    return run_owner.alive(Process.from_dict((state or {}).get("watcher")))


def stop(state, timeout=STOP_TIMEOUT_S):
    """SIGTERM the watcher and wait (bounded) until it ended; SIGKILL after ``timeout``.

    Returns how it ended: 'not running', 'stopped', 'killed' (its reaper then removes the objects).
    """
    me = Process.from_dict((state or {}).get("watcher"))
    if not run_owner.alive(me):
        return "not running"
    try:
        os.kill(me.pid, signal.SIGTERM)
    except OSError:
        return "not running"
    waited = time.monotonic() + timeout
    while time.monotonic() < waited:
        if not run_owner.alive(me):
            return "stopped"
        time.sleep(0.05)
    try:
        os.kill(me.pid, signal.SIGKILL)
    except OSError:
        pass
    return "killed"


def request_flush(state, timeout=5.0, spool=None):
    """Ask a live watcher to write its state now (SIGUSR1) and wait (bounded) until it did."""
    me = Process.from_dict((state or {}).get("watcher"))
    if not run_owner.alive(me) or spool is None:
        return state
    before = state.get("flushed", 0)
    try:
        os.kill(me.pid, signal.SIGUSR1)
    except OSError:
        return state
    waited = time.monotonic() + timeout
    while time.monotonic() < waited:
        current = spool.state()
        if current.get("flushed", 0) > before or not run_owner.alive(me):
            return current
        time.sleep(0.05)
    return spool.state()
