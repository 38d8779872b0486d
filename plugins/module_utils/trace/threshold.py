# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A threshold capture from one stop condition: trigger, wait, findings, status, evidence.

The threshold is written once, in a ``StopCondition``: it installs the
``traceoff`` trigger (through its ``ChangePlan``, removed again at the end),
drives the stall finder, and gives each finding its length.  When the first
late tick's stall began before tracing was armed (nothing in the buffer can
explain it), the buffer is cleared and armed again, up to ``rearm`` times;
after that the finding says what is missing instead of failing.  The
mailing list's guesses are settled from counters read around the capture.
"""


from ansible_collections.fleettrace.tracefs.plugins.module_utils import mapped_code, procfs
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import instance_capture
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import cpu_context as cpu_recording
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import correlate, event_sink, evidence, latency
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace.findings import culprit_call
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.error_log import TracefsError

STATUS_REACHED, STATUS_NOT_REACHED, STATUS_EXITED = "threshold_reached", "threshold_not_reached", "target_exited"


# A stall that began before arming (or whose start the buffer lost) is kept
# when what was recorded explains at least this share of it.
EXPLAINED_SHARE = 0.5


def needs_rearm(result, findings):
    """Wait for a whole stall when the first one was only partly recorded and its cause is missing.

    A blocking call entered before arming leaves only the short runnable wait
    after it in the buffer: that must not pass for the cause of the stall.
    """
    if not (result["triggered"] and findings and findings[0]["began_before_capture"]):
        return False
    first = findings[0]
    explained_ns = {"blocked": first.get("asleep_ns"), "stopped": first.get("asleep_ns"),
                    "runnable": first.get("runnable_ns")}.get(first["cause"]) or 0
    stall_ns = (first.get("duration_ms") or 0) * 1e6
    return first["cause"] == "unexplained" or explained_ns < EXPLAINED_SHARE * stall_ns


def status(result, pid):
    if result["triggered"]:
        return STATUS_REACHED
    if result["stop_reason"] == instance_capture.STOP_PROCESS_EXITED or (pid is not None and not procfs.process_alive(pid)):
        return STATUS_EXITED
    return STATUS_NOT_REACHED


def require_probes_can_fire(instance, stop, pid):
    """Refuse a capture none of whose probes can fire in ``pid``: it would wait for nothing and report no stall.

    A probe sits on a file's inode; a process that runs a replaced (deleted)
    binary or library does not map the file now at that path.
    """
    wanted = set(stop.split)
    places = {"%s:%s" % (u.group, u.event): u.path for u in instance.tracefs.list_uprobes()
              if (u.group, u.event) in wanted}
    if not places or not procfs.process_alive(pid):
        return
    try:
        why = mapped_code.unreachable_probes(pid, places.values())
    except mapped_code.MappedCodeError:
        return  # gone meanwhile: the capture reports the target as exited
    if all(path in why for path in places.values()):
        raise mapped_code.MappedCodeError(
            "probe %s cannot fire in the target: %s. Nothing was armed: probe the code it runs "
            "(fleettrace.tracefs.uprobe with pid: %d) or restart it" % (
                ", ".join(sorted(places)), "; ".join(sorted(set(why.values()))), pid))


def new_finder(stop, states=correlate.ALL_STATES):
    """The stall finder the stop condition drives (same field, threshold and unit as its trigger)."""
    return correlate.StallFinder(stop.events, stop.field, stop.threshold, states=states, unit=stop.unit)


def findings_of(finder, pid):
    """The finder's findings for ``pid`` and its threads (fds resolved now, while it lives)."""
    finder.select(procfs.thread_ids(pid) if pid is not None else None)
    return finder.findings()


def run(instance, stop, pid, timeout, states=correlate.ALL_STATES, rearm=3, max_findings=20, poll_interval=0.1,
        sink_options=None, raw_path=None, token_timeout_ms=None, cpu_context=False):
    """Install the stop condition, capture (re-arming when needed), return the finished result.

    ``cpu_context`` (with ``pid``): record every task switch beside the capture
    (``cpu_context.recording``), so that a wait for a CPU names who held it;
    else only who ran last before the switch-in is known.
    """
    options = dict(states=states, rearm=rearm, max_findings=max_findings, poll_interval=poll_interval,
                   sink_options=sink_options, raw_path=raw_path, token_timeout_ms=token_timeout_ms)
    if pid is not None:
        require_probes_can_fire(instance, stop, pid)
    if not (cpu_context and pid is not None and procfs.process_alive(pid)):
        return _run(instance, stop, pid, timeout, None, **options)
    with cpu_recording.recording(instance, stop, timeout * (rearm + 1)) as context:
        return _run(instance, stop, pid, timeout, context, **options)


