"""Unit tests of the fleet report: merge, JMESPath checks, Markdown/HTML/JUnit rendering."""

import json
import re
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import document as report_document
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import files as report_files
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import html_page as report_html_page
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import junit as report_junit
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import markdown as report_markdown
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import model as report_model
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import svg as report_svg
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import text as report_text
from tests.helpers.report_docs import CHECKS, diagnose_doc, make_report, sched_doc


def test_hosts_merge_both_kinds_and_fleet_sorts_by_p99():
    report = make_report()
    assert sorted(report["hosts"]) == ["node1", "node2", "node3", "node4"]
    assert report["hosts"]["node3"]["summary"]["kinds"] == ["diagnose", "sched_latency"]
    # The diagnose finding (1200.5 ms in D) beats the audit's 20 ms D interval.
    assert report["hosts"]["node3"]["summary"]["max_d_ms"] == 1200.5
    assert [row["host"] for row in report["fleet"]] == ["node2", "node3", "node1", "node4"]


def test_checks_pass_fail_and_skip_per_host():
    report = make_report()
    status = {(c["host"], c["check"]): c["status"] for c in report["checks"]}
    assert status[("node1", "p99_wakeup_latency_us")] == "passed"
    assert status[("node2", "p99_wakeup_latency_us")] == "failed"
    assert status[("node4", "p99_wakeup_latency_us")] == "skipped"      # diagnose only: no latency data
    assert status[("node3", "max_d_state_stall_ms")] == "failed"
    assert status[("node1", "max_d_state_stall_ms")] == "skipped"
    assert status[("node2", "no_lost_events")] == "failed"
    assert status[("node1", "no_lost_events")] == "passed"
    assert not report["passed"]
    message = report_model.failure_message(report)
    assert "node2: p99_wakeup_latency_us = 4500.0 (must be <= 1000.0)" in message
    assert "node3: max_d_state_stall_ms = 1200.5" in message
    assert "node1" not in message


def test_all_pass_with_generous_thresholds():
    report = make_report(checks=[{"name": "p99", "value": "summary.p99_us", "max": 10 ** 6}])
    # node4 has no latency data: its check is skipped, and the message says so instead of "all passed".
    assert report["passed"] and report_model.failure_message(report) == (
        "4 host(s) reported; 3 of 4 checks passed, 1 skipped (no data)")


def test_no_checks_never_reads_as_all_passed():
    report = make_report(checks=[])
    assert report_model.failure_message(report) == "4 host(s) reported, no checks defined"


@pytest.mark.parametrize("check, message", [
    ({"value": "summary.p99_us"}, "needs a 'name'"),
    ({"name": "x"}, "needs 'value'"),
    ({"name": "x", "value": "summary.p99_us"}, "neither 'max' nor 'min'"),
    ({"name": "x", "value": "summary.[", "max": 1}, "not a valid JMESPath"),
    ({"name": "x", "value": "summary.p99_us", "max": "lots"}, "is not a number"),
])
def test_bad_checks_are_refused_with_a_clear_message(check, message):
    with pytest.raises(report_document.ReportError, match=re.escape(message)):
        make_report(checks=[check])


@pytest.mark.parametrize("doc, message", [
    ({"host": "a"}, "field 'kind' must be one of"),
    ({"kind": "sched_latency"}, "no 'host'"),
    ({"kind": "diagnose", "host": "a", "findings": "x"}, "'findings' must be a list"),
])
def test_bad_documents_are_refused(doc, message):
    with pytest.raises(report_document.ReportError, match=re.escape(message)):
        report_document.validate_document(doc, "x.json")


def test_columns_from_jmespath():
    report = make_report(columns={"cpus": "sched_latency.facts.cpu_count"})
    rows = {row["host"]: row for row in report["fleet"]}
    assert rows["node1"]["cpus"] == 2 and rows["node4"]["cpus"] is None
    assert "cpus" in report_text.summary_lines(report)[1]


