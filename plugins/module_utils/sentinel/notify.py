# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a sentinel tells the node's own monitoring: one journal line per stall, a node_exporter metric.

The line goes to the syslog socket (``/dev/log``, which journald reads where
it runs, rsyslog elsewhere) with the identifier ``fleettrace``, so
``journalctl -t fleettrace`` lists every stall of every sentinel::

    fleettrace: corosync[3687] not scheduled for 4317 ms: S in ioctl(fd 26 -> /dev/watchdog, WDIOC_KEEPALIVE)

The metric file ``fleettrace_sentinel_<label>.prom`` is written (temporary
name, then rename) only when node_exporter's textfile directory exists.
"""


import logging
import logging.handlers
import os
import re
import sys

from ansible_collections.fleettrace.tracefs.plugins.module_utils import bounded

IDENT = "fleettrace: "
METRIC_PREFIX = "fleettrace_sentinel_"


def _ms(value):
    return "%.0f" % value if value >= 100 else "%.1f" % value


def journal_line(finding):
    """One line for the journal: who stalled, how long, and why in a few words."""
    head = "%s[%s] not scheduled for %s ms" % (finding.get("comm"), finding.get("pid"),
                                               _ms(finding.get("duration_ms") or 0))
    cause = finding.get("cause")
    if cause == "blocked":
        call = (finding.get("syscall") or {}).get("short")
        where = call or finding.get("blocked_in") or "the kernel"
        return "%s: %s in %s" % (head, finding.get("state"), where)
    if cause == "runnable":
        other = finding.get("ran_instead")
        return "%s: runnable, waiting for a CPU%s" % (
            head, ", %s[%s] ran instead" % (other["comm"], other["pid"]) if other else "")
    if cause == "stopped":
        return "%s: stopped (state %s: SIGSTOP or a debugger)" % (head, finding.get("state"))
    return "%s: no cause in the buffer" % head


class _SyslogHandler(logging.handlers.SysLogHandler):
    """SysLogHandler that keeps its last error instead of printing a traceback to stderr."""

    last_error = None

    def handleError(self, record):
        self.last_error = str(sys.exc_info()[1])


class Journal:
    """The syslog socket; ``send`` never raises (the spool's log keeps every line anyway).

    The handler reconnects by itself when the socket appears later (journald restarted).
    """

    def __init__(self, address):
        self.address = address
        self.handler = _SyslogHandler(address=address, facility=logging.handlers.SysLogHandler.LOG_DAEMON)
        self.handler.ident = IDENT

    @property
    def error(self):
        if not os.path.exists(self.address):
            return "%s does not exist (no journald or syslog daemon on this node)" % self.address
        return self.handler.last_error

    def send(self, line, warning=True):
        """True when the line went out."""
        self.handler.last_error = None
        record = logging.LogRecord("fleettrace", logging.WARNING if warning else logging.INFO, "", 0, line, None, None)
        self.handler.emit(record)
        return self.handler.last_error is None and os.path.exists(self.address)

    def close(self):
        self.handler.close()


def _label_value(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def metrics_text(label, state):
    """Prometheus text (exposition format 0.0.4) of one sentinel's state."""
    captures = state.get("captures") or []
    longest = max([c.get("duration_ms") or 0 for c in captures] or [0])
    last = captures[-1] if captures else {}
    labels = 'label="%s",target="%s"' % (_label_value(label), _label_value((state.get("target") or {}).get("comm", "")))
    families = [
        ("armed", "gauge", "1 while the sentinel watches (armed or measuring), 0 once it ended.",
         1 if state.get("status") in ("armed", "measuring") else 0),
        ("captures_total", "counter", "Stalls the sentinel captured since it was armed (dropped ones included).",
         state.get("captures_total", 0)),
        ("dropped_captures_total", "counter", "Captures removed from the spool to keep it under its size cap.",
         state.get("dropped_total", 0)),
        ("last_stall_seconds", "gauge", "Length of the last captured stall.", (last.get("duration_ms") or 0) / 1000.0),
        ("longest_stall_seconds", "gauge", "Longest stall among the kept captures.", longest / 1000.0),
        ("last_capture_timestamp_seconds", "gauge", "Unix time of the last capture (0: none yet).", last.get("at") or 0),
        ("until_timestamp_seconds", "gauge", "Unix time the sentinel ends at the latest.", state.get("until") or 0),
    ]
    lines = []
    for name, kind, help_text, value in families:
        full = METRIC_PREFIX + name
        lines += ["# HELP %s %s" % (full, help_text), "# TYPE %s %s" % (full, kind),
                  "%s{%s} %s" % (full, labels, repr(round(float(value), 6)) if isinstance(value, float) else int(value))]
    return "\n".join(lines) + "\n"


def metrics_path(directory, label):
    return os.path.join(directory, "%s%s.prom" % (METRIC_PREFIX, re.sub(r"[^A-Za-z0-9_]", "_", label)))


def write_metrics(directory, label, state):
    """Write the metric file when ``directory`` exists; return its path or None."""
    if not os.path.isdir(directory):
        return None
    path = metrics_path(directory, label)
    temp = os.path.join(directory, ".%s.%d.tmp" % (os.path.basename(path), os.getpid()))
    try:
        # node_exporter's directory is not ours alone: never follow what may already be at the name.
        with bounded.open_new(temp, "metric file") as handle:
            handle.write(metrics_text(label, state))
        os.chmod(temp, 0o644)
        os.rename(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return path


def remove_metrics(directory, label):
    try:
        os.unlink(metrics_path(directory, label))
        return True
    except OSError:
        return False
