# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which process a task means: by name, pid, pidfile or command line, as ``pgrep`` would find it.

The criteria of ``proc_info`` and ``sentinel`` (``TARGET_CRITERIA``): which are given (a role
passes its empty defaults), which go together, which no process can match, and the pids that
match them all.  The facts of a process found are procfs's.
No Ansible imports; Python 3.8+.
"""


import os
import re

from ansible_collections.fleettrace.tracefs.plugins.module_utils import bounded
from ansible_collections.fleettrace.tracefs.plugins.module_utils import procfs
from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError, OptionError


def read_pidfile(path):
    """The pid in a pidfile; ValueError with a clear text if it holds none."""
    text = bounded.read_user_file(path, "pidfile", bounded.PIDFILE_MAX).decode("utf-8", "replace").strip()
    first = text.split()[0] if text else ""
    if not first.isdigit():
        raise ValueError("pidfile %s does not start with a pid (content: %r)" % (path, text[:40]))
    return int(first)


def find_pids(name=None, pid=None, pidfile=None, cmdline_regex=None, exclude_self=True):
    """Pids matching every given criterion.

    ``name`` matches the comm (15 chars, as ``pgrep``) or the basename of
    argv[0] / the executable; ``cmdline_regex`` is searched in the
    space-joined command line (as ``pgrep -f``).
    """
    if pid is not None:
        candidates = [int(pid)] if procfs.pid_exists(pid) else []
    elif pidfile is not None:
        found = read_pidfile(pidfile)
        candidates = [found] if procfs.pid_exists(found) else []
    else:
        candidates = procfs.all_pids()
    pattern = re.compile(cmdline_regex) if cmdline_regex else None
    me = os.getpid()
    matches = []
    for candidate in candidates:
        if exclude_self and candidate == me and pid is None and pidfile is None:
            continue
        try:
            if name is not None and not _name_matches(candidate, name):
                continue
            if pattern is not None and not pattern.search(" ".join(procfs.cmdline(candidate))):
                continue
        except OSError:
            continue
        matches.append(candidate)
    return matches


TARGET_CRITERIA = ("name", "pid", "pidfile", "cmdline_regex")
# proc_info's pairs that name the process in two ways (a pid or a pidfile names one process already).
EXCLUSIVE_CRITERIA = (("pid", "pidfile"), ("pid", "name"), ("pid", "cmdline_regex"),
                      ("pidfile", "name"), ("pidfile", "cmdline_regex"))


def given_criteria(values):
    """TARGET_CRITERIA -> the value given, or None: an empty string and pid 0 count as not given (a role
    passes its empty defaults; no process has pid 0)."""
    return {key: values.get(key) if values.get(key) not in (None, "", 0) else None for key in TARGET_CRITERIA}


def check_exclusive(criteria, pairs=EXCLUSIVE_CRITERIA):
    """Refuse (OptionError) no criterion at all, or two of a pair in ``pairs`` both given."""
    if all(value is None for value in criteria.values()):
        raise OptionError("give one of %s to find the process by (an empty value and pid 0 count as not given)"
                          % ", ".join(TARGET_CRITERIA))
    for first, second in pairs:
        if criteria.get(first) is not None and criteria.get(second) is not None:
            raise OptionError("parameters are mutually exclusive: %s|%s (%s names the process already; give one "
                              "of them)" % (first, second, first))


def check_target(criteria):
    """Refuse criteria no process can be found by (OptionError): a regular expression that does not compile,
    a pid that is no process id.  ``criteria`` maps TARGET_CRITERIA to values, None for not given."""
    regex = criteria.get("cmdline_regex")
    if regex is not None:
        try:
            re.compile(regex)
        except re.error as exc:
            raise OptionError("cmdline_regex %r is not a valid regular expression: %s" % (regex, exc))
    if criteria.get("pid") is not None and criteria["pid"] <= 0:
        raise OptionError("pid must be a positive process id, got %d" % criteria["pid"])


def describe_target(criteria):
    """The criteria in words, as in 'no process matches name corosync'."""
    return ", ".join("%s %s" % (key, value) for key, value in criteria.items() if value is not None)


def find_target(criteria):
    """The pids matching every given criterion (find_pids); a pidfile that cannot be read is a FleettraceError."""
    try:
        return find_pids(**{key: criteria.get(key) for key in TARGET_CRITERIA})
    except OSError as exc:
        raise FleettraceError("cannot read pidfile %s: %s; is the service running?"
                              % (criteria.get("pidfile"), exc.strerror))
    except ValueError as exc:   # FileRefused (a pidfile that is no regular file), a bad pid in it
        raise FleettraceError(str(exc))


def _name_matches(pid, name):
    shown = procfs.comm(pid)
    if shown and (shown == name or shown == name[:15]):
        return True
    argv = procfs.cmdline(pid)
    if argv and os.path.basename(argv[0]) == name:
        return True
    try:
        exe = os.readlink(os.path.join(procfs.PROC, str(pid), "exe"))
    except OSError:
        return False
    return os.path.basename(exe.replace(" (deleted)", "")) == name
