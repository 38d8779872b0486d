# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-host result documents: what the fleet report accepts, and how it reads them.

Accepted per-host documents (schema in docs/sched-audit.md):

* ``kind: sched_latency`` -- the sched_latency module's result;
* ``kind: diagnose`` -- the diagnose workflow's result with ``findings``
  (``duration_ms``, ``state``, ``kernel_stack``, ``syscall``, ``fd``, ``file``...);
* ``kind: failure`` -- a host that gave no result: ``status`` (``unreachable``, ``failed`` or
  ``no result``), ``msg`` and the ``task`` that failed, as save_results writes it from the
  registered result (or latency_report adds it for an expected host without any document).
  Such a host is in every output of the report, and the report does not pass.
"""


import json
import os

from ansible_collections.fleettrace.tracefs.plugins.module_utils import bounded
from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError

KINDS = ("sched_latency", "diagnose", "failure")
FAILURE_STATUSES = ("unreachable", "failed", "no result")
NO_RESULT_MSG = "no result was saved for this host: it failed or was unreachable before its result was written"


class ReportError(FleettraceError, ValueError):
    """A per-host document or a check that cannot be used."""


def number(value):
    """``value`` when it is an int or float (not a bool), else None."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def host_name(doc, fallback=None):
    return doc.get("inventory_hostname") or doc.get("host") or fallback


def validate_document(doc, where):
    """Check one per-host document; return it. ``where`` names its origin in errors."""
    if not isinstance(doc, dict):
        raise ReportError("%s: a per-host result must be a JSON object, got %s" % (where, type(doc).__name__))
    kind = doc.get("kind")
    if kind is None and str(doc.get("schema", "")).startswith("fleettrace.threshold_capture/"):
        # The threshold_capture role (diagnose workflow) names its schema instead of a kind.
        kind = doc["kind"] = "diagnose"
    if kind not in KINDS:
        raise ReportError("%s: field 'kind' must be one of %s, got %r (see docs/sched-audit.md)"
                          % (where, ", ".join(KINDS), kind))
    if not host_name(doc):
        raise ReportError("%s: no 'host' (or 'inventory_hostname') field" % where)
    if kind == "diagnose" and not isinstance(doc.get("findings", []), list):
        raise ReportError("%s: 'findings' must be a list" % where)
    if kind == "failure" and doc.get("status") not in FAILURE_STATUSES:
        raise ReportError("%s: a failure's 'status' must be one of %s, got %r"
                          % (where, ", ".join(FAILURE_STATUSES), doc.get("status")))
    return doc


def failure_document(host, status, msg, task=None):
    """The per-host document of a host that gave no result (``status`` from FAILURE_STATUSES)."""
    return {"kind": "failure", "host": host, "status": status, "msg": str(msg or status), "task": task}


def missing_hosts(docs, hosts):
    """A ``no result`` failure for each of ``hosts`` that no document names."""
    named = {host_name(doc) for doc in docs}
    return [failure_document(host, "no result", NO_RESULT_MSG) for host in hosts if host not in named]


RUN_SUMMARY = "summary.json"


def run_dir_files(directory):
    """A diagnose or sentinel run directory's per-host results: its HOST.json files (not below), summary.json aside."""
    return [os.path.join(directory, name) for name in sorted(os.listdir(directory))
            if name.endswith(".json") and name != RUN_SUMMARY and os.path.isfile(os.path.join(directory, name))]


def load_documents(paths):
    """Read per-host JSON files; a directory is searched for ``*.json`` (one level of host dirs)."""
    docs = []
    for path in paths:
        files = []
        if os.path.isdir(path):
            for root, _dirs, names in sorted(os.walk(path)):
                files.extend(os.path.join(root, n) for n in sorted(names) if n.endswith(".json"))
        else:
            files.append(path)
        for name in files:
            try:
                # Bounded and non-blocking: /dev/zero or a FIFO as a result path is refused.
                doc = json.loads(bounded.read_user_file(name, "result file", bounded.RESULT_MAX).decode("utf-8"))
            except (OSError, ValueError) as exc:
                raise ReportError("%s: cannot read a JSON per-host result: %s" % (name, exc))
            if isinstance(doc, dict) and not host_name(doc):
                # DIR/<host>/<kind>.json or DIR/<host>.json: the path names the host.
                base = os.path.basename(name)[:-len(".json")]
                doc["inventory_hostname"] = os.path.basename(os.path.dirname(name)) if base in KINDS else base
            docs.append(validate_document(doc, name))
    return docs
