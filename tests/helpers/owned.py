"""tracefs objects a test or a benchmark creates itself, recorded as a run of this process.

Through the core's runs API (plugins/module_utils/runs/lifecycle.py):
the exact names go into a manifest before anything is created, the owner is
this process with no lease, and a detached reaper removes them the moment the
process dies, SIGKILL included.  ``end()`` removes what is left and the manifest;
objects of other runs, or without a manifest, are never touched.
"""

from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import lifecycle

# Longer than any test or benchmark step holds its objects: past it (plus the core's
# margin) the reaper removes them even from a hung, still living process.
DEFAULT_SECONDS = 900


class OwnedRun:
    """Register ``instances``/``groups`` (exact names) before creating them; ``end()`` in ``finally``.

    A run's names are its tag or start with the tag and '_' (runs/manifest.py): the default tag is
    the shortest name, so name the others after it (``name``, ``name + "_grp"``).
    """

    def __init__(self, tracefs, instances=(), groups=(), seconds=DEFAULT_SECONDS, tag=None, what="test process"):
        self.tracefs = tracefs
        self.tag = tag or min(list(instances) + list(groups), key=len)
        self.manifest = lifecycle.own(tracefs, self.tag, seconds, instances, groups, what=what)
        self.ended = False

    def end(self):
        """Remove whatever of the run is still there, then its manifest (its reaper then exits)."""
        if self.ended:
            return
        self.ended = True
        _manifest, errors = lifecycle.finish(self.tracefs, self.tag, self.manifest.nonce)
        if errors:
            raise RuntimeError("run %s: could not remove %s" % (self.tag, "; ".join(errors)))

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.end()
