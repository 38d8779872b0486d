# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validation of every string this collection writes into tracefs.

tracefs takes one command per write and treats a newline as the end of a
command, so an unchecked string can smuggle a second command in.  Names become
directory names, so '/' and '..' would escape the directory we mean.  Each
check raises ``ValidationError`` with a message that says what was wrong and
what to do instead; nothing is written before every check passed.
"""


import math
import os
import re

from ansible_collections.fleettrace.tracefs.plugins.module_utils import input_limits
from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError


class ValidationError(FleettraceError, ValueError):
    """A value that must not be written into tracefs."""


# Instance names: a directory under instances/.  The kernel takes almost any
# name; we keep to a portable set so names survive shells and YAML.
_INSTANCE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
MAX_INSTANCE_NAME = 64
# Event and group names of dynamic events: C identifiers (groups may hold '-').
# The kernel's MAX_EVENT_NAME_LEN is 64 bytes with the NUL: 63 characters.
_EVENT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_GROUP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
MAX_EVENT_NAME = 63
_MAX_EXPRESSION = input_limits.KERNEL_WRITE_MAX
MAX_PID = 4194304


def _describe_bad_chars(value):
    problems = []
    if "/" in value:
        problems.append("contains '/'")
    if ".." in value:
        problems.append("contains '..'")
    if any(c.isspace() for c in value):
        problems.append("contains whitespace or a newline")
    if "\0" in value:
        problems.append("contains a NUL byte")
    return problems


def instance_name(name):
    """Check a tracefs instance name; return it unchanged."""
    if not isinstance(name, str) or not name:
        raise ValidationError("instance name must be a non-empty string")
    if len(name) > MAX_INSTANCE_NAME:
        raise ValidationError("instance name %r is %d characters long, outside the limit of %d: use a shorter "
                              "run id or host name" % (name, len(name), MAX_INSTANCE_NAME))
    problems = _describe_bad_chars(name)
    if problems or not _INSTANCE_NAME.match(name) or name in (".", ".."):
        reason = ", ".join(problems) or "uses characters outside A-Z a-z 0-9 _ . -"
        raise ValidationError(
            "instance name %r is not allowed: %s. Use 1-64 characters from "
            "letters, digits, '_', '-' and '.', starting with a letter, digit or '_'."
            % (name, reason))
    return name


def _length(name, what):
    if isinstance(name, str) and len(name) > MAX_EVENT_NAME:
        raise ValidationError("%s %r is %d characters long; the kernel takes at most %d (MAX_EVENT_NAME_LEN): "
                              "use a shorter name or run id" % (what, name, len(name), MAX_EVENT_NAME))


def event_name(name, what="event name"):
    _length(name, what)
    if not isinstance(name, str) or not _EVENT_NAME.match(name):
        problems = _describe_bad_chars(name) if isinstance(name, str) else []
        reason = ", ".join(problems) or "is not a C identifier"
        raise ValidationError(
            "%s %r is not allowed: %s. Use letters, digits and '_', starting with a letter or '_'."
            % (what, name, reason))
    return name


def group_name(name):
    _length(name, "event group")
    if not isinstance(name, str) or not _GROUP_NAME.match(name):
        problems = _describe_bad_chars(name) if isinstance(name, str) else []
        reason = ", ".join(problems) or "uses characters outside letters, digits, '_' and '-'"
        raise ValidationError(
            "event group %r is not allowed: %s. Use letters, digits, '_' and '-', "
            "starting with a letter or '_'." % (name, reason))
    return name


def split_event(spec):
    """``'sched:sched_switch'`` or ``'sched/sched_switch'`` -> ``('sched', 'sched_switch')``."""
    if not isinstance(spec, str):
        raise ValidationError("event must be a string like 'sched:sched_switch', got %r" % (spec,))
    separators = spec.count(":") + spec.count("/")
    if separators != 1:
        raise ValidationError(
            "event %r must be written GROUP:EVENT or GROUP/EVENT (e.g. 'sched:sched_switch')" % (spec,))
    group, _sep, name = spec.replace("/", ":").partition(":")
    return group_name(group), event_name(name)


def expression(value, what):
    """Check a filter or trigger text: one line, printable, bounded."""
    if not isinstance(value, str):
        raise ValidationError("%s must be a string, got %s" % (what, input_limits.preview(value)))
    if len(value) > _MAX_EXPRESSION:  # first: every later check walks the text
        raise ValidationError("%s is %d characters long; tracefs takes at most %d (one write of less than a page)"
                              % (what, len(value), _MAX_EXPRESSION))
    if "\n" in value or "\r" in value:
        raise ValidationError(
            "%s %r contains a newline: tracefs would read it as two commands. "
            "Give one expression per line item." % (what, value))
    if "\0" in value or any(ord(c) < 32 and c != "\t" for c in value):
        raise ValidationError("%s %r contains control characters" % (what, value))
    return value.strip()


def pid(value):
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValidationError("pid %r is not an integer" % (value,))
    if isinstance(value, float) and value != number:
        raise ValidationError("pid %r is not an integer" % (value,))
    if number <= 0 or number > MAX_PID:
        raise ValidationError("pid %r must be between 1 and %d (the kernel's PID_MAX_LIMIT)" % (value, MAX_PID))
    return number


# The trace buffers of all CPUs together may take at most this share of
# MemAvailable: the kernel allocates them at once and an OOM on a production
# node is worse than a short trace.
BUFFER_MEMORY_SHARE = 0.5


def mem_available_kb(meminfo="/proc/meminfo"):
    with open(meminfo) as handle:
        for line in handle.read(65536).splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return None


def buffer_size_kb(value, what="buffer_size_kb", cpus=None, available_kb=None):
    """A per-CPU ring buffer size in KiB the node can afford; return it as int."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError("%s must be a whole number of KiB, got %r" % (what, value))
    if value <= 0:
        raise ValidationError("%s must be a positive number of KiB, got %d" % (what, value))
    cpus = cpus or os.cpu_count() or 1
    available_kb = mem_available_kb() if available_kb is None else available_kb
    if available_kb is not None:
        limit = int(available_kb * BUFFER_MEMORY_SHARE // cpus)
        if value > limit:
            raise ValidationError(
                "%s=%d KiB per CPU x %d CPUs = %d MiB is more than %d%% of MemAvailable (%d MiB): at most %d KiB "
                "per CPU on this host" % (what, value, cpus, value * cpus // 1024, int(BUFFER_MEMORY_SHARE * 100),
                                          available_kb // 1024, limit))
    return value


def seconds(value, what, low=0.0, high=7 * 86400.0):
    """A finite duration in seconds, low < value <= high (nan, inf and 1e308 refused)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValidationError("%s=%r is not a number of seconds" % (what, value))
    if math.isnan(number) or math.isinf(number) or not low < number <= high:
        raise ValidationError("%s=%r is out of range: give seconds, %g < %s <= %g" % (what, value, low, what, high))
    return number


def numbers(params, durations=(), pids=()):
    """Check a module's duration and pid parameters (those that are set)."""
    for key in durations:
        if params.get(key) is not None:
            params[key] = seconds(params[key], key)
    for key in pids:
        if params.get(key) is not None:
            params[key] = pid(params[key])
