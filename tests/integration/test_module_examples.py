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


# Modules whose examples need something first (corosync: its binary with debug info, a running process,
# a finding; or a diagnose run's per-host results): they say so first, and are checked for syntax and
# options above. Every other module's examples run below.
NEEDS_FIRST = ("capture", "capture_summary", "event", "probe_for_nodes", "probe_info", "sentinel", "syscall_latency",
               "uprobe")
RUN_HERE = ("audit_window", "capture_result", "cleanup", "corosync_threshold", "instance", "latency_report",
            "proc_info", "run", "save_results", "sched_latency")
PIDFILE_TASK = "The process behind a pidfile, without threads"   # says it needs corosync's pidfile


def test_every_module_either_runs_here_or_says_what_it_needs():
    assert sorted(NEEDS_FIRST + RUN_HERE) == MODULES


@pytest.mark.parametrize("module", NEEDS_FIRST)
def test_examples_that_need_something_say_so_first(module, docs):
    assert docs[module]["examples"].lstrip().startswith("# Needs first:"), docs[module]["examples"][:200]


def test_examples_name_the_event_the_uprobe_example_creates(docs):
    """event and capture refer to the probe event that uprobe's first example makes (FUNC:N -> FUNC_LN)."""
    spec = yaml.safe_load(docs["uprobe"]["examples"])[0]["fleettrace.tracefs.uprobe"]["spec"]
    function, line = spec.split()[0].split(":")
    event = "probe_corosync/%s_L%s" % (function, line)
    named = [t["fleettrace.tracefs.event"]["event"] for t in yaml.safe_load(docs["event"]["examples"])
             if "probe_" in t["fleettrace.tracefs.event"]["event"]]
    assert named == [event]
    captures = [t["fleettrace.tracefs.capture"] for t in yaml.safe_load(docs["capture"]["examples"])
                if "fleettrace.tracefs.capture" in t]
    assert [c["findings"]["probe_event"] for c in captures if "findings" in c] == [event.replace("/", ":")]
    # The directory the capture writes into is made first.
    made = [t["ansible.builtin.file"]["path"] for t in yaml.safe_load(docs["capture"]["examples"])
            if "ansible.builtin.file" in t]
    for capture in captures:
        for key in ("raw_path", "json_path"):
            if key in capture:
                assert os.path.dirname(capture[key]) in made, capture[key]


@pytest.fixture
def fake_corosync(tmp_path):
    """A process named corosync at SCHED_RR 99 (a copy of sleep), as the examples expect to find."""
    binary = tmp_path / "corosync"
    binary.write_bytes(open("/bin/sleep", "rb").read())
    binary.chmod(0o755)
    proc = subprocess.Popen(["chrt", "-r", "99", str(binary), "600"])
    yield proc.pid
    proc.kill()
    proc.wait()


def test_runnable_examples_run_as_written(docs, run_playbook, run_token, tmp_path, fake_corosync):
    """Those that need nothing but this machine (and a report dir): sched_latency, audit_window, save_results and
    proc_info for real; cleanup, latency_report, run and instance in check mode, because as written they act on everything
    fleettrace left on the machine (other runs share this kernel), write into /var/lib/prometheus, or create
    tracefs objects under names the example chose."""
    report_dir = tmp_path / "report"
    (report_dir / "hosts").mkdir(parents=True)
    host = {"kind": "diagnose", "host": "localhost", "findings": []}
    (report_dir / "hosts" / "localhost.json").write_text(json.dumps(host))
    checked = []
    for module in ("cleanup", "latency_report", "run", "instance"):
        for task in yaml.safe_load(docs[module]["examples"]):
            task = dict(task, check_mode=True)
            if (task.get("fleettrace.tracefs.cleanup") or {}).get("force"):
                # Names a run of the example's own: here it must be refused clearly, nothing removed.
                task.update(register="forced", failed_when="'force names no run' not in (forced.msg | default(''))")
            checked.append(task)
    real = yaml.safe_load(docs["sched_latency"]["examples"]) + yaml.safe_load(docs["save_results"]["examples"])
    real += [t for t in yaml.safe_load(docs["proc_info"]["examples"]) if t["name"] != PIDFILE_TASK]
    real += yaml.safe_load(docs["corosync_threshold"]["examples"]) + yaml.safe_load(docs["capture_result"]["examples"])
    real += yaml.safe_load(docs["audit_window"]["examples"])
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": checked,
             "vars": {"report_dir": str(report_dir), "run_id": run_token, "corosync_pid": fake_corosync}},
            {"hosts": "localhost", "gather_facts": False, "tasks": real}]
    result = run_playbook(json.dumps(play) + "\n")
    assert result.rc == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert isinstance(result.task("What would be removed")["commands"], list)
    report = result.task("Write the fleet report")
    assert [c["check"] for c in report["checks"]] == ["p99_wakeup_latency_us", "no_lost_events"]
    prom = result.task("Also write one .prom file per host for node_exporter's textfile collector")
    assert "localhost" in prom["prometheus"]
    assert not os.path.exists("/var/lib/prometheus/node-exporter/fleettrace_localhost.prom")
    copies = result.task("Read what save_results wrote, and say what each host's node_exporter should get")
    assert [(c["host"], c["dest"]) for c in copies["node_exporter_copies"]] == [
        ("localhost", "/var/lib/prometheus/node-exporter/fleettrace.prom")]
    assert not os.path.exists("/var/lib/prometheus/node-exporter/fleettrace.prom")
    # One host, five forks: one synchronous call, no status check.
    window = result.task("Plan a 2 s window over the play's hosts")
    assert window["async"] is False and window["async_seconds"] == 0 and window["retries"] == 151
    assert result.task("Pick up an async window once it is over").get("skipped")
    assert "events in 2.0 s" in result.task("Trace it on every host at once, async only when the plan says so")["msg"]
    shown = result.task("Show the host p99")["msg"]
    latency = result.task("Measure run-queue latency for 30 s and follow corosync closely")["sched_latency"]
    assert shown == "p99 %s us, lost %s" % (latency["latency"]["all"]["p99_us"], latency["events"]["lost"])
    saved = json.loads((tmp_path / "fleettrace-report" / "hosts" / "localhost" / "sched_latency.json").read_text())
    assert saved["kind"] == "sched_latency" and saved["first_ns"] == latency["first_ns"]
    assert result.task("Save every host's audit result on the controller, and why a host has none")["down"] == []
    assert result.task("How corosync is scheduled and what it has open")["processes"]
    assert result.task("A private 8 MiB buffer with the global clock, recording only corosync's events")["changed"]
    assert not os.path.exists("/sys/kernel/tracing/instances/fleettrace_corosync")
    started = result.task("Name the run's objects and start the host's result")
    assert started["names"]["instance"].startswith("fleettrace_demo_localhost_")
    assert started["result"]["status"] == "target_not_running" and started["result"]["threshold"] == 2400000000
    assert result.task("The host's result when the target does not run")["result"]["message"] == \
        "no process matches name corosync"
    assert result.task("The host's result when a step failed")["result"]["message"].startswith(
        "task Install the probe failed: cannot resolve spec")
    # Without a running corosync its default token (3000 ms) is assumed, and said; a given threshold is taken as is.
    warned = result.task("The threshold corosync warns at on this node")
    assert warned["source"] == ("cmapctl" if warned["token_timeout_ms"] else "default"), warned
    assert warned["threshold_ns"] == int((warned["token_timeout_ms"] or 3000) * 0.8 * 1000000), warned
    assert result.task("A threshold of our own")["threshold_ns"] == 400000000
