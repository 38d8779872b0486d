"""Hostile inputs, one table per module: each is refused with a message that says what, and nothing is written.

One playbook per module runs the whole table (every task ignore_errors), so
the suite stays quick; the fingerprint of this test's names is compared before
and after (other agents' objects on this kernel are not looked at).
"""

import json
import os
import re
import signal
import subprocess
import time

import pytest

from tests.helpers.paths import REPO, ansible_env
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import debuginfo as dwarf_debuginfo
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import resolver as dwarf_resolver

from tests.helpers import resolver_programs as programs  # noqa: E402

# Run alone, after the parallel part (scripts/test.sh): huge filters, pid lists and FIFOs keep the kernel's tracing locks busy, and its
# plays are killed mid-module; other tests' plays would wait on those locks past their deadlines.
pytestmark = pytest.mark.serial

TRACEFS = "/sys/kernel/tracing"
SIX_GB_KB = 6 * 1024 * 1024


def ours(token):
    instances = sorted(n for n in os.listdir(os.path.join(TRACEFS, "instances")) if token in n)
    with open(os.path.join(TRACEFS, "uprobe_events")) as handle:
        probes = sorted(line for line in handle.read().splitlines() if token in line)
    runs = sorted(n for n in os.listdir("/run/fleettrace/runs") if token in n) if os.path.isdir("/run/fleettrace/runs") else []
    return instances, probes, runs


def run_table(run_playbook, module, cases):
    tasks = [{"name": name, module: args, "ignore_errors": True} for name, (args, _expected) in cases.items()]
    result = run_playbook(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]) + "\n")
    return {name: result.task(name) for name in cases}


def check_refused(results, cases):
    for name, (_args, expected) in cases.items():
        task = results[name]
        assert task.get("failed"), (name, task)
        assert task.get("changed") in (False, None), (name, task)
        assert re.search(expected, task["msg"]), (name, expected, task["msg"])
        assert "Unknown error" not in task["msg"] and "Traceback" not in task["msg"], (name, task["msg"])


@pytest.fixture
def special_files(tmp_path):
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    big = str(tmp_path / "big")
    with open(big, "wb") as handle:
        handle.truncate(64 << 20)
    return {"fifo": fifo, "big": big}


def test_instance_and_event(run_playbook, run_token):
    name = "fleettrace_%s_hostile" % run_token
    cases = {
        "6 GB per CPU": ({"name": name, "buffer_size_kb": SIX_GB_KB}, r"MemAvailable \(\d+ MiB\): at most \d+ KiB"),
        "2**63 KiB": ({"name": name, "buffer_size_kb": 2 ** 63}, r"at most \d+ KiB per CPU"),
        "negative size": ({"name": name, "buffer_size_kb": -1}, "positive"),
        "pid 0": ({"name": name, "event_pids": [0]}, "between 1 and"),
        "pid -1": ({"name": name, "event_pids": [-1]}, "between 1 and"),
        "65-char name": ({"name": "f" * 65}, "65 characters long"),
        "path in name": ({"name": "../../x"}, "contains '/'"),
    }
    check_refused(run_table(run_playbook, "fleettrace.tracefs.instance", cases), cases)
    events = {
        "64-char group": ({"instance": name, "event": "g" * 64 + ":e", "enabled": True}, "at most 63 .*MAX_EVENT_NAME_LEN"),
        "64-char event": ({"instance": name, "event": "sched:" + "e" * 64, "enabled": True}, "at most 63"),
        "newline filter": ({"instance": name, "event": "sched:sched_switch", "filter": "prev_pid > 0\nnext_pid > 0"},
                           "newline"),
    }
    check_refused(run_table(run_playbook, "fleettrace.tracefs.event", events), events)
    assert ours(run_token) == ([], [], [])


