# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs: who owns which tracefs objects on a node, for how long, and who removes them.

The words, one meaning each (docs/tracefs-core.md, "Ownership"):

- a **run** is one use of tracefs objects on one node, recorded in a manifest
  before anything is created;
- its **tag** is the run's one name on the node: the manifest's file name, the
  claims on its object names, what ``run``, ``cleanup force:`` and every message
  call it.  Its objects are named after it (``TAG`` or ``TAG_...``);
- its **nonce** is not a name but a proof: handed to whoever started the run,
  needed to renew or finish it, so a refused second start never ends the first;
- a **run id** is the play's (the same on every host); the role makes each
  host's tag from it, and the manifest keeps it for messages only;
- its **kind** says what keeps it alive: ``play`` (a controller renewing a
  lease), ``process`` (a process on the node: a module, a test, a benchmark),
  ``watcher`` (a long-lived process on the node, the sentinel: days, not minutes).

``manifest`` (the record and its checks), ``owner`` (processes, from procfs),
``store`` (the directory: manifests, claims and their renewals, quarantine, log), ``choice``
(what is over and what may be removed: the one place that decides), ``lifecycle``
(start, renew, finish, reap) and ``reaper`` (the detached dead-man switch).
"""
