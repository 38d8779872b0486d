#!/usr/bin/python
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r"""
---
module: run
short_description: Start or end a fleettrace run on a node, with a dead-man switch for its tracefs objects
version_added: 0.2.0
description:
  - C(state=started) records, before anything is created, the exact instance and probe group names a run will use in
    a manifest C(/run/fleettrace/runs/TAG.json), claims each name (two runs never own one name), and detaches a pair
    of reaper processes that watch each other (kill one, the other starts a new one).
  - The run lives while its controller does. With a local connection that is the C(ansible-playbook) process; over
    SSH the node cannot see the controller (its sshd session outlives it with ControlPersist), so the run lives by a
    lease the controller renews - every fleettrace module call on the run's names, and the C(capture) action between
    the polls of an async capture.
  - The reapers remove exactly those objects once the deadline passed, or once the controller is gone and the lease
    ran out (a killed controller, a dropped connection, a single Ctrl-C), without C(cleanup.yml).
  - Names must start with C(fleettrace) and the tag (C(TAG) or C(TAG_...)), so a manifest on disk can never name
    another tool's or another run's objects. A second run with the same tag on the host is refused while the first
    lives; a name another run claims is refused naming it; names that already exist in tracefs without a run are
    refused (they belong to someone else).
  - C(state=finished) removes exactly the run's objects and its manifest. It needs the RV(nonce) returned by
    C(started), so a refused second run can never remove the first one's objects.
  - Every call first reaps the expired runs of the host (and warns about files that were no manifests).
author:
  - fleettrace developers (@fleettrace)
options:
  tag:
    description:
      - The run's name on this host (manifest file name), e.g. C(fleettrace_RUNID_HOST_HASH). Letters, digits, C(_),
        C(-), C(.); it starts with C(fleettrace).
    type: str
    required: true
  run_id:
    description: The run id the tag was made from, for messages and C(cleanup).
    type: str
  instances:
    description: Exact names of the tracefs instances the run will create.
    type: list
    elements: str
    default: []
  groups:
    description: Exact names of the uprobe groups the run will create.
    type: list
    elements: str
    default: []
  deadline:
    description:
      - Seconds from now after which the run's objects are removed whatever happens (0 < deadline <= 604800).
      - Default 3600, or computed from O(wait) (mutually exclusive).
    type: float
  wait:
    description:
      - What the run waits for, instead of O(deadline). The deadline is O(wait.timeout) x (O(wait.rearm) + 1)
        plus O(wait.setup_seconds), returned as RV(deadline) and as RV(async_seconds) for the C(async) of the task
        that waits (its C(capture)), so the two never disagree.
    type: dict
    version_added: 1.1.0
    suboptions:
      timeout:
        description: Seconds one capture waits.
        type: float
        required: true
      rearm:
        description: How often the capture may arm again (each one waits O(wait.timeout) again).
        type: int
        default: 0
      setup_seconds:
        description: Seconds for everything else of the run (setup, collection, cleanup).
        type: float
        default: 300
  lease:
    description:
      - Seconds the run outlives its controller's last renewal (0 <= lease <= 3600). Covers the gaps between the
        tasks of a play; calling C(started) again with the same O(nonce) renews it too.
    type: float
    default: 15
  nonce:
    description: The RV(nonce) of C(started); required for C(finished) and for renewing.
    type: str
  state:
    description: C(started) records the run (or renews it with O(nonce)); C(finished) removes its objects.
    type: str
    choices: [started, finished]
    default: started
attributes:
  check_mode:
    support: full
    description: Reports the manifest it would write and writes nothing.
  diff_mode:
    support: none
    description: Nothing to compare; RV(manifest) names the file.
notes:
  - Needs root (C(become=true)).
seealso:
  - module: fleettrace.tracefs.cleanup
"""

EXAMPLES = r"""
# Needs first: a run id of your own (run_id), the names of what the run will create carry it.
- name: Own this run's instance and probe group on the node
  fleettrace.tracefs.run:
    tag: "fleettrace_{{ run_id }}_{{ inventory_hostname }}"
    instances: ["fleettrace_{{ run_id }}_{{ inventory_hostname }}"]
    groups: ["fleettrace_{{ run_id }}_{{ inventory_hostname }}"]
    deadline: 900
  become: true
  register: run

- name: Remove exactly what the run created
  fleettrace.tracefs.run:
    tag: "{{ run.tag }}"
    nonce: "{{ run.nonce }}"
    state: finished
  become: true
"""

