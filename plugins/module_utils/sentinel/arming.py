# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the ``sentinel`` module checks and writes before it hands the run to a watcher.

The probe definitions come resolved (on the node or once per build-id on the
controller, as for ``threshold_capture``); they get the sentinel's own group
and are checked as the ``uprobe`` module checks a ready definition (build-id,
instruction start, one group).  The target must map the very file the probe
goes on: a daemon still running a binary replaced on disk would never hit it.
"""


from ansible_collections.fleettrace.tracefs.plugins.module_utils import procfs, uprobe_plans
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sentinel import objects, target
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sentinel.settings import SettingsError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace.stop_condition import StopCondition


class ArmingError(SettingsError):
    """The sentinel cannot be armed as asked; the message says why and what to do."""


def check_probe(settings):
    """{group, events, definitions, build_id, binaries, notes}: the lines as they will be written."""
    try:
        # The sentinel's own group; the event names are kept.
        checked = uprobe_plans.from_definitions({"definition": settings.definitions, "rename": True,
                                                 "build_id": settings.build_id or None, "binary": settings.binary,
                                                 "group": settings.names["group"]})
    except (uprobe_plans.PlanError, ValueError) as exc:
        raise ArmingError(str(exc))
    if settings.build_id and checked["build_id"] != settings.build_id:
        raise ArmingError("build-id of %s is %s, not %s" % (settings.binary, checked["build_id"], settings.build_id))
    return checked


def check_target(settings, probed):
    """The target's facts; refused when it is gone or does not run the probed file."""
    if not procfs.process_alive(settings.pid):
        raise ArmingError("pid %d is not running (look the target up right before arming)" % settings.pid)
    if not target.maps_probed(settings.pid, probed):
        current = target.mapped_file(settings.pid, settings.binary)
        comm = (procfs.process_facts(settings.pid, threads=False, fds=False, kernel_stack=False) or {}).get("comm")
        if current is None:
            raise ArmingError("%s[%d] does not map %s: probe the binary it runs (its /proc/PID/exe is %s)"
                              % (comm, settings.pid, settings.binary, target.exe_path(settings.pid)))
        raise ArmingError("%s[%d] runs a replaced %s (inode %d, build-id %s; the file there now is inode %d, build-id "
                          "%s): the probe would never fire. Restart it, then arm again."
                          % (comm, settings.pid, settings.binary, current["ino"], current["build_id"],
                             probed["ino"], probed["build_id"]))
    return procfs.process_facts(settings.pid, threads=False, fds=False, kernel_stack=False)


def stop_condition(settings, checked):
    return StopCondition(settings.stop_events(checked["events"]), settings.field, settings.threshold, settings.unit)


def plan(fs, settings, checked, stop):
    """The ChangePlan: the probe (guarded by its build-id), then both instances around it."""
    steps, _current, _events = uprobe_plans.plan_uprobes(
        fs, checked["group"], checked["events"], [fs.for_this_kernel(r) for r in checked["records"]],
        fs.list_uprobes(), guard=(checked["binaries"], checked["build_id"]))
    return objects.setup_steps(steps, fs, settings, stop, settings.pid)
