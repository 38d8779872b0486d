"""Prometheus textfile output of the report, parsed back with prometheus_client's own parser
and checked by promtool (Debian's prometheus package, scripts/tools.sh), from both writers:
prometheus_client's exposition (the controller) and the standard-library one (any host)."""

import os
import subprocess
import sys

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import OptionError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import prometheus
from tests.helpers.paths import COLLECTIONS
from tests.helpers.report_docs import make_report
from tests.helpers.tools import promtool_problems, promtool_problems_of

WRITERS = ("prometheus_client", "stdlib")

parser = pytest.importorskip("prometheus_client.parser")


def families(text):
    return {f.name: f for f in parser.text_string_to_metric_families(text)}


def samples(family, **labels):
    return [s for s in family.samples if all(s.labels.get(k) == v for k, v in labels.items())]


@pytest.mark.parametrize("writer", WRITERS)
def test_one_file_per_host_parses_with_histograms_summaries_and_counters(writer):
    report = make_report()
    rendered = prometheus.render_all(report, writer)
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
    summary = parsed["fleettrace_runqueue_latency_quantiles_seconds"]
    assert summary.type == "summary"
    quantiles = {s.labels["quantile"]: s.value for s in samples(summary, series="all") if "quantile" in s.labels}
    assert quantiles == {"0.5": pytest.approx(30e-6), "0.9": pytest.approx(150e-6), "0.99": pytest.approx(300e-6),
                         "0.999": pytest.approx(450e-6), "1": pytest.approx(600e-6)}
    stalls = parsed["fleettrace_stalls"]
    assert stalls.type == "counter"
    assert {s.labels["source"]: s.value for s in stalls.samples} == {"audit": 1, "diagnose": 1}
    longest = {s.labels["source"]: s.value for s in parsed["fleettrace_stall_longest_seconds"].samples}
    assert longest == {"audit": pytest.approx(0.020), "diagnose": pytest.approx(1.2005)}
    checks = {s.labels["check"]: s.value for s in parsed["fleettrace_check_passed"].samples}
    assert checks == {"p99_wakeup_latency_us": 1, "max_d_state_stall_ms": 0, "no_lost_events": 1}


@pytest.mark.parametrize("writer", WRITERS)
def test_lost_events_counted_and_hosts_without_audit_have_no_histogram(writer):
    rendered = prometheus.render_all(make_report(), writer)
    lost = families(rendered["fleettrace_node2.prom"])["fleettrace_lost_events"]
    assert [(s.labels["source"], s.value) for s in lost.samples] == [("audit", 3)]
    node4 = families(rendered["fleettrace_node4.prom"])
    assert "fleettrace_runqueue_latency_seconds" not in node4 and "fleettrace_stalls" in node4


@pytest.mark.parametrize("writer", WRITERS)
def test_label_values_are_escaped(writer):
    report = make_report()
    report["hosts"]['we"ird\\host\n'] = dict(report["hosts"]["node1"], host='we"ird\\host\n')
    text = prometheus.render_host(report, 'we"ird\\host\n', writer)
    assert promtool_problems(text) == []
    parsed = families(text)
    assert {s.labels["host"] for s in parsed["fleettrace_runqueue_latency_seconds"].samples} == {'we"ird\\host\n'}
    assert prometheus.file_name('we"ird\\host\n') == "fleettrace_we_ird_host_.prom"


def test_textfiles_written_atomically_and_only_when_changed(tmp_path):
    rendered = prometheus.render_all(make_report())
    directory = str(tmp_path / "textfile")
    assert prometheus.write_textfiles(directory, rendered) == sorted(rendered)
    assert sorted(os.listdir(directory)) == sorted(rendered)      # no temporary file left
    assert prometheus.write_textfiles(directory, rendered) == []


def test_both_writers_give_the_same_families_samples_and_values():
    report = make_report()
    by_client, by_stdlib = prometheus.render_all(report, "prometheus_client"), prometheus.render_all(report, "stdlib")
    assert sorted(by_client) == sorted(by_stdlib)
    for name in by_client:
        client, stdlib = families(by_client[name]), families(by_stdlib[name])
        assert sorted(client) == sorted(stdlib)
        for family in client:
            assert client[family].type == stdlib[family].type
            assert sorted((s.name, sorted(s.labels.items()), s.value) for s in client[family].samples) == \
                sorted((s.name, sorted(s.labels.items()), s.value) for s in stdlib[family].samples)


@pytest.mark.parametrize("writer", WRITERS)
def test_every_file_passes_promtool_check_metrics(writer):
    problems = promtool_problems_of(prometheus.render_all(make_report(), writer))
    assert problems == {name: [] for name in problems}


def test_controller_uses_prometheus_client_and_a_host_without_it_the_standard_library():
    assert prometheus.exposition() == "prometheus_client"
    # A host without the package: the module_utils import nothing else and print the same text.
    code = ("import sys; sys.modules['prometheus_client'] = None; sys.path.insert(0, %r);"
            "from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import prometheus;"
            "print(prometheus.exposition())" % COLLECTIONS)
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "stdlib"


# Where the .prom files go, and what the report role copies onto each node.
@pytest.mark.parametrize("prometheus_dir, node_dir, expected", [
    ("/srv/prom", "", "/srv/prom"),
    ("/srv/prom", "/var/lib/node-exporter", "/srv/prom"),
    ("", "/var/lib/node-exporter", "/srv/report/prometheus"),
    (None, "/var/lib/node-exporter", "/srv/report/prometheus"),
    ("", "", None),
    (None, None, None),
])
def test_controller_dir_of_the_prom_files(prometheus_dir, node_dir, expected):
    assert prometheus.controller_dir("/srv/report", prometheus_dir, node_dir) == expected


def test_node_exporter_copies_one_per_host_sorted_and_kept_to_the_inventory():
    texts = {"node2": "b\n", "node1": "a\n", "elsewhere": "c\n"}
    copies = prometheus.node_exporter_copies(texts, "/var/lib/node-exporter", "fleettrace.prom")
    assert copies == [{"host": h, "dest": "/var/lib/node-exporter/fleettrace.prom", "text": texts[h]}
                      for h in ("elsewhere", "node1", "node2")]
    assert [c["host"] for c in prometheus.in_inventory(copies, {"node1", "node2", "node3"})] == ["node1", "node2"]
    assert prometheus.node_exporter_copies(texts, "", "fleettrace.prom") == []


@pytest.mark.parametrize("name", ["fleettrace.txt", "", "../x.prom", "sub/x.prom", ".hidden.prom", None])
def test_node_exporter_file_must_be_a_plain_prom_name(name):
    with pytest.raises(OptionError) as caught:
        prometheus.check_node_exporter_file(name)
    assert "give a plain file name ending in .prom" in caught.value.message


def test_node_exporter_file_plain_prom_name_is_kept():
    assert prometheus.check_node_exporter_file("fleettrace.prom") == "fleettrace.prom"
