# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one place that decides: is a run over, which runs go, and which names may be removed.

The reapers, every module's reap at its start, and the ``cleanup`` module all
ask here; none of them decides on its own.
"""


import time

from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import owner as run_owner
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs.manifest import SSH_SESSION, owns_name
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.fs import OWNED_PREFIX

DEADLINE = "deadline passed"
OWNER_GONE = "owner gone, lease expired"
NOT_RENEWED = "lease expired: its controller stopped renewing it"
FORCED = "forced"
NAMED = "owner gone, named"


def owner_lives(manifest):
    """The recorded owner still runs and counts as a sign of life. An ssh session never does: with
    ControlPersist it outlives its controller by a minute, without it each task has its own; a
    play over ssh lives by the renewals of its controller (every module call, the capture's polls)."""
    return manifest.owner.kind != SSH_SESSION and run_owner.alive(manifest.owner)


def lease_until(manifest, store):
    """The end of the lease: the manifest's, or later when the run was renewed since."""
    renewed = store.renewed_at(manifest)
    return max(manifest.lease_until, renewed + manifest.lease if renewed is not None else 0.0)


def expired(manifest, store, now=None):
    """Why the run is over, or None while it lives.

    Over when the deadline passed, or when nothing keeps it alive: its owner (a
    controller or process on this node) is gone, or it has none but a lease,
    and the lease ran out.
    """
    now = time.time() if now is None else now
    if now >= manifest.deadline:
        return DEADLINE
    if owner_lives(manifest) or now < lease_until(manifest, store):
        return None
    return NOT_RENEWED if manifest.owner.kind == SSH_SESSION else OWNER_GONE


def next_change(manifest, store, now=None):
    """The earliest time ``expired`` may change its answer without the owner dying (seconds since the epoch)."""
    now = time.time() if now is None else now
    until = lease_until(manifest, store)
    return min(manifest.deadline, until) if until > now and not owner_lives(manifest) else manifest.deadline


def named_request(name_contains=None, names=None, prefix=OWNED_PREFIX):
    """Objects an operator names explicitly: exact names, or the prefix and a text they contain."""
    if names:
        wanted = set(names)
        return lambda name: name in wanted
    return lambda name: name.startswith(prefix) and (not name_contains or name_contains in name)


def choose(manifests, store, now=None, force=(), named=None):
    """Which runs go: [(manifest, why)], and which stay: [manifest].

    Expired runs always go; a live run only when its tag is in ``force``; a run
    whose owner is gone (its lease still running) when an explicit ``named``
    request names one of its objects.  Never a run whose owner lives, unless forced.
    """
    now = time.time() if now is None else now
    chosen, live = [], []
    for manifest in manifests:
        why = expired(manifest, store, now)
        if not why and manifest.tag in force:
            why = FORCED
        if not why and named and not run_owner.alive(manifest.owner) and any(named(n) for n in manifest.names):
            why = NAMED
        if why:
            chosen.append((manifest, why))
        else:
            live.append(manifest)
    return chosen, live


def removable(tag, names, store, others=frozenset()):
    """The names a run may have removed: the project's prefix and its own tag, claimed by no
    other run, listed by no other manifest (``others``). A manifest on disk is data, not an order."""
    return sorted(n for n in names
                  if owns_name(tag, n) and n not in others and store.claimant(n) in (None, tag))
