# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The report's numbers as Prometheus text, one file per host (node_exporter textfile collector).

Format: the Prometheus text exposition format 0.0.4 that node_exporter's
``--collector.textfile.directory`` reads, clean for ``promtool check metrics``.
Per host, labelled ``host``:

* run-queue latency per series (all, wakeup, preempt) as a histogram
  (``_bucket`` with cumulative ``le`` from the log2 buckets, ``_sum``, ``_count``);
* the same waits' percentiles (nearest rank) and maximum as a summary
  (``quantile`` 0.5 ... 0.999, and 1 for the maximum; ``_sum``, ``_count``);
* stalls (D-state intervals of the audit, findings of the diagnose workflow)
  and lost events as counters; the longest stall as a gauge;
* each check's verdict as a gauge (1 passed, 0 failed; skipped checks are left out);
* ``fleettrace_up``: 1 when the host gave a result, 0 when it was unreachable or failed.

Counters hold the count of one window or run: scrape them with the file's
timestamp gauge.  Files are written to a temporary name in the same directory
and renamed, so the collector never reads half a file.

The text is written by ``prometheus_client``'s exposition code where that
package is installed (the controller); a host with only the standard library
gets the same families, samples and values from the writer here.
"""


import os
import re

from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import OptionError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import coverage as report_coverage
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import files as report_files

PREFIX = "fleettrace_"
SERIES = ("all", "wakeup", "preempt")
QUANTILES = (("p50_us", "0.5"), ("p90_us", "0.9"), ("p99_us", "0.99"), ("p99_9_us", "0.999"))
US = 1e-6
MS = 1e-3


def _number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _escape_label(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text):
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _format(value):
    if value == float("inf"):
        return "+Inf"
    if isinstance(value, float):
        return repr(round(value, 9))
    return str(value)


class _Family:
    """One metric family: its samples as (suffix, labels, value), whichever writer prints them."""

    def __init__(self, name, kind, help_text):
        self.name = PREFIX + name
        self.kind = kind
        self.help = help_text
        self.samples = []

    def add(self, labels, value, suffix=""):
        if _number(value) is None:
            return
        # Nanosecond resolution: both writers print the same number, not a float's last digits.
        self.samples.append((suffix, tuple(labels), round(value, 9) if isinstance(value, float) else value))

    def lines(self):
        """The family in the text format, by the standard library alone."""
        if not self.samples:
            return []
        lines = ["# HELP %s %s" % (self.name, _escape_help(self.help)), "# TYPE %s %s" % (self.name, self.kind)]
        for suffix, labels, value in self.samples:
            text = ",".join('%s="%s"' % (key, _escape_label(val)) for key, val in labels)
            lines.append("%s%s{%s} %s" % (self.name, suffix, text, _format(value)))
        return lines


def _stalls(entry):
    """(source, state, duration_ms) of every stall of one host's entry."""
    found = []
    for item in (entry.get("sched_latency") or {}).get("longest_d") or []:
        found.append(("audit", "D", _number(item.get("duration_ms"))))
    for item in (entry.get("diagnose") or {}).get("findings") or []:
        if isinstance(item, dict):
            found.append(("diagnose", str(item.get("state") or "unknown"), _number(item.get("duration_ms"))))
    return found


def _host_families(report, host):
    """The metric families of one host's entry of the report (``build_report``'s structure)."""
    entry = report["hosts"][host]
    base = (("host", host),)
    up = _Family("up", "gauge", "1 when the host gave a result, 0 when it was unreachable or its task failed.")
    up.add(base, 0 if entry.get("failure") else 1)
    families = [up]
    sched = entry.get("sched_latency") or {}
    hist = _Family("runqueue_latency_seconds", "histogram",
                   "Time runnable tasks waited for a CPU (sched_wakeup/sched_switch), log2 buckets.")
    quant = _Family("runqueue_latency_quantiles_seconds", "summary",
                    "Percentiles (nearest rank) of the run-queue latency of the window; quantile 1 is the maximum.")
    for series in SERIES:
        data = ((sched.get("latency") or {}).get(series)) or {}
        count = _number(data.get("count"))
        if count is None:
            continue
        labels = base + (("series", series),)
        cumulative = 0
        for bucket in data.get("histogram_log2_us") or []:
            cumulative += bucket.get("count") or 0
            # A log2 bucket holds values below high_us: "le" is its upper edge.
            hist.add(labels + (("le", _format(bucket["high_us"] * US)),), cumulative, "_bucket")
        hist.add(labels + (("le", "+Inf"),), count, "_bucket")
        mean = _number(data.get("mean_us"))
        hist.add(labels, (mean or 0) * count * US, "_sum")
        hist.add(labels, count, "_count")
        for key, quantile in QUANTILES + (("max_us", "1"),):
            value = _number(data.get(key))
            quant.add(labels + (("quantile", quantile),), value * US if value is not None else None)
        quant.add(labels, (mean or 0) * count * US, "_sum")
        quant.add(labels, count, "_count")
    families += [hist, quant]
    # Next to the percentiles: the waits they leave out, by reason (docs/sched-audit.md).
    unmeasured = _Family("runqueue_waits_unmeasured_total", "counter",
                         "Waits of the window the trace does not prove, by reason; not in the latency numbers.")
    if sched:
        for reason, count in sorted(report_coverage.coverage(sched)["reasons"].items()):
            unmeasured.add(base + (("reason", reason),), count)
    families.append(unmeasured)

    stalls = _Family("stalls_total", "counter",
                     "Stalls seen: D-state intervals of watched tasks (audit) and threshold findings (diagnose).")
    longest = _Family("stall_longest_seconds", "gauge", "Longest stall seen, by source and task state.")
    grouped = {}
    for source, state, duration in _stalls(entry):
        key = (source, state)
        count, top = grouped.get(key, (0, None))
        grouped[key] = (count + 1, duration if top is None or (duration or 0) > top else top)
    for (source, state), (count, top) in sorted(grouped.items()):
        labels = base + (("source", source), ("state", state))
        stalls.add(labels, count)
        longest.add(labels, top * MS if top is not None else None)
    families += [stalls, longest]

    lost = _Family("lost_events_total", "counter", "Trace events the kernel dropped (ring buffer full) in the window or run.")
    events = sched.get("events") or {}
    lost.add(base + (("source", "audit"),), _number(events.get("lost")))
    diag = entry.get("diagnose") or {}
    lost.add(base + (("source", "diagnose"),), _number(diag.get("lost_events")))
    processed = _Family("events_processed_total", "counter", "Trace events the audit read in its window.")
    processed.add(base, _number(events.get("processed")))
    reached = _Family("threshold_reached", "gauge", "1 when the diagnose workflow caught a value over its threshold.")
    if "threshold_reached" in diag:
        reached.add(base, 1 if diag.get("threshold_reached") else 0)
    families += [lost, processed, reached]

    checks = _Family("check_passed", "gauge", "1 when the report's check passed on the host, 0 when it failed.")
    for check in report.get("checks") or []:
        if check.get("host") == host and check.get("status") in ("passed", "failed"):
            checks.add(base + (("check", check["check"]),), 1 if check["status"] == "passed" else 0)
    families.append(checks)
    return [family for family in families if family.samples]