def test_uprobe_definitions(run_playbook, run_token, cc, tmp_path):
    binary = programs.build(cc, str(tmp_path), "demo_O0")
    group = "fleettrace_%s_hostile" % run_token
    entry = dwarf_resolver.resolve(binary, "compute", group=group, event="entry")["definitions"][0]
    offset = int(re.search(r":(0x[0-9a-f]+)", entry).group(1), 16)
    inside = entry.replace(":0x%x" % offset, ":0x%x" % (offset + 1))
    build_id = dwarf_debuginfo.read_build_id(binary)
    foreign = entry.replace("p:%s/" % group, "p:probe_demo/")
    cases = {
        "inside an instruction": ({"definition": [inside], "build_id": build_id, "group": group},
                                  "not where .* says an instruction starts.*force: true"),
        "another group": ({"definition": [foreign], "build_id": build_id, "group": group}, "own group"),
        "stale build": ({"definition": [entry], "build_id": "ab" * 20, "group": group}, "different build"),
        "not hex build-id": ({"definition": [entry], "build_id": "xyz", "group": group}, "hex GNU build-id"),
        "outside the binary": ({"definition": [entry.replace(":0x%x" % offset, ":0x7fffffff")], "build_id": build_id,
                                "group": group}, "no loadable segment"),
        "64-char group": ({"definition": [entry], "build_id": build_id, "group": "g" * 64}, "at most 63"),
        "FIFO as binary": ({"definition": [entry.replace(binary, str(tmp_path / "fifo"))], "build_id": build_id},
                           "not a regular file"),
    }
    os.mkfifo(str(tmp_path / "fifo"))
    check_refused(run_table(run_playbook, "fleettrace.tracefs.uprobe", cases), cases)
    assert ours(run_token) == ([], [], [])


def test_capture_and_sched_latency_numbers(run_playbook, run_token):
    name = "fleettrace_%s_hostile" % run_token
    cases = {"timeout %s" % v: ({"instance": name, "timeout": v}, "out of range")
             for v in ("nan", "inf", "1e308")}
    cases.update({
        "pid 0": ({"instance": name, "pid": 0}, "between 1 and"),
        "pid -1": ({"instance": name, "pid": -1}, "positive|between 1 and"),
    })
    check_refused(run_table(run_playbook, "fleettrace.tracefs.capture", cases), cases)
    sched = {
        "duration nan": ({"duration": "nan", "instance_label": run_token}, "out of range"),
        "duration inf": ({"duration": "inf", "instance_label": run_token}, "out of range"),
        "6 GB per CPU": ({"duration": 1, "buffer_size_kb": SIX_GB_KB, "instance_label": run_token}, "MemAvailable"),
    }
    check_refused(run_table(run_playbook, "fleettrace.tracefs.sched_latency", sched), sched)
    assert ours(run_token) == ([], [], [])


def test_run_and_cleanup(run_playbook, run_token):
    tag = "fleettrace_%s_hostile" % run_token
    cases = {
        "deadline nan": ({"tag": tag, "deadline": "nan"}, "out of range"),
        "deadline inf": ({"tag": tag, "deadline": "inf"}, "out of range"),
        "deadline 1e308": ({"tag": tag, "deadline": 1e308}, "out of range"),
        "negative lease": ({"tag": tag, "lease": -1}, "out of range"),
        "path as tag": ({"tag": "../../etc/x"}, "contains '/'"),
        "finish without nonce": ({"tag": tag, "state": "finished"}, "nonce"),
    }
    check_refused(run_table(run_playbook, "fleettrace.tracefs.run", cases), cases)
    cleanup = {
        "other prefix": ({"prefix": "other", "name_contains": run_token}, "does not start with 'fleettrace'"),
        "empty name_contains": ({"name_contains": ""}, "name_contains is empty"),
        "unknown run": ({"force": [tag]}, "force names no run"),
    }
    check_refused(run_table(run_playbook, "fleettrace.tracefs.cleanup", cleanup), cleanup)
    assert ours(run_token) == ([], [], [])


def test_proc_info_pidfiles(run_playbook, special_files):
    cases = {
        "/dev/zero": ({"pidfile": "/dev/zero"}, "character device"),
        "FIFO": ({"pidfile": special_files["fifo"]}, "FIFO"),
        "/proc/kmsg": ({"pidfile": "/proc/kmsg"}, "kernel file|regular file"),
        "64 MiB file": ({"pidfile": special_files["big"]}, "at most 4096 are read"),
    }
    check_refused(run_table(run_playbook, "fleettrace.tracefs.proc_info", cases), cases)


