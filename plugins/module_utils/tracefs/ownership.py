# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who owns which tracefs objects, and the dead-man switch that removes them.

Every run writes a manifest to ``RUNS_DIR/<tag>.json`` (root only) *before*
it creates anything: its exact instance names and probe groups, its owner
process (pid and start time, so a reused pid is not mistaken for it), a lease
and a hard deadline.  Removal matches names exactly, never by substring.

A run is expired when its deadline passed, or when its owner is gone and its
lease ran out.  ``start`` detaches a reaper (double fork, new session) that
watches the owner (a pidfd where the kernel has one) and the clock, and removes
exactly the manifest's objects once the run expired.  Every module run also
reaps expired runs first (``reap_expired``), so a killed reaper is no hole.
Objects without a manifest are never touched here.
"""


import contextlib
import fcntl
import json
import os
import select
import signal
import socket
import time
import uuid

from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import cleanup as tracefs_cleanup
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import validate
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.error_log import TracefsError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.fs import Tracefs
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.owner import (  # noqa: F401
    _comm, alive, find_owner, pidfd_of, process)

RUNS_DIR = "/run/fleettrace/runs"
SCHEMA = "fleettrace.run/1"
# How long a run outlives its owner when nothing renews it: covers the gap
# between two tasks on a connection without a persistent session.
DEFAULT_LEASE = 15.0
# How often the reaper looks at the clock when it cannot wait on a pidfd.
REAPER_POLL = 0.5
# A reaper that cannot remove everything keeps trying this long, then leaves
# the manifest to the next module run.
REAPER_RETRY_FOR = 60.0
MAX_MANIFEST_BYTES = 1 << 20
REAPER_COMM = "fleettrace-reap"
RUN_KIND, SENTINEL_KIND = "run", "sentinel"
# A long-lived run's reaper waits on its owner's pidfd and looks at the clock this rarely (``stop_reaper``).
LONG_LIVED_POLL = 60.0


class OwnershipError(FleettraceError):
    """A run that may not start or end as asked."""


# -- manifests ---------------------------------------------------------------------
def _ensure_dir(runs_dir):
    if not os.path.isdir(runs_dir):
        os.makedirs(runs_dir, 0o700)
    os.chmod(runs_dir, 0o700)


@contextlib.contextmanager
def locked(runs_dir=RUNS_DIR):
    """One writer of manifests at a time (flock: released when a holder dies)."""
    _ensure_dir(runs_dir)
    fd = os.open(os.path.join(runs_dir, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def tag_of(text):
    """A run tag is a file name and part of tracefs names: the instance-name rules hold."""
    validate.instance_name(text)
    return text


def manifest_path(tag, runs_dir=RUNS_DIR):
    return os.path.join(runs_dir, tag_of(tag) + ".json")


def load(tag, runs_dir=RUNS_DIR):
    path = manifest_path(tag, runs_dir)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        data = os.read(fd, MAX_MANIFEST_BYTES + 1)
    finally:
        os.close(fd)
    try:
        manifest = json.loads(data.decode("utf-8"))
    except ValueError:
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("schema") == SCHEMA else None


def _save(manifest, runs_dir):
    path = manifest_path(manifest["tag"], runs_dir)
    tmp = "%s.%d.tmp" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(manifest, sort_keys=True).encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def _delete(tag, runs_dir):
    try:
        os.unlink(manifest_path(tag, runs_dir))
    except OSError:
        pass


def list_runs(runs_dir=RUNS_DIR):
    try:
        names = sorted(os.listdir(runs_dir))
    except OSError:
        return []
    runs = []
    for name in names:
        if name.endswith(".json"):
            manifest = load(name[:-len(".json")], runs_dir)
            if manifest is not None:
                runs.append(manifest)
    return runs


def expired(manifest, now=None):
    """Why the run is over ('deadline passed', 'owner gone, lease expired'), or None while it lives."""
    now = time.time() if now is None else now
    if now >= manifest["deadline"]:
        return "deadline passed"
    if alive(manifest["owner"]):
        return None
    # Over a connection without a persistent session the owner ends with every
    # task: then a module working for the run (capture's wait) keeps it alive.
    if not manifest.get("persistent", True) and any(alive(h) for h in manifest.get("holders", [])):
        return None
    if now >= manifest["lease_until"]:
        return "owner gone, lease expired"
    return None


def describe(manifest, now=None):
    now = time.time() if now is None else now
    return "run %s (run id %s, owner %s%s, deadline in %.0f s)" % (
        manifest["tag"], manifest.get("run_id"), manifest["owner"].get("what"),
        "" if alive(manifest["owner"]) else " - gone", manifest["deadline"] - now)


def matches(manifest):
    """Predicate on tracefs names: exactly the manifest's instances and groups."""
    names = set(manifest["objects"].get("instances", [])) | set(manifest["objects"].get("groups", []))
    return lambda name: name in names


