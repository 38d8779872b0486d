#!/usr/bin/python
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r"""
---
module: capture_summary
short_description: Merge the hosts' results of a threshold-capture run into summary.json and summary.md
version_added: 1.1.0
description:
  - Reads every C(HOST.json) of O(results_dir) (C(summary.json) aside), as the C(threshold_capture) role and the
    C(sentinel) role write them, merges them into C(summary.json) (all hosts, totals, and the hosts of O(hosts)
    without a result, listed as unreachable) and writes C(summary.md), the same in words.
  - Run it on the controller (C(delegate_to=localhost), C(run_once=true)).
author: fleettrace developers (@fleettrace)
attributes:
  check_mode:
    support: full
    description: Reads the results and returns the summary; writes nothing.
  diff_mode:
    support: none
    description: No diff.
options:
  results_dir:
    description: The run's result directory (one C(HOST.json) per host).
    type: path
    required: true
  label:
    description: What was diagnosed (the summary's title).
    type: str
    default: threshold_capture
  hosts:
    description: Hosts a result is expected from; those without one are listed as unreachable.
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
# Needs first: the per-host results of a diagnose run (threshold_capture) in ./results/corosync-demo.
- name: Summarize a run whose results are in ./results/corosync-demo
  fleettrace.tracefs.capture_summary:
    results_dir: "{{ playbook_dir }}/results/corosync-demo"
    label: corosync
    hosts: "{{ ansible_play_hosts_all }}"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
summary:
  description: The merged summary (C(schema), C(label), C(results_dir), C(hosts), C(unreachable), C(totals)).
  returned: always
  type: dict
lines:
  description: summary.md as lines (for printing).
  returned: always
  type: list
  elements: str
failed_hosts:
  description: The hosts whose result has status C(failed), with their C(message).
  returned: always
  type: list
  elements: dict
failures:
  description: The failed hosts in one sentence, naming C(summary.md) (empty when no host failed).
  returned: always
  type: str
  sample: "1 host(s) failed: node2 (task Install the probe failed: no debug info). See results/corosync-x/summary.md."
written:
  description: Paths written (none in check mode, nor when unchanged).
  returned: always
  type: list
  elements: str
"""

import json
import os

from ansible_collections.fleettrace.tracefs.plugins.module_utils import bounded
from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.module_runner import run_module
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import capture_summary
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report.files import write_files

MAX_RESULT_BYTES = 64 << 20
SUMMARY_FILES = ("summary.json", "summary.md")


def read_results(directory):
    results = []
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".json") or name in SUMMARY_FILES:
            continue
        path = os.path.join(directory, name)
        try:
            document = json.loads(bounded.read_user_file(path, "result", MAX_RESULT_BYTES).decode("utf-8"))
        except (OSError, ValueError, bounded.FileRefused) as exc:
            raise FleettraceError("cannot read the host result %s: %s" % (path, exc))
        if isinstance(document, dict) and "host" in document:
            results.append(document)
    return results


def body(module, result):
    params = module.params
    directory = params["results_dir"]
    if not os.path.isdir(directory):
        raise FleettraceError("results_dir %s is not a directory" % directory)
    summary = capture_summary.merge(read_results(directory), params["label"], directory, params["hosts"])
    text = capture_summary.render_markdown(summary)
    written = []
    if not module.check_mode:
        rendered = {"summary.json": json.dumps(summary, indent=4, sort_keys=True) + "\n", "summary.md": text}
        written = [os.path.join(directory, name) for name in write_files(directory, rendered, mode=0o644)]
    result.update(summary=summary, lines=text.splitlines(), failed_hosts=capture_summary.failed_hosts(summary),
                  failures=capture_summary.failures(summary), written=written, changed=bool(written))


def main():
    run_module(dict(results_dir=dict(type="path", required=True),
                    label=dict(type="str", default="threshold_capture"),
                    hosts=dict(type="list", elements="str", default=[])),
               body, supports_check_mode=True)


if __name__ == "__main__":
    main()
