# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The stall threshold of a corosync node: 0.8 x the token timeout the running corosync uses.

corosync warns "not scheduled for N ms" when its scheduler-pause timer sees a gap of more than
0.8 x token (``totemsrp``); that is the threshold a capture or a sentinel waits for.  The token
comes from ``corosync-cmapctl -g runtime.config.totem.token``; when it cannot be read (corosync
down, no cmapctl) corosync's default token, 3000 ms, is assumed and no token is reported.
"""

import math
import os
import re
import subprocess

from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import OptionError

DEFAULT_TOKEN_MS = 3000
WARN_FRACTION = 0.8
TOKEN_KEY = "runtime.config.totem.token"
_VALUE = re.compile(r"=\s*(\d+)")


def cmapctl_next_to(binary):
    """corosync-cmapctl in the directory of the corosync binary."""
    return os.path.join(os.path.dirname(binary), "corosync-cmapctl")


def token_from_output(returncode, stdout):
    """The token in ms from cmapctl's answer (``... (u32) = 3000``), or None when it gave none."""
    if returncode != 0:
        return None
    found = _VALUE.search(stdout or "")
    return int(found.group(1)) if found else None


def read_token(cmapctl, timeout=10):
    """(token ms or None, why none) from the running corosync."""
    try:
        proc = subprocess.run([cmapctl, "-g", TOKEN_KEY], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, "%s: %s" % (cmapctl, exc)
    token = token_from_output(proc.returncode, proc.stdout)
    if token is None:
        said = (proc.stderr or proc.stdout or "no value").strip()[:200]
        return None, "%s -g %s: rc %d, %s" % (cmapctl, TOKEN_KEY, proc.returncode, said)
    return token, ""


def threshold(threshold_ms=None, token_ms=None):
    """The threshold as the capture and the sentinel take it.

    threshold_ms given: that, and no token (token_timeout_ms 0).  Else 0.8 x token_ms, or
    0.8 x 3000 ms when the token could not be read (token_timeout_ms 0 then too).
    """
    if threshold_ms is not None:
        if not math.isfinite(threshold_ms) or threshold_ms <= 0:
            raise OptionError("threshold_ms must be a positive number of milliseconds, got %r" % threshold_ms)
        return dict(threshold_ms=threshold_ms, threshold_ns=int(threshold_ms * 1000000), token_timeout_ms=0,
                    source="option")
    ms = (DEFAULT_TOKEN_MS if token_ms is None else token_ms) * WARN_FRACTION
    return dict(threshold_ms=ms, threshold_ns=int(ms * 1000000), token_timeout_ms=token_ms or 0,
                source="default" if token_ms is None else "cmapctl")
