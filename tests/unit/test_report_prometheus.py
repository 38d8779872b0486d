"""Prometheus textfile output of the report, parsed back with prometheus_client's own parser."""

import os

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import prometheus
from tests.helpers.report_docs import make_report

parser = pytest.importorskip("prometheus_client.parser")


def families(text):
    return {f.name: f for f in parser.text_string_to_metric_families(text)}


def samples(family, **labels):
    return [s for s in family.samples if all(s.labels.get(k) == v for k, v in labels.items())]


def test_one_file_per_host_parses_with_histograms_gauges_and_counters():
    report = make_report()
    rendered = prometheus.render_all(report)
    assert sorted(rendered) == ["fleettrace_node%d.prom" % i for i in (1, 2, 3, 4)]
    parsed = families(rendered["fleettrace_node3.prom"])
    hist = parsed["fleettrace_runqueue_latency_seconds"]
    assert hist.type == "histogram"
    buckets = samples(hist, series="all")
    assert all(s.labels["host"] == "node3" for s in hist.samples)
    # Cumulative buckets from the log2 histogram: 3 below 1 us, 100 below 2 us and in +Inf; _count 100.
    by_le = {s.labels["le"]: s.value for s in buckets if s.name.endswith("_bucket")}
    assert by_le == {"1e-06": 3, "2e-06": 100, "+Inf": 100}
    count = [s.value for s in buckets if s.name.endswith("_count")]
    total = [s.value for s in buckets if s.name.endswith("_sum")]
    assert count == [100] and total == [pytest.approx(100 * 60e-6)]     # mean 60 us x 100 waits
    quantiles = {s.labels["quantile"]: s.value for s in samples(parsed["fleettrace_runqueue_latency_quantile_seconds"], series="all")}
    assert quantiles == {"0.5": pytest.approx(30e-6), "0.9": pytest.approx(150e-6), "0.99": pytest.approx(300e-6),
                         "0.999": pytest.approx(450e-6), "1": pytest.approx(600e-6)}
    stalls = parsed["fleettrace_stalls"]
    assert stalls.type == "counter"
    assert {s.labels["source"]: s.value for s in stalls.samples} == {"audit": 1, "diagnose": 1}
    longest = {s.labels["source"]: s.value for s in parsed["fleettrace_stall_longest_seconds"].samples}
    assert longest == {"audit": pytest.approx(0.020), "diagnose": pytest.approx(1.2005)}
    checks = {s.labels["check"]: s.value for s in parsed["fleettrace_check_passed"].samples}
    assert checks == {"p99_wakeup_latency_us": 1, "max_d_state_stall_ms": 0, "no_lost_events": 1}


def test_lost_events_counted_and_hosts_without_audit_have_no_histogram():
    rendered = prometheus.render_all(make_report())
    lost = families(rendered["fleettrace_node2.prom"])["fleettrace_lost_events"]
    assert [(s.labels["source"], s.value) for s in lost.samples] == [("audit", 3)]
    node4 = families(rendered["fleettrace_node4.prom"])
    assert "fleettrace_runqueue_latency_seconds" not in node4 and "fleettrace_stalls" in node4


def test_label_values_are_escaped():
    report = make_report()
    report["hosts"]['we"ird\\host\n'] = dict(report["hosts"]["node1"], host='we"ird\\host\n')
    text = prometheus.render_host(report, 'we"ird\\host\n')
    parsed = families(text)
    assert {s.labels["host"] for s in parsed["fleettrace_runqueue_latency_seconds"].samples} == {'we"ird\\host\n'}
    assert prometheus.file_name('we"ird\\host\n') == "fleettrace_we_ird_host_.prom"


def test_textfiles_written_atomically_and_only_when_changed(tmp_path):
    rendered = prometheus.render_all(make_report())
    directory = str(tmp_path / "textfile")
    assert prometheus.write_textfiles(directory, rendered) == sorted(rendered)
    assert sorted(os.listdir(directory)) == sorted(rendered)      # no temporary file left
    assert prometheus.write_textfiles(directory, rendered) == []
