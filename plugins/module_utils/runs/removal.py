# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Removing what runs left: exactly the names ``choice.removable`` allows, then the manifests.

Used by ``finish``, by every module's reap at its start, by the reapers and by
the ``cleanup`` module.  What is removed is decided in ``choice``; this module
only carries it out (``tracefs.cleanup`` finds the objects and orders the removal).
"""


from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import choice
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs.manifest import OwnershipError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs.store import RunStore
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import cleanup as tracefs_cleanup
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import validate
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.error_log import TracefsError

QUARANTINED = "quarantined"


def leftovers_of(fs, manifest, store, others=frozenset()):
    """What of the run is still in tracefs, among the names ``choice.removable`` lets it remove."""
    names = set(choice.removable(manifest.tag, manifest.names, store, others))
    # A run without event groups (sched_latency: one instance) cannot be the target of a trigger.
    return tracefs_cleanup.find_leftovers(fs, match=names.__contains__, trigger_targets=bool(manifest.groups))


def remove_objects(fs, manifest, store, others=frozenset()):
    """Remove exactly what the run may remove; return the errors (empty on success)."""
    leftovers = leftovers_of(fs, manifest, store, others)
    return tracefs_cleanup.remove_all(tracefs_cleanup.plan_removal(fs, leftovers))


def remove_quarantined(fs, aside, store, others=frozenset()):
    """What a file that was no manifest meant to own goes too, when the names pass the checks."""
    names = set(choice.removable(aside.tag, aside.names, store, others))
    if not names:
        return []
    found = tracefs_cleanup.find_leftovers(fs, match=names.__contains__)
    errors = tracefs_cleanup.remove_all(tracefs_cleanup.plan_removal(fs, found))
    if not errors:
        store.release(aside.tag, names)
    return errors


def reap(fs, chosen, store, others=frozenset()):
    """Remove the objects of the runs ``choice.choose`` picked, then their manifests; [(tag, why, errors)].

    A manifest that cannot be deleted (a read-only or full /run) is no error: its
    objects are gone, and the next reap deletes it.
    """
    reaped = []
    for manifest, why in chosen:
        errors = remove_objects(fs, manifest, store, others)
        if not errors and _unremovable_left(fs, manifest, store, others):
            continue    # names it may not remove (an older manifest's) still exist: never orphan them silently
        if not errors:
            try:
                store.delete(manifest, ended=why)
            except OSError as exc:
                store.log("%s: objects removed, manifest not deleted: %s" % (manifest.tag, exc))
        failed = "; errors: " + "; ".join(errors) if errors else ""
        store.log("%s: %s, removed %s%s" % (manifest.tag, why, sorted(manifest.names), failed))
        reaped.append((manifest.tag, why, errors))
    return reaped


def _unremovable_left(fs, manifest, store, others):
    kept = manifest.names - set(choice.removable(manifest.tag, manifest.names, store, others))
    if not kept:
        return False
    present = set(fs.list_instances()) | {u.group for u in fs.list_uprobes()}
    return bool(kept & present)


def reap_expired(fs, store=None, now=None):
    """Remove every expired run's objects, and what quarantined files meant to own; return
    [(tag, why, errors)] (a quarantined file's ``why`` starts with 'quarantined')."""
    store = store if store is not None else RunStore()
    if not store.exists():
        return []
    with store.locked():
        manifests, aside = store.runs()
        chosen, live = choice.choose(manifests, store, now)
        others = frozenset().union(*[m.names for m in live])
        reaped = reap(fs, chosen, store, others)
        for item in aside:
            errors = remove_quarantined(fs, item, store, others)
            reaped.append((item.tag, "%s: %s (moved to %s)" % (QUARANTINED, item.why, item.path), errors))
        store.sweep_tombstones()
        store.sweep_temporaries()
    return reaped


def reap_expired_quietly(fs, store=None, warn=None):
    """``reap_expired`` for modules: a reaping problem never fails the module's own task. ``warn``
    (a module's ``warn``) is told about the files that were no manifests."""
    try:
        reaped = reap_expired(fs, store)
    except (OSError, TracefsError, validate.ValidationError):
        return []
    for line in warnings(reaped) if warn else ():
        warn(line)
    return reaped


def warnings(reaped):
    """What a module warns about after reaping: files that were no manifests, and what came of their names."""
    return ["run %s: %s; the objects it named were removed%s" % (tag, why, " except: " + "; ".join(errors) if errors else "")
            for tag, why, errors in reaped if why.startswith(QUARANTINED)]


class Cleanup:
    """What the ``cleanup`` module removes: the runs ``choice.choose`` picked, what quarantined
    files meant to own, and objects without a run that an explicit request names."""

    def __init__(self, fs, store, force=(), named=None, now=None):
        self.fs, self.store = fs, store
        manifests, self.quarantined = store.runs()
        self.chosen, self.live = choice.choose(manifests, store, now, force, named)
        unknown = sorted(set(force) - {m.tag for m, _why in self.chosen})
        if unknown:
            raise OwnershipError("force names no run on this host: %s; runs here: %s"
                                 % (", ".join(unknown), ", ".join(m.tag for m in manifests) or "none"))
        others = frozenset().union(*[m.names for m in self.live])
        self.found = {"instances": [], "uprobes": [], "events": [], "triggers": []}
        for manifest, _why in self.chosen:
            self._add(leftovers_of(self.fs, manifest, store, others))
        for aside in self.quarantined:
            names = set(choice.removable(aside.tag, aside.names, store, others))
            if names:
                self._add(tracefs_cleanup.find_leftovers(fs, match=names.__contains__))
        if named:
            owned = frozenset().union(*[m.names for m in manifests])
            # A run's objects are decided above (expired, forced, or owner gone), never by the name alone.
            self._add(tracefs_cleanup.find_leftovers(
                fs, match=lambda name: named(name) and name not in owned and store.claimant(name) is None))
        self.plan = tracefs_cleanup.plan_removal(fs, self.found)

    def _add(self, found):
        for key, items in found.items():
            self.found[key].extend(i for i in items if i not in self.found[key])

    def apply(self):
        """Remove it all (not at the same time as a reaper); return the errors."""
        with self.store.locked():
            errors = tracefs_cleanup.remove_all(self.plan)
            if not errors:
                others = frozenset().union(*[m.names for m in self.live])
                for manifest, why in self.chosen:
                    if not _unremovable_left(self.fs, manifest, self.store, others):
                        self.store.delete(manifest, ended=why)
                    self.store.log("%s: %s, removed by cleanup" % (manifest.tag, why))
                for aside in self.quarantined:
                    self.store.release(aside.tag, aside.names)
        return errors


def summary(result, check_mode):
    """The cleanup module's one-line account of ``result`` (its return values), for the playbook to print."""
    removed = result["removed"]
    return ("%s: %d instance(s) %s, %d uprobe(s) %s, %d event(s) elsewhere, %d trigger(s); runs %s; "
            "live runs left alone: %s; quarantined (files in /run/fleettrace/runs that were no manifests, "
            "moved aside; read, then delete them): %s; sentinels: %s (a sentinel ends with sentinel_state=absent, "
            "or here with -e '{\"cleanup_force\": [\"TAG\"]}')"
            % ("would remove" if check_mode else "removed",
               len(removed["instances"]), removed["instances"], len(removed["uprobes"]), removed["uprobes"],
               len(removed["events"]), len(removed["triggers"]), [r["tag"] for r in result["runs"]],
               result["live"], result.get("quarantined", []), [s["tag"] for s in result["sentinels"]]))
