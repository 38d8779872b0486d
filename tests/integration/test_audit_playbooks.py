"""The audit and CI-gate playbooks end to end on the real tracefs (localhost and loopback SSH)."""

import json
import os
import xml.etree.ElementTree as ET

import pytest

from tests.helpers.chromium import color_extent, screenshot
from tests.helpers.paths import VENV_BIN
from tests.helpers.tools import promtool_problems_of

# Run alone, after the parallel part (scripts/test.sh): the hosts' windows must start together: a quiet machine.
pytestmark = pytest.mark.serial

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AUDIT = os.path.join(REPO, "playbooks", "audit-sched-latency.yml")
GATE = os.path.join(REPO, "playbooks", "ci-latency-gate.yml")
GATE_FAIL_TASK = "fleettrace.tracefs.report : Fail when a check failed or a host gave no result, naming each"
SUMMARY_TASK = "fleettrace.tracefs.report : Print the fleet summary, sorted by p99 run-queue latency"


def audit_vars(run_token, report_dir, **extra):
    values = {"fleettrace_report_dir": str(report_dir), "sched_audit_duration": 2,
              "sched_audit_poll_seconds": 1,
              # The token in the instance name: the leak check watches it, other runs never collide.
              "sched_audit_instance_label": "%s_{{ inventory_hostname }}" % run_token}
    values.update(extra)
    return values


def promtool_clean(directory):
    """Every .prom file the run wrote into ``directory`` passes ``promtool check metrics`` without a word."""
    texts = {name: (directory / name).read_text() for name in os.listdir(str(directory))}
    assert texts and all(name.endswith(".prom") for name in texts), sorted(texts)
    assert promtool_problems_of(texts) == {name: [] for name in texts}
    return texts


def check_verdicts(text):
    from prometheus_client.parser import text_string_to_metric_families
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == "fleettrace_check_passed"]
    return {s.labels["check"]: s.value for s in family.samples}


def junit_cases(path):
    suite = ET.parse(path).getroot().find("testsuite")
    return {(c.get("classname"), c.get("name")): c for c in suite.findall("testcase")}


def test_gate_passes_with_generous_thresholds_and_fails_with_tiny_ones(run_playbook, run_token, tmp_path):
    generous = run_playbook(GATE, extra_vars=audit_vars(run_token, tmp_path / "ok", gate_p99_wakeup_us=10 ** 9,
                                                        gate_max_d_state_ms=10 ** 9, gate_max_lost_events=10 ** 9,
                                                        report_prometheus_dir=str(tmp_path / "ok-prom")))
    assert generous.rc == 0, generous.stdout[-3000:]
    assert check_verdicts(promtool_clean(tmp_path / "ok-prom")["fleettrace_localhost.prom"])["p99_wakeup_latency_us"] == 1
    report = json.loads((tmp_path / "ok" / "report.json").read_text())
    assert report["passed"] is True and list(report["hosts"]) == ["localhost"]
    cases = junit_cases(str(tmp_path / "ok" / "junit.xml"))
    assert set(cases) == {("localhost", "p99_wakeup_latency_us"), ("localhost", "max_d_state_stall_ms"),
                          ("localhost", "lost_events")}
    assert not any(c.find("failure") is not None for c in cases.values())
    summary = generous.task("fleettrace.tracefs.report : Print the fleet summary, sorted by p99 run-queue latency")["msg"]
    assert "all waits, us" in summary[0] and "wakeups, us" in summary[0]
    assert summary[1].split()[:3] == ["host", "p50", "p90"] and summary[3].startswith("localhost")

    tiny = run_playbook(GATE, extra_vars=audit_vars(run_token, tmp_path / "bad", gate_p99_wakeup_us=0.001,
                                                    report_prometheus_dir=str(tmp_path / "bad-prom")))
    assert tiny.rc != 0
    assert check_verdicts(promtool_clean(tmp_path / "bad-prom")["fleettrace_localhost.prom"])["p99_wakeup_latency_us"] == 0
    failure = tiny.task(GATE_FAIL_TASK)
    assert failure.get("failed")
    assert "localhost: p99_wakeup_latency_us = " in failure["msg"] and "(must be <= 0.001)" in failure["msg"]
    assert "lost_events" not in failure["msg"]
    cases = junit_cases(str(tmp_path / "bad" / "junit.xml"))
    assert cases[("localhost", "p99_wakeup_latency_us")].find("failure") is not None
    assert cases[("localhost", "lost_events")].find("failure") is None

    # The failing gate's page: the verdict on top, the failing row and check in red, and the wakeup p99 the
    # check judged in a column that says it is the wakeups' p99 (not the all-waits p99 next to it).
    page = (tmp_path / "bad" / "report.html").read_text()
    assert "checks: <b>1 of 3 failed</b>" in page
    report = json.loads((tmp_path / "bad" / "report.json").read_text())
    wakeup_p99 = report["hosts"]["localhost"]["summary"]["wakeup_p99_us"]
    assert '<th colspan="1" class="group">wakeups, us</th>' in page
    assert 'data-v="%s">%.1f</td>' % (wakeup_p99, wakeup_p99) in page
    shot = screenshot(str(tmp_path / "bad" / "report.html"), tmp_path, "gate-report-failed", width=1400, height=1400)
    failed_pixels, left, right = color_extent(shot, "#ffdddd")
    assert failed_pixels > 2000 and right - left > 400, (failed_pixels, left, right)   # the host's row, the check's row