def test_junit_has_one_case_per_host_per_check():
    report = make_report()
    root = ET.fromstring(report_junit.render_junit(report))
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == 4 * len(CHECKS) == int(suite.get("tests"))
    failed = [(c.get("classname"), c.get("name")) for c in cases if c.find("failure") is not None]
    assert int(suite.get("failures")) == len(failed)
    assert ("node2", "p99_wakeup_latency_us") in failed
    assert int(suite.get("skipped")) == len([c for c in cases if c.find("skipped") is not None]) > 0


def test_html_is_self_contained_escaped_and_has_histograms_and_stacks():
    page = report_html_page.render_html(make_report())
    assert not re.search(r"https?://", page)
    assert not re.search(r"<(link|img|iframe)\b|\bsrc=|@import|url\(", page)
    assert page.count('<svg class="hist"') == 3              # one per host with audit data
    assert report_svg.BAR_COLOR in page
    assert 'id="fleet"' in page and "sortFleet(" in page
    assert "&lt;hog&gt;" in page and "<hog>" not in page
    assert "ipmi_heartbeat" in page and "percpu_rwsem_wait+0x15f" in page


def test_markdown_lists_fleet_checks_and_stalls():
    text = report_markdown.render_markdown(make_report())
    assert "node2" in text and "p99_wakeup_latency_us | failed" in text
    assert "D stall 1200.500 ms of corosync[3796] in ioctl(fd 10 -> /dev/watchdog)" in text


def test_load_documents_names_hosts_from_paths(tmp_path):
    (tmp_path / "hosts" / "node7").mkdir(parents=True)
    doc = sched_doc("x", 10.0)
    del doc["host"], doc["inventory_hostname"]
    (tmp_path / "hosts" / "node7" / "sched_latency.json").write_text(json.dumps(doc))
    diag = diagnose_doc("y")
    del diag["host"]
    (tmp_path / "hosts" / "node8.json").write_text(json.dumps(diag))
    docs = report_document.load_documents([str(tmp_path / "hosts")])
    assert sorted(report_document.host_name(d) for d in docs) == ["node7", "node8"]
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(report_document.ReportError, match="bad.json: cannot read"):
        report_document.load_documents([str(tmp_path / "bad.json")])


def test_write_files_reports_only_changed_files(tmp_path):
    rendered = {"a.txt": "1\n", "b.txt": "2\n"}
    assert report_files.write_files(str(tmp_path / "out"), rendered) == ["a.txt", "b.txt"]
    assert report_files.write_files(str(tmp_path / "out"), rendered) == []
    assert report_files.write_files(str(tmp_path / "out"), {"a.txt": "3\n"}) == ["a.txt"]


def test_diagnose_finding_reads_like_the_summary():
    finding = {"syscall": {"name": "write", "nr": 1, "args": [3, 1, 2], "fd": 3}, "fd": 3,
               "file": "/mnt/heartbeat.log",
               "kernel_stack": ["=> trace_event_raw_event_sched_switch", "=> __traceiter_sched_switch",
                                "=> __schedule", "=> schedule", "=> percpu_rwsem_wait", "=> vfs_write"]}
    assert report_text.describe_syscall(finding) == "in write(fd 3 -> /mnt/heartbeat.log)"
    assert report_text.describe_syscall({"fd": 10}) == "on fd 10"
    assert report_text.describe_syscall({}) == ""
    assert report_text.blocking_frames(finding["kernel_stack"]) == ["percpu_rwsem_wait", "vfs_write"]


def test_a_run_directory_gives_its_host_files_not_its_summary_nor_its_report(tmp_path):
    for name in ("node2.json", "node1.json", "summary.json", "summary.md"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "report" / "hosts").mkdir(parents=True)
    (tmp_path / "report" / "report.json").write_text("{}")
    assert report_document.run_dir_files(str(tmp_path)) == [str(tmp_path / "node1.json"), str(tmp_path / "node2.json")]
