"""A host that gave no result (unreachable, its task failed, nothing saved) is in every output of the report."""

import json
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import document as report_document
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import files as report_files
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import model as report_model
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import prometheus
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import text as report_text
from tests.helpers.report_docs import sched_doc

parser = pytest.importorskip("prometheus_client.parser")

UNREACHABLE = "Failed to connect to the host via ssh: connect to host 127.0.0.1 port 1: Connection refused"
GATE = [{"name": "p99", "value": "summary.p99_us", "max": 10 ** 9}]


def report_of(checks=None, expected=("node1", "node2", "node3")):
    docs = [sched_doc("node1", 100.0),
            report_document.failure_document("node2", "unreachable", UNREACHABLE, task="Trace the window")]
    docs += report_document.missing_hosts(docs, expected)
    docs = [report_document.validate_document(d, "test") for d in docs]
    return report_model.build_report(docs, checks=GATE if checks is None else checks)


def test_down_hosts_fail_the_report_and_are_named_in_the_message():
    report = report_of()
    assert sorted(report["hosts"]) == ["node1", "node2", "node3"]
    assert [(d["host"], d["status"]) for d in report["down"]] == [("node2", "unreachable"), ("node3", "no result")]
    assert report["passed"] is False and report["failed"] == []
    # Checks run on the hosts with data only; the others are errors, not skipped checks.
    assert [(c["host"], c["status"]) for c in report["checks"]] == [("node1", "passed")]
    message = report_model.failure_message(report)
    assert message.splitlines()[0] == "2 of 3 host(s) gave no result:"
    assert "node2: unreachable (Trace the window): " + UNREACHABLE in message
    assert "node3: no result: " + report_document.NO_RESULT_MSG in message
    assert "passed" not in message


def test_down_hosts_come_first_in_the_fleet_table_with_their_status():
    report = report_of(checks=[])
    assert [(row["host"], row["status"]) for row in report["fleet"]] == [
        ("node2", "unreachable"), ("node3", "no result"), ("node1", "ok")]
    lines = report_text.summary_lines(report)
    assert lines[1].split()[:2] == ["host", "status"]
    assert lines[3].split()[:2] == ["node2", "unreachable"] and lines[5].split()[:2] == ["node1", "ok"]
    assert report_model.failure_message(report).startswith("2 of 3 host(s) gave no result:")


def test_every_file_names_the_down_hosts():
    report = report_of()
    files = report_files.render_all(report)
    again = json.loads(files["report.json"])
    assert again["passed"] is False and [d["host"] for d in again["down"]] == ["node2", "node3"]
    assert again["hosts"]["node2"]["summary"]["status"] == "unreachable"
    suite = ET.fromstring(files["junit.xml"]).find("testsuite")
    assert (suite.get("tests"), suite.get("errors"), suite.get("failures")) == ("3", "2", "0")
    errors = {c.get("classname"): c.find("error") for c in suite.findall("testcase") if c.get("name") == "result"}
    assert errors["node2"].get("type") == "unreachable" and UNREACHABLE in errors["node2"].get("message")
    assert errors["node3"].get("type") == "no result"
    for name in ("report.html", "report.md"):
        assert "No result from node2: unreachable (Trace the window): " + UNREACHABLE in files[name], name
        assert "3 hosts, 2 gave no result (node2 unreachable, node3 no result)" in files[name], name
    assert '<tr class="failed">\n<td data-v="node2">' in files["report.html"]


@pytest.mark.parametrize("writer", ("prometheus_client", "stdlib"))
def test_prometheus_says_up_0_for_down_hosts_and_1_for_the_others(writer):
    texts = prometheus.render_all(report_of(), writer)
    up = {}
    for text in texts.values():
        (family,) = [f for f in parser.text_string_to_metric_families(text) if f.name == "fleettrace_up"]
        up.update({s.labels["host"]: s.value for s in family.samples})
    assert up == {"node1": 1, "node2": 0, "node3": 0}


def test_a_failure_document_needs_a_known_status():
    with pytest.raises(report_document.ReportError, match="status' must be one of unreachable, failed, no result"):
        report_document.validate_document({"kind": "failure", "host": "n", "status": "sad"}, "test")
