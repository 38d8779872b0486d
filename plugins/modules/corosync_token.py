#!/usr/bin/python
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r"""
---
module: corosync_token
short_description: Read the running corosync's token timeout and the stall threshold it warns at
version_added: 1.1.0
description:
  - Asks the running corosync for its token timeout (C(corosync-cmapctl -g runtime.config.totem.token)) and returns
    the stall threshold corosync itself warns at, 0.8 x token (RV(threshold_ms), RV(threshold_ns)).
  - A threshold given in O(threshold_ms) wins, and corosync is not asked. When the token cannot be read (corosync not
    running, no C(corosync-cmapctl)), the threshold is 0.8 x O(default_token_ms) and RV(token_timeout_ms) is 0
    (unknown), which RV(msg) says.
  - Reads only; runs in check mode too.
author: fleettrace developers (@fleettrace)
attributes:
  check_mode:
    support: full
    description: Reads the token as in a normal run (nothing is written).
  diff_mode:
    support: none
    description: No diff.
options:
  binary:
    description: corosync's binary; C(corosync-cmapctl) is looked for beside it.
    type: path
    default: /usr/sbin/corosync
  cmapctl:
    description: The C(corosync-cmapctl) to ask (default beside O(binary), else C(/usr/sbin/corosync-cmapctl)).
    type: path
  threshold_ms:
    description: A threshold in ms to use instead of 0.8 x token (corosync is then not asked).
    type: float
  default_token_ms:
    description: The token timeout assumed when the running corosync's cannot be read (corosync's default).
    type: int
    default: 3000
notes:
  - Needs the rights C(corosync-cmapctl) needs (root, or a user of corosync's IPC group).
"""

EXAMPLES = r"""
- name: The stall threshold of the corosync running here (0.8 x token; 0.8 x 3000 ms when it does not run)
  fleettrace.tracefs.corosync_token:
  register: token

- name: A threshold given by hand
  fleettrace.tracefs.corosync_token:
    threshold_ms: 250
  register: given
"""

RETURN = r"""
threshold_ms:
  description: The stall threshold in ms.
  returned: always
  type: float
  sample: 2400.0
threshold_ns:
  description: The same in ns (the unit of corosync's C(tv_diff)).
  returned: always
  type: int
  sample: 2400000000
token_ms:
  description: The token timeout the running corosync reported (null when it was not asked or did not answer).
  returned: always
  type: int
  sample: 3000
token_timeout_ms:
  description: The token timeout to compare a stall with (RV(token_ms), or 0 when unknown or a threshold was given).
  returned: always
  type: int
  sample: 3000
cmapctl:
  description: The C(corosync-cmapctl) asked (null when a threshold was given).
  returned: always
  type: str
msg:
  description: How the threshold was chosen, and why the token could not be read.
  returned: always
  type: str
"""

import os

from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import OptionError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.module_runner import run_module
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import token_timeout

FALLBACK_CMAPCTL = "/usr/sbin/corosync-cmapctl"


def cmapctl_path(params):
    if params["cmapctl"]:
        return params["cmapctl"]
    beside = os.path.join(os.path.dirname(params["binary"]), "corosync-cmapctl")
    return beside if os.path.exists(beside) else FALLBACK_CMAPCTL


def body(module, result):
    params = module.params
    given = params["threshold_ms"]
    if given is not None and not 0 < given < float("inf"):
        raise OptionError("threshold_ms must be a positive number of ms, got %s" % given)
    if params["default_token_ms"] <= 0:
        raise OptionError("default_token_ms must be positive, got %d" % params["default_token_ms"])
    token_ms, cmapctl, unread = None, None, ""
    if given is None:
        cmapctl = cmapctl_path(params)
        if os.path.exists(cmapctl):
            rc, out, err = module.run_command([cmapctl, "-g", token_timeout.TOKEN_KEY])
            token_ms = token_timeout.parse_token_ms(rc, out)
            if token_ms is None:
                unread = "; %s -g %s: rc %d, %s" % (cmapctl, token_timeout.TOKEN_KEY, rc, (err or out).strip()[:200])
        else:
            unread = "; %s does not exist" % cmapctl
    threshold_ms, token_timeout_ms, why = token_timeout.threshold(given, token_ms, params["default_token_ms"])
    result.update(threshold_ms=threshold_ms, threshold_ns=int(threshold_ms * 1000000), token_ms=token_ms,
                  token_timeout_ms=token_timeout_ms, cmapctl=cmapctl, msg=why + unread, changed=False)


def main():
    run_module(dict(binary=dict(type="path", default="/usr/sbin/corosync"),
                    cmapctl=dict(type="path"),
                    threshold_ms=dict(type="float"),
                    default_token_ms=dict(type="int", default=token_timeout.DEFAULT_TOKEN_MS, no_log=False)),
               body, supports_check_mode=True)


if __name__ == "__main__":
    main()