def test_audit_in_check_mode_traces_and_writes_nothing(run_playbook, run_token, tmp_path):
    result = run_playbook(AUDIT, check=True, extra_vars=audit_vars(run_token, tmp_path / "check"))
    assert result.rc == 0, result.stdout[-3000:]
    plan = result.task("fleettrace.tracefs.sched_audit : Trace the window on every host at once, seconds 2")
    assert any("sched_switch/enable" in line for line in plan["plan"])
    assert "check mode: nothing traced" in plan["msg"]
    shown = result.task("fleettrace.tracefs.sched_audit : Show each host's result (in check mode, what it would trace)")
    assert shown["msg"] == [plan["msg"]]
    opening = result.task("fleettrace.tracefs.sched_audit : Say what the audit waits for")
    assert opening["msg"].startswith("Check mode: showing how scheduler events would be traced") and "nothing is traced" in opening["msg"]
    assert not (tmp_path / "check").exists()


WAIT_TASK = "fleettrace.tracefs.sched_audit : Wait until the window has ended on every host, seconds 2"


# A fork per host: one synchronous call per host. Fewer forks than hosts: async start and one
# status check per host, so the hosts still share one window instead of tracing batch after batch.
@pytest.mark.parametrize("forks, polled", [(5, False), (2, True)], ids=["sync", "async"])
def test_audit_of_three_hosts_over_loopback_ssh(run_playbook, run_token, ssh_inventory, tmp_path, forks, polled):
    result = run_playbook(AUDIT, inventory=ssh_inventory, env={"ANSIBLE_FORKS": str(forks)},
                          extra_vars=audit_vars(run_token, tmp_path / "fleet", report_prometheus_dir=str(tmp_path / "prom")))
    assert result.rc == 0, result.stdout[-3000:]
    assert sorted(promtool_clean(tmp_path / "prom")) == ["fleettrace_node%d.prom" % i for i in (1, 2, 3)]
    for host in ("node1", "node2", "node3"):
        assert result.task(WAIT_TASK, host).get("skipped", False) is not polled
    report = json.loads((tmp_path / "fleet" / "report.json").read_text())
    assert sorted(report["hosts"]) == ["node1", "node2", "node3"]
    instances = set()
    for name, entry in report["hosts"].items():
        data = entry["sched_latency"]
        assert data["inventory_hostname"] == name
        assert data["events"]["complete"] is True and data["latency"]["all"]["count"] > 0
        instances.add(data["window"]["instance"])
        assert name in data["window"]["instance"]
    # One window for the fleet, one private instance per host on the shared kernel.
    assert len(instances) == 3
    starts = [entry["sched_latency"]["first_ns"] for entry in report["hosts"].values()]
    assert max(starts) - min(starts) < 2e9
    assert [row["host"] for row in report["fleet"]] == sorted(
        report["hosts"], key=lambda h: -report["hosts"][h]["summary"]["p99_us"])
    assert (tmp_path / "fleet" / "report.html").read_text().count('<svg class="hist"') == 3