def test_latency_report_result_paths(run_playbook, special_files, tmp_path):
    cases = {
        "/dev/zero": ({"result_paths": ["/dev/zero"], "dest": str(tmp_path / "r1")}, "character device"),
        "FIFO": ({"result_paths": [special_files["fifo"]], "dest": str(tmp_path / "r2")}, "FIFO"),
    }
    check_refused(run_table(run_playbook, "fleettrace.tracefs.latency_report", cases), cases)


def test_fifos_never_hang(run_playbook, run_token, cc, tmp_path, special_files):
    """A FIFO wherever a module takes a path: refused at once (each task also has a timeout, so a
    regression fails here instead of hanging the suite; it hung for half an hour before)."""
    binary = programs.build(cc, str(tmp_path), "demo_O0")
    fifo = special_files["fifo"]
    name = "fleettrace_%s_hostile" % run_token
    tables = {
        "fleettrace.tracefs.uprobe": {
            "spec on a FIFO": ({"binary": fifo, "spec": "compute", "group": name}, "is a FIFO; give the path of a regular"),
            "FIFO as debuginfo": ({"binary": binary, "spec": "compute", "group": name, "debuginfo": fifo, "cache": False},
                                  "not a regular file"),
        },
        "fleettrace.tracefs.probe_info": {
            "FIFO as binary": ({"binary": fifo, "function": "compute"}, "is a FIFO; give the path of a regular"),
            "FIFO as binary, spec": ({"binary": fifo, "spec": "compute:1"}, "is a FIFO"),
            "FIFO as debuginfo": ({"binary": binary, "function": "compute", "debuginfo": fifo}, "not a regular file"),
        },
        "fleettrace.tracefs.capture": {
            "FIFO as json_path": ({"instance": name, "json_path": fifo}, "json_path .* is a FIFO"),
            "FIFO as raw_path": ({"instance": name, "raw_path": fifo}, "raw_path .* is a FIFO"),
        },
    }
    for module, cases in tables.items():
        tasks = [{"name": case, module: args, "ignore_errors": True, "timeout": 60}
                 for case, (args, _expected) in cases.items()]
        result = run_playbook(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]) + "\n")
        check_refused({case: result.task(case) for case in cases}, cases)
    assert ours(run_token) == ([], [], [])


