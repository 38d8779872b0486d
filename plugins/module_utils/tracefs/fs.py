# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One tracefs mount: find or mount it, write with error_log quoting,
features, instances and uprobe_events.
"""


import os

from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import RUN_AS_ROOT, CheckModeAnswer
from ansible_collections.fleettrace.tracefs.plugins.module_utils.probe_definition import ProbeDefinition, removal
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import validate
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.error_log import TracefsError, _read, write_quoting_error_log
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.instance import Instance

TRACEFS_PATHS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")

# Prefix of every instance and probe group this collection creates, so that
# cleanup can find them again from nothing but the host.
OWNED_PREFIX = "fleettrace"


MOUNT_COMMAND = "mount -t tracefs nodev %s"


def mount_needed(target):
    """Check mode's answer when tracefs is not mounted: the mount it would run, and nothing else done."""
    command = MOUNT_COMMAND % target
    return CheckModeAnswer("check mode: tracefs is not mounted; would run '%s', then what the module writes "
                           "into it (known once it is mounted)" % command, [command])


def find_tracefs(mount=True, candidates=TRACEFS_PATHS, check_mode=False):
    """Return the path of a usable tracefs, mounting it when allowed (never in check mode).

    Raises ``TracefsError`` naming every place looked at and what to do, or in check mode
    ``CheckModeAnswer`` with the mount command it would have run.
    """
    mounted = _tracefs_mounts()
    for path in candidates:
        if path in mounted and not os.access(os.path.join(path, "README"), os.R_OK):
            # tracefs is mode 0700: an ordinary user sees an empty, unreadable directory.
            raise TracefsError("permission denied: tracefs is mounted at %s but uid %d may not use it; "
                               "%s" % (path, os.geteuid(), RUN_AS_ROOT))
        if os.path.isfile(os.path.join(path, "README")):
            if not os.access(os.path.join(path, "tracing_on"), os.W_OK):
                raise TracefsError(
                    "tracefs at %s is not writable by uid %d: %s" % (path, os.geteuid(), RUN_AS_ROOT))
            return path
    if os.geteuid() != 0:
        raise TracefsError(
            "tracefs is not mounted (looked at %s) and uid %d may not mount it: %s"
            % (", ".join(candidates), os.geteuid(), RUN_AS_ROOT))
    if not mount:
        raise TracefsError(
            "tracefs is not mounted (looked at %s); mount it with "
            "'mount -t tracefs nodev /sys/kernel/tracing' or allow mounting"
            % ", ".join(candidates))
    target = candidates[0]
    if check_mode:
        raise mount_needed(target)
    import subprocess   # only to mount tracefs: not paid by every module run
    result = subprocess.run((MOUNT_COMMAND % target).split(), capture_output=True, check=False)
    if result.returncode != 0 or not os.path.isfile(os.path.join(target, "README")):
        raise TracefsError(
            "tracefs is not mounted and 'mount -t tracefs nodev %s' failed: %s. "
            "Is CONFIG_TRACING enabled in this kernel?"
            % (target, result.stderr.decode("utf-8", "replace").strip() or "no tracefs README after mount"))
    return target


def _tracefs_mounts():
    """Mount points of tracefs (and debugfs's tracing dir) from /proc/self/mounts."""
    found = set()
    try:
        with open("/proc/self/mounts") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) > 2 and fields[2] == "tracefs":
                    found.add(fields[1])
    except OSError:
        pass
    return found


