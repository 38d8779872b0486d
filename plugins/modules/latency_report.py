#!/usr/bin/python
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r"""
---
module: latency_report
short_description: Merge per-host scheduling results into JSON, Markdown, HTML and JUnit reports
version_added: 0.1.0
description:
  - Reads per-host result documents (C(kind=sched_latency) from M(fleettrace.tracefs.sched_latency),
    C(kind=diagnose) from the diagnose workflow) and writes C(report.json), C(report.md), a self-contained
    C(report.html) (inline SVG histograms, fleet table sortable by p99, worst stalls with kernel stacks;
    nothing is fetched over the network; each diagnose finding drawn as a timeline), C(junit.xml) with one test
    case per host per check, and C(trace.json), the captured windows as Chrome trace events (open it in
    Perfetto or chrome://tracing).
  - With O(prometheus_dir), also one C(fleettrace_HOST.prom) per host in the Prometheus text format of
    node_exporter's textfile collector (histograms, percentiles as summaries, stalls, lost events, check
    verdicts), clean for C(promtool check metrics); written with C(prometheus_client)'s exposition code when that
    package is installed, else by the collection's own standard-library writer.
  - Checks are JMESPath expressions over each host's entry of C(report.json); see docs/sched-audit.md.
  - A host that gave no result (a C(kind=failure) document from M(fleettrace.tracefs.save_results), or a host of
    O(hosts) without any document) is in every file (the fleet table, C(junit.xml) as an error, C(up 0) in its
    C(.prom) file), and RV(passed) is false.
  - Meant to run once on the controller (C(delegate_to=localhost), C(run_once=true)).
author: fleettrace developers (@fleettrace)
requirements:
  - jmespath (on the controller)
  - prometheus_client (optional, for RV(prometheus_exposition)=C(prometheus_client))
attributes:
  check_mode:
    support: full
    description: Builds the report and evaluates the checks, writes no file.
  diff_mode:
    support: none
    description: Nothing persistent changes, so there is no diff.
options:
  results:
    description: Per-host result documents given directly (each with C(kind) and C(host)).
    type: list
    elements: dict
    default: []
  results_dir:
    description:
      - A directory M(fleettrace.tracefs.save_results) wrote into (its C(dest)); the per-host documents in its
        C(hosts/) subdirectory are read, before those of O(result_paths).
    type: path
  result_paths:
    description: JSON files, or directories searched for C(*.json) (e.g. C(report_dir/hosts)).
    type: list
    elements: path
    default: []
  run_dirs:
    description:
      - Result directories of diagnose or sentinel runs (C(threshold_capture), C(sentinel)). Their C(HOST.json)
        files are read, not the run's C(summary.json) nor the directories below (its report).
    type: list
    elements: path
    default: []
  hosts:
    description:
      - Hosts that must appear in the report (for example C(ansible_play_hosts_all)); each one without any
        result document is reported as giving no result, and the report does not pass.
    type: list
    elements: str
    default: []
  dest:
    description: Directory to write the report files into (created if missing).
    type: path
    required: true
  title:
    description: Title of the report.
    type: str
    default: Scheduling latency report
  checks:
    description:
      - Checks to evaluate for every host. Each item has C(name) and either C(value) (a JMESPath
        expression giving a number) with C(max) and/or C(min), or C(expr) (a JMESPath expression
        that must be true), and optionally C(description).
    type: list
    elements: dict
    default: []
  columns:
    description: Extra fleet-table columns, name -> JMESPath expression over the host's entry.
    type: dict
    default: {}
  prometheus_dir:
    description:
      - Directory (created if missing) for one C(fleettrace_HOST.prom) per host, each written atomically
        (temporary name, then rename), for example a node_exporter C(--collector.textfile.directory).
      - RV(prometheus) returns the same texts, to copy each onto its host (see the report role).
      - Default C(DEST/prometheus) when O(node_exporter_textfile_dir) is given, else no metrics.
    type: path
  node_exporter_textfile_dir:
    description:
      - node_exporter's C(--collector.textfile.directory) on the hosts. RV(node_exporter_copies) then says, per host
        of the inventory, what to write where on it (the report role copies each).
    type: path
  node_exporter_file:
    description: File name of each host's metrics in O(node_exporter_textfile_dir) (must end in C(.prom)).
    type: str
    default: fleettrace.prom
notes:
  - The module never fails because a check failed; it returns RV(passed) and RV(failed_checks) so the
    playbook decides (see playbooks/ci-latency-gate.yml).
"""

