"""The stall timeline (SVG) and the Chrome trace-event export, from a finding shaped like correlate's."""

import copy
import json
import xml.etree.ElementTree as ET

from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import chrome_trace, timeline
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import document, model

# As the diagnose workflow returned it for the demo daemon (blocked_until names the event that ended it).
FINDING = {"blocked_in": "percpu_rwsem_wait", "blocked_ns": 1050568000, "blocked_until": "probe_hit",
           "comm": "demo_daemon", "duration_ms": 1050.581, "fd": 3, "field": "tv_diff", "file": "/mnt/heartbeat.log",
           "kernel_stack": ["__schedule", "schedule", "percpu_rwsem_wait", "vfs_write", "ksys_write"], "pid": 13455,
           "probe_event": "timer_function_scheduler_timeout", "state": "D", "switched_out_at": 2415.258846,
           "syscall": {"fd": 3, "name": "write", "nr": 1, "timestamp": 2415.258836}, "threshold": 400000000,
           "timestamp": 2416.309414, "value": 1050581021, "summary": "demo_daemon[13455] tv_diff=1050581021 >= 400000000"}
EVENTS = [{"event": "sys_enter", "timestamp": 2415.258836, "pid": 13455, "comm": "demo_daemon", "fields": {"id": 1}},
          {"event": "sched_switch", "timestamp": 2415.258846, "pid": 13455, "comm": "demo_daemon",
           "fields": {"prev_state": "D"}, "kernel_stack": ["__schedule"]},
          {"event": "timer_function_scheduler_timeout", "timestamp": 2416.309414, "pid": 13455, "comm": "demo_daemon",
           "fields": {"tv_diff": 1050581021}}]


def diagnose_report():
    doc = {"schema": "fleettrace.threshold_capture/1", "host": "node1", "findings": [copy.deepcopy(FINDING)],
           "events": copy.deepcopy(EVENTS),
           "field_unit": "ns", "threshold_reached": True}
    return model.build_report([document.validate_document(doc, "test")])


def test_timeline_draws_hits_offcpu_interval_syscall_and_late_tick():
    picture = timeline.svg(FINDING, EVENTS, "ns")
    root = ET.fromstring(picture)              # well-formed SVG
    ns = "{http://www.w3.org/2000/svg}" if root.tag.startswith("{") else ""
    rects = {r.get("class"): r for r in root.iter(ns + "rect")}
    lines = [l for l in root.iter(ns + "line") if l.get("class")]
    assert [l.get("class") for l in lines] == ["probe-hit", "late-tick"]      # the tick before: late - tv_diff
    late_x = float(lines[1].get("x1"))
    before_x = float(lines[0].get("x1"))
    off, call = rects["offcpu"], rects["syscall"]
    # The off-CPU interval starts after the write() entered and ends at the late tick.
    assert float(call.get("x")) <= float(off.get("x")) and float(off.get("x")) < late_x
    assert abs(float(off.get("x")) + float(off.get("width")) - late_x) < 2
    # The tick before came just before the write() it made (tv_diff later measured from it).
    assert before_x <= float(call.get("x")) and before_x < late_x - 300
    text = " ".join(t.text or "" for t in root.iter(ns + "text"))
    assert "off CPU in D 1050.6 ms" in text and "write(fd 3 -> /mnt/heartbeat.log)" in text
    assert "late tick: tv_diff=1050581021 (1050.581 ms)" in text


def test_findings_without_timestamps_or_with_new_fields_are_read_defensively():
    assert timeline.svg({"state": "D"}) is None
    odd = dict(FINDING, syscall="ioctl", switched_out_at=None, extra={"new": "field"})
    root = ET.fromstring(timeline.svg(odd, None))
    assert "offcpu" not in [r.get("class") for r in root.iter() if r.get("class")]


def test_html_report_embeds_the_timeline_escaped():
    report = diagnose_report()
    report["hosts"]["node1"]["diagnose"]["findings"][0]["file"] = "/mnt/<script>x</script>"
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.report.html_page import render_html
    page = render_html(report)
    assert page.count('<svg class="timeline"') == 1 and "Stall timelines" in page
    assert "<script>x</script>" not in page


def test_chrome_trace_has_host_process_task_thread_and_the_stall():
    data = json.loads(chrome_trace.render(diagnose_report()))
    events = data["traceEvents"]
    meta = [e for e in events if e["ph"] == "M"]
    assert {"name": "process_name", "ph": "M", "pid": 1, "tid": 0, "args": {"name": "node1"}} in meta
    assert any(e["name"] == "thread_name" and e["args"]["name"] == "demo_daemon[13455]" for e in meta)
    off = [e for e in events if e["name"] == "off CPU (D)"]
    assert len(off) == 1 and off[0]["ts"] == 2415.258846e6 and abs(off[0]["dur"] - 1050568.0) < 1e-3
    call = [e for e in events if e["name"] == "write(fd 3 -> /mnt/heartbeat.log)"]
    assert call and call[0]["ph"] == "X" and call[0]["ts"] == 2415.258836e6
    late = [e for e in events if e["name"] == "late tick"]
    assert late[0]["ts"] == 2416.309414e6 and late[0]["args"]["value"] == 1050581021
    timed = [e["ts"] for e in events if e["ph"] != "M"]
    assert timed == sorted(timed)


def test_chrome_trace_follows_the_trace_event_format():
    from tests.helpers import trace_event_format
    from tests.helpers.report_docs import make_report
    for report in (diagnose_report(), make_report()):
        data = json.loads(chrome_trace.render(report))
        assert trace_event_format.problems(data) == []
    # The check can fail: a negative duration, an unknown phase and an unnamed thread are each named.
    data = json.loads(chrome_trace.render(diagnose_report()))
    complete = [e for e in data["traceEvents"] if e["ph"] == "X"][0]
    complete["dur"] = -1
    data["traceEvents"].append({"name": "x", "ph": "Q", "ts": 1, "pid": 1, "tid": 1})
    data["traceEvents"].append({"name": "y", "ph": "i", "s": "t", "ts": 1, "pid": 1, "tid": 999})
    found = trace_event_format.problems(data)
    assert len([p for p in found if "is not valid under any of the given schemas" in p]) == 2, found
    assert [p for p in found if "thread 999 of process 1 has no thread_name" in p], found