def local_and_down_inventory(tmp_path):
    """localhost, a host nothing listens for (unreachable) and one whose Python is missing (its task fails)."""
    path = tmp_path / "down-inventory.ini"
    python = os.path.join(VENV_BIN, "python")
    path.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n"
                    # Port 9 (discard) on loopback: nothing listens, ssh is refused at once.
                    "down ansible_connection=ssh ansible_host=127.0.0.1 ansible_port=9 ansible_user=root "
                    "ansible_python_interpreter=/usr/bin/python3\n"
                    "broken ansible_connection=local ansible_python_interpreter=/nonexistent/python3\n" % python)
    return str(path)


# Sync (a fork per host) and async (fewer forks): the failure is registered by the start or by the status check.
@pytest.mark.parametrize("forks", [5, 1], ids=["sync", "async"])
def test_unreachable_and_failed_hosts_are_in_every_output_and_fail_the_gate(run_playbook, run_token, tmp_path, forks):
    out, prom = tmp_path / "gate", tmp_path / "prom"
    result = run_playbook(GATE, inventory=local_and_down_inventory(tmp_path), env={"ANSIBLE_FORKS": str(forks)},
                          extra_vars=audit_vars(run_token, out, gate_p99_wakeup_us=10 ** 9, gate_max_d_state_ms=10 ** 9,
                                                gate_max_lost_events=10 ** 9, report_prometheus_dir=str(prom)))
    # A gate with a down node fails; the down nodes never stopped localhost's audit.
    assert result.rc != 0, result.stdout[-3000:]
    assert result.stats["down"]["unreachable"] == 1 and result.stats["broken"]["failures"] == 1
    report = json.loads((out / "report.json").read_text())
    assert sorted(report["hosts"]) == ["broken", "down", "localhost"]
    assert report["passed"] is False and report["failed"] == []
    assert {d["host"]: d["status"] for d in report["down"]} == {"down": "unreachable", "broken": "failed"}
    # ssh's own words (2.19: "Connection refused"; 2.15 with pipelining: "Data could not be sent ... Broken pipe").
    assert any(words in report["hosts"]["down"]["failure"]["msg"] for words in ("Connection refused", "could not be sent"))
    assert "interpreter" in report["hosts"]["broken"]["failure"]["msg"]   # ansible-core words it per version
    assert report["hosts"]["localhost"]["sched_latency"]["latency"]["all"]["count"] > 0
    assert report["hosts"]["localhost"]["summary"]["status"] == "ok"

    cases = junit_cases(str(out / "junit.xml"))
    for host, status in (("down", "unreachable"), ("broken", "failed")):
        assert cases[(host, "result")].find("error").get("type") == status
    assert cases[("localhost", "p99_wakeup_latency_us")].find("failure") is None
    suite = ET.parse(str(out / "junit.xml")).getroot().find("testsuite")
    assert suite.get("errors") == "2"

    page = (out / "report.html").read_text()
    assert "<b>3 hosts, 2 gave no result (broken failed, down unreachable)</b>" in page
    assert "No result from down: unreachable" in page and "No result from broken: failed" in page
    assert "No result from down: unreachable" in (out / "report.md").read_text()

    texts = promtool_clean(prom)
    from prometheus_client.parser import text_string_to_metric_families
    up = {}
    for text in texts.values():
        for family in text_string_to_metric_families(text):
            if family.name == "fleettrace_up":
                up.update({s.labels["host"]: s.value for s in family.samples})
    assert up == {"localhost": 1, "down": 0, "broken": 0}

    summary = result.task(SUMMARY_TASK)["msg"]
    assert "all 0 checks passed" not in "\n".join(summary)
    assert [line.split()[:2] for line in summary if line.startswith(("down ", "broken "))] == [
        ["broken", "failed"], ["down", "unreachable"]]
    failure = result.task(GATE_FAIL_TASK)
    assert failure.get("failed") and failure["msg"].startswith("2 of 3 host(s) gave no result:")
    assert "down: unreachable" in failure["msg"] and "broken: failed" in failure["msg"]


