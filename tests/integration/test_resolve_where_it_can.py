"""Resolve where it can, ship where it must: nodes that need only Python's standard library.

The demo daemon's binary is stripped (no DWARF anywhere on this machine); its
debug info is only on a real debuginfod on loopback.  Over the loopback sshd,
node1 and node3 run modules with a venv that has no pyelftools, node2 with
the project's venv.  diagnose-corosync.yml must resolve the probe on node2
itself (debug info from debuginfod) and, for node1 and node3, on the controller
once for their one build-id, shipping the definition guarded by it.  Every host
then catches the stall the daemon itself logged (runtime truth), and says where
its debug info came from.
"""

import json
import re
import os
import shutil
import subprocess
import uuid

from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import timeline
from tests.helpers.paths import REPO
from tests.helpers import debuginfod_servers as servers
from tests.helpers import trace_event_format
from tests.helpers.chromium import color_extent, screenshot
from tests.helpers.tools import promtool_problems
from tests.helpers.paths import SSH_LOOPBACK


def node_without_pyelftools(tmp_path):
    venv = str(tmp_path / "venv-stdlib-only")
    subprocess.run(["python3", "-m", "venv", "--without-pip", venv], check=True)
    python = os.path.join(venv, "bin", "python")
    assert subprocess.run([python, "-c", "import elftools"], stderr=subprocess.DEVNULL, check=False).returncode != 0
    return python


def unique_build(demo_daemon, cc):
    """Rebuild the daemon with a build-id of its own: no cache of an earlier run can answer for it."""
    build_id = uuid.uuid4().hex + "00000000"
    subprocess.run([cc, "-g", "-O2", "-Wl,--build-id=0x" + build_id, "-o", demo_daemon.binary,
                    os.path.join(REPO, "tests", "programs", "demo", "demo_daemon.c")], check=True)
    assert servers.build_id_of(demo_daemon.binary) == build_id
    return build_id


def inventory(tmp_path, bare_python):
    path = str(tmp_path / "inventory.ini")
    subprocess.run(["bash", SSH_LOOPBACK, "inventory", "3", path], check=True, stdout=subprocess.PIPE, timeout=60)
    with open(path) as handle:
        text = handle.read()
    for node in ("node1", "node3"):
        text = text.replace("%s ansible_host=" % node, "%s ansible_python_interpreter=%s ansible_host=" % (node, bare_python))
    with open(path, "w") as handle:
        handle.write(text)
    return path


def run_diagnose(run_playbook, inv, demo_daemon, results, run_id, extra):
    extra_vars = {"diagnose_corosync_binary": demo_daemon.binary, "diagnose_threshold_ms": 400,
                  "diagnose_timeout": 120, "diagnose_results_dir": results, "diagnose_run_id": run_id}
    extra_vars.update(extra)
    return run_playbook(os.path.join(REPO, "playbooks", "diagnose-corosync.yml"), inventory=inv,
                        extra_vars=extra_vars, env={"ANSIBLE_PIPELINING": "1",
                                                    "DEBUGINFOD_CACHE_PATH": str(results) + "-debuginfod-cache"})


def controller_resolutions(result):
    """Build-ids the controller resolved the probe for, one entry per build resolved (probe_for_nodes)."""
    built = []
    for play in (result.data or {}).get("plays", []):
        for task in play.get("tasks", []):
            if task["task"]["name"].endswith("Resolve the probe on the controller, once per build-id of the nodes that need it"):
                built += [b for h in task["hosts"].values() for b in h.get("resolved_builds", [])]
    return built


def test_stripped_binary_on_stdlib_only_nodes_probed_with_debuginfod(loopback_sshd, demo_daemon, run_playbook,
                                                                     tmp_path, run_token, cc):
    build_id = unique_build(demo_daemon, cc)
    # The nodes (root over ssh) cache downloads in root's ~/.cache/debuginfod_client: removed afterwards.
    node_cache = os.path.join(os.path.expanduser("~"), ".cache", "debuginfod_client", build_id)
    served = tmp_path / "served"
    served.mkdir()
    subprocess.run(["objcopy", "--only-keep-debug", demo_daemon.binary, str(served / "demo_daemon.debug")], check=True)
    subprocess.run(["strip", "--strip-all", demo_daemon.binary], check=True)
    server = servers.RealDebuginfod(str(served), str(tmp_path))
    try:
        server.start(build_id)
        pid = demo_daemon.start(period_ms=100, threshold_ms=400)
        demo_daemon.inject_faults(freeze_ms=1000, pause_ms=2000)
        results = str(tmp_path / "results")
        run_id = "%s_stdlib" % run_token
        result = run_diagnose(run_playbook, inventory(tmp_path, node_without_pyelftools(tmp_path)), demo_daemon,
                              results, run_id, {"diagnose_debuginfod_urls": [server.url]})
    finally:
        server.stop()
        shutil.rmtree(node_cache, ignore_errors=True)
    assert result.rc == 0, result.stdout[-4000:] + result.stderr[-2000:]
    # node1 and node3 share one build: the controller resolved it once.
    assert controller_resolutions(result) == [build_id]
    with open(os.path.join(results, "corosync-%s" % run_id, "summary.json")) as handle:
        hosts = {h["host"]: h for h in json.load(handle)["hosts"]}
    assert sorted(hosts) == ["node1", "node2", "node3"]
    for name, host in hosts.items():
        assert host["threshold_reached"] is True, (name, host["status"], host["message"])
        assert host["target"]["pid"] == pid
        stall = host["findings"][0]
        assert stall["state"] == "D" and stall["file"] == demo_daemon.heartbeat, stall
        # Runtime truth: the traced tv_diff is a delay the daemon itself measured and logged.
        assert any(abs(ms - stall["value"] / 1e6) < 0.001 for ms in demo_daemon.late_ticks_ms()), stall["value"]
        assert host["probe"]["build_id"] == build_id
    for name in ("node1", "node3"):
        assert hosts[name]["debuginfo"] == {"resolved_on": "controller", "binary_from": "controller_copy",
                                            "source": "debuginfod", "server": server.url}, hosts[name]["debuginfo"]
        assert hosts[name]["probe"]["spec"] == "", "a node without pyelftools resolved the probe itself"
    # node2 has pyelftools: it resolved the probe itself, with the debug info from debuginfod.
    assert hosts["node2"]["debuginfo"]["resolved_on"] == "node"
    assert hosts["node2"]["debuginfo"]["source"] == "debuginfod" and hosts["node2"]["debuginfo"]["server"] == server.url
    assert hosts["node2"]["probe"]["spec"].startswith("timer_function_scheduler_timeout")
    assert hosts["node1"]["probe"]["definitions"][0].split(" ", 1)[1] == hosts["node2"]["probe"]["definitions"][0].split(" ", 1)[1]


