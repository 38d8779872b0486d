# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The dead-man switch: two detached processes per run that remove its objects once it is over.

Each of the pair watches the run (its owner through a pidfd, the clock for its
lease and deadline) and its partner (another pidfd).  When one is killed,
SIGKILL included, the other starts a new partner at once; both would have to
die in the same instant, and then every fleettrace module on the node still
reaps expired runs before its own work (docs/tracefs-core.md says why this,
and not a systemd unit).  A reaper sleeps until the next moment the run's fate
can change: the owner's exit, the end of its lease, the deadline, at most a
minute (to notice a run that finished), never in a tight loop.  A read-only
or full /run does not end it: it keeps retrying, more slowly.
"""


import os
import select
import signal
import time

from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import choice, removal
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import owner as run_owner
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs.store import Quarantined
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.fs import Tracefs

COMM = "fleettrace-reap"
# The longest sleep: a run that finished (manifest gone) lets its reapers go within this.
MAX_SLEEP = 60.0
# Without pidfds (Python < 3.9, Linux < 5.3) the owner and the partner are looked at this often.
POLL_WITHOUT_PIDFD = 1.0
# After a failed removal (EBUSY, a read-only /run): wait this long, doubling up to RETRY_MAX ...
RETRY_FIRST, RETRY_MAX = 1.0, 30.0
# ... and stop trying this long after the run expired (module runs on the node keep trying).
RETRY_FOR = 3600.0


def spawn(tag, store):
    """Detach the pair of reapers of run ``tag``.

    Double fork and a new session: they survive the module, Ansible, the SSH
    session and a SIGHUP.  Everything they need is imported already, because
    the module's temporary files are deleted as soon as the module returns.
    """
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)
        return
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        _detach()
        Reaper(tag, store).run()
    except BaseException:  # noqa: B036 - a reaper must never return into the module
        pass
    os._exit(0)


def dismiss(manifest):
    """A finished run's reapers may go now (they would notice within MAX_SLEEP anyway)."""
    for reaper in manifest.reapers:
        if run_owner.alive(reaper):
            try:
                os.kill(reaper.pid, signal.SIGTERM)
            except OSError:
                pass


def _detach():
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    # Ansible waits for EOF on the module's pipes: hold none of them open.
    signal.set_wakeup_fd(-1)
    os.closerange(3, 65536)
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    # Not the module's handler (sched_latency turns SIGTERM into an exception).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with open("/proc/self/comm", "w") as handle:
            handle.write(COMM)      # ps and top show a reaper, not a copy of the module that forked it
    except OSError:
        pass


class _Watched:
    """One process watched through a pidfd (readable once it exited), or by polling without one."""

    def __init__(self, proc):
        self.proc = proc
        self.fd = run_owner.pidfd_of(proc)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def gone(self):
        return not run_owner.alive(self.proc)


class Reaper:
    """One of the pair. ``partner`` is the other's Process record (None: start one)."""

    def __init__(self, tag, store, partner=None):
        self.tag, self.store = tag, store
        self.me = run_owner.process(os.getpid(), "reaper of %s" % tag)
        self.partner = _Watched(partner) if partner is not None else None
        self.owner = None
        self.failed_since = None
        self.retry = RETRY_FIRST

    # -- the pair ------------------------------------------------------------------------------
    def _start_partner(self):
        """A new partner, forked from this process (whose pidfd it watches in turn)."""
        me = self.me
        pid = os.fork()
        if pid == 0:
            try:
                os.closerange(3, 65536)     # the parent's pidfds
                Reaper(self.tag, self.store, partner=me).run()
            except BaseException:  # noqa: B036 - never back into the caller's loop
                pass
            os._exit(0)
        if self.partner is not None:
            self.partner.close()
        self.partner = _Watched(run_owner.process(pid, "reaper of %s" % self.tag))
        self._record()

    def _record(self):
        """Write the pair into the manifest, for tests, ``describe`` and ``dismiss`` (best effort)."""
        try:
            with self.store.locked():
                manifest = self.store.load(self.tag)
                if manifest is not None:
                    self.store.save(manifest.with_changes(reapers=(self.me, self.partner.proc)))
        except (OSError, Quarantined):
            pass

    def _collect_children(self):
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    # -- the loop ------------------------------------------------------------------------------
    def run(self):
        while True:
            try:
                if self._step():
                    return
            except Exception:  # noqa: BLE001 - a reaper outlives any error (EROFS, ENOSPC, EAGAIN): later again
                self._back_off()

    def _step(self):
        """One look at the run, then a sleep; True once this reaper is done."""
        self._collect_children()
        try:
            manifest = self.store.load(self.tag)
        except Quarantined:
            self._reap()        # what it named goes, when the names pass the checks
            return True
        except OSError:
            self._back_off()    # the directory cannot be read right now: try again later
            return False
        if manifest is None:
            return True         # the run finished, or was reaped
        if self.partner is None or self.partner.gone():
            self._start_partner()
        now = time.time()
        if choice.expired(manifest, self.store, now):
            if self._reap():
                return True
            if now > max(manifest.deadline, self.failed_since) + RETRY_FOR:
                return True     # left to the module runs on the node
            self._back_off()
            return False
        self._watch_owner(manifest)
        self.retry = RETRY_FIRST
        self._sleep(min(MAX_SLEEP, choice.next_change(manifest, self.store, now) - now))
        return False

    def _back_off(self):
        self._sleep(self.retry)
        self.retry = min(RETRY_MAX, self.retry * 2)

    def _reap(self):
        """Reap every expired run on the node; True once this run's manifest is gone."""
        try:
            fs = Tracefs(self._tracefs_root(), mount=False)
            removal.reap_expired(fs, self.store)
            gone = self.store.load(self.tag) is None
        except Quarantined:
            gone = True
        except Exception:  # noqa: BLE001 - EROFS, ENOSPC, EBUSY: try again later, never die
            gone = False
        if not gone and self.failed_since is None:
            self.failed_since = time.time()
        return gone

    def _tracefs_root(self):
        try:
            manifest = self.store.load(self.tag)
        except (OSError, Quarantined):
            manifest = None
        return manifest.tracefs if manifest is not None else None

    def _watch_owner(self, manifest):
        """Watch the run's current owner (it may not count as a sign of life: an ssh session)."""
        wanted = manifest.owner if choice.owner_lives(manifest) else None
        if self.owner is not None and (wanted is None or self.owner.proc != wanted):
            self.owner.close()
            self.owner = None
        if wanted is not None and self.owner is None:
            self.owner = _Watched(wanted)

    def _sleep(self, seconds):
        """Until ``seconds`` passed, or the owner or the partner exited."""
        seconds = max(0.05, seconds)
        watched = [w for w in (self.owner, self.partner) if w is not None]
        fds = [w.fd for w in watched if w.fd is not None]
        if len(fds) < len(watched):
            seconds = min(seconds, POLL_WITHOUT_PIDFD)
        if fds:
            readable, _w, _x = select.select(fds, [], [], seconds)
            if self.owner is not None and self.owner.fd in readable:
                # Exited: never wait on it again (a readable pidfd stays readable: that was a busy loop).
                self.owner.close()
        else:
            time.sleep(seconds)
