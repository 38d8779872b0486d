# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A capture's outcome in one sentence: why it stopped, what it kept, what it lost."""


from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import instance_capture


def message(result, params):
    """The capture's result in one sentence (the module's ``message``); ``params``: the module's options."""
    reason = result["stop_reason"]
    if reason == instance_capture.STOP_TRIGGERED:
        text = "threshold reached: traceoff trigger fired after %.1f s" % result["duration"]
        if result.get("earlier_stall"):
            text += (" (re-armed for a stall recorded whole, none came within the timeout: the first stall's "
                     "findings are reported, the events are the last attempt's)")
    elif reason == instance_capture.STOP_EVENTS:
        text = "stopped after %d events arrived (threshold trigger did not fire)" % params["stop_after_events"]
    elif reason == instance_capture.STOP_PROCESS_EXITED:
        if result["process_missing_at_start"]:
            text = ("process %d was not running when the capture started: nothing was armed, the buffer "
                    "was returned as it was" % params["pid"])
        else:
            text = "process %d exited during the capture after %.1f s; kept what was captured until then" % (
                params["pid"], result["duration"])
    elif reason == instance_capture.STOP_WINDOW:
        text = "window of %.1f s elapsed" % params["duration"]
    else:
        text = "threshold not reached within %.1f s (no traceoff trigger fired)" % params["timeout"]
    text += "; %d events captured" % result["event_count"]
    if result["events_truncated"]:
        text += " (the last %d returned)" % len(result["events"]) if result["events"] else " (none returned)"
    if result["lost_events"]:
        text += ("; %d events LOST (buffer overflow: buffer_size_kb is %d per CPU, about %d would have held "
                 "them)" % (result["lost_events"], result["buffer_size_kb"], result["suggested_buffer_size_kb"]))
    else:
        text += ", none lost"
    if result["unparsed_lines"]:
        text += "; %d lines not understood (see unparsed_lines)" % len(result["unparsed_lines"])
    if result.get("symbolize_gone"):
        text += "; user stacks of pid(s) %s left unsymbolized (process gone)" % ", ".join(
            str(p) for p in result["symbolize_gone"])
    if "findings" in result:
        text += "; %d stall finding(s)" % len(result["findings"])
    return text