def leftovers_of(fs, manifest):
    # A run without event groups (sched_latency: one instance) cannot be the target of a trigger.
    return tracefs_cleanup.find_leftovers(fs, match=matches(manifest),
                                          trigger_targets=bool(manifest["objects"].get("groups")))


def remove_objects(fs, manifest):
    """Remove exactly what the manifest names; return the errors (empty on success)."""
    found = leftovers_of(fs, manifest)
    return tracefs_cleanup.plan_removal(fs, found).apply_each()


# -- lifecycle ---------------------------------------------------------------------
def start(fs, tag, instances=(), groups=(), deadline=3600.0, lease=DEFAULT_LEASE, run_id=None, owner=None,
          runs_dir=RUNS_DIR, spawn=True, kind=RUN_KIND, details=None):
    """Record a new run before anything is created; return its manifest.

    A live run with the same tag is refused; an expired one is reaped first.
    Objects that already exist without belonging to this tag are refused too:
    they are somebody else's.  ``kind``: ``run`` (ends with its play) or
    ``sentinel`` (long-lived: owned by a watcher process, see ``transfer``);
    ``details``: facts about it for ``cleanup`` (a sentinel's label and watcher).
    """
    tag_of(tag)
    for name in list(instances) + list(groups):
        validate.instance_name(name)
    now = time.time()
    owner = owner or find_owner()
    with locked(runs_dir):
        existing = load(tag, runs_dir)
        if existing is not None:
            why = expired(existing, now)
            if why is None:
                raise OwnershipError(
                    "run %s is already live on this host: %s. Two runs may not share a run id on one host: "
                    "choose another run id, wait for it to end, or remove it with "
                    "fleettrace.tracefs.cleanup force: [%s]" % (tag, describe(existing, now), tag))
            errors = remove_objects(fs, existing)
            if errors:
                raise OwnershipError("an earlier run %s (%s) left objects that cannot be removed: %s"
                                     % (tag, why, "; ".join(errors)))
            _delete(tag, runs_dir)
        present = set(fs.list_instances()) | {u.group for u in fs.list_uprobes()}
        taken = sorted((set(instances) | set(groups)) & present)
        if taken:
            owners = [m for m in list_runs(runs_dir)
                      if set(taken) & set(m["objects"].get("instances", []) + m["objects"].get("groups", []))]
            if owners:
                raise OwnershipError(
                    "%s already belong%s to %s. Choose another run id; a live run ends by itself, and "
                    "fleettrace.tracefs.cleanup force: [%s] removes it now"
                    % (", ".join(taken), "s" if len(taken) == 1 else "", "; ".join(describe(m, now) for m in owners),
                       ", ".join(m["tag"] for m in owners)))
            raise OwnershipError(
                "%s already exist%s in tracefs without a run manifest: another tool or an older fleettrace "
                "run owns them. Choose another run id, or remove them by name with fleettrace.tracefs.cleanup "
                "name_contains" % (", ".join(taken), "s" if len(taken) == 1 else ""))
        manifest = {
            "schema": SCHEMA, "tag": tag, "run_id": run_id or tag, "host": socket.gethostname(),
            "nonce": uuid.uuid4().hex, "owner": owner, "created": now, "lease": float(lease),
            "lease_until": now + float(lease), "deadline": now + float(deadline), "tracefs": fs.root,
            "objects": {"instances": sorted(set(instances)), "groups": sorted(set(groups))}, "reaper": None,
            "persistent": True, "holders": [], "kind": kind, "details": dict(details or {}),
        }
        _save(manifest, runs_dir)
    if spawn:
        spawn_reaper(tag, runs_dir)
    return manifest


def renew(tag, nonce, runs_dir=RUNS_DIR):
    with locked(runs_dir):
        manifest = load(tag, runs_dir)
        if manifest is None or manifest["nonce"] != nonce:
            raise OwnershipError("run %s is not live on this host (it ended or was reaped)" % tag)
        manifest["lease_until"] = time.time() + manifest["lease"]
        _save(manifest, runs_dir)
    return manifest


