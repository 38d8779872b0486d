# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Arm and disarm a sentinel on this node: what the ``sentinel`` module does, under the label's lock.

Arming records the run (``runs.lifecycle.start``, kind ``watcher``: its exact
instances and probe group, owned by this module process for the setup, with a
lease) before anything is created, applies the setup plan all-or-nothing,
writes the session, starts the watcher and waits (bounded) until it says it
armed; the watcher then owns the run.  Arming again with the same settings
while the watcher lives changes nothing; other settings stop the old watcher
first.  A second sentinel on a target another label already watches is
refused unless forced.
"""


import os
import sys
import time

from ansible_collections.fleettrace.tracefs.plugins.module_utils.sentinel import arming, collect, launch, notify, running, target
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sentinel.settings import SettingsError, names
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sentinel.spool import SESSION, Spool
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import lifecycle, removal
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs.manifest import WATCHER, OwnershipError

# How long the run outlives this module if it dies before the watcher took the run over.
SETUP_LEASE = 120.0
# The spool's history carried from one arming to the next (a new arming keeps the old captures).
CARRIED = ("captures", "captures_total", "next_id", "dropped", "dropped_total", "events_lost")


class Refused(SettingsError):
    """Arming refused (another sentinel on the target); nothing was changed."""


def other_sentinels(root, label, pid):
    """Labels of live sentinels (other than ``label``) whose target is ``pid``."""
    found = []
    try:
        labels = sorted(os.listdir(root))
    except OSError:
        return found
    for other in labels:
        if other == label or other.startswith("."):
            continue
        state = Spool(root, other).state()
        if running.watcher_alive(state) and (state.get("target") or {}).get("pid") == pid:
            found.append(other)
    return found


def _unchanged(spool, state, settings):
    return {"changed": False, "label": settings.label, "watcher": state.get("watcher"), "until": state.get("until"),
            "spool": spool.dir, "status": state.get("status"),
            "message": "sentinel %s already armed with these settings on pid %d (watcher %d, until %s)" % (
                settings.label, settings.pid, state["watcher"]["pid"], collect._when(state.get("until")))}


def arm(fs, settings, force=False, check_mode=False):
    """Arm (or keep, or replace) the sentinel; returns the module's result."""
    spool = Spool(settings.spool_dir, settings.label)
    checked = arming.check_probe(settings)
    if len(checked["binaries"]) != 1:
        raise arming.ArmingError("the definitions probe %s: a sentinel probes one binary" % ", ".join(checked["binaries"]))
    probed = target.identity(checked["binaries"][0])
    facts = arming.check_target(settings, probed)
    stop = arming.stop_condition(settings, checked)
    fingerprint = settings.fingerprint()
    session, state = spool.session(), spool.state()
    alive = running.watcher_alive(state)
    if alive and (session or {}).get("fingerprint") == fingerprint and (state.get("target") or {}).get("pid") == settings.pid:
        return _unchanged(spool, state, settings)
    others = other_sentinels(settings.spool_dir, settings.label, settings.pid)
    if others and not force:
        raise Refused("sentinel %s already watches %s[%d]: a second one on the same target is refused. Disarm it "
                      "(sentinel_state=absent, sentinel_label=%s) or arm with force: true"
                      % (", ".join(others), facts["comm"], settings.pid, others[0]))
    if check_mode:
        plan = arming.plan(fs, settings, checked, stop) if not alive else None
        return {"changed": True, "label": settings.label, "plan": plan.commands if plan else [],
                "message": "check mode: would %s sentinel %s on %s[%d] (%s >= %d, %d capture(s) at most, for %.0f s)" % (
                    "replace the" if alive else "arm", settings.label, facts["comm"], settings.pid, settings.field,
                    settings.threshold, settings.max_captures, settings.duration)}
    with spool.locked():
        replaced = running.stop(state) if alive else None
        removal.reap_expired_quietly(fs)
        tag = settings.names["tag"]
        if replaced and lifecycle.load(tag):
            lifecycle.finish(fs, tag, force=True)
        plan = arming.plan(fs, settings, checked, stop)
        manifest = lifecycle.start(fs, tag, instances=[settings.names[k] for k in ("instance", "bell", "latency")],
                                   groups=[settings.names["group"]], deadline=settings.duration + settings.deadline_margin,
                                   lease=SETUP_LEASE, run_id=tag, kind=WATCHER,
                                   details={"label": settings.label, "spool": spool.dir})
        try:
            plan.apply()
            now = time.time()
            session = {
                "schema": "fleettrace.sentinel.session/1", "tag": tag, "nonce": manifest.nonce,
                "tracefs": fs.root, "fingerprint": fingerprint, "settings": settings.as_dict(), "armed_at": now,
                "until": now + settings.duration, "boot_id": collect.read_boot_id(settings.boot_id_path),
                "probe": {"definitions": checked["definitions"], "events": checked["events"], "group": checked["group"],
                          "stop_events": stop.events, "build_id": checked["build_id"], "binaries": checked["binaries"],
                          "identity": probed, "instance": settings.names["instance"], "notes": checked["notes"]},
                "target": {"pid": settings.pid, "comm": facts["comm"], "exe": target.exe_path(settings.pid)},
            }
            spool.write_json(session, SESSION)
            fresh = {key: state[key] for key in CARRIED if key in state}
            fresh.update(status="starting", sessions=(state.get("sessions") or [])[-20:] + [
                {"fingerprint": fingerprint, "armed_at": now, "replaced": replaced}])
            spool.save_state(fresh)
            launch.install_code(spool)
            how, proc = launch.start(spool, settings.label, settings.spool_dir,
                                     settings.duration + settings.deadline_margin, python=sys.executable)
            started = launch.wait_started(spool, proc)
        except BaseException:
            _undo(fs, spool, tag, manifest)
            raise
        if started.get("status") != "armed":
            _undo(fs, spool, tag, manifest)
            raise arming.ArmingError("the watcher did not arm: %s" % (started.get("ended") or {}).get("message"))
    return {"changed": True, "label": settings.label, "watcher": started["watcher"], "started_as": how,
            "until": started["until"], "spool": spool.dir, "status": "armed", "plan": plan.commands,
            "replaced": replaced, "message": "sentinel %s armed on %s[%d] until %s (%s; watcher pid %d)" % (
                settings.label, facts["comm"], settings.pid, collect._when(started["until"]), how,
                started["watcher"]["pid"])}


