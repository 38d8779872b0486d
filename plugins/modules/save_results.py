#!/usr/bin/python
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation of the save_results action plugin (plugins/action/save_results.py does the work)."""


DOCUMENTATION = r"""
---
module: save_results
short_description: Write the per-host result documents of a fleet audit on the controller, in one task
version_added: 0.2.0
description:
  - Writes C(<dest>/hosts/<host>/<filename>) (O(layout=hosts)) or C(<dest>/<host>.json) (O(layout=flat), the
    diagnose workflow's layout) for every host of O(results), as indented JSON, on the controller, with
    C(inventory_hostname) set to the host's name.
  - An action plugin that runs in the controller's worker; one task for the whole fleet instead of one C(copy) per host.
  - Checks every host name and document before writing anything.
author: fleettrace developers (@fleettrace)
attributes:
  check_mode:
    support: full
    description: Checks the input and writes nothing.
  diff_mode:
    support: none
    description: No diff.
options:
  dest:
    description: The report directory; files go to C(hosts/<host>/) below it.
    type: path
    required: true
  results:
    description: Host name -> result document (a dict).
    type: dict
    required: true
  filename:
    description: File name of each host's document (O(layout=hosts)).
    type: str
    default: sched_latency.json
  layout:
    description:
      - C(hosts) writes C(hosts/<host>/<filename>); C(flat) writes C(<host>.json) in O(dest), a host name that is not
        a safe file name (or is C(summary)) getting a hash of the original, as the diagnose workflow names them.
    type: str
    choices: [hosts, flat]
    default: hosts
notes:
  - Runs on the controller only; give it C(run_once=true).
"""

EXAMPLES = r"""
- name: Save every host's audit result on the controller
  fleettrace.tracefs.save_results:
    dest: "{{ playbook_dir }}/fleettrace-report"
    results: "{{ dict(ansible_play_hosts | zip(ansible_play_hosts | map('extract', hostvars, ['audit', 'sched_latency']))) }}"
  run_once: true
"""

RETURN = r"""
written:
  description: Paths written.
  returned: always
  type: list
  elements: str
msg:
  description: One-line summary.
  returned: always
  type: str
"""