def transfer(tag, nonce, owner, lease=0.0, details=None, runs_dir=RUNS_DIR):
    """Hand a run to another owner (a sentinel's watcher, from the module that set it up)."""
    with locked(runs_dir):
        manifest = load(tag, runs_dir)
        if manifest is None or manifest["nonce"] != nonce:
            raise OwnershipError("run %s is not live on this host (it ended or was reaped)" % tag)
        manifest.update(owner=owner, lease=float(lease), lease_until=time.time() + float(lease), persistent=True)
        manifest.setdefault("details", {}).update(details or {})
        _save(manifest, runs_dir)
    return manifest


def stop_reaper(manifest):
    """End a finished run's reaper now instead of at its next look (long-lived runs look rarely)."""
    reaper = (manifest or {}).get("reaper")
    if reaper and alive(reaper) and reaper["pid"] != os.getpid():
        try:
            os.kill(reaper["pid"], signal.SIGTERM)
        except OSError:
            pass


def touch(names, runs_dir=RUNS_DIR, holder=None, release=False):
    """A module works on ``names``: renew the lease of the runs that own them.

    When the recorded owner is gone but the run goes on (a connection without a
    persistent session: every task has its own sshd), the caller's owner takes
    over and the run is marked not persistent.  ``holder``: a process to add
    (or, with ``release``, remove) as working for the run.
    """
    names = set(names)
    if not names or not os.path.isdir(runs_dir):
        return []
    touched = []
    with locked(runs_dir):
        for manifest in list_runs(runs_dir):
            if not names & (set(manifest["objects"]["instances"]) | set(manifest["objects"]["groups"])):
                continue
            if expired(manifest):
                continue    # too late: the reaper removes it
            if not alive(manifest["owner"]):
                current = find_owner()
                if alive(current):
                    manifest["owner"], manifest["persistent"] = current, False
            holders = [h for h in manifest.get("holders", []) if alive(h)]
            if holder is not None:
                holders = [h for h in holders if h["pid"] != holder["pid"]] + ([] if release else [holder])
            manifest["holders"] = holders
            manifest["lease_until"] = time.time() + manifest["lease"]
            _save(manifest, runs_dir)
            touched.append(manifest["tag"])
    return touched


def touch_quietly(names, runs_dir=RUNS_DIR):
    try:
        return touch(names, runs_dir)
    except (OSError, ValueError, KeyError):
        return []


@contextlib.contextmanager
def holding(names, runs_dir=RUNS_DIR):
    """This process works for the runs owning ``names`` (e.g. capture's wait) while the block runs."""
    me = process(os.getpid(), "module process %d" % os.getpid())
    try:
        touch(names, runs_dir, holder=me)
    except (OSError, ValueError, KeyError):
        pass
    try:
        yield
    finally:
        try:
            touch(names, runs_dir, holder=me, release=True)
        except (OSError, ValueError, KeyError):
            pass


def finish(fs, tag, nonce=None, force=False, runs_dir=RUNS_DIR):
    """Remove exactly the run's objects and its manifest.

    Without ``force`` the caller must prove it started the run (its nonce), so
    a refused second run with the same id never removes the first one's objects.
    Returns (manifest or None, errors).
    """
    with locked(runs_dir):
        manifest = load(tag, runs_dir)
        if manifest is None:
            return None, []
        if not force and manifest["nonce"] != nonce:
            raise OwnershipError("run %s belongs to another play (%s); not removing it. To remove a live run "
                                 "anyway, name it: fleettrace.tracefs.cleanup force: [%s]"
                                 % (tag, describe(manifest), tag))
        errors = remove_objects(fs, manifest)
        if not errors:
            _delete(tag, runs_dir)
    return manifest, errors


def reap_expired(fs, runs_dir=RUNS_DIR, now=None):
    """Remove every expired run's objects; return [(tag, why, errors)]."""
    reaped = []
    if not os.path.isdir(runs_dir):
        return reaped
    for manifest in list_runs(runs_dir):
        if expired(manifest, now) is None:
            continue
        with locked(runs_dir):
            current = load(manifest["tag"], runs_dir)
            why = current and expired(current, now)
            if not why:
                continue
            errors = remove_objects(fs, current)
            if not errors:
                _delete(current["tag"], runs_dir)
            _log(runs_dir, "%s: %s, removed %s%s" % (current["tag"], why, current["objects"],
                                                     "; errors: " + "; ".join(errors) if errors else ""))
        reaped.append((manifest["tag"], why, errors))
    return reaped


def reap_expired_quietly(fs, runs_dir=RUNS_DIR):
    """``reap_expired`` for modules: a reaping problem never fails the module's own task."""
    try:
        return reap_expired(fs, runs_dir)
    except (OSError, TracefsError, OwnershipError, validate.ValidationError):
        return []


