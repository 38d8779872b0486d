# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What one sentinel is asked to do, checked once: target, probe, threshold, bounds, where it writes.

A sentinel is named by its label (one per label per node).  Its tracefs
objects are named after the label alone, not the inventory host: two
inventory names of one node arm one sentinel, as the node has one kernel.
``fingerprint`` is what "the same settings" means when a sentinel is armed
again: everything but the pid it follows and where its files go.
"""


import hashlib
import json
import math
import re

from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import findings
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import validate

LABEL = re.compile(r"^[A-Za-z0-9_]{1,32}$")
PREFIX = "fleettrace_sentinel_"
DEFAULT_DURATION = 7 * 86400.0
MAX_DURATION = 30 * 86400.0
UNITS = findings.UNITS
SPOOL_ROOT = "/var/lib/fleettrace/sentinel"
# Debian's prometheus-node-exporter reads its textfile collector from here.
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
SYSLOG_SOCKET = "/dev/log"
BOOT_ID = "/proc/sys/kernel/random/boot_id"
SYSCALL_EVENTS = ("raw_syscalls:sys_enter", "raw_syscalls:sys_exit")

# name: (default, low, high) for the bounded numbers; None high: no upper bound but finite.
NUMBERS = {
    "duration": (DEFAULT_DURATION, 1.0, MAX_DURATION),
    "max_captures": (5, 1, 1000),
    "latency_seconds": (6 * 3600.0, 0.0, MAX_DURATION),
    "latency_samples": (0, 0, 10 ** 7),
    "buffer_size_kb": (2048, 4, None),
    "max_events": (200, 0, 100000),
    "max_findings": (5, 1, 100),
    "spool_max_kb": (20480, 16, 10 ** 7),
    "follow_seconds": (120.0, 0.0, 86400.0),
    "rearm": (3, 0, 100),
    "token_timeout_ms": (0, 0, 10 ** 7),
}
# What "the same sentinel" means: these settings (not the pid it follows, not where it writes).
SAME_WHEN = ("label", "binary", "definitions", "build_id", "field", "unit", "threshold", "max_captures", "duration",
             "latency_seconds", "latency_samples", "buffer_size_kb", "max_events", "max_findings", "spool_max_kb",
             "follow_seconds", "rearm", "token_timeout_ms", "syscall_events")


class SettingsError(validate.ValidationError):
    """A sentinel setting that cannot be used; the message names it and says what to give."""


def names(label):
    """The run tag and the exact tracefs names of a sentinel: one manifest lists them all."""
    tag = PREFIX + label
    return {"tag": tag, "group": tag, "instance": tag, "bell": tag + "_bell", "latency": tag + "_lat"}


def check_label(label):
    if not isinstance(label, str) or not LABEL.match(label):
        raise SettingsError("label %r: use 1 to 32 letters, digits or '_' (it names the spool directory and the "
                            "sentinel's tracefs objects)" % (label,))
    return label


def _number(name, value):
    default, low, high = NUMBERS[name]
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SettingsError("%s=%r is not a number" % (name, value))
    if value < low or (high is not None and value > high):
        raise SettingsError("%s=%r is out of range: give %s <= %s%s" % (
            name, value, low, name, " <= %s" % high if high is not None else ""))
    return type(default)(value)


class Settings:
    """One sentinel's settings, validated; ``as_dict``/``from_dict`` for the spool's session file."""

    def __init__(self, label, pid, binary, definitions, field, threshold, build_id="", unit="ns",
                 syscall_events=SYSCALL_EVENTS, spool_dir=SPOOL_ROOT, textfile_dir=TEXTFILE_DIR,
                 syslog_socket=SYSLOG_SOCKET, boot_id_path=BOOT_ID, **numbers):
        self.label = check_label(label)
        self.pid = validate.pid(pid)
        if not binary or not binary.startswith("/"):
            raise SettingsError("binary %r: give the absolute path of the probed binary" % (binary,))
        self.binary = binary
        if isinstance(definitions, str):
            definitions = [definitions]
        self.definitions = [d for d in (definitions or []) if d]
        if not self.definitions:
            raise SettingsError("no probe definition: give the uprobe_events line(s) resolved for %s (the role "
                                "resolves them on the node or the controller)" % binary)
        self.build_id = (build_id or "").lower()
        self.field = validate.event_name(field, "field")
        if unit not in UNITS:
            raise SettingsError("unit %r is none of %s" % (unit, ", ".join(UNITS)))
        self.unit = unit
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold <= 0:
            raise SettingsError("threshold %r: give a positive whole number in the field's unit (%s)" % (threshold, unit))
        self.threshold = threshold
        self.syscall_events = [validate.expression(e, "syscall event") for e in syscall_events]
        for path_name, path in (("spool_dir", spool_dir), ("textfile_dir", textfile_dir),
                                ("syslog_socket", syslog_socket), ("boot_id_path", boot_id_path)):
            if not path or not path.startswith("/"):
                raise SettingsError("%s %r: give an absolute path" % (path_name, path))
        self.spool_dir, self.textfile_dir, self.syslog_socket = spool_dir, textfile_dir, syslog_socket
        self.boot_id_path = boot_id_path
        unknown = set(numbers) - set(NUMBERS)
        if unknown:
            raise SettingsError("unknown setting(s): %s" % ", ".join(sorted(unknown)))
        for name in NUMBERS:
            setattr(self, name, _number(name, numbers.get(name)))
        validate.buffer_size_kb(self.buffer_size_kb)
        self.names = names(self.label)

    @property
    def deadline_margin(self):
        """Seconds the run's manifest outlives the watcher's own deadline: the watcher ends it first."""
        return 60.0

    def as_dict(self):
        data = {key: getattr(self, key) for key in SAME_WHEN}
        data.update(pid=self.pid, spool_dir=self.spool_dir, textfile_dir=self.textfile_dir,
                    syslog_socket=self.syslog_socket, boot_id_path=self.boot_id_path)
        return data

    @classmethod
    def from_dict(cls, data):
        data = dict(data)
        return cls(**data)

    def fingerprint(self):
        same = {key: getattr(self, key) for key in SAME_WHEN}
        return hashlib.sha256(json.dumps(same, sort_keys=True).encode("utf-8")).hexdigest()[:16]

    def stop_events(self, events):
        """'group:event' of each probe event (the definitions' events, in our group)."""
        return ["%s:%s" % (self.names["group"], event) for event in events]
