# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run manifest: one typed record, and the checks a manifest read from disk must pass.

Runs: who owns which tracefs objects on a node, for how long, and who removes them.

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

A manifest on disk is data, not an order: anyone with root may have written it,
a full disk may have cut it short, an older fleettrace may have written another
schema.  ``Manifest.parse`` accepts the current schema and the one before it
(``fleettrace.run/1``, converted), and refuses everything else with a
``ManifestError`` saying what is wrong: the store then quarantines the file.
"""


import json
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Dict, Optional, Tuple

from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import validate
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.fs import OWNED_PREFIX

SCHEMA = "fleettrace.run/2"
OLD_SCHEMA = "fleettrace.run/1"

# Kinds of run: what keeps one alive (docs/tracefs-core.md).
PLAY = "play"          # a play on a controller: its lease, renewed while the controller lives
PROCESS = "process"    # a process on this node (a module, a test, a benchmark)
WATCHER = "watcher"    # a long-lived process on this node (the sentinel's watcher)
KINDS = (PLAY, PROCESS, WATCHER)
DAY = 86400.0
# The longest deadline of each kind: a week for what a person waits for, a month for a sentinel.
# (A watcher's run outlives its own 30 days by the margin it ends itself in.)
MAX_DEADLINE = {PLAY: 7 * DAY, PROCESS: 7 * DAY, WATCHER: 30 * DAY + 3600.0}
MAX_LEASE = 3600.0

# What an owner record says about the process: a controller on this host (its end is the
# operator's), an ssh session (shows where the play came from; a ControlPersist master
# outlives its controller, so it never keeps a run alive), or a process of the node.
CONTROLLER, SSH_SESSION, NODE_PROCESS = "controller", "ssh", "process"
OWNER_KINDS = (CONTROLLER, SSH_SESSION, NODE_PROCESS)

# Caps on what is read from disk: a manifest names a few objects, never thousands.
MAX_BYTES = 64 * 1024
MAX_NAMES = 32
MAX_TEXT = 512
MAX_DETAILS_BYTES = 4096
_NONCE = re.compile(r"^[0-9a-f]{16,64}$")


class OwnershipError(FleettraceError):
    """A run that may not start or end as asked."""


class ManifestError(FleettraceError, ValueError):
    """A manifest (or a request for one) that is malformed, too big, or names what a run may not own."""


class NewerSchema(Exception):
    """A manifest of a later fleettrace (a node with two versions installed): not ours to judge or remove."""


def newer_schema(schema):
    prefix = SCHEMA.rsplit("/", 1)[0] + "/"
    if not isinstance(schema, str) or not schema.startswith(prefix) or not schema[len(prefix):].isdigit():
        return False
    return int(schema[len(prefix):]) > int(SCHEMA.rsplit("/", 1)[1])


@dataclass(frozen=True)
class Process:
    """A process by pid and start time (clock ticks since boot): a reused pid is another process."""

    pid: int
    start: Optional[int]
    what: str = ""
    kind: str = NODE_PROCESS

    def to_dict(self):
        return {"pid": self.pid, "start": self.start, "what": self.what, "kind": self.kind}

    @classmethod
    def from_dict(cls, data):
        """A record kept elsewhere (a sentinel's state file), or None when it is not one."""
        try:
            return cls.parse(data, "process")
        except ManifestError:
            return None

    @classmethod
    def parse(cls, data, where):
        if not isinstance(data, dict):
            raise ManifestError("%s is not an object" % where)
        pid, start = data.get("pid"), data.get("start")
        if not _is_int(pid) or not 0 < pid <= validate.MAX_PID:
            raise ManifestError("%s.pid %r is not a pid" % (where, pid))
        if start is not None and (not _is_int(start) or start < 0):
            raise ManifestError("%s.start %r is not a start time in ticks" % (where, start))
        kind = data.get("kind", NODE_PROCESS)
        if kind not in OWNER_KINDS:
            raise ManifestError("%s.kind %r is not one of %s" % (where, kind, ", ".join(OWNER_KINDS)))
        return cls(pid, start, _text(data.get("what", ""), where + ".what"), kind)


def owns_name(tag, name):
    """The naming rule that makes a manifest's list checkable: a run's objects carry the project's
    prefix and its own tag (``TAG`` or ``TAG_...``)."""
    return name.startswith(OWNED_PREFIX) and (name == tag or name.startswith(tag + "_"))


def check_tag(tag):
    """A tag is a file name and the start of tracefs names: the instance-name rules, and the prefix."""
    validate.instance_name(tag)
    if not tag.startswith(OWNED_PREFIX):
        raise validate.ValidationError("run tag %r does not start with %r: a run's objects are named after its tag, "
                                       "and only names with that prefix are ever removed" % (tag, OWNED_PREFIX))
    return tag


def check_names(tag, instances, groups):
    """Refuse, before anything is recorded, names the run could not later prove to be its own."""
    names = list(instances) + list(groups)
    if len(names) > MAX_NAMES:
        raise ManifestError("run %s lists %d names; a run owns at most %d instances and groups"
                            % (tag, len(names), MAX_NAMES))
    for name in instances:
        validate.instance_name(name)
    for name in groups:
        validate.group_name(name)
    wrong = [n for n in names if not owns_name(tag, n)]
    if wrong:
        raise ManifestError("%s not named after run %s: a run's instances and groups are named %s or %s_..., so a "
                            "manifest on disk can never name another tool's or another run's objects"
                            % (", ".join(wrong), tag, tag, tag))


@dataclass(frozen=True)
class Manifest:
    tag: str
    kind: str
    nonce: str
    owner: Process
    created: float
    lease: float
    lease_until: float
    deadline: float
    tracefs: str
    instances: Tuple[str, ...] = ()
    groups: Tuple[str, ...] = ()
    host: str = ""
    run_id: str = ""
    reapers: Tuple[Process, ...] = field(default=())
    # Facts a kind keeps for ``cleanup`` and its own tools (a sentinel's label, spool and watcher).
    details: Dict[str, Any] = field(default_factory=dict)

    @property
    def names(self):
        return frozenset(self.instances) | frozenset(self.groups)

    def with_changes(self, **changes):
        return replace(self, **changes)

    def to_dict(self):
        return {
            "schema": SCHEMA, "tag": self.tag, "kind": self.kind, "nonce": self.nonce, "owner": self.owner.to_dict(),
            "created": self.created, "lease": self.lease, "lease_until": self.lease_until, "deadline": self.deadline,
            "tracefs": self.tracefs, "objects": {"instances": list(self.instances), "groups": list(self.groups)},
            "host": self.host, "run_id": self.run_id, "reapers": [r.to_dict() for r in self.reapers],
            "details": self.details,
        }

    def to_json(self):
        return json.dumps(self.to_dict(), sort_keys=True).encode("utf-8")

    @classmethod
    def parse(cls, data, tag):
        """The manifest in ``data`` (bytes) of the file named after ``tag``; ManifestError if it is not one."""
        if len(data) > MAX_BYTES:
            raise ManifestError("%d bytes, more than the %d a manifest may have" % (len(data), MAX_BYTES))
        try:
            raw = json.loads(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ManifestError("not JSON (cut short?): %s" % exc)
        if not isinstance(raw, dict):
            raise ManifestError("not a JSON object")
        schema = raw.get("schema")
        if newer_schema(schema):
            raise NewerSchema(schema)
        if schema not in (SCHEMA, OLD_SCHEMA):
            raise ManifestError("schema %r is not %s (nor %s)" % (schema, SCHEMA, OLD_SCHEMA))
        if raw.get("tag") != tag:
            raise ManifestError("its tag %r is not its file name's %r" % (raw.get("tag"), tag))
        objects = raw.get("objects")
        if not isinstance(objects, dict):
            raise ManifestError("objects is missing")
        instances, groups = _names(objects, "instances"), _names(objects, "groups")
        try:
            if schema == OLD_SCHEMA:
                # Written by the version before (a node upgraded while runs were in flight): its rules.
                # Its names may lack the prefix; ``choice.removable`` still removes only those that have it.
                validate.instance_name(tag)
                for name in instances + groups:
                    validate.instance_name(name)
            else:
                check_tag(tag)
                check_names(tag, instances, groups)
        except ValueError as exc:
            raise ManifestError(str(exc))
        nonce = raw.get("nonce")
        if not isinstance(nonce, str) or not _NONCE.match(nonce):
            raise ManifestError("nonce %r is not a hex nonce" % (nonce,))
        kind = PLAY if schema == OLD_SCHEMA else raw.get("kind")     # /1 had no kinds
        if kind not in KINDS:
            raise ManifestError("kind %r is not one of %s" % (kind, ", ".join(KINDS)))
        owner = Process.parse(raw.get("owner"), "owner")
        if schema == OLD_SCHEMA and owner.what.startswith("ssh session"):
            owner = replace(owner, kind=SSH_SESSION)
        elif schema == OLD_SCHEMA and owner.what.startswith("ansible controller"):
            owner = replace(owner, kind=CONTROLLER)
        reapers = raw.get("reapers", [])
        if schema == OLD_SCHEMA:
            reapers = [raw["reaper"]] if raw.get("reaper") else []
        if not isinstance(reapers, list) or len(reapers) > 4:
            raise ManifestError("reapers is not a short list")
        created, deadline = _seconds(raw, "created"), _seconds(raw, "deadline")
        lease = _seconds(raw, "lease")
        if not 0 <= lease <= MAX_LEASE:
            raise ManifestError("lease %r is out of range 0..%d" % (lease, MAX_LEASE))
        longest = MAX_DEADLINE[WATCHER] if schema == OLD_SCHEMA else MAX_DEADLINE[kind]
        if not created <= deadline <= created + longest:
            raise ManifestError("deadline %r is not within %d s of its creation %r" % (deadline, longest, created))
        tracefs = raw.get("tracefs")
        if not isinstance(tracefs, str) or not tracefs.startswith("/") or ".." in tracefs or len(tracefs) > MAX_TEXT:
            raise ManifestError("tracefs %r is not an absolute path" % (tracefs,))
        return cls(tag=tag, kind=kind, nonce=nonce, owner=owner, created=created, lease=lease,
                   lease_until=_seconds(raw, "lease_until"), deadline=deadline, tracefs=tracefs,
                   instances=instances, groups=groups, host=_text(raw.get("host", ""), "host"),
                   run_id=_text(raw.get("run_id") or "", "run_id"),
                   reapers=tuple(Process.parse(r, "reapers[]") for r in reapers),
                   details=_details(raw.get("details", {})))


def check_details(details):
    """Details are a small JSON object: the store writes them whole, readers get them as written."""
    if not isinstance(details, dict) or len(json.dumps(details, sort_keys=True)) > MAX_DETAILS_BYTES:
        raise ManifestError("details must be a JSON object of at most %d bytes" % MAX_DETAILS_BYTES)
    return details


def _details(value):
    return dict(check_details(value))


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value, where):
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise ManifestError("%s is not a string of at most %d characters" % (where, MAX_TEXT))
    return value


def _seconds(raw, key):
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ManifestError("%s %r is not a time in seconds" % (key, value))
    return float(value)


def _names(objects, key):
    names = objects.get(key, [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ManifestError("objects.%s is not a list of names" % key)
    if len(names) > MAX_NAMES:
        raise ManifestError("objects.%s lists %d names, more than %d" % (key, len(names), MAX_NAMES))
    return tuple(sorted(set(names)))