def _undo(fs, spool, tag, manifest):
    """Arming failed half-way: stop a watcher that started, remove what was created, keep the state honest."""
    state = spool.state()
    running.stop(state)
    try:
        lifecycle.finish(fs, tag, manifest.nonce)
    except OwnershipError:
        pass
    if state.get("status") in (None, "starting"):
        state["status"] = "failed"
        spool.save_state(state)


def disarm(fs, root, label, textfile_dir, keep_spool=False, check_mode=False):
    """Stop the watcher (it removes its objects), remove what is left, the metric and the spool."""
    spool = Spool(root, label)
    tag = names(label)["tag"]
    state = spool.state()
    alive = running.watcher_alive(state)
    manifest = lifecycle.load(tag)
    exists = spool.exists() or manifest is not None
    if check_mode or not exists:
        return {"changed": exists, "label": label, "stopped": "would stop" if alive else "not running",
                "spool_removed": exists and not keep_spool}
    with spool.locked():
        stopped = running.stop(state)
        errors = []
        if lifecycle.load(tag):
            _manifest, errors = lifecycle.finish(fs, tag, force=True)     # its reapers go too
        notify.remove_metrics(textfile_dir, label)
        if state.get("status") in ("starting", "armed", "measuring") and stopped != "stopped":
            state.update(status="disarmed", ended={"at": time.time(), "why": "disarmed", "message": "disarmed (%s)" % stopped})
            spool.save_state(state)
    spool.remove(keep_captures=keep_spool)
    if errors:
        raise arming.ArmingError("sentinel %s: could not remove %s; the reaper keeps trying until the deadline"
                                 % (label, "; ".join(errors)))
    return {"changed": True, "label": label, "stopped": stopped, "spool_removed": not keep_spool}
