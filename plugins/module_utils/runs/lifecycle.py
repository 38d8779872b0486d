# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A run's life: start (manifest and claims before anything is created), renew, finish, reap.

Every run writes its manifest *before* it creates anything, claims each of its
names (one run per name), and detaches a reaper (``runs.reaper``) that removes
exactly its objects once it is over (``runs.choice.expired``).  Every module
run also reaps expired runs first (``reap_expired``), so a killed reaper is no
hole.  Objects without a manifest are never touched here.
"""


import contextlib
import os
import socket
import threading
import time
import uuid

from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import choice, reaper, removal
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import owner as run_owner
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs.manifest import (
    MAX_DEADLINE, MAX_LEASE, PLAY, PROCESS, Manifest, ManifestError, OwnershipError, check_details, check_names,
    check_tag)
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs.store import Quarantined, RunStore
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import validate
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.fs import OWNED_PREFIX

# How long a play's run outlives its last renewal (or its local controller): covers the gap
# between two tasks; a long wait is renewed by the controller's polls (the capture action).
DEFAULT_LEASE = 15.0
# Slack after a module's own time limit before its objects are removed anyway.
MODULE_RUN_MARGIN = 60.0


def _store(store):
    return store if store is not None else RunStore()


def describe(manifest, now=None):
    now = time.time() if now is None else now
    return "run %s (run id %s, owner %s%s, deadline in %.0f s)" % (
        manifest.tag, manifest.run_id or "-", manifest.owner.what,
        "" if run_owner.alive(manifest.owner) else " - gone", manifest.deadline - now)


# -- start, renew, finish ------------------------------------------------------------------------
def start(fs, tag, instances=(), groups=(), deadline=3600.0, lease=DEFAULT_LEASE, run_id=None, owner=None,
          kind=PLAY, store=None, spawn=True, details=None):
    """Record a new run before anything is created; return its manifest.

    A live run with the same tag is refused; an expired one is reaped first.
    A name another run claims is refused, naming that run; a name that already
    exists in tracefs without a claim is somebody else's, and refused too.
    ``details``: facts the kind keeps (a sentinel's label and spool; see ``transfer``).
    """
    store = _store(store)
    check_tag(tag)
    try:
        check_names(tag, instances, groups)
        check_details(details or {})
    except ManifestError as exc:
        raise validate.ValidationError(str(exc))
    if not 0 < deadline <= MAX_DEADLINE[kind]:
        raise validate.ValidationError("deadline %r s is out of range for a %s run: 0 < deadline <= %d"
                                       % (deadline, kind, MAX_DEADLINE[kind]))
    if not 0 <= lease <= MAX_LEASE:
        raise validate.ValidationError("lease %r s is out of range: 0 <= lease <= %d" % (lease, MAX_LEASE))
    now = time.time()
    owner = owner or run_owner.find_owner()
    names = set(instances) | set(groups)
    with store.locked():
        existing = _load_or_clear(fs, store, tag)
        if existing is not None:
            why = choice.expired(existing, store, now)
            if why is None:
                raise OwnershipError(
                    "run %s is already live on this host: %s. Two runs may not share a run id on one host: "
                    "choose another run id, wait for it to end, or remove it with "
                    "fleettrace.tracefs.cleanup force: [%s]" % (tag, describe(existing, now), tag))
            errors = removal.remove_objects(fs, existing, store)
            if errors:
                raise OwnershipError("an earlier run %s (%s) left objects that cannot be removed: %s"
                                     % (tag, why, "; ".join(errors)))
            store.delete(existing)
        _refuse_taken(fs, store, tag, names, now)
        manifest = Manifest(
            tag=tag, kind=kind, nonce=uuid.uuid4().hex, owner=owner, created=now, lease=float(lease),
            lease_until=now + float(lease), deadline=now + float(deadline), tracefs=fs.root,
            instances=tuple(sorted(set(instances))), groups=tuple(sorted(set(groups))),
            host=socket.gethostname()[:200], run_id=(run_id or tag)[:200], details=dict(details or {}))
        try:
            taken = store.claim(tag, names)
            if taken:
                raise OwnershipError("%s: claimed meanwhile by %s" % (", ".join(taken), ", ".join(set(taken.values()))))
            try:
                store.save(manifest)
            except BaseException:
                store.release(tag, names)
                raise
        except OSError as exc:
            raise OwnershipError("run %s cannot be recorded in %s (%s): nothing is created without its dead-man "
                                 "switch. Make %s writable (a read-only or full /run)"
                                 % (tag, store.dir, exc.strerror or exc, store.dir))
    if spawn:
        reaper.spawn(tag, store)
    return manifest


def _load_or_clear(fs, store, tag):
    try:
        return store.load(tag)
    except Quarantined as aside:
        removal.remove_quarantined(fs, aside, store)
        return None


def _refuse_taken(fs, store, tag, names, now):
    """Names claimed by another run, or present in tracefs without a claim, are not ours to take."""
    manifests, _aside = store.runs()
    by_tag = {m.tag: m for m in manifests}
    held = {}
    for name in sorted(names):
        holder = store.claimant(name)
        if holder is None or holder == tag:
            holder = next((m.tag for m in manifests if m.tag != tag and name in m.names), None)
        if holder is None:
            continue
        if holder not in by_tag:
            store.drop_claim(name)      # its run's manifest is gone: a claim left behind
            continue
        held.setdefault(holder, []).append(name)
    if held:
        taken = sorted(n for ns in held.values() for n in ns)
        raise OwnershipError(
            "%s already belong%s to %s. Choose another run id; a live run ends by itself, and "
            "fleettrace.tracefs.cleanup force: [%s] removes it now"
            % (", ".join(taken), "s" if len(taken) == 1 else "",
               "; ".join(describe(by_tag[t], now) for t in sorted(held)), ", ".join(sorted(held))))
    present = set(fs.list_instances()) | {u.group for u in fs.list_uprobes()}
    foreign = sorted(names & present)
    if foreign:
        raise OwnershipError(
            "%s already exist%s in tracefs without a run manifest: another tool or an older fleettrace "
            "run owns them. Choose another run id, or remove them by name with fleettrace.tracefs.cleanup "
            "name_contains" % (", ".join(foreign), "s" if len(foreign) == 1 else ""))


def load(tag, store=None):
    """The run's manifest or None (a file that is no manifest is quarantined: None too)."""
    try:
        return _store(store).load(tag)
    except Quarantined:
        return None


def renew(tag, nonce, store=None):
    """The controller still wants the run: its lease starts again now."""
    store = _store(store)
    manifest = load(tag, store)
    if manifest is None or manifest.nonce != nonce:
        raise OwnershipError("run %s is not live on this host (it ended or was reaped)" % tag)
    store.renew(manifest)
    return manifest


def transfer(tag, nonce, owner, lease=0.0, details=None, store=None):
    """Hand a run to another owner on the node (a sentinel's watcher, from the module that set it up).

    Its reapers follow the new owner from their next look; ``details`` are added to the run's.
    """
    store = _store(store)
    with store.locked():
        manifest = load(tag, store)
        if manifest is None or manifest.nonce != nonce:
            raise OwnershipError("run %s is not live on this host (it ended or was reaped)" % tag)
        merged = dict(manifest.details, **(details or {}))
        try:
            check_details(merged)
        except ManifestError as exc:
            raise OwnershipError("run %s: %s" % (tag, exc))
        manifest = manifest.with_changes(owner=owner, lease=float(lease), lease_until=time.time() + float(lease),
                                         details=merged)
        store.save(manifest)
    return manifest


def _runs_of(names, store):
    """The tags of the runs that claim ``names``, and of the runs they are named after: a run
    ``TAG_latency`` (syscall_latency's, for a play's run ``TAG``) works for run ``TAG`` too."""
    tags = set()
    for name in names:
        tags.add(store.claimant(name))
        parts = name.split("_")
        for end in range(1, len(parts)):
            parent = "_".join(parts[:end])
            if len(parent) > len(OWNED_PREFIX) and os.path.isfile(store.path(parent)):
                tags.add(parent)
    return sorted(tags - {None})


def touch(names, store=None):
    """A module works on ``names``: renew the runs that claim them (and the runs they are named
    after); return their tags."""
    store = _store(store)
    names = [n for n in names if n]     # None: the top level, no run's
    if not names or not store.exists():
        return []
    touched = []
    for tag in _runs_of(names, store):
        manifest = load(tag, store)
        if manifest is None or choice.expired(manifest, store):
            continue    # too late: the reaper removes it
        store.renew(manifest)
        touched.append(tag)
    return touched


def working_on(names, store=None):
    """A module is about to create or change ``names``: renew their live runs; refuse a name whose run
    ended (reaped: its lease ran out, its deadline passed) or is over, so no object outlives its run."""
    store = _store(store)
    names = [n for n in names if n]     # None: the top level, no run's
    if not names or not store.exists():
        return []
    for name in sorted(set(names)):
        tombstone = store.ended(name)
        if tombstone is not None:
            raise OwnershipError(
                "%s belongs to run %s, which ended (%s) and whose objects were removed: nothing is created for "
                "an ended run. Start a new run (fleettrace.tracefs.run); if the play was away longer than the "
                "lease, give a longer lease" % (name, tombstone[0], tombstone[1]))
        tag = store.claimant(name)
        manifest = load(tag, store) if tag else None
        why = manifest and choice.expired(manifest, store)
        if why:
            raise OwnershipError("%s belongs to run %s, which is over (%s): its reapers remove it now; start a "
                                 "new run (fleettrace.tracefs.run)" % (name, tag, why))
    return touch(names, store)


def touch_quietly(names, store=None):
    try:
        return touch(names, store)
    except OSError:
        return []


@contextlib.contextmanager
def holding(names, store=None):
    """This module works for the runs owning ``names`` (e.g. capture's wait) while the block runs.

    It renews them while somebody waits for its answer: a synchronous task's
    controller (the answer's pipe or socket still has a reader).  Under
    ``async`` nobody can be seen waiting, so only the controller's own
    renewals keep the run alive: a killed play's async module never does.
    """
    store = _store(store)
    touched = touch_quietly(names, store)
    stop = threading.Event()
    renewer = None
    if touched and not run_owner.under_async():
        manifests = [m for m in (load(t, store) for t in touched) if m is not None]
        every = max(0.5, min([m.lease for m in manifests if m.lease > 0] or [DEFAULT_LEASE]) / 3.0)

        def renew_while_read():
            while not stop.wait(every) and not run_owner.answer_unread():
                touch_quietly(names, store)
        renewer = threading.Thread(target=renew_while_read, name="fleettrace-renew", daemon=True)
        renewer.start()
    try:
        yield
    finally:
        stop.set()
        if renewer is not None:
            renewer.join(5.0)


def finish(fs, tag, nonce=None, force=False, store=None):
    """Remove exactly the run's objects and its manifest.

    Without ``force`` the caller must prove it started the run (its nonce), so
    a refused second run with the same id never removes the first one's objects.
    Returns (manifest or None, errors).  The objects go even when the manifest
    cannot be deleted (a read-only /run): its reapers delete it later.
    """
    store = _store(store)
    with store.locked():
        manifest = _load_or_clear(fs, store, tag)
        if manifest is None:
            return None, []
        if not force and manifest.nonce != nonce:
            raise OwnershipError("run %s belongs to another play (%s); not removing it. To remove a live run "
                                 "anyway, name it: fleettrace.tracefs.cleanup force: [%s]"
                                 % (tag, describe(manifest), tag))
        errors = removal.remove_objects(fs, manifest, store)
        if errors:
            return manifest, errors
        try:
            store.delete(manifest)
        except OSError as exc:
            # The objects are gone; the manifest stays for its reapers to delete once /run is writable.
            store.log("%s: finished, manifest not deleted yet: %s" % (tag, exc))
            return manifest, []
    reaper.dismiss(manifest)
    return manifest, []


# -- runs of one process on the node ---------------------------------------------------------------
def own(fs, tag, seconds, instances=(), groups=(), what="module process", store=None, spawn=True, kind=PROCESS,
        lease=0.0):
    """This process owns ``instances``/``groups`` for at most ``seconds`` (plus a margin); return the manifest.

    Lease 0: the moment it dies, SIGKILL included, its reaper removes them.  For
    whatever creates and removes its own objects in one process: a module, a
    test, a benchmark; with ``kind=WATCHER`` a watcher that lives for days.  End it with
    ``finish(fs, tag, manifest.nonce)``.
    """
    # A watcher may ask for its kind's longest deadline: the margin then stays inside it.
    deadline = min(seconds + MODULE_RUN_MARGIN, max(seconds, MAX_DEADLINE[kind]))
    return start(fs, tag, instances, groups, deadline=deadline, lease=lease,
                 owner=run_owner.describe_self(what), kind=kind, store=store, spawn=spawn)


@contextlib.contextmanager
def module_run(fs, tag, seconds, instances=(), groups=(), store=None):
    """The calling module process owns ``instances``/``groups`` for at most ``seconds``.

    For modules that create and remove their own objects (sched_latency): when
    the module is killed (an async timeout sends SIGKILL) its reaper sees the
    owner gone and removes them at once; a normal end removes what is left.
    """
    removal.reap_expired_quietly(fs, store)
    manifest = own(fs, tag, seconds, instances, groups, store=store)
    try:
        with holding([tag], store):     # the play's run it works for lives on while it does
            yield manifest
    finally:
        finish(fs, tag, manifest.nonce, store=store)
