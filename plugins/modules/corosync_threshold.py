#!/usr/bin/python
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r"""
---
module: corosync_threshold
short_description: The stall threshold of a corosync node (0.8 x its running token timeout)
version_added: 1.1.0
description:
  - Reads the token timeout the running corosync uses (C(corosync-cmapctl -g runtime.config.totem.token)) and
    returns 0.8 x token, the gap at which corosync warns "not scheduled for N ms", as the threshold a capture or a
    sentinel waits for.
  - With O(threshold_ms) nothing is read and that threshold is returned.
  - When the token cannot be read (corosync not running, no cmapctl), corosync's default token (3000 ms) is
    assumed, RV(token_timeout_ms) is 0 and RV(source) is C(default).
  - Reads only; runs in check mode too.
author: fleettrace developers (@fleettrace)
attributes:
  check_mode:
    support: full
    description: Reads the token in check mode too (it writes nothing).
  diff_mode:
    support: none
    description: No diff.
options:
  binary:
    description: The corosync binary; C(corosync-cmapctl) is looked for next to it.
    type: path
    default: /usr/sbin/corosync
  cmapctl:
    description: The C(corosync-cmapctl) to ask (default the one next to O(binary)).
    type: path
  threshold_ms:
    description: A threshold in ms (a positive number) that overrides 0.8 x token; no token is read then.
    type: float
"""

EXAMPLES = r"""
- name: The threshold corosync warns at on this node
  fleettrace.tracefs.corosync_threshold:
  register: corosync

- name: A threshold of our own
  fleettrace.tracefs.corosync_threshold:
    threshold_ms: 400
  register: chosen

- name: Show them
  ansible.builtin.debug:
    msg: "{{ corosync.threshold_ns }} ns ({{ corosync.source }}), chosen {{ chosen.threshold_ns }} ns"
"""

RETURN = r"""
threshold_ms:
  description: The threshold in ms.
  returned: always
  type: float
  sample: 2400.0
threshold_ns:
  description: The threshold in ns (what C(threshold_capture_threshold) and C(sentinel_threshold) take).
  returned: always
  type: int
  sample: 2400000000
token_timeout_ms:
  description: The token timeout read from the running corosync; 0 when O(threshold_ms) was given or none was read.
  returned: always
  type: int
  sample: 3000
source:
  description: Where the threshold comes from, C(option), C(cmapctl) or C(default) (no token read, 3000 ms assumed).
  returned: always
  type: str
  sample: cmapctl
msg:
  description: The threshold in words, and why no token was read when none was.
  returned: always
  type: str
"""

from ansible_collections.fleettrace.tracefs.plugins.module_utils import corosync_threshold
from ansible_collections.fleettrace.tracefs.plugins.module_utils.module_runner import run_module


def body(module, result):
    params = module.params
    why = ""
    token = None
    if params["threshold_ms"] is None:
        token, why = corosync_threshold.read_token(params["cmapctl"]
                                                   or corosync_threshold.cmapctl_next_to(params["binary"]))
    result.update(corosync_threshold.threshold(params["threshold_ms"], token), changed=False)
    result["msg"] = "threshold %s ms (%s)%s" % (result["threshold_ms"], result["source"],
                                                "; no token read: %s" % why if why else "")


def main():
    run_module(dict(binary=dict(type="path", default="/usr/sbin/corosync"),
                    cmapctl=dict(type="path"),
                    threshold_ms=dict(type="float")),
               body, supports_check_mode=True)


if __name__ == "__main__":
    main()