def _log(runs_dir, line):
    path = os.path.join(os.path.dirname(runs_dir), "reaped.log")
    try:
        if os.path.exists(path) and os.path.getsize(path) > MAX_MANIFEST_BYTES:
            os.rename(path, path + ".1")
        with open(path, "a") as handle:
            handle.write("%s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), line))
    except OSError:
        pass


# -- the reaper --------------------------------------------------------------------
def spawn_reaper(tag, runs_dir=RUNS_DIR):
    """Detach a process that removes the run's objects once it expired.

    Double fork and a new session: it survives the module, Ansible, the SSH
    session and a SIGHUP.  Everything it needs is imported already, because the
    module's temporary files are deleted as soon as the module returns.
    """
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)
        return
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        # Ansible waits for EOF on the module's pipes: hold none of them open.
        os.closerange(3, 65536)
        for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_IGN)
        # Not the module's handler (sched_latency turns SIGTERM into an exception).
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _name_self(REAPER_COMM)
        _reaper_loop(tag, runs_dir)
    except BaseException:  # noqa: B036 - the reaper must never return into the module
        pass
    os._exit(0)


def _name_self(name):
    """Show up as ``name`` in ps/top (comm), not as a copy of the module that forked it."""
    try:
        with open("/proc/self/comm", "w") as handle:
            handle.write(name)
    except OSError:
        pass


def _reaper_loop(tag, runs_dir):
    me = process(os.getpid(), "reaper")
    with locked(runs_dir):
        manifest = load(tag, runs_dir)
        if manifest is None:
            return
        if manifest.get("reaper") and alive(manifest["reaper"]):
            return      # one reaper per run is enough
        manifest["reaper"] = me
        _save(manifest, runs_dir)
    pidfd, watched = None, None
    given_up_at = None
    while True:
        manifest = load(tag, runs_dir)
        if manifest is None:
            return      # the run finished and removed its objects
        if manifest["owner"] != watched:     # first look, or a watcher took the run over: wait on its pidfd
            if pidfd is not None:
                os.close(pidfd)
            watched, pidfd = manifest["owner"], pidfd_of(manifest["owner"])
        now = time.time()
        if expired(manifest, now):
            fs = Tracefs(manifest["tracefs"], mount=False)
            reaped = [r for r in reap_expired(fs, runs_dir, now) if r[0] == tag]
            if not reaped or not reaped[0][2]:
                return
            given_up_at = given_up_at or now + REAPER_RETRY_FOR
            if now > given_up_at:
                return
            time.sleep(1.0)
            continue
        poll = LONG_LIVED_POLL if manifest.get("kind") == SENTINEL_KIND and pidfd is not None else REAPER_POLL
        wait = max(0.05, min(poll, manifest["deadline"] - now))
        if pidfd is not None and alive(manifest["owner"]):
            select.select([pidfd], [], [], wait)    # readable the moment the owner exits
        else:
            time.sleep(wait)


def forget(tag, runs_dir=RUNS_DIR):
    """Drop a run's manifest once its objects were removed by the caller."""
    with locked(runs_dir):
        _delete(tag, runs_dir)


# Slack after a module's own time limit before its objects are removed anyway.
MODULE_RUN_MARGIN = 60.0


def own(fs, tag, seconds, instances=(), groups=(), what="module process", runs_dir=RUNS_DIR, spawn=True):
    """This process owns ``instances``/``groups`` for at most ``seconds`` (plus a margin); return the manifest.

    Lease 0: the moment it dies, SIGKILL included, its reaper removes them.  For
    whatever creates and removes its own objects in one process: a module, a
    test, a benchmark.  End it with ``finish(fs, tag, manifest["nonce"])``.
    """
    me = process(os.getpid(), "%s %d (%s)" % (what, os.getpid(), _comm(os.getpid())))
    return start(fs, tag, instances, groups, deadline=seconds + MODULE_RUN_MARGIN, lease=0.0, owner=me,
                 runs_dir=runs_dir, spawn=spawn)


@contextlib.contextmanager
def module_run(fs, tag, seconds, instances=(), groups=(), runs_dir=RUNS_DIR):
    """The calling module process owns ``instances``/``groups`` for at most ``seconds``.

    For modules that create and remove their own objects (sched_latency): when
    the module is killed (an async timeout sends SIGKILL) its reaper sees the
    owner gone and removes them at once; a normal end removes what is left.
    """
    reap_expired_quietly(fs, runs_dir)
    manifest = own(fs, tag, seconds, instances, groups, runs_dir=runs_dir)
    try:
        yield manifest
    finally:
        finish(fs, tag, manifest["nonce"], runs_dir=runs_dir)