EXAMPLES = r"""
- name: Write the fleet report
  fleettrace.tracefs.latency_report:
    result_paths: ["{{ report_dir }}/hosts"]
    dest: "{{ report_dir }}"
    checks:
      - name: p99_wakeup_latency_us
        value: summary.wakeup_p99_us
        max: 2000
      - name: no_lost_events
        expr: "summary.lost_events == `0`"
  delegate_to: localhost
  run_once: true
  register: report

- name: Also write one .prom file per host for node_exporter's textfile collector
  fleettrace.tracefs.latency_report:
    result_paths: ["{{ report_dir }}/hosts"]
    dest: "{{ report_dir }}"
    prometheus_dir: /var/lib/prometheus/node-exporter
  delegate_to: localhost
  run_once: true

- name: Read what save_results wrote, and say what each host's node_exporter should get
  fleettrace.tracefs.latency_report:
    results_dir: "{{ report_dir }}"
    dest: "{{ report_dir }}"
    node_exporter_textfile_dir: /var/lib/prometheus/node-exporter
  delegate_to: localhost
  run_once: true
  register: report

- name: Put each host's metrics into its node_exporter textfile directory
  ansible.builtin.copy:
    content: "{{ item.text }}"
    dest: "{{ item.dest }}"
    mode: "0644"
  delegate_to: "{{ item.host }}"
  loop: "{{ report.node_exporter_copies }}"
"""

RETURN = r"""
files:
  description: Paths of the report files (not written in check mode).
  returned: always
  type: dict
prometheus:
  description: Per host, the name and text of its C(.prom) file.
  returned: when O(prometheus_dir) or O(node_exporter_textfile_dir) is given
  type: dict
  sample: {"node1": {"file": "fleettrace_node1.prom", "text": "# HELP fleettrace_runqueue_latency_seconds ..."}}
node_exporter_copies:
  description:
    - With O(node_exporter_textfile_dir), one item per host of the inventory that has metrics, sorted by host,
      with C(host), C(dest) (O(node_exporter_textfile_dir)/O(node_exporter_file) on that host) and C(text); else empty.
    - Hosts of the results that are not in the inventory are left out (run as a plain module, every host is in).
  returned: always
  type: list
  elements: dict
  sample: [{"host": "node1", "dest": "/var/lib/prometheus/node-exporter/fleettrace.prom", "text": "# HELP ..."}]
prometheus_exposition:
  description:
    - What wrote the C(.prom) texts, C(prometheus_client) (its exposition code, when the package is installed where
      the module runs) or C(stdlib) (the collection's own writer, with the same families, samples and values).
  returned: when O(prometheus_dir) or O(node_exporter_textfile_dir) is given
  type: str
  sample: prometheus_client
passed:
  description: Whether every check passed (skipped checks do not fail) and every host gave a result.
  returned: always
  type: bool
failed_checks:
  description: Failed checks, each with host, check, value, limit and message.
  returned: always
  type: list
  elements: dict
summary_lines:
  description: The fleet table as text lines, sorted by p99.
  returned: always
  type: list
  elements: str
fleet:
  description: One row per host (p50_us ... max_us, max_d_ms, lost_events, findings).
  returned: always
  type: list
  elements: dict
down:
  description: Hosts that gave no result, each with host, status (unreachable, failed, no result), msg and task.
  returned: always
  type: list
  elements: dict
report_lines:
  description: What the report role prints, the fleet table (RV(summary_lines)), RV(msg) and where report.html is.
  returned: always
  type: list
  elements: str
msg:
  description: Which hosts gave no result and which checks failed on which host, or what passed.
  returned: always
  type: str
"""

import os

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.fleettrace.tracefs.plugins.module_utils import input_limits
from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError, OptionError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.module_runner import run_module
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import checks as report_checks
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import document as report_document
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import files as report_files
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import model as report_model
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import prometheus as report_prometheus
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import text as report_text


