# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the audit's one window runs on a fleet: in one synchronous call per host or async, and how long the
controller then sleeps and checks (the audit_window action plugin, run once before the window).

Pure arithmetic: no Ansible, no tracefs, so unit tests reach every decision the sched_audit role takes.
"""


import math

from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import OptionError

ASYNC_MODES = ("auto", "always", "never")
# Seconds an async window may run past its duration (the analysis, a slow host) before Ansible gives up on it.
ASYNC_MARGIN_S = 300
# Ansible's default forks, when the play does not say (ansible_forks unset).
DEFAULT_FORKS = 5


def _number(name, value):
    if isinstance(value, bool):
        raise OptionError("%s: %r is no number of seconds" % (name, value))
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise OptionError("%s: %r is no number of seconds" % (name, value))
    if not math.isfinite(number) or number <= 0:
        raise OptionError("%s: %r; give a number of seconds greater than 0" % (name, value))
    return number


def shown(seconds):
    """2 -> '2', 2.5 -> '2.5': the duration as the user wrote it."""
    return str(int(seconds)) if seconds == int(seconds) else repr(seconds)


def uses_async(async_mode, hosts, forks, check_mode):
    """Whether the window is started async on every host and picked up afterwards.

    Synchronous when every host has a fork: all hosts then trace the same window and each result comes back on
    the call that started it (pipelined: one ssh exec per host, the cheapest). With more hosts than forks a
    synchronous call would trace the hosts batch after batch, so the window is started async on all of them.
    Check mode traces nothing, so there is no window to share: always synchronous.
    ``hosts`` counts all hosts of the play, not those left: the choice must not change when a host fails or is
    unreachable at the start of the window.
    """
    if check_mode:
        return False
    return async_mode == "always" or (async_mode == "auto" and hosts > forks)


def plan(duration, poll_seconds, async_mode, play_hosts_all, play_hosts, forks, check_mode, report_dir):
    """What the role passes to its tasks: async, async_seconds (0: synchronous), pause_seconds, retries, delay, msg.

    ``play_hosts_all``: every host of the play (the choice); ``play_hosts``: those left (the message).
    Raises OptionError on a bad mode, duration or poll interval.
    """
    if async_mode not in ASYNC_MODES:
        raise OptionError("async_mode: %r; use auto (async only with more hosts than forks), always or never"
                          % (async_mode,))
    duration = _number("duration", duration)
    poll = _number("poll_seconds", poll_seconds)
    if poll != int(poll):
        raise OptionError("poll_seconds: %r; give a whole number of seconds" % (poll_seconds,))
    if forks is None:
        forks = DEFAULT_FORKS
    try:
        forks = int(forks)
    except (TypeError, ValueError):
        raise OptionError("forks: %r is no number" % (forks,))
    use_async = uses_async(async_mode, len(play_hosts_all), forks, check_mode)
    # The controller sleeps through the window instead of polling every host meanwhile, then checks each
    # host every poll_seconds until the analysis is done or the async job's time is up.
    if check_mode:
        msg = ("Check mode: showing how scheduler events would be traced on %d host(s) for %s s (one window for all)"
               "; nothing is traced or saved" % (len(play_hosts), shown(duration)))
    else:
        msg = ("Tracing scheduler events on %d host(s) for %s s (one window for all), then collecting per-host results"
               " into %s/hosts" % (len(play_hosts), shown(duration), report_dir))
    return {
        "async": use_async,
        "async_seconds": int(duration + ASYNC_MARGIN_S) if use_async else 0,
        "pause_seconds": int(math.ceil(duration)),
        "retries": int((duration + ASYNC_MARGIN_S) / poll),
        "delay": int(poll),
        "msg": msg,
    }