def _run(instance, stop, pid, timeout, context, states, rearm, max_findings, poll_interval, sink_options, raw_path,
         token_timeout_ms):
    sink_options = sink_options or {}
    plan = stop.plan(instance)
    plan.apply()
    attempts = 0
    reached = None  # (result, finder, findings) of the first attempt whose trigger fired
    try:
        before = evidence.snapshot(pid) if pid is not None else None
        while True:
            attempts += 1
            finder = new_finder(stop, states)
            sink = event_sink.EventSink(stall_finder=finder, **sink_options)
            try:
                result = instance_capture.capture_trigger(instance, timeout=timeout, poll_interval=poll_interval,
                                                          pid=pid, raw_path=raw_path, sink=sink,
                                                          companions=[context.instance] if context else [])
            except BaseException:
                sink.close()
                raise
            findings = findings_of(finder, pid)
            if reached is None and result["triggered"]:
                reached = (result, finder, findings)
            if not needs_rearm(result, findings) or attempts > rearm:
                break
            sink.close()
        if not result["triggered"] and reached is not None:
            result, finder, findings = _earlier_stall(result, reached)
        after = evidence.snapshot(pid) if pid is not None else None
        if context is not None:
            context.explain(findings)
            result["cpu_context"] = context.facts()
    finally:
        if instance.exists():
            not_undone = plan.undo()
            if not_undone:
                raise TracefsError("removing what the capture installed failed: %s" % "; ".join(not_undone))
    result["sink"] = sink
    return conclude(result, finder, findings, stop, pid, before, after, installed=plan.commands, attempts=attempts,
                    max_findings=max_findings, token_timeout_ms=token_timeout_ms)


def _earlier_stall(last, reached):
    """A capture re-armed for a whole stall saw none before its timeout: the first stall is still the answer.

    Its findings and status are reported; the events kept are the last attempt's (``earlier_stall`` says so).
    """
    earlier, finder, findings = reached
    result = dict(last, triggered=True, stop_reason=earlier["stop_reason"], duration=earlier["duration"],
                  earlier_stall=True)
    return result, finder, findings


def _culprit_call(findings, pid):
    """The first finding's call as syscall_latency's options (pid, call, fd, cmd), or None."""
    found = culprit_call(findings[0]) if findings else None
    if found is None:
        return None
    return {"pid": findings[0]["pid"] or pid, "call": found[0], "fd": found[1], "cmd": found[2]}


def conclude(result, finder, findings, stop, pid, before, after, installed, attempts, max_findings=20,
             token_timeout_ms=None, lost_events=None):
    """Finish a capture's result: findings, status, the probed value's distribution, the guesses.

    ``before``/``after``: ``evidence.snapshot`` around the window (or None); ``lost_events``:
    the losses that can hide a cause (default the capture's ``lost_events``).
    """
    lost = result["lost_events"] if lost_events is None else lost_events
    for finding in findings:
        if finding["cause"] == "unexplained" and lost:
            finding["missing_cause"].append("%d events were lost (buffer too small)" % lost)
            finding["explanation"][-1] = finding["explanation"][-1][:-1] + "; %d events were lost." % lost
    result.update({
        "attempts": attempts,
        "stop": {"events": stop.events, "field": stop.field, "threshold": stop.threshold, "unit": stop.unit,
                 "trigger": stop.trigger},
        "installed": installed, "status": status(result, pid), "findings": findings[:max_findings],
        "findings_total": len(findings),
        "culprit_call": _culprit_call(findings, pid),
        "probe_values": latency.distribution(finder.probe_values(), 1),
    })
    # A boolean for the roles' when: (a None there fails under ansible-core 2.19).
    result["culprit_call_found"] = result["culprit_call"] is not None
    if before is not None and after is not None:
        result["guesses"] = evidence.settle(before, after, findings[0] if findings else None, token_timeout_ms)
        if findings:
            findings[0]["guesses"] = result["guesses"]
    return result
