# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""corosync's token timeout as the running corosync reports it, and the stall threshold it warns at.

corosync warns that its main loop was not scheduled once a tick comes later than 0.8 x token
(totemsrp's token_timeout * 8 / 10): the diagnosis stops tracing at that same point.
"""


import re

TOKEN_KEY = "runtime.config.totem.token"
# corosync's own default token timeout (ms) when the running one cannot be asked.
DEFAULT_TOKEN_MS = 3000
WARN_FRACTION = 0.8
_VALUE = re.compile(r"=\s*(\d+)")


def parse_token_ms(rc, stdout):
    """The token timeout in ms from ``corosync-cmapctl -g runtime.config.totem.token``
    (``runtime.config.totem.token (u32) = 3000``), or None when the command failed or said no number."""
    if rc != 0:
        return None
    match = _VALUE.search(stdout or "")
    return int(match.group(1)) if match else None


def threshold(given_ms=None, token_ms=None, default_token_ms=DEFAULT_TOKEN_MS):
    """The stall threshold: ``(threshold_ms, token_timeout_ms, why)``.

    A given threshold wins and the token is not compared (0); else 0.8 x the token read, or 0.8 x
    the default token when none could be read (the token is then unknown: 0).
    """
    if given_ms is not None:
        return float(given_ms), 0, "threshold %s ms as given" % _number(given_ms)
    if token_ms is not None:
        return token_ms * WARN_FRACTION, token_ms, "threshold %s ms = %s x token %d ms (as corosync warns)" % (
            _number(token_ms * WARN_FRACTION), WARN_FRACTION, token_ms)
    return default_token_ms * WARN_FRACTION, 0, (
        "threshold %s ms = %s x the default token %d ms (the running corosync's token could not be read)"
        % (_number(default_token_ms * WARN_FRACTION), WARN_FRACTION, default_token_ms))


def _number(value):
    value = float(value)
    return "%d" % value if value == int(value) else "%g" % value
