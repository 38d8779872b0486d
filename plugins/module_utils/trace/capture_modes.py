# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``capture`` module's two modes, each one path from its options to its result.

* **window** (``mode: window``): stream ``trace_pipe`` for ``duration`` seconds; nothing is installed.
* **threshold** (``mode: trigger``): clear the buffer, arm, wait until a ``traceoff`` trigger turns
  tracing off.  With ``stop`` the trigger is the module's own: installed and removed again around
  the wait by trace/threshold.py, which also re-arms and finishes the findings.  Without it the
  trigger is one the events already carry (``stop_after_events``, ``pid`` and ``timeout`` end the
  wait as well).

``findings`` (stalls correlated on a trigger the caller installed) goes through the same
``StopCondition`` as ``stop``: one threshold, one stall finder.  ``params`` is the module's
options as Ansible parsed them.  No Ansible imports.
"""


from ansible_collections.fleettrace.tracefs.plugins.module_utils import procfs
from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import lifecycle
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import capture_message, event_sink
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import instance_capture, threshold
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace.stop_condition import StopCondition


def stop_condition(params):
    """The ``StopCondition`` of ``stop`` (installed for the wait) or of ``findings`` (only correlated);
    None without either."""
    if params["stop"]:
        wanted = params["stop"]
        return StopCondition(wanted["events"], wanted["field"], wanted["threshold"], wanted["unit"])
    if params["findings"]:
        wanted = params["findings"]
        return StopCondition([wanted["probe_event"]], wanted["field"], wanted["threshold"])
    return None


def planned(params, stop, enabled):
    """Check mode's result: what the capture would do, nothing armed or read."""
    if params["mode"] == "window":
        plan = "would stream trace_pipe of instance %r for %.1f s" % (params["instance"], params["duration"])
    else:
        plan = "would clear the buffer of instance %r, turn tracing on and wait up to %.1f s for a traceoff trigger" % (
            params["instance"], params["timeout"])
    if params["stop"]:
        plan += "; would install %r on %s for the wait" % (stop.trigger, ", ".join(stop.events))
    return dict(changed=True, triggered=False, threshold_reached=False, stop_reason="check_mode",
                events=[], event_count=0, events_truncated=False, lost_events=0, lost_by_cpu={},
                process_exited=False, enabled_events=enabled,
                message=plan + "; enabled events: %s" % (", ".join(enabled) or "none"))


def capture(instance, params, stop, enabled):
    """Run the capture of ``params["mode"]`` on ``instance`` (it exists, ``enabled`` are its enabled
    events) and return the module's result."""
    sink_options = dict(max_events=params["max_events"], json_path=params["json_path"],
                        symbolize=params["symbolize"])
    finder = threshold.new_finder(stop, params["findings"]["states"]) if params["findings"] else None
    sink = None
    try:
        with lifecycle.holding([params["instance"]]):
            if params["stop"]:
                result = _own_threshold(instance, params, stop, sink_options)
                sink = result.pop("sink")
            else:
                # Records are handled as they are parsed: the last max_events kept, all of them to json_path.
                sink = event_sink.EventSink(stall_finder=finder, **sink_options)
                if params["mode"] == "window":
                    result = _window(instance, params, sink)
                else:
                    result = _given_threshold(instance, params, sink)
    except FleettraceError as exc:  # refused by the kernel (error_log kept), or a refused trigger
        if sink is not None:
            sink.close()
        raise exc.reworded("capture from instance %r failed: %s" % (params["instance"], exc.message))
    except OSError as exc:
        if sink is not None:
            sink.close()
        raise FleettraceError("capture from instance %r failed: %s (%s)" % (
            params["instance"], exc.strerror or exc, getattr(exc, "filename", "")))
    return _finish(result, params, sink, finder, enabled)


def _stop_event(params):
    return params["stop_event"].split(":")[-1] if params["stop_event"] else None


def _window(instance, params, sink):
    return instance_capture.capture_window(
        instance, duration=params["duration"], clear=params["clear"], stop_after_events=params["stop_after_events"],
        stop_event=_stop_event(params), pid=params["pid"], raw_path=params["raw_path"], sink=sink)


def _own_threshold(instance, params, stop, sink_options):
    """``stop``: the trigger installed for the wait and removed after it; findings finished there."""
    wanted = params["stop"]
    return threshold.run(
        instance, stop, params["pid"], params["timeout"], states=wanted["states"], rearm=wanted["rearm"],
        max_findings=wanted["max_findings"], poll_interval=params["poll_interval"], raw_path=params["raw_path"],
        token_timeout_ms=wanted["token_timeout_ms"] or None, cpu_context=wanted["cpu_context"], sink_options=sink_options)


def _given_threshold(instance, params, sink):
    """A trigger the events already carry (or none: ``stop_after_events``, ``pid``, ``timeout``)."""
    return instance_capture.capture_trigger(
        instance, timeout=params["timeout"], poll_interval=params["poll_interval"], clear=params["clear"],
        stop_after_events=params["stop_after_events"], stop_event=_stop_event(params), pid=params["pid"],
        raw_path=params["raw_path"], sink=sink)


def _finish(result, params, sink, finder, enabled):
    """What every mode adds: findings of ``findings``, whether the process exited, the message, files."""
    if params["symbolize"]:
        result["symbolize_gone"] = sorted(sink.gone)
    if finder is not None:
        task = params["findings"]["pid"] if params["findings"]["pid"] is not None else params["pid"]
        finder.select(procfs.thread_ids(task) if task is not None else None)
        result["findings"] = finder.findings()
    result["process_exited"] = result["stop_reason"] == instance_capture.STOP_PROCESS_EXITED or bool(
        params["pid"] is not None and not procfs.process_alive(params["pid"]))
    result["message"] = capture_message.message(result, params)
    if params["json_path"]:
        sink.finish_json(result)
        result["json_path"] = params["json_path"]
    if params["raw_path"]:
        result["raw_path"] = params["raw_path"]
    result["enabled_events"] = enabled
    return dict(result, changed=bool(result["armed"]))