def test_node_binary_fetched_when_the_controller_has_no_copy(loopback_sshd, demo_daemon, run_playbook, tmp_path,
                                                             run_token, cc):
    build_id = unique_build(demo_daemon, cc)
    demo_daemon.start(period_ms=100, threshold_ms=400)
    demo_daemon.inject_faults(freeze_ms=1000, pause_ms=2000)
    results = str(tmp_path / "results")
    run_id = "%s_fetch" % run_token
    binaries = str(tmp_path / "binaries")
    result = run_diagnose(run_playbook, inventory(tmp_path, node_without_pyelftools(tmp_path)), demo_daemon,
                          results, run_id, {"diagnose_hosts": "node1", "diagnose_controller_binary": "/nonexistent/demo",
                                            "threshold_capture_binaries_dir": binaries,
                                            "report_prometheus_dir": str(tmp_path / "prom")})
    assert result.rc == 0, result.stdout[-4000:] + result.stderr[-2000:]
    fetched = os.path.join(binaries, build_id, "demo_daemon")
    assert servers.build_id_of(fetched) == build_id
    with open(os.path.join(results, "corosync-%s" % run_id, "node1.json")) as handle:
        host = json.load(handle)
    assert host["threshold_reached"] is True, (host["status"], host["message"])
    assert host["debuginfo"] == {"resolved_on": "controller", "binary_from": "fetched_from_node", "source": "binary",
                                 "server": None}
    # The definition names the node's path, not the controller's fetched copy.
    assert " %s:0x" % demo_daemon.binary in host["probe"]["definitions"][0]
    assert any(abs(ms - host["findings"][0]["value"] / 1e6) < 0.001 for ms in demo_daemon.late_ticks_ms())
    # The diagnose run's metrics: its stall as a counter and the longest one as a gauge, clean for promtool.
    metrics = (tmp_path / "prom" / "fleettrace_node1.prom").read_text()
    assert promtool_problems(metrics) == []
    assert 'fleettrace_stalls_total{host="node1",source="diagnose",state="D"} 1.0' in metrics

    # The finding drawn: the report's timeline renders in headless Chromium (the off-CPU interval in
    # the D colour across most of the page's width, the late tick in red) and trace.json has the same
    # interval for Perfetto.
    report_dir = os.path.join(results, "corosync-%s" % run_id, "report")
    stall = host["findings"][0]
    page = os.path.join(report_dir, "report.html")
    shot = screenshot(page, tmp_path, "diagnose-report", width=1400, height=2400)
    offcpu, left, right = color_extent(shot, timeline.OFFCPU_COLOR["D"])
    assert offcpu > 1000 and right - left > 1400 * 0.5, (offcpu, left, right)
    assert color_extent(shot, timeline.LATE_COLOR)[0] > 0
    # The diagnose report shows what the run measured (no run-queue columns of dashes, no "all passed" without
    # checks) and marks the threshold and the stall on the probed value's histogram.
    text = open(page).read()
    assert "checks: no checks defined" in text and "all waits" not in text
    assert re.search(r">threshold 400 ms</text>", text), "no threshold marker"
    assert re.search(r">stall %d ms</text>" % round(stall["value"] / 1e6), text), "no stall marker"
    with open(os.path.join(report_dir, "trace.json")) as handle:
        trace = json.load(handle)
    assert trace_event_format.problems(trace) == []      # the Trace Event Format Perfetto reads
    events = trace["traceEvents"]
    (off,) = (e for e in events if e["name"] == "off CPU (D)")
    assert abs(off["dur"] - stall["blocked_ns"] / 1e3) < 1 and off["args"]["blocked_in"] == stall["blocked_in"]
    assert any(e["name"] == "late tick" and e["args"]["value"] == stall["value"] for e in events)