def exposition():
    """Which writer prints the text here: ``prometheus_client`` when installed, else ``stdlib``."""
    try:
        import prometheus_client.exposition  # noqa: F401 - only asked whether it is there
    except ImportError:
        return "stdlib"
    return "prometheus_client"


def _text_by_prometheus_client(families):
    from prometheus_client.core import Metric
    from prometheus_client.exposition import generate_latest
    from prometheus_client.registry import CollectorRegistry

    metrics = []
    for family in families:
        # prometheus_client names a counter without _total and adds it back when printing.
        base = family.name[:-len("_total")] if family.kind == "counter" else family.name
        metric = Metric(base, family.help, family.kind)
        for suffix, labels, value in family.samples:
            metric.add_sample(base + ("_total" if family.kind == "counter" else suffix), dict(labels), float(value))
        metrics.append(metric)

    class _Report(object):
        def collect(self):
            return iter(metrics)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Report())
    return generate_latest(registry).decode("utf-8")


def render_host(report, host, writer=None):
    """Prometheus text of one host's entry of the report; ``writer`` as ``exposition()`` names it."""
    families = _host_families(report, host)
    if (writer or exposition()) == "prometheus_client":
        return _text_by_prometheus_client(families)
    lines = []
    for family in families:
        lines += family.lines()
    return "\n".join(lines) + "\n"


def file_name(host):
    """``fleettrace_<host>.prom`` with only characters safe in a file name."""
    return "%s%s.prom" % (PREFIX, re.sub(r"[^A-Za-z0-9_.-]", "_", host))


def render_all(report, writer=None):
    """``{file name: text}``, one file per host."""
    return {file_name(host): render_host(report, host, writer) for host in sorted(report["hosts"])}


def write_textfiles(directory, rendered):
    """Write each file atomically (temporary name, then rename); return the names that changed.

    The temporary names end in ``.tmp``: node_exporter reads only ``*.prom``, so it never
    collects a half-written file.
    """
    return report_files.write_files(directory, rendered, mode=0o644)


# Where the .prom files go on the controller when they are only meant for the nodes (beside the report).
NODES_ONLY_DIR = "prometheus"


def controller_dir(dest, prometheus_dir, node_exporter_dir):
    """The controller directory of the .prom files: ``prometheus_dir`` when given, else ``dest/prometheus`` when
    they go onto the nodes (``node_exporter_dir``), else None (no metrics)."""
    if prometheus_dir:
        return prometheus_dir
    if node_exporter_dir:
        return os.path.join(dest, NODES_ONLY_DIR)
    return None


def check_node_exporter_file(name):
    """node_exporter's textfile collector reads only ``*.prom`` files of its directory: a plain name ending so."""
    if not name or "/" in name or name.startswith(".") or not name.endswith(".prom"):
        raise OptionError("node_exporter_file %r: give a plain file name ending in .prom (node_exporter reads only "
                          "those), such as fleettrace.prom" % (name,))
    return name


def node_exporter_copies(texts, node_exporter_dir, name):
    """One ``{host, dest, text}`` per host of ``texts`` (host -> its .prom text), sorted by host, to copy onto that
    host as ``node_exporter_dir/name``; none without ``node_exporter_dir``."""
    if not node_exporter_dir:
        return []
    return [{"host": host, "dest": os.path.join(node_exporter_dir, name), "text": texts[host]} for host in sorted(texts)]


def in_inventory(copies, inventory):
    """The copies whose host is in ``inventory`` (the controller's ``groups['all']``): a result read from elsewhere
    (a run directory, an extra result path) may name a host Ansible cannot reach."""
    return [copy for copy in copies if copy["host"] in inventory]
