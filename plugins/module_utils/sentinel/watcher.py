# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The watcher: the node-side process that owns an armed sentinel for days.

It runs as ``python3 -I .../code/sentinel_entry.py fleettrace-sentinel LABEL ROOT``
(``ps`` shows what it is), from its own copy of the collection's code in the
spool, with nothing but the standard library.  It takes the run over from the
module that set it up (owner: this process, lease 0: the reaper removes
everything the moment it dies, SIGKILL included) and then blocks in
``poll()`` on:

- the bell's ``trace_pipe``: readable only when a tick passed the threshold;
- a pidfd of the target: readable when it exits;
- a pidfd of the run's reaper: readable if it dies (a new one is started);
- its signal pipe (SIGTERM ends it, SIGUSR1 writes its state now);

with the next of these as the timeout: the deadline, the minute's housekeeping
(the counters for the guesses, its run manifest still there), the next batch
of the culprit's latency, the next look for a restarted target.  An idle
sentinel wakes once a minute.

One piece on purpose: one ``poll()`` loop and the state its handlers share (the
session, the armed instances, the pidfds, the culprit's latency, the spool); what
can stand alone already does (moment.py harvests, culprit.py measures, target.py
follows the target, notify.py tells, objects.py writes tracefs).
"""


import os
import resource
import select
import signal
import sys
import time
import traceback

from ansible_collections.fleettrace.tracefs.plugins.module_utils import bounded, procfs
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sentinel import culprit, moment, notify, objects, target
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sentinel.settings import Settings
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sentinel.spool import LATENCY, Spool
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import instance_capture
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import evidence, threshold
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace.findings import culprit_call
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import lifecycle, reaper
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import owner as run_owner
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs.manifest import OwnershipError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs.store import RunStore
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace.stop_condition import StopCondition
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import Tracefs

ARGV_MARK = "fleettrace-sentinel"
COMM = "fleettrace-sent"
HOUSEKEEPING_S = 60.0
LATENCY_BATCH_S = 5.0
FOLLOW_POLL_S = 0.5
TARGET_POLL_S = 5.0
# How long the main instance may lag behind the bell (both see the same hit; the trigger runs after the commit).
TRIGGER_LAG_S = 0.2
LIVE = ("starting", "armed", "measuring")


def _cost():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3), "peak_rss_kb": usage.ru_maxrss}


class Watcher:
    """One armed sentinel (see the module docstring)."""

    def __init__(self, spool):
        self.spool = spool
        self.session = spool.session()
        if not self.session:
            raise RuntimeError("no session.json in %s: the sentinel module writes it before starting the watcher"
                               % spool.dir)
        self.settings = Settings.from_dict(self.session["settings"])
        self.names = self.settings.names
        self.tag, self.nonce = self.session["tag"], self.session["nonce"]
        self.fs = Tracefs(self.session["tracefs"], mount=False)
        self.main, self.bell = self.fs.instance(self.names["instance"]), self.fs.instance(self.names["bell"])
        self.stop = StopCondition(self.session["probe"]["stop_events"], self.settings.field,
                                  self.settings.threshold, self.settings.unit)
        self.probed = dict(self.session["probe"]["identity"])
        self.exe = self.session["target"]["exe"]
        self.pid = self.settings.pid
        self.state = spool.state()
        self.journal = notify.Journal(self.settings.syslog_socket)
        self.deadline = self.session["until"]
        self.latency = None
        self.capturing, self.ended, self.following = True, False, None
        self.attempts, self.armed_at, self.stats_before = 0, None, {}
        self.snapshots = []
        self.stop_requested, self.flush_requested = None, False
        self.fds = {}
        self.next_housekeeping = time.monotonic() + HOUSEKEEPING_S
        self.next_batch = None
        self.wake_r = self.wake_w = self.bell_fd = self.target_fd = self.reaper_fd = None

    # -- start -----------------------------------------------------------------------
    def run(self):
        _name_self(COMM)
        self._signals()
        me = run_owner.process(os.getpid(), "sentinel watcher %d (label %s)" % (os.getpid(), self.settings.label))
        # From now on the run is this process's: lease 0, its reaper follows this pid.
        details = {"label": self.settings.label, "watcher": me.to_dict(), "spool": self.spool.dir}
        lifecycle.transfer(self.tag, self.nonce, me, 0.0, details=details)
        self.state.update(status="armed", watcher=dict(me.to_dict(), argv=sys.argv), armed_since=time.time(),
                          until=self.deadline)
        self.bell_fd = os.open(self.bell.path("trace_pipe"), os.O_RDONLY | os.O_NONBLOCK)
        self._watch_target(self.pid)
        self._watch_reaper()
        self.bell.set_tracing_on(True)
        self._arm()
        self._snapshot()
        self._save()
        self._say("sentinel %s armed on %s[%d] until %s: %s >= %d" % (
            self.settings.label, self.state["target"]["comm"], self.pid,
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.deadline)), self.settings.field,
            self.settings.threshold), warning=False)
        self._loop()
        return 0

    def _signals(self):
        self.wake_r, self.wake_w = os.pipe()
        for fd in (self.wake_r, self.wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGUSR1, self._on_signal)
        for sig in (signal.SIGHUP, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_IGN)

    def _on_signal(self, signum, _frame):
        if signum == signal.SIGUSR1:
            self.flush_requested = True
        else:
            self.stop_requested = "disarmed"

    def _watch_target(self, pid):
        if self.target_fd is not None:
            os.close(self.target_fd)
        # Without pidfd_open (Python 3.8, Linux < 5.3) the target is looked at every TARGET_POLL_S instead.
        self.target_fd = run_owner.pidfd_of(run_owner.process(pid, "target"))
        self.pid = pid
        facts = {"pid": pid, "comm": _comm(pid), "exe": self.exe, "since": time.time(), "alive": True}
        self.state["target"] = facts
        pids = self.state.setdefault("pids", [])
        if not pids or pids[-1]["pid"] != pid:
            pids.append({"pid": pid, "comm": facts["comm"], "since": facts["since"], "until": None, "why": None})

    def _watch_reaper(self):
        if self.reaper_fd is not None:
            os.close(self.reaper_fd)
            self.reaper_fd = None
        manifest = lifecycle.load(self.tag)
        alive = [r for r in (manifest.reapers if manifest else ()) if run_owner.alive(r)]
        if alive:
            self.reaper_fd = run_owner.pidfd_of(alive[0])
            self.state["reaper"] = alive[0].to_dict()

    # -- the wait ----------------------------------------------------------------------
    def _loop(self):
        while not self.ended:
            poller = select.poll()
            handlers = {self.wake_r: self._on_wake, self.bell_fd: self._on_bell}
            if self.target_fd is not None:
                handlers[self.target_fd] = self._on_target_exit
            if self.reaper_fd is not None:
                handlers[self.reaper_fd] = self._on_reaper_exit
            for fd in handlers:
                poller.register(fd, select.POLLIN)
            timeout = max(0.0, self._next_wake() - time.monotonic())
            ready = poller.poll(min(timeout * 1000.0, 2 ** 31 - 1))
            for fd, _events in ready:
                if not self.ended and fd in handlers:
                    handlers[fd]()
            if not self.ended:
                self._on_time()

    def _next_wake(self):
        now = time.monotonic()
        wakes = [self.next_housekeeping, now + max(0.0, self.deadline - time.time())]
        if self.latency is not None and self.latency.measuring:
            wakes += [self.next_batch, now + self.latency.seconds_left()]
        if self.following is not None:
            wakes.append(now + FOLLOW_POLL_S)
        elif self.target_fd is None:
            wakes.append(now + TARGET_POLL_S)
        return min(wakes)

    def _on_wake(self):
        bounded.read_available(self.wake_r)
        if self.flush_requested:
            self.flush_requested = False
            self._flush()
        if self.stop_requested:
            self.end(self.stop_requested, "stopped on request (SIGTERM: sentinel_state=absent, a new arming or cleanup)")

    def _on_time(self):
        now = time.monotonic()
        if time.time() >= self.deadline:
            self.end("deadline_passed", "its deadline passed")
            return
        if self.following is not None:
            self._look_for_successor()
        elif self.target_fd is None and not procfs.process_alive(self.pid):
            self._on_target_exit()
        if self.ended:
            return
        if self.latency is not None and self.latency.measuring and now >= self.next_batch:
            self.latency.drain()
            self.next_batch = now + LATENCY_BATCH_S
            if self.latency.due():
                self._stop_latency("its bound was reached")
        if now >= self.next_housekeeping:
            self.next_housekeeping = now + HOUSEKEEPING_S
            self._housekeeping()

    def _housekeeping(self):
        manifest = lifecycle.load(self.tag)
        if manifest is None or manifest.nonce != self.nonce:
            self.end("objects_removed", "its run manifest was removed (cleanup with force?)")
            return
        if not (self.main.exists() and self.bell.exists()):
            self.end("objects_removed", "its tracefs instances were removed by someone else")
            return
        if self.following is None:
            self._snapshot()
        if self.latency is not None:
            self._save_latency()

    def _snapshot(self):
        """Counters for the guesses, kept two deep: a capture compares with one 1-2 minutes old."""
        self.snapshots = (self.snapshots + [evidence.snapshot(self.pid)])[-2:]

    # -- the moment ----------------------------------------------------------------------
    def _arm(self):
        self.stats_before = instance_capture.arm(self.main)
        self.armed_at = time.time()
        self.attempts += 1
        bounded.read_available(self.bell_fd)

    def _on_bell(self):
        bounded.read_available(self.bell_fd)
        if not self.capturing or self.following is not None:
            return
        waited = time.monotonic() + TRIGGER_LAG_S
        while self.main.tracing_on and time.monotonic() < waited:
            time.sleep(0.005)
        if self.main.tracing_on:
            return      # a hit the trigger did not stop on (it is re-checked by the next one)
        self._harvest()

    def _harvest(self):
        facts, after = moment.facts_now(self.pid)
        before = self.snapshots[0] if self.snapshots else None
        result, finder, findings = moment.read_frozen(self.main, self.stop, self.pid, self.armed_at,
                                                      self.stats_before, self.settings.max_events)
        if threshold.needs_rearm(result, findings) and self.attempts <= self.settings.rearm:
            self.spool.log("the late tick's stall began before the buffer was armed: armed again")
            self._arm()
            return
        doc = moment.conclude(result, finder, findings, self.stop, self.pid, self.settings, before, after, facts,
                              self.attempts, self.state.get("next_id", 1))
        doc["session"] = self.session["fingerprint"]
        doc["journal_line"] = notify.journal_line(doc["finding"] or {"comm": _comm(self.pid), "pid": self.pid})
        self.spool.record_capture(self.state, doc, self.settings.spool_max_kb * 1024)
        self._say(doc["journal_line"])
        self._start_latency(doc)
        self.attempts = 0
        if self.state["session_captures"] >= self.settings.max_captures:
            self.capturing = False
            if self.latency is None or not self.latency.measuring:
                self.end("max_captures_reached", "%d capture(s), as many as sentinel_max_captures"
                         % self.state["session_captures"])
                return
            self.state["status"] = "measuring"
            self.spool.log("max captures reached: measuring the culprit call until its bound")
        else:
            self._arm()
            self._snapshot()
        self._save()

    def _start_latency(self, doc):
        found = culprit_call(doc["finding"])
        if found is None or self.latency is not None or self.settings.latency_seconds <= 0:
            return
        call, fd, cmd = found
        self.latency = culprit.CulpritLatency(self.fs, self.names["latency"], self.pid, call, fd, cmd,
                                              self.settings.latency_seconds, self.settings.latency_samples,
                                              capture_id=doc["id"])
        try:
            self.latency.start()
        except (OSError, ValueError) as exc:
            self.spool.log("could not measure %s on fd %s: %s" % (call, fd, exc))
            self.latency = None
            return
        self.next_batch = time.monotonic() + LATENCY_BATCH_S
        self._save_latency()

    def _stop_latency(self, why):
        if self.latency is not None and self.latency.measuring:
            self.latency.stop(why)
            self._save_latency()
            if not self.capturing and not self.ended:
                self.end("max_captures_reached", "%d capture(s), and the culprit call measured until %s"
                         % (self.state.get("session_captures", 0), why))

    def _save_latency(self):
        if self.latency is not None:
            self.latency.drain()
            self.spool.write_json(self.latency.summary(), LATENCY)

    # -- the target comes and goes -------------------------------------------------------
    def _on_target_exit(self):
        if self.target_fd is not None:
            os.close(self.target_fd)
        self.target_fd = None
        now = time.time()
        self.state["target"]["alive"] = False
        self.state["pids"][-1].update(until=now, why="exited")
        if self.latency is not None and self.latency.measuring:
            self.latency.stop("the target exited")
            self._save_latency()
        self.following = {"old": self.pid, "since": now, "until": time.monotonic() + self.settings.follow_seconds}
        self.spool.log("%s[%d] exited; looking for its new process for %.0f s"
                       % (self.state["target"]["comm"], self.pid, self.settings.follow_seconds))
        self._save()
        self._look_for_successor()

    def _look_for_successor(self):
        old = self.following["old"]
        for pid in target.successors(self.exe, old):
            how, mapped = target.compare(pid, self.probed)
            if how == target.REPLACED:
                self.end("binary_replaced", "%s[%d] runs another build of %s (build-id %s; the probe was placed "
                         "for %s): the probe's offsets do not hold for it. Arm again: the playbook resolves the probe "
                         "for the new build" % (_comm(pid), pid, self.probed["path"], (mapped or {}).get("build_id"),
                                                self.probed["build_id"]))
                return
            if how == target.REINSTALL:
                objects.reinstall_probe(self.fs, self.settings, self.stop, self.session["probe"]["definitions"])
                self.spool.log("%s was reinstalled (same build-id %s, new inode %d): probe placed again"
                               % (self.probed["path"], mapped["build_id"], mapped["ino"]))
                self.probed = mapped
            objects.retarget(self.fs, self.settings, old, pid)
            self.following = None
            self._watch_target(pid)
            self.capturing = self.state.get("session_captures", 0) < self.settings.max_captures
            self.attempts = 0
            self._arm()
            self.snapshots = []
            self._snapshot()
            self._say("sentinel %s follows %s[%d] (restarted; was pid %d)" % (
                self.settings.label, self.state["target"]["comm"], pid, old), warning=False)
            self._save()
            return
        if time.monotonic() >= self.following["until"]:
            self.end("target_exited", "pid %d exited and no new process of %s started within %.0f s"
                     % (old, self.exe, self.settings.follow_seconds))

    def _on_reaper_exit(self):
        """A reaper died (killed?): its partner starts another one at once; when both are gone (killed
        in the same instant), start a new pair, so the watcher's own death stays covered."""
        waited = time.monotonic() + 2.0
        while time.monotonic() < waited:
            manifest = lifecycle.load(self.tag)
            if manifest is None or sum(run_owner.alive(r) for r in manifest.reapers) == 2:
                break
            time.sleep(0.05)
        if manifest is not None and not any(run_owner.alive(r) for r in manifest.reapers):
            self.spool.log("both reapers of the run ended; starting a new pair")
            reaper.spawn(self.tag, RunStore())
            waited = time.monotonic() + 2.0
            while time.monotonic() < waited:
                manifest = lifecycle.load(self.tag)
                if manifest is None or any(run_owner.alive(r) for r in manifest.reapers):
                    break
                time.sleep(0.05)
        self._watch_reaper()
        self._save()

    # -- the end -------------------------------------------------------------------------
    def end(self, why, message):
        """Stop watching: the latency so far saved, every object of the run removed, the state written."""
        if self.ended:
            return
        self.ended = True
        errors = []
        try:
            if self.latency is not None and self.latency.measuring:
                self.latency.stop("the sentinel ended: %s" % why)
                self._save_latency()
        except (OSError, ValueError) as exc:
            errors.append(str(exc))
        for fd in (self.bell_fd, self.target_fd, self.reaper_fd):
            if fd is not None:
                os.close(fd)
        self.bell_fd = self.target_fd = self.reaper_fd = None
        manifest = lifecycle.load(self.tag)
        try:
            if manifest is not None and manifest.nonce == self.nonce:
                errors += lifecycle.finish(self.fs, self.tag, self.nonce)[1]     # its reapers go too
            else:   # its manifest went away under it: its own names are still its own to remove
                errors += objects.remove_own(self.fs, self.settings)
        except (OwnershipError, OSError) as exc:
            errors.append(str(exc))
        if self.state.get("target", {}).get("alive") is not False and self.state.get("pids"):
            self.state["pids"][-1].update(until=time.time(), why="sentinel ended")
        self.state.update(status=why, ended={"at": time.time(), "why": why, "message": message, "errors": errors},
                          cost=_cost())
        self._save()
        trouble = "; " + "; ".join(errors) if errors else ""
        self._say("sentinel %s ended: %s (%s)%s" % (self.settings.label, why, message, trouble), warning=False)

    def fail(self, exc):
        """An unexpected error: say it in the state and the log, and leave nothing behind."""
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        self.spool.log("watcher failed: %s\n%s" % (text, traceback.format_exc()))
        self.end("failed", "the watcher failed: %s" % text)

    # -- state -------------------------------------------------------------------------
    def _flush(self):
        if self.latency is not None:
            self._save_latency()
        self.state["flushed"] = self.state.get("flushed", 0) + 1
        self._save()

    def _save(self):
        self.state["cost"] = _cost()
        self.state["updated"] = time.time()
        self.state["metrics"] = notify.write_metrics(self.settings.textfile_dir, self.settings.label, self.state)
        self.state["journal_error"] = self.journal.error
        self.spool.save_state(self.state)

    def _say(self, line, warning=True):
        self.spool.log(line)
        self.journal.send(line, warning=warning)


def _comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as handle:
            return handle.read().strip()
    except OSError:
        return None


def _name_self(name):
    try:
        with open("/proc/self/comm", "w") as handle:
            handle.write(name)
    except OSError:
        pass


def main(argv):
    """``fleettrace-sentinel LABEL ROOT``: watch the sentinel armed in ROOT/LABEL until it ends."""
    if len(argv) != 3 or argv[0] != ARGV_MARK:
        sys.stderr.write("usage: sentinel_entry.py %s LABEL SPOOL_ROOT\n" % ARGV_MARK)
        return 2
    spool = Spool(argv[2], argv[1])
    watcher = None
    try:
        watcher = Watcher(spool)
        return watcher.run()
    except Exception as exc:  # noqa: BLE001 - whatever broke, the run's objects must go and the state say why
        if watcher is not None:
            watcher.fail(exc)
        else:
            state = spool.state()
            state.update(status="failed", ended={"at": time.time(), "why": "failed", "message": str(exc)})
            spool.save_state(state)
            spool.log("watcher could not start: %s" % traceback.format_exc())
        return 1
