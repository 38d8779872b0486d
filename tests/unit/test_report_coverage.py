"""Every report format shows the unmeasured waits and their reasons next to the percentiles (issue 11)."""

import re
import xml.etree.ElementTree as ET

from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import coverage as report_coverage
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import document as report_document
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import files as report_files
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import model as report_model
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import text as report_text


def sched_doc(host, p99):
    series = {"count": 100, "p50_us": p99 / 10.0, "p90_us": p99 / 2.0, "p99_us": p99, "p99_9_us": p99,
              "max_us": p99 * 2, "mean_us": p99 / 5.0, "exact": True, "histogram_log2_us": []}
    return {"kind": "sched_latency", "inventory_hostname": host, "latency": {"all": series, "wakeup": series},
            "per_cpu": {}, "tasks": [], "worst_waits": [], "longest_d": [],
            "events": {"processed": 1000, "lost": 0, "complete": True}, "window": {"duration_s": 10}, "facts": {}}


REASONS = {"woken_again": 0, "ran_without_switch_in": 30, "migrated_while_waiting": 20, "switched_in_elsewhere": 0,
           "cpu_went_idle": 0, "events_lost": 0, "clock_order": 0}


def audited(host="node1"):
    doc = sched_doc(host, 100.0)
    doc.update({"unmeasured_waits": 50, "unmeasured_by_reason": REASONS,
                "coverage": {"measured": 100, "unmeasured": 50, "unmeasured_by_reason": REASONS,
                             "measured_fraction": 0.6667}})
    return doc


def build(docs):
    return report_model.build_report([report_document.validate_document(d, "test") for d in docs])


def test_the_text_names_counts_and_reasons_largest_first():
    text = report_coverage.coverage_text(audited())
    assert text == ("measured 100 of 150 waits (66.7 %); not measured 50 (the trace does not prove them): "
                    "ran without a recorded switch-in 30, migrated while waiting 20")
    # A document from before coverage existed: the count of its series, nothing unmeasured.
    assert report_coverage.coverage_text(sched_doc("old", 10.0)) == "measured 100 of 100 waits"


def test_summary_fleet_table_and_every_format_show_it():
    report = build([audited("node1"), sched_doc("node2", 300.0)])
    summary = report["hosts"]["node1"]["summary"]
    assert summary["unmeasured_waits"] == 50 and summary["measured_fraction"] == 0.6667
    assert summary["unmeasured_by_reason"] == {"ran_without_switch_in": 30, "migrated_while_waiting": 20}
    _groups, header, _rule, *rows = report_text.summary_lines(report)
    columns = re.split(r"\s{2,}", header.strip())
    assert columns.index("unmeasured") == columns.index("waits") + 1   # next to the percentiles and waits
    node1 = re.split(r"\s{2,}", [r for r in rows if r.startswith("node1")][0].strip())
    assert node1[columns.index("unmeasured")] == "50"
    rendered = report_files.render_all(report)
    wanted = "ran without a recorded switch-in 30, migrated while waiting 20"
    assert wanted in rendered["report.md"]
    assert wanted in rendered["report.html"]
    assert '"unmeasured_by_reason"' in rendered["report.json"]
    props = {p.get("name"): p.get("value") for p in ET.fromstring(rendered["junit.xml"]).iter("property")}
    assert wanted in props["node1.coverage"] and props["node1.p99_us"] == "100.0"


def test_prometheus_text_counts_unmeasured_waits_by_reason():
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import prometheus
    text = prometheus.render_host(build([audited("node1")]), "node1")
    assert 'runqueue_waits_unmeasured_total{host="node1",reason="ran_without_switch_in"} 30' in text
    assert 'reason="migrated_while_waiting"} 20' in text and 'reason="woken_again"' not in text
