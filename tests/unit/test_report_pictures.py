"""The report's pictures and tables say what they show: axes with counts and one unit, markers, named columns."""

import re
import xml.etree.ElementTree as ET

from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import document as report_document
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import html_page as report_html_page
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import markdown as report_markdown
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import model as report_model
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import svg as report_svg
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import text as report_text
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report.incident import render_incident_html
from tests.helpers.report_docs import diagnose_doc, make_report

SVG = "{http://www.w3.org/2000/svg}"


def log2_buckets(counts):
    """Buckets 0-1, 1-2, 2-4, ... us with the given counts."""
    out, low = [], 0
    for count in counts:
        high = 1 if low == 0 else low * 2
        out.append({"low_us": low, "high_us": high, "count": count})
        low = high
    return out


def parse(svg_text):
    return ET.fromstring(svg_text.replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1))


def texts(root):
    return [t.text for t in root.iter(SVG + "text")]


def test_histogram_has_a_y_axis_counts_on_bars_and_one_unit_on_its_x_axis():
    # 21 buckets up to 1048576 us: 40 waits near 100 us, 2 near 700 ms, 1 of 1.1 s.
    counts = [0] * 21
    counts[7], counts[8], counts[20] = 25, 15, 2
    buckets = log2_buckets(counts) + [{"low_us": 1048576, "high_us": 2097152, "count": 1}]
    root = parse(report_svg.svg_histogram(buckets, "waits"))
    labels = texts(root)
    assert "waits" in labels                                   # what the y axis counts
    assert {"0", "25", "50"} <= set(labels)                     # y ticks: 0, half, a round top above 25
    assert {"25", "15", "2", "1"} <= set(labels)                # each bar's count above it
    assert "ms (log2 buckets)" in labels                        # one unit for the whole axis ...
    assert not [t for t in labels if re.search(r"\d(us|ms|s)$", t or "")]   # ... and no unit glued to a number
    # Every edge of the shown range is labelled, from the first non-empty bucket's low edge to the last's high edge:
    # the 1.1 s bar stands between 1049 and 2097 (ms), never next to a "524ms" of its own.
    edges = [t for t in labels if re.match(r"^[0-9.]+$", t) and t not in ("0", "25", "50", "15", "2", "1")]
    assert edges[0] == "0.064" and edges[-2:] == ["1049", "2097"], edges
    assert len(root.findall(".//%srect" % SVG)) == 4             # one bar per non-empty bucket


def test_histogram_markers_for_the_threshold_and_the_stall_fall_in_their_buckets():
    buckets = log2_buckets([0] * 21) + [{"low_us": 1048576, "high_us": 2097152, "count": 1}]
    svg = report_svg.svg_histogram(buckets, "probe hits", [
        report_svg.marker(400000, "threshold", report_svg.THRESHOLD_COLOR),
        report_svg.marker(1100350, "stall", report_svg.STALL_COLOR)])
    root = parse(svg)
    assert {"threshold 400 ms", "stall 1100 ms"} <= set(texts(root))
    lines = [line for line in root.iter(SVG + "line") if line.get("class") == "marker"]
    threshold_x, stall_x = (float(line.get("x1")) for line in lines)
    # The range shown starts at the threshold's bucket (262-524 ms): its edges' positions tell where a value sits.
    edge_x = {}
    for text in root.iter(SVG + "text"):
        if text.text in ("262", "524", "1049", "2097"):
            edge_x[text.text] = float(text.get("x"))
    assert edge_x["262"] < threshold_x < edge_x["524"] < edge_x["1049"] < stall_x < edge_x["2097"]


def test_diagnose_histograms_mark_threshold_stall_and_blocked_time():
    doc = diagnose_doc("node9")
    doc.update(field="tv_diff", field_unit="ns", threshold=400000000)
    doc["findings"][0].update(value=1100350069, blocked_ns=1000210000)
    doc["probe_values"] = {"count": 1, "p50_ms": 1100.35, "p99_ms": 1100.35, "max_ms": 1100.35,
                           "histogram_log2_us": [{"low_us": 1048576, "high_us": 2097152, "count": 1}]}
    doc["culprit_latency"] = {"call": "ioctl", "fd": 4, "count": 3, "p50_ms": 0.1, "p99_ms": 1000.5, "max_ms": 1000.5,
                              "histogram_log2_us": log2_buckets([0, 0, 0, 0, 0, 0, 0, 2]) + [
                                  {"low_us": 524288, "high_us": 1048576, "count": 1}]}
    page = render_incident_html(doc)
    assert "threshold 400 ms" in page and "stall 1100 ms" in page and "this stall: blocked 1000 ms" in page
    assert ">probe hits<" in page and ">calls<" in page


def test_columns_name_what_each_percentile_measures_and_empty_ones_are_left_out():
    report = make_report()
    named = [(label, group) for _key, label, group in report_text.table_columns(report) if label.startswith("p")]
    assert named == [("p50", "all waits, us"), ("p90", "all waits, us"), ("p99", "all waits, us"),
                     ("p99.9", "all waits, us"), ("p99", "wakeups, us"), ("p99", "preemptions, us")]
    # The text table heads each group over its columns.
    group_line, labels, rule = report_text.summary_lines(report)[:3]
    for group, label in (("all waits, us", "p50"), ("wakeups, us", "p99"), ("preemptions, us", "p99")):
        assert group in group_line
    assert rule.startswith("----") and labels.split()[:3] == ["host", "p50", "p90"]
    assert group_line.index("wakeups, us") > labels.index("max") and group_line.index("preemptions, us") < labels.index(
        "waits")
    # The HTML table too: a group row over the labels, the groups spanning their columns.
    page = report_html_page.render_html(report)
    assert '<th colspan="5" class="group">all waits, us</th>' in page
    assert '<th colspan="1" class="group">wakeups, us</th>' in page
    # A diagnose-only report measured no run-queue latency: no columns of dashes for it.
    diagnose_only = report_model.build_report([report_document.validate_document(diagnose_doc("node4"), "t")])
    assert [key for key, _label, _group in report_text.table_columns(diagnose_only)] == ["host", "max_d_ms", "findings"]
    header = "\n".join(report_text.summary_lines(diagnose_only)[:2])
    assert "p99" not in header and "lost events" not in header and "waits" not in header


def test_reports_without_checks_do_not_say_all_passed():
    diagnose_only = report_model.build_report([report_document.validate_document(diagnose_doc("node4"), "t")])
    assert report_text.checks_line(diagnose_only) == "no checks defined"
    assert "checks: no checks defined" in report_html_page.render_html(diagnose_only)
    assert "Checks: no checks defined." in report_markdown.render_markdown(diagnose_only)
    failing = make_report()
    skipped = len([c for c in failing["checks"] if c["status"] == "skipped"])
    assert skipped and report_text.checks_line(failing) == "%d of %d failed, %d skipped (no data)" % (
        len(failing["failed"]), len(failing["checks"]), skipped)
    # node4 has no audit, so no lost-events count: its check is skipped, not passed.
    passing = make_report(checks=[{"name": "few_lost", "value": "summary.lost_events", "max": 100}])
    assert report_text.checks_line(passing) == "3 passed, 1 skipped (no data)"
    everywhere = make_report(checks=[{"name": "few_findings", "value": "summary.findings", "max": 100}])
    assert report_text.checks_line(everywhere) == "all 4 passed"