def body(module, result):
    params = module.params
    if not report_checks.HAS_JMESPATH:
        raise FleettraceError(missing_required_lib("jmespath"))
    docs = [report_document.validate_document(doc, "results[%d]" % i) for i, doc in enumerate(params["results"])]
    result_paths = params["result_paths"]
    if params["results_dir"]:
        saved = os.path.join(params["results_dir"], "hosts")
        if not os.path.isdir(saved):
            raise OptionError("results_dir: %s does not exist; give the dest save_results wrote into" % saved)
        result_paths = [saved] + result_paths
    missing = [p for p in params["result_paths"] if not os.path.exists(p)]
    if missing:
        raise OptionError("result_paths: %s does not exist; point it at the per-host JSON files "
                          "or the directory holding them" % ", ".join(missing))
    node_exporter_file = report_prometheus.check_node_exporter_file(params["node_exporter_file"])
    prometheus_dir = report_prometheus.controller_dir(params["dest"], params["prometheus_dir"],
                                                      params["node_exporter_textfile_dir"])
    not_dirs = [p for p in params["run_dirs"] if not os.path.isdir(p)]
    if not_dirs:
        raise OptionError("run_dirs: %s is no directory; give the run's result directory" % ", ".join(not_dirs))
    docs += report_document.load_documents(result_paths + [
        path for run_dir in params["run_dirs"] for path in report_document.run_dir_files(run_dir)])
    docs += report_document.missing_hosts(docs, params["hosts"])
    if not docs:
        raise FleettraceError("no per-host results found in results or %s: did the audit run on any host?"
                              % ", ".join(result_paths))
    report = report_model.build_report(docs, checks=params["checks"], columns=params["columns"],
                                       title=params["title"])
    rendered = report_files.render_all(report)
    files = {name: os.path.join(params["dest"], name) for name in report_files.REPORT_FILES}
    changed_files = []
    if not module.check_mode:
        try:
            changed_files = report_files.write_files(params["dest"], rendered)
        except OSError as exc:
            raise FleettraceError("cannot write the report into %s: %s" % (params["dest"], exc))
    else:
        changed_files = list(report_files.REPORT_FILES)
    extra = {"node_exporter_copies": []}
    if prometheus_dir:
        texts = report_prometheus.render_all(report)
        extra["prometheus_exposition"] = report_prometheus.exposition()
        extra["prometheus"] = {host: {"file": report_prometheus.file_name(host),
                                      "text": texts[report_prometheus.file_name(host)]} for host in report["hosts"]}
        extra["node_exporter_copies"] = report_prometheus.node_exporter_copies(
            {host: item["text"] for host, item in extra["prometheus"].items()},
            params["node_exporter_textfile_dir"], node_exporter_file)
        if not module.check_mode:
            try:
                changed_files += report_prometheus.write_textfiles(prometheus_dir, texts)
            except OSError as exc:
                result["changed"] = bool(changed_files)
                raise FleettraceError("cannot write the .prom files into %s: %s" % (prometheus_dir, exc))
    summary_lines = report_text.summary_lines(report)
    msg = report_model.failure_message(report)
    return dict(changed=bool(changed_files), files=files, passed=report["passed"],
                failed_checks=report["failed"], checks=report["checks"], down=report["down"],
                summary_lines=summary_lines, fleet=report["fleet"], msg=msg,
                report_lines=summary_lines + ["", msg, "Report: " + files["report.html"]], **extra)


def main():
    run_module(
        dict(
            results=dict(type="list", elements="dict", default=[]),
            results_dir=dict(type="path"),
            result_paths=dict(type="list", elements="path", default=[]),
            run_dirs=dict(type="list", elements="path", default=[]),
            hosts=dict(type="list", elements="str", default=[]),
            dest=dict(type="path", required=True),
            title=dict(type="str", default="Scheduling latency report"),
            checks=dict(type="list", elements="dict", default=[]),
            columns=dict(type="dict", default={}),
            prometheus_dir=dict(type="path"),
            node_exporter_textfile_dir=dict(type="path"),
            node_exporter_file=dict(type="str", default="fleettrace.prom"),
        ),
        body, required_one_of=[("results", "results_dir", "result_paths", "run_dirs")], supports_check_mode=True,
        caps=input_limits.MODULE_CAPS["latency_report"])


if __name__ == "__main__":
    main()