def test_audit_with_a_down_host_still_reports_every_host(run_playbook, run_token, tmp_path):
    out = tmp_path / "audit"
    # A result of an earlier run must not stand in for this run's failure.
    (out / "hosts" / "down").mkdir(parents=True)
    (out / "hosts" / "down" / "sched_latency.json").write_text('{"kind": "sched_latency"}')
    result = run_playbook(AUDIT, inventory=local_and_down_inventory(tmp_path), extra_vars=audit_vars(run_token, out))
    assert result.rc != 0   # the recap has an unreachable and a failed host
    assert not (out / "hosts" / "down" / "sched_latency.json").exists()
    report = json.loads((out / "report.json").read_text())
    assert sorted(report["hosts"]) == ["broken", "down", "localhost"] and report["passed"] is False
    msg = result.task(SUMMARY_TASK)["msg"]
    assert msg[-2].startswith("2 of 3 host(s) gave no result:"), msg


def two_local_hosts(tmp_path):
    path = tmp_path / "two-local.ini"
    python = os.path.join(VENV_BIN, "python")
    path.write_text("".join("%s ansible_connection=local ansible_python_interpreter=%s\n" % (h, python)
                            for h in ("localhost", "local2")))
    return str(path)


# -f on the command line as users type it: one fork for two hosts starts the window async on both.
@pytest.mark.parametrize("forks, polled", [("1", True), ("2", False)])
def test_forks_from_the_command_line_pick_async_or_sync(run_playbook, run_token, tmp_path, forks, polled):
    result = run_playbook(AUDIT, inventory=two_local_hosts(tmp_path), args=["-f", forks],
                          extra_vars=audit_vars(run_token, tmp_path / "f"))
    assert result.rc == 0, result.stdout[-3000:]
    for host in ("localhost", "local2"):
        assert result.task(WAIT_TASK, host).get("skipped", False) is not polled
    report = json.loads((tmp_path / "f" / "report.json").read_text())
    assert sorted(report["hosts"]) == ["local2", "localhost"] and report["down"] == []


@pytest.mark.parametrize("playbook", [AUDIT, GATE], ids=["audit", "gate"])
def test_check_and_diff_mode_trace_and_write_nothing(run_playbook, run_token, tmp_path, playbook):
    result = run_playbook(playbook, check=True, diff=True, extra_vars=audit_vars(run_token, tmp_path / "cd"))
    assert result.rc == 0, result.stdout[-3000:]
    plan = result.task("fleettrace.tracefs.sched_audit : Trace the window on every host at once, seconds 2")
    assert "check mode: nothing traced" in plan["msg"] and not plan["changed"]
    said = result.task("fleettrace.tracefs.report : Say that check mode writes no report")["msg"]
    assert said.startswith("Check mode: the audit traced nothing, so no report is written")
    assert not (tmp_path / "cd").exists()


def test_gate_in_diff_mode_gates_as_without(run_playbook, run_token, tmp_path):
    result = run_playbook(GATE, diff=True, extra_vars=audit_vars(run_token, tmp_path / "d", gate_p99_wakeup_us=0.001))
    assert result.rc != 0
    assert "p99_wakeup_latency_us" in result.task(GATE_FAIL_TASK)["msg"]
    assert json.loads((tmp_path / "d" / "report.json").read_text())["passed"] is False
