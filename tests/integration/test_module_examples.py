"""Every module's EXAMPLES, as ansible-doc prints them: valid tasks, documented options, a playbook
Ansible accepts; and those whose inputs exist on any machine run as written (check mode: they
write nothing, so they cannot touch other runs' tracefs objects)."""

import json
import os
import subprocess

import pytest
import yaml

from tests.helpers.paths import REPO, VENV_BIN, ansible_env

MODULES = sorted(name[:-3] for name in os.listdir(os.path.join(REPO, "plugins", "modules")) if name.endswith(".py"))
# Keywords a task may carry besides the module's options.
TASK_KEYWORDS = {"name", "register", "become", "check_mode", "delegate_to", "run_once", "async", "poll", "loop",
                 "when", "vars", "environment", "ignore_errors", "changed_when", "failed_when", "tags"}


def doc(module):
    out = subprocess.run([os.path.join(VENV_BIN, "ansible-doc"), "--json", "fleettrace.tracefs." + module],
                         capture_output=True, text=True, env=ansible_env(),
                         cwd=REPO, check=True, timeout=120).stdout
    return json.loads(out)["fleettrace.tracefs." + module]


@pytest.fixture(scope="module")
def docs():
    return {module: doc(module) for module in MODULES}


@pytest.mark.parametrize("module", MODULES)
def test_examples_use_documented_options_and_pass_syntax_check(module, docs, tmp_path):
    data = docs[module]
    tasks = yaml.safe_load(data["examples"])
    assert isinstance(tasks, list) and tasks, "EXAMPLES of %s is not a list of tasks" % module
    options = data["doc"]["options"]
    known = set(options) | {a for o in options.values() for a in o.get("aliases", [])}
    used = [t for t in tasks if "fleettrace.tracefs." + module in t]
    assert used, "no example of %s uses it by its FQCN" % module
    for task in tasks:
        assert task.get("name"), "every example task is named: %r" % task
        assert set(task) - TASK_KEYWORDS, task
        args = task.get("fleettrace.tracefs." + module)
        if args:
            assert set(args) <= known, "%s example %r uses undocumented %s" % (module, task["name"], set(args) - known)
    play = tmp_path / "examples.yml"
    play.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
    proc = subprocess.run([os.path.join(VENV_BIN, "ansible-playbook"), "--syntax-check", str(play)],
                          capture_output=True, text=True, env=ansible_env(),
                          cwd=REPO, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_runnable_examples_run_as_written(docs, run_playbook, tmp_path):
    """Those that need nothing but this machine (and a report dir): sched_latency for real; cleanup and
    latency_report in check mode, because as written they act on everything fleettrace left on the
    machine (other runs share this kernel) and write into /var/lib/prometheus."""
    report_dir = tmp_path / "report"
    (report_dir / "hosts").mkdir(parents=True)
    host = {"kind": "diagnose", "host": "localhost", "findings": []}
    (report_dir / "hosts" / "localhost.json").write_text(json.dumps(host))
    checked = []
    for module in ("cleanup", "latency_report"):
        for task in yaml.safe_load(docs[module]["examples"]):
            task = dict(task, check_mode=True)
            if (task.get("fleettrace.tracefs.cleanup") or {}).get("force"):
                # Names a run of the example's own: here it must be refused clearly, nothing removed.
                task.update(register="forced", failed_when="'force names no run' not in (forced.msg | default(''))")
            checked.append(task)
    play = [{"hosts": "localhost", "gather_facts": False, "vars": {"report_dir": str(report_dir)}, "tasks": checked},
            {"hosts": "localhost", "gather_facts": False, "tasks": yaml.safe_load(docs["sched_latency"]["examples"])}]
    result = run_playbook(json.dumps(play) + "\n")
    assert result.rc == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert isinstance(result.task("What would be removed")["commands"], list)
    report = result.task("Write the fleet report")
    assert [c["check"] for c in report["checks"]] == ["p99_wakeup_latency_us", "no_lost_events"]
    prom = result.task("Also write one .prom file per host for node_exporter's textfile collector")
    assert "localhost" in prom["prometheus"]
    assert not os.path.exists("/var/lib/prometheus/node-exporter/fleettrace_localhost.prom")
    shown = result.task("Show the host p99")["msg"]
    latency = result.task("Measure run-queue latency for 30 s and follow corosync closely")["sched_latency"]
    assert shown == "p99 %s us, lost %s" % (latency["latency"]["all"]["p99_us"], latency["events"]["lost"])