RETURN = r"""
tag:
  description: The run's tag.
  returned: always
  type: str
deadline:
  description: The run's deadline in seconds from now (given, or computed from O(wait)).
  returned: always
  type: float
async_seconds:
  description: RV(deadline) rounded up, for the C(async) of the task that waits.
  returned: always
  type: int
nonce:
  description:
    - Proof of ownership for C(finished) and renewals.
    - In check mode C(check-mode), so the C(finished) task after it runs in check mode too (it finds no run).
  returned: when state=started
  type: str
owner:
  description: The process whose end ends the run (pid, start time in ticks, what it is).
  returned: when state=started
  type: dict
manifest:
  description: Path of the manifest.
  returned: always
  type: str
removed:
  description: With C(finished), the objects removed (instances, uprobes, events, triggers).
  returned: when state=finished
  type: dict
reaped:
  description: Expired runs of other plays removed first, as C([tag, why, errors]).
  returned: always
  type: list
"""

import math

from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.module_runner import run_module
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import lifecycle, removal
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import owner as run_owner
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs.manifest import (
    MAX_DEADLINE, MAX_LEASE, PLAY, check_names, check_tag)
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs.store import RunStore
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import validate
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.cleanup import as_result
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import Tracefs


def _seconds(value, name, low, high, low_open=True):
    if not math.isfinite(value) or value > high or value < low or (low_open and value == low):
        raise validate.ValidationError("%s=%r is out of range: give seconds, %s %s %s <= %s"
                                       % (name, value, low, "<" if low_open else "<=", name, high))
    return value


CHECK_MODE_NONCE = "check-mode"


def deadline_of(p):
    """The run's deadline in seconds: given, computed from what it waits for, or an hour."""
    wait = p["wait"]
    if wait is None:
        return 3600.0 if p["deadline"] is None else p["deadline"]
    _seconds(wait["timeout"], "wait.timeout", 0.0, MAX_DEADLINE[PLAY])
    _seconds(wait["setup_seconds"], "wait.setup_seconds", 0.0, MAX_DEADLINE[PLAY], low_open=False)
    if wait["rearm"] < 0:
        raise validate.ValidationError("wait.rearm=%d must be 0 or more" % wait["rearm"])
    return wait["timeout"] * (wait["rearm"] + 1) + wait["setup_seconds"]


def body(module, result):
    p = module.params
    result.update(tag=p["tag"], reaped=[])
    store = RunStore()
    check_tag(p["tag"])
    result["manifest"] = store.path(p["tag"])
    check_names(p["tag"], p["instances"], p["groups"])
    p["deadline"] = deadline_of(p)
    _seconds(p["deadline"], "deadline", 0.0, MAX_DEADLINE[PLAY])     # before any arithmetic: nan, inf
    result.update(deadline=p["deadline"], async_seconds=int(math.ceil(p["deadline"])))
    _seconds(p["lease"], "lease", 0.0, MAX_LEASE, low_open=False)
    fs = Tracefs(mount=False)
    if not module.check_mode:
        result["reaped"] = [list(r) for r in removal.reap_expired_quietly(fs, store, warn=module.warn)]
    if p["state"] == "finished":
        if module.check_mode:
            manifest = lifecycle.load(p["tag"], store)
            found = removal.leftovers_of(fs, manifest, store) if manifest else None
            result.update(changed=manifest is not None, removed=as_result(found) if found else {})
            return
        manifest, errors = lifecycle.finish(fs, p["tag"], p["nonce"], store=store)
        if manifest is None:
            return      # already reaped or finished
        result.update(changed=True, removed={"instances": list(manifest.instances), "groups": list(manifest.groups)})
        if errors:
            raise FleettraceError("run %s: could not remove: %s; its reapers keep trying until the deadline"
                                  % (p["tag"], "; ".join(errors)))
        return
    if p["nonce"]:
        manifest = lifecycle.load(p["tag"], store) if module.check_mode else lifecycle.renew(p["tag"], p["nonce"], store)
        result.update(nonce=p["nonce"], owner=manifest.owner.to_dict() if manifest else None)
        return
    owner = run_owner.find_owner()
    result.update(changed=True, owner=owner.to_dict())
    if module.check_mode:
        result["nonce"] = CHECK_MODE_NONCE    # no run is started: the finished task after it finds none
        return
    manifest = lifecycle.start(fs, p["tag"], instances=p["instances"], groups=p["groups"], deadline=p["deadline"],
                               lease=p["lease"], run_id=p["run_id"], owner=owner, store=store)
    result.update(nonce=manifest.nonce)


def main():
    run_module(
        dict(
            tag=dict(type="str", required=True),
            run_id=dict(type="str"),
            instances=dict(type="list", elements="str", default=[]),
            groups=dict(type="list", elements="str", default=[]),
            deadline=dict(type="float"),
            wait=dict(type="dict", options=dict(timeout=dict(type="float", required=True),
                                                rearm=dict(type="int", default=0),
                                                setup_seconds=dict(type="float", default=300.0))),
            lease=dict(type="float", default=lifecycle.DEFAULT_LEASE),
            nonce=dict(type="str", no_log=False),
            state=dict(type="str", default="started", choices=["started", "finished"]),
        ),
        body, required_if=[("state", "finished", ("nonce",))], mutually_exclusive=[("deadline", "wait")],
        supports_check_mode=True)


if __name__ == "__main__":
    main()