def test_huge_inputs_refused_with_short_messages(run_playbook, run_token, tmp_path):
    """A million pids, a 10 MB filter, 10^5 triggers...: refused before any work, with a message that says
    what was too big and by how much, never the input (a million pids came back as a 7.9 MB message)."""
    name = "fleettrace_%s_hostile" % run_token
    huge = {"pids": list(range(1, 1000001)), "filter": "prev_pid > 0 && " * (10 << 16),
            "triggers": ["stacktrace if prev_pid == %d" % i for i in range(100000)],
            "definitions": ["p:%s/e%d /bin/true:0x%x" % (name, i, i) for i in range(10000)],
            "regex": "a" * (1 << 20), "over_pids": list(range(1, 8194)), "over_filter": "prev_pid > 0" + " " * 4084,
            "over_triggers": ["stacktrace if prev_pid == %d" % i for i in range(65)]}
    vars_file = tmp_path / "huge.json"
    vars_file.write_text(json.dumps(huge))
    cases = {
        "1e6 event pids": ("instance", {"name": name, "event_pids": "{{ pids }}"},
                           r"^event_pids has 1000000 items; at most 8192 are accepted"),
        "8193 event pids": ("instance", {"name": name, "event_pids": "{{ over_pids }}"},
                            r"^event_pids has 8193 items; at most 8192"),
        "10 MB filter": ("event", {"instance": name, "event": "sched:sched_switch", "filter": "{{ filter }}"},
                         r"^filter is 10485760 characters long; at most 4095 are accepted \(the kernel refuses"),
        "4096-character filter": ("event", {"instance": name, "event": "sched:sched_switch",
                                            "filter": "{{ over_filter }}"}, r"^filter is 4096 characters long"),
        "1e5 triggers": ("event", {"instance": name, "event": "sched:sched_switch", "triggers": "{{ triggers }}"},
                         r"^triggers has 100000 items; at most 64"),
        "65 triggers": ("event", {"instance": name, "event": "sched:sched_switch",
                                  "triggers": "{{ over_triggers }}"}, r"^triggers has 65 items"),
        "1e4 definitions": ("uprobe", {"definition": "{{ definitions }}", "build_id": "ab" * 20, "group": name},
                            r"^definition has 10000 items; at most 256"),
        "1e6 watched pids": ("sched_latency", {"duration": 1, "watch_pids": "{{ pids }}", "instance_label": run_token},
                             r"^watch_pids has 1000000 items"),
        "1 MB regex": ("proc_info", {"cmdline_regex": "{{ regex }}"}, r"^cmdline_regex is 1048576 characters long"),
        "1e6 stop events": ("capture", {"instance": name, "stop": {"events": "{{ pids }}", "field": "gap",
                                                                   "threshold": 1}},
                            r"^stop\.events has 1000000 items"),
    }
    tasks = [{"name": case, "fleettrace.tracefs." + module: args, "ignore_errors": True}
             for case, (module, args, _expected) in cases.items()]
    result = run_playbook(json.dumps([{"hosts": "localhost", "gather_facts": False, "vars_files": [str(vars_file)],
                                       "tasks": tasks}]) + "\n")
    for case, (_module, _args, expected) in cases.items():
        task = result.task(case)
        assert task.get("failed") and task.get("changed") in (False, None), (case, str(task)[:500])
        assert re.search(expected, task["msg"]), (case, expected, task["msg"][:500])
        assert task["msg"].endswith("Nothing was changed.") and len(task["msg"]) < 300, (case, task["msg"][:500])
        # The arguments echoed back are cut down too: no megabytes back to the controller.
        assert len(json.dumps(task.get("invocation", {}))) < 100000, case
    assert ours(run_token) == ([], [], [])


def _processes_mentioning(text):
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if text in cmdline:
            found.append("%s: %s" % (entry, cmdline[:200]))
    return found


def test_no_module_outlives_a_killed_play(tmp_path, special_files):
    """kill -9 of ansible-playbook while its modules run on a FIFO and a million pids: every worker and
    module of that play ends by itself (the FIFO ones stayed stuck 28 minutes before)."""
    marker = str(tmp_path / "remote")
    vars_file = tmp_path / "huge.json"
    vars_file.write_text(json.dumps({"pids": list(range(1, 1000001))}))
    fifo = special_files["fifo"]
    play = tmp_path / "play.yml"
    play.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "vars_files": [str(vars_file)], "tasks": [
        {"fleettrace.tracefs.probe_info": {"binary": fifo, "function": "main"}, "ignore_errors": True},
        {"fleettrace.tracefs.uprobe": {"binary": fifo, "spec": "main"}, "ignore_errors": True},
        {"fleettrace.tracefs.instance": {"name": "fleettrace_never_made", "event_pids": "{{ pids }}"},
         "ignore_errors": True},
        {"fleettrace.tracefs.probe_info": {"binary": fifo, "function": "main", "debuginfo": fifo},
         "ignore_errors": True},
    ]}]))
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n"
                         % os.path.join(REPO, ".venv", "bin", "python"))
    playbook = subprocess.Popen([os.path.join(REPO, ".venv", "bin", "ansible-playbook"), "-i", str(inventory), str(play)],
                                cwd=REPO, env=ansible_env({"ANSIBLE_REMOTE_TMP": marker}),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while playbook.poll() is None and not _processes_mentioning(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        playbook.kill()
        playbook.wait()
    deadline = time.monotonic() + 120  # a generous bound on the machine everyone shares, not a speed claim
    left = _processes_mentioning(str(tmp_path))
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = _processes_mentioning(str(tmp_path))
    for line in left:  # never leave them to the next test
        os.kill(int(line.split(":")[0]), signal.SIGKILL)
    assert not left, "still running 120 s after the play was killed:\n%s" % "\n".join(left)
