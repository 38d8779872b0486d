"""Metrics where fleets look: a real audit window written as node_exporter textfiles by the report role.

The .prom files are parsed back with prometheus_client's parser; their numbers
must be those of the window's report.json (the collector's own counts); and
promtool (Debian's prometheus package) must accept them without a word.
"""

import json
import os

import pytest

from tests.helpers.tools import promtool_problems

parser = pytest.importorskip("prometheus_client.parser")


def test_audit_window_metrics_parse_and_match_the_report(run_playbook, unique_name, tmp_path):
    report_dir = tmp_path / "report"
    (report_dir / "hosts" / "localhost").mkdir(parents=True)
    textfile_dir = tmp_path / "node-exporter"      # node_exporter's --collector.textfile.directory on the host
    textfile_dir.mkdir()
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "window", "fleettrace.tracefs.sched_latency": {"duration": 2, "instance": unique_name("prom")},
         "register": "window"},
        {"name": "save", "ansible.builtin.copy": {"content": "{{ window.sched_latency | combine({'inventory_hostname': inventory_hostname}) | to_json }}",
                                                  "dest": str(report_dir / "hosts" / "localhost" / "sched_latency.json"),
                                                  "mode": "0644"}},
        {"name": "report", "ansible.builtin.include_role": {"name": "fleettrace.tracefs.report"},
         "vars": {"report_dir": str(report_dir), "report_prometheus_dir": str(tmp_path / "prom"),
                  "report_node_exporter_textfile_dir": str(textfile_dir), "report_node_exporter_become": False,
                  "report_checks": [{"name": "no_lost_events", "expr": "summary.lost_events == `0`"}]}},
    ]}]
    result = run_playbook(json.dumps(play) + "\n")
    assert result.rc == 0, result.stdout[-3000:]
    assert os.listdir(str(tmp_path / "prom")) == ["fleettrace_localhost.prom"]
    on_node = (textfile_dir / "fleettrace.prom").read_text()
    assert on_node == (tmp_path / "prom" / "fleettrace_localhost.prom").read_text()
    assert os.listdir(str(textfile_dir)) == ["fleettrace.prom"]      # nothing half-written left beside it
    assert promtool_problems(on_node) == []
    report_task = result.task("fleettrace.tracefs.report : Merge per-host results into report.json, report.md, report.html and junit.xml")
    assert report_task["prometheus_exposition"] == "prometheus_client"      # the controller has the package
    families = {f.name: f for f in parser.text_string_to_metric_families(on_node)}

    host = json.loads((report_dir / "report.json").read_text())["hosts"]["localhost"]["sched_latency"]
    overall = host["latency"]["all"]
    hist = [s for s in families["fleettrace_runqueue_latency_seconds"].samples if s.labels["series"] == "all"]
    count = [s.value for s in hist if s.name.endswith("_count")]
    inf = [s.value for s in hist if s.name.endswith("_bucket") and s.labels["le"] == "+Inf"]
    assert count == inf == [overall["count"]] and overall["count"] > 0
    buckets = [(float(s.labels["le"]), s.value) for s in hist if s.name.endswith("_bucket") and s.labels["le"] != "+Inf"]
    assert buckets == sorted(buckets) and [v for _le, v in buckets] == sorted(v for _le, v in buckets)
    below = {b["high_us"] * 1e-6: b["count"] for b in overall["histogram_log2_us"]}
    running = 0
    for le, value in buckets:
        running += [c for high, c in below.items() if abs(high - le) < 1e-12][0]
        assert value == running
    quantiles = {s.labels["quantile"]: s.value for s in families["fleettrace_runqueue_latency_quantiles_seconds"].samples
                 if s.labels["series"] == "all" and "quantile" in s.labels}
    assert quantiles["0.99"] == pytest.approx(overall["p99_us"] * 1e-6) and quantiles["1"] == pytest.approx(overall["max_us"] * 1e-6)
    lost = families["fleettrace_lost_events"].samples
    assert [(s.labels["host"], s.value) for s in lost] == [("localhost", host["events"]["lost"])]
    processed = families["fleettrace_events_processed"].samples[0].value
    assert processed == host["events"]["processed"]
    checks = families["fleettrace_check_passed"].samples
    assert [(s.labels["check"], s.value) for s in checks] == [("no_lost_events", 1.0 if host["events"]["lost"] == 0 else 0.0)]
