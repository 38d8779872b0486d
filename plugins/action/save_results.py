# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write every host's result document on the controller in one step (see the save_results module docs).

An action plugin: it runs inside the controller's worker, so a fleet of N
hosts costs one task, not N module runs of copy (a Python start and a stat
each), which was most of the audit's controller CPU per host.
"""


import hashlib
import json
import os
import re

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.action import ActionBase

from ansible_collections.fleettrace.tracefs.plugins.plugin_utils.registered import registered_names, registered_results

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.@:-]+$")
LAYOUTS = ("hosts", "flat")
# A host that gave no result gets this file instead (hosts layout), read by the report as kind=failure.
FAILURE_FILE = "failure.json"
NO_RESULT_MSG = "no result was saved for this host: it failed or was unreachable before its result was written"


def failure_document(status, msg):
    """What the report reads for a host without a result (module_utils/report/document.py, kind=failure)."""
    return {"kind": "failure", "status": status, "msg": str(msg or status), "task": None}


def document_of(registered, key, check_mode=False):
    """The document in a registered task result, or a failure document saying why there is none.

    In check mode a module returns what it would do, not a document: nothing to write, and nothing missing.
    """
    if registered is None:
        return failure_document("no result", NO_RESULT_MSG)
    if registered.get("unreachable"):
        return failure_document("unreachable", registered.get("msg"))
    if registered.get("failed"):
        return failure_document("failed", registered.get("msg"))
    document = registered.get(key)
    if check_mode and document is None:
        return {"kind": "check_mode"}
    if not isinstance(document, dict):
        return failure_document("failed", "the task's result has no %s document" % key)
    return document


def messages_of(found, hosts):
    """The ``msg`` of each host's registered result, in the order of ``hosts``, for hosts still in the play
    (not failed, not unreachable): what the audit shows of each host's window."""
    return [found[host].get("msg") for host in hosts
            if found[host] is not None and not found[host].get("failed") and not found[host].get("unreachable")]


def flat_name(host):
    """``<host>.json`` as the diagnose workflow names it: a name that stays in the directory; a changed
    name (or ``summary``) gets a hash of the original, so two hosts never share a file."""
    safe = re.sub(r"^[.-]", "_", re.sub(r"[^A-Za-z0-9_.-]", "_", host))
    if safe == host and safe != "summary":
        return safe + ".json"
    return "%s_%s.json" % (safe, hashlib.sha1(host.encode("utf-8")).hexdigest()[:8])


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("dest", "results", "filename", "layout", "hosts", "registered", "key"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        dest = args.get("dest")
        results = args.get("results")
        filename = args.get("filename", "sched_latency.json")
        messages = []
        if args.get("hosts") is not None:
            if results is not None:
                raise AnsibleActionFail("give results, or hosts with registered and key; not both")
            results, messages = self._from_registered(args, task_vars or {})
        layout = args.get("layout", "hosts")
        if layout not in LAYOUTS:
            raise AnsibleActionFail("layout %r: use hosts (DEST/hosts/HOST/FILENAME) or flat (DEST/HOST.json)" % layout)
        if not dest or not isinstance(results, dict):
            raise AnsibleActionFail("save_results needs dest (a directory) and results (a dict: host name -> document), "
                                    "or hosts, registered and key")
        if not _SAFE_NAME.match(filename) or filename.startswith("."):
            raise AnsibleActionFail("filename %r: use a plain file name such as sched_latency.json" % filename)
        written = []
        for host, document in sorted(results.items()):
            if layout == "hosts" and (not _SAFE_NAME.match(host) or host.startswith(".")):
                raise AnsibleActionFail("host name %r cannot be a directory name; nothing was written" % host)
            if not isinstance(document, dict):
                raise AnsibleActionFail("the result of %s is not a document (got %s); nothing was written"
                                        % (host, type(document).__name__))
        down = sorted(host for host, document in results.items() if document.get("kind") == "failure")
        if self._task.check_mode:
            result.update(changed=False, written=[], down=down, messages=messages,
                          msg="check mode: would write %d file(s)" % len(results))
            return result
        try:
            for host, document in sorted(results.items()):
                failed = document.get("kind") == "failure"
                if layout == "flat":
                    directory, name = dest, flat_name(host)
                else:
                    directory, name = os.path.join(dest, "hosts", host), FAILURE_FILE if failed else filename
                os.makedirs(directory, mode=0o755, exist_ok=True)
                path = os.path.join(directory, name)
                if layout == "hosts":
                    # A result of an earlier run must not stand in for this run's failure, nor the reverse.
                    stale = os.path.join(directory, filename if failed else FAILURE_FILE)
                    if os.path.exists(stale):
                        os.unlink(stale)
                temporary = path + ".tmp"
                document = dict(document, inventory_hostname=host)
                with open(temporary, "w") as handle:
                    json.dump(document, handle, indent=2, sort_keys=True)
                    handle.write("\n")
                os.rename(temporary, path)
                written.append(path)
        except OSError as exc:
            raise AnsibleActionFail("cannot write the results under %s: %s" % (dest, to_native(exc)))
        result.update(changed=bool(written), written=written, down=down, messages=messages,
                      msg="wrote %d result file(s)" % len(written)
                      + ("; no result from %s" % ", ".join(down) if down else ""))
        return result

    def _from_registered(self, args, task_vars):
        hosts, names, key = args.get("hosts"), registered_names(args.get("registered")), args.get("key")
        if not isinstance(hosts, list) or not names or not key:
            raise AnsibleActionFail("save_results with hosts needs registered (the variable(s) the task registered) "
                                    "and key (the document in it, e.g. sched_latency)")
        found = registered_results(task_vars, hosts, names)
        check_mode = bool(self._task.check_mode)
        return {host: document_of(found[host], key, check_mode) for host in hosts}, messages_of(found, hosts)
