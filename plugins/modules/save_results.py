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
  - With O(hosts), O(registered) and O(key) it reads each host's registered task result itself, failed and
    unreachable hosts included (they have left the play, not the inventory). A host whose task failed or that was
    unreachable gets a C(kind=failure) document (C(failure.json) in the C(hosts) layout) with the error, so the
    report names it instead of leaving it out.
author: fleettrace developers (@fleettrace)
attributes:
  check_mode:
    support: full
    description:
      - Checks the input and writes nothing. A registered result without a document is what a module returns in check
        mode, so it is not reported as RV(down).
  diff_mode:
    support: none
    description: No diff.
options:
  dest:
    description: The report directory; files go to C(hosts/<host>/) below it.
    type: path
    required: true
  results:
    description: Host name -> result document (a dict). Give this, or O(hosts) with O(registered) and O(key).
    type: dict
  hosts:
    description:
      - Every host to save a document for, for example C(ansible_play_hosts_all) (which keeps failed and unreachable
        hosts).
    type: list
    elements: str
  registered:
    description:
      - The variable(s) the task registered; per host the first that is set and not a skipped task is its result
        (C([async_status_var, async_start_var]) when the task may have run async).
    type: list
    elements: str
  key:
    description: The key of the registered result that holds the document (for example C(sched_latency)).
    type: str
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
# Needs a result registered before, on every host:
#   - fleettrace.tracefs.sched_latency: {duration: 1}
#     register: latency
- name: Save every host's audit result on the controller, and why a host has none
  fleettrace.tracefs.save_results:
    dest: "{{ playbook_dir }}/fleettrace-report"
    hosts: "{{ ansible_play_hosts_all }}"
    registered: latency
    key: sched_latency
  run_once: true

- name: Save documents given directly
  fleettrace.tracefs.save_results:
    dest: "{{ playbook_dir }}/fleettrace-report"
    results: "{{ dict(ansible_play_hosts | zip(ansible_play_hosts | map('extract', hostvars, ['latency', 'sched_latency']))) }}"
  run_once: true
"""

RETURN = r"""
written:
  description: Paths written.
  returned: always
  type: list
  elements: str
down:
  description: Hosts saved with a C(kind=failure) document (unreachable, failed, or no result).
  returned: always
  type: list
  elements: str
messages:
  description:
    - With O(hosts), the C(msg) of each host's registered result, in the order of O(hosts), for the hosts whose task
      neither failed nor was unreachable (in check mode too, what each host would do).
  returned: always
  type: list
  elements: str
msg:
  description: One-line summary.
  returned: always
  type: str
"""