class Tracefs:
    """One tracefs mount."""

    def __init__(self, root=None, mount=True, check_mode=False):
        self.root = root or find_tracefs(mount=mount, check_mode=check_mode)
        self._features = None

    # -- raw file access ---------------------------------------------------
    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def read(self, relpath):
        return _read(self.path(relpath))

    def write(self, relpath, text, append=False, error_logs=("error_log",), what=None):
        """Write one command; on refusal raise ``TracefsError`` with error_log.

        ``error_logs``: error_log files (relative) where the kernel may log
        the reason, top level and/or the instance's own.
        """
        write_quoting_error_log(self.path(relpath), text, append, [self.path(log) for log in error_logs], what)

    # -- features ----------------------------------------------------------
    def features(self):
        """What this kernel's tracefs offers, from README and present files."""
        if self._features is None:
            readme = self.read("README")
            clocks = [c.strip("[]") for c in self.read("trace_clock").split()]
            self._features = {
                "uprobes": os.path.exists(self.path("uprobe_events")),
                "kprobes": os.path.exists(self.path("kprobe_events")),
                "dynamic_events": os.path.exists(self.path("dynamic_events")),
                # CONFIG_HIST_TRIGGERS adds "hist trigger" to README and a hist file per event.
                "hist_triggers": "hist trigger" in readme or os.path.exists(
                    self.path("events", "sched", "sched_switch", "hist")),
                # CONFIG_SYNTH_EVENTS: events made from two others (a wakeup and its switch-in), which
                # with hist triggers would pair waits in the kernel (docs/sched-audit.md says what for).
                "synthetic_events": os.path.exists(self.path("synthetic_events")),
                "instances": os.path.isdir(self.path("instances")),
                "error_log": os.path.exists(self.path("error_log")),
                "snapshot": os.path.exists(self.path("snapshot")),
                "stacktrace_trigger": "stacktrace" in readme,
                "set_event_pid": os.path.exists(self.path("set_event_pid")),
                "syscall_events": os.path.isdir(self.path("events", "syscalls")),
                "raw_syscall_events": os.path.isdir(self.path("events", "raw_syscalls")),
                "uprobe_x_types": "x8/16/32/64" in readme,
                "uprobe_immediate": "\\imm-value" in readme,
                "uprobe_user_memory": "u]<offset>" in readme,
                "uprobe_bitfields": "b<bit-width>@<bit-offset>/<container-size>" in readme,
                "trace_clocks": clocks,
            }
        return dict(self._features)

    def require(self, feature, why):
        if not self.features().get(feature):
            raise TracefsError(
                "this kernel's tracefs has no %s, which %s needs (kernel %s; see %s/README)"
                % (feature.replace("_", " "), why, os.uname()[2], self.root))

    # -- instances ---------------------------------------------------------
    def instance(self, name=None):
        return Instance(self, name)

    def list_instances(self):
        try:
            return sorted(os.listdir(self.path("instances")))
        except OSError:
            return []

    # -- uprobes -------------------------------------------------------------
    def list_uprobes(self):
        """uprobe_events as a list of ``ProbeDefinition``."""
        if not os.path.exists(self.path("uprobe_events")):
            return []
        return [ProbeDefinition.parse(line) for line in self.read("uprobe_events").splitlines() if line.strip()]

    def for_this_kernel(self, definition):
        """``definition`` (a ProbeDefinition) with its fetch types as this kernel names them."""
        return definition.for_kernel(hex_types=bool(self.features().get("uprobe_x_types")))

    def add_uprobe(self, definition):
        """Append one ``ProbeDefinition`` (or a line, parsed first) to uprobe_events, as this kernel
        takes it; return the line written."""
        if not isinstance(definition, ProbeDefinition):
            validate.expression(definition, "uprobe definition")
            definition = ProbeDefinition.parse(definition)
        self.require("uprobes", "a user-space probe")
        line = self.for_this_kernel(definition).line()
        validate.expression(line, "uprobe definition")
        self.write("uprobe_events", line, append=True, what="the uprobe definition")
        return line

    def remove_uprobe(self, group, event):
        """Remove one uprobe event; disable it in every instance first."""
        for inst in [self.instance(None)] + [self.instance(n) for n in self.list_instances()]:
            ev = inst.event(group, event)
            if ev.exists():
                ev.clear()
        self.write("uprobe_events", removal(group, event), append=True,
                   what="removing uprobe %s/%s" % (group, event))
