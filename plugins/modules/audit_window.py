#!/usr/bin/python
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation of the audit_window action plugin (plugins/action/audit_window.py does the work)."""


DOCUMENTATION = r"""
---
module: audit_window
short_description: Decide how a fleet's one tracing window runs, synchronous or async, and how long to wait for it
version_added: 0.2.0
description:
  - Decides, on the controller, how the sched_audit role runs M(fleettrace.tracefs.sched_latency) on every host of
    the play in one shared window, and returns the numbers its tasks use.
  - With O(async_mode=auto) the window is one synchronous call per host when the play has a fork for every host
    (C(ansible_forks) at least C(ansible_play_hosts_all)), so all hosts trace the same window and each host costs one
    ssh exec; with fewer forks the window is started async on every host, the controller sleeps through it and then
    checks each host.
  - In check mode nothing is traced, so there is no window to share and the call is always synchronous.
  - An action plugin that runs in the controller's worker; it runs nothing on the hosts.
author: fleettrace developers (@fleettrace)
attributes:
  check_mode:
    support: full
    description: Plans the synchronous call check mode makes; changes nothing in either mode.
  diff_mode:
    support: none
    description: No diff.
options:
  duration:
    description: Length of the window in seconds (greater than 0).
    type: float
    required: true
  poll_seconds:
    description: With async, seconds between checks on hosts still analysing, after the window (a whole number, at least 1).
    type: int
    default: 2
  async_mode:
    description:
      - C(auto) starts the window async only when the play has more hosts than forks; C(always) always async (long
        windows over links that drop idle ssh sessions); C(never) always synchronous (hosts beyond the forks trace
        later windows).
    type: str
    choices: [auto, always, never]
    default: auto
  report_dir:
    description: The report directory the results are saved under (named in RV(msg)).
    type: path
    required: true
notes:
  - Runs on the controller only; give it C(run_once=true) and register its result for the window's tasks.
"""

EXAMPLES = r"""
- name: Plan a 2 s window over the play's hosts
  fleettrace.tracefs.audit_window:
    duration: 2
    report_dir: "{{ playbook_dir }}/fleettrace-report"
  run_once: true
  register: window

- name: Trace it on every host at once, async only when the plan says so
  fleettrace.tracefs.sched_latency:
    duration: 2
  async: "{{ window.async_seconds }}"
  poll: 0
  register: latency

- name: Pick up an async window once it is over
  ansible.builtin.async_status:
    jid: "{{ latency.ansible_job_id }}"
  register: polled
  until: polled.finished
  retries: "{{ window.retries }}"
  delay: "{{ window.delay }}"
  when: window.async
"""

RETURN = r"""
async:
  description: Whether the window is started async on every host and picked up afterwards.
  returned: always
  type: bool
async_seconds:
  description: The C(async) keyword of the window's task, the duration plus 300 s, or 0 for a synchronous call.
  returned: always
  type: int
  sample: 302
pause_seconds:
  description: Seconds the controller sleeps through an async window (the duration, rounded up).
  returned: always
  type: int
retries:
  description: The C(retries) of the status checks after an async window, enough for the duration plus 300 s.
  returned: always
  type: int
delay:
  description: The C(delay) between those checks, O(poll_seconds).
  returned: always
  type: int
msg:
  description: What the audit waits for, one line (in check mode, that nothing is traced or saved).
  returned: always
  type: str
  sample: Tracing scheduler events on 3 host(s) for 30 s (one window for all), then collecting per-host results into /srv/report/hosts
"""
