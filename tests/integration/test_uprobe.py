"""fleettrace.tracefs.uprobe through Ansible on the real tracefs."""

import json
import os
import re
import subprocess

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import debuginfo as dwarf_debuginfo
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import resolver as dwarf_resolver

from tests.helpers import resolver_programs as programs  # noqa: E402
from tests.helpers.owned import OwnedRun  # noqa: E402

REPORT = programs.marker_line("report") - programs.decl_line("compute")
SCALE_RESULT = programs.marker_line("scale_result") - programs.decl_line("scale")


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("uprobe_module"))


def our_lines(tracefs, group):
    return [u.line() for u in tracefs.list_uprobes() if u.group == group]


def test_check_mode_present_idempotent_runtime_absent(run_playbook, tracefs, unique_name, cc, build_dir, tmp_path):
    binary = programs.build(cc, build_dir, "demo_O2")
    group = unique_name("grp")
    cache = tmp_path / "cache"
    spec = "compute:%d total k o->in->z[2] gcount" % REPORT
    args = {"binary": binary, "spec": spec, "group": group}
    play = """
    - hosts: localhost
      gather_facts: false
      tasks:
        - name: check
          fleettrace.tracefs.uprobe: %(args)s
          check_mode: true
          diff: true
          register: checked
        - name: look after check
          ansible.builtin.command: cat /sys/kernel/tracing/uprobe_events
          changed_when: false
        - name: present
          fleettrace.tracefs.uprobe: %(args)s
        - name: again
          fleettrace.tracefs.uprobe: %(args)s
        - name: check again
          fleettrace.tracefs.uprobe: %(args)s
          check_mode: true
        - name: allow unavailable
          fleettrace.tracefs.uprobe:
            binary: %(binary)s
            spec: "scale:%(scale)d result doubled"
            group: %(group)s
            allow_unavailable: true
          check_mode: true
        - name: from definition
          fleettrace.tracefs.uprobe:
            definition: "{{ checked.definitions }}"
            build_id: "{{ checked.build_id }}"
    """ % {"args": repr(args), "binary": binary, "group": group, "scale": SCALE_RESULT}
    env = {"FLEETTRACE_RESOLVER_CACHE": str(cache)}
    inst = tracefs.instance(unique_name("inst"))
    run = OwnedRun(tracefs, instances=[inst.name])
    try:
        result = run_playbook(play, env=env)
        check = result.task("check")
        assert not check.get("failed"), check
        assert check["changed"] is True
        expected = "p:%s/compute_L%d %s:0x" % (group, REPORT, binary)
        assert check["definitions"][0].startswith(expected)
        assert check["events"] == ["compute_L%d" % REPORT]
        assert check["build_id"] == dwarf_debuginfo.read_build_id(binary)
        assert check["diff"]["before"] == "" and check["definitions"][0] in check["diff"]["after"]
        assert [v["name"] for v in check["variables"]] == ["total", "k", "z", "gcount"]
        assert group not in result.task("look after check")["stdout"]       # check mode wrote nothing
        present, again = result.task("present"), result.task("again")
        assert present["changed"] is True and present["definitions"] == check["definitions"]
        assert again["changed"] is False and result.task("check again")["changed"] is False
        partial = result.task("allow unavailable")
        assert not partial.get("failed"), partial
        assert " doubled=" in partial["definitions"][0] and " result=" not in partial["definitions"][0]
        notes = {v["name"]: v for v in partial["variables"]}
        assert notes["result"]["available"] is False and "optimized out" in notes["result"]["reason"]
        # The resolve-on-the-controller path: the same lines given as definitions change nothing.
        from_definition = result.task("from definition")
        assert not from_definition.get("failed"), from_definition
        assert from_definition["changed"] is False and from_definition["events"] == present["events"]
        # Check mode filled the result cache (a cache of the DWARF, not a tracefs write): the real run is
        # answered from it.
        assert check["cached"] is False and present["cached"] is True and again["cached"] is True
        assert any(f.endswith(".bin") for _d, _s, files in os.walk(str(cache)) for f in files)
        installed = our_lines(tracefs, group)
        assert len(installed) == 1 and "total=" in installed[0]

        # Runtime truth through the installed probe.
        inst.create()
        event = inst.event(group, present["events"][0])
        event.set_enabled(True)
        out = subprocess.run([binary, "2"], stdout=subprocess.PIPE, text=True, check=True).stdout
        trace = inst.read("trace")
        truth = re.findall(r"compute k=(\d+) total=(\d+) .* z2=(\d+) .* gcount=(\d+)", out)
        traced = re.findall(r"total=(\d+) k=(\d+) z=(\d+) gcount=(\d+)", trace)
        assert truth and sorted((k, t, z, g) for t, k, z, g in traced) == sorted(truth)
        # Left enabled on purpose: absent must disable it in every instance before removing it.
    finally:
        absent = run_playbook("""
        - hosts: localhost
          gather_facts: false
          tasks:
            - name: absent
              fleettrace.tracefs.uprobe: %(args)s
            - name: absent again
              fleettrace.tracefs.uprobe: %(args)s
        """ % {"args": repr(dict(args, state="absent"))}, env=env)
        inst.remove()
        run.end()
    assert absent.task("absent")["changed"] is True
    assert absent.task("absent again")["changed"] is False
    assert our_lines(tracefs, group) == []


def test_refusals_change_nothing(run_playbook, tracefs, unique_name, cc, build_dir):
    o0 = programs.build(cc, build_dir, "demo_O0")
    o2 = programs.build(cc, build_dir, "demo_O2")
    group = unique_name("grp")
    resolved = dwarf_resolver.resolve(o0, "compute")["definitions"][0]
    good = re.sub(r"^p:\S+/\S+", "p:%s/good" % group, resolved)
    cases = {
        "missing binary": {"binary": "/nonexistent/prog", "spec": "main"},
        "unknown function": {"binary": o2, "spec": "no_such_function"},
        "shared line": {"binary": o2, "spec": "scale:%d" % (SCALE_RESULT - 1)},
        "optimized out": {"binary": o2, "spec": "scale:%d result" % SCALE_RESULT},
        "no member": {"binary": o2, "spec": "compute:%d o->nosuch" % REPORT},
        "inside an instruction": {"binary": o0, "spec": "compute+1"},
        "wrong build": {"definition": [good], "build_id": "00" * 20},
        "kernel refuses second line": {"definition": [good, good.replace("/good ", "/bad ") + " x=%nosuchreg"]},
        "bad group": {"binary": o2, "spec": "compute", "group": "a/b"},
        # A role's empty defaults count as not given: nothing is left to probe.
        "nothing to probe": {"binary": o2, "spec": "", "definition": ["", ""], "picked": {"skipped": True}},
        "spec without binary": {"spec": "compute"},
    }
    tasks = []
    for name, args in cases.items():
        args = dict(args)
        if "group" not in args and "definition" not in args:
            args["group"] = group
        tasks.append({"name": name, "fleettrace.tracefs.uprobe": args, "ignore_errors": True})
        play = json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]) + "\n"
    try:
        result = run_playbook(play)
        messages = {name: result.task(name) for name in cases}
    finally:
        for line in our_lines(tracefs, group):
            tracefs.remove_uprobe(group, line.split()[0].split("/")[1])
    for name, task in messages.items():
        assert task.get("failed"), (name, task)
        assert task["changed"] is False, (name, task)
    msg = {name: task["msg"] for name, task in messages.items()}
    assert "does not exist" in msg["missing binary"]
    assert "no_such_function not found" in msg["unknown function"]
    assert "Please try to probe at scale:0 instead" in msg["shared line"]
    assert "optimized out" in msg["optimized out"] and "available at line" in msg["optimized out"]
    assert "has no member 'nosuch'" in msg["no member"] and "members: a, in" in msg["no member"]
    assert "force: true" in msg["inside an instruction"]
    assert "different build" in msg["wrong build"]
    assert "nosuchreg" in msg["kernel refuses second line"] or "error_log" in msg["kernel refuses second line"]
    assert "already added were removed" in msg["kernel refuses second line"]
    assert "a/b" in msg["bad group"]
    assert "nothing to probe: give spec (with binary) or definition lines" in msg["nothing to probe"]
    assert "spec 'compute' needs binary" in msg["spec without binary"]
    assert our_lines(tracefs, group) == []


def test_a_definition_wins_over_the_spec_and_empty_ones_are_not_given(run_playbook, tracefs, unique_name, cc,
                                                                      build_dir):
    """What a role passes (every option, its empty defaults included) decides in the module, in check mode."""
    o0 = programs.build(cc, build_dir, "demo_O0")
    group = unique_name("grp")
    resolved = dwarf_resolver.resolve(o0, "compute", group="fleettrace_resolved")["definitions"][0]
    cases = {
        # The spec would fail (no such function): the definition wins, renamed into the run's group and event.
        "definition wins": {"binary": o0, "spec": "no_such_function", "definition": ["", resolved],
                            "group": group, "event": "tick", "rename": True},
        "one line as a string": {"binary": o0, "definition": resolved, "group": group, "rename": True},
        "empty definition": {"binary": o0, "spec": "compute", "definition": "", "group": group, "rename": True},
        "picked spec": {"binary": o0, "spec": "", "definition": [], "group": group,
                        "picked": {"changed": False, "spec": "compute", "lines": []}},
        "given spec over picked": {"binary": o0, "spec": "compute", "group": group,
                                   "picked": {"spec": "no_such_function"}},
    }
    tasks = [{"name": name, "fleettrace.tracefs.uprobe": args, "check_mode": True, "ignore_errors": True}
             for name, args in cases.items()]
    result = run_playbook(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]) + "\n")
    answers = {name: result.task(name) for name in cases}
    for name, task in answers.items():
        assert not task.get("failed"), (name, task)
    address = resolved.split()[1]
    assert answers["definition wins"]["definitions"] == ["p:%s/tick %s" % (group, address)]
    assert answers["one line as a string"]["definitions"] == ["p:%s/compute %s" % (group, address)]
    for name in ("empty definition", "picked spec", "given spec over picked"):
        assert answers[name]["events"] == ["compute"] and answers[name]["addresses"], (name, answers[name])
    assert our_lines(tracefs, group) == []


def test_absent_works_when_the_binary_is_gone(run_module, tracefs, unique_name, cc, build_dir, tmp_path):
    binary = str(tmp_path / "short_lived")
    subprocess.run(["cp", programs.build(cc, build_dir, "demo_O0"), binary], check=True)
    group = unique_name("grp")
    spec = "compute:%d k" % REPORT
    line = dwarf_resolver.resolve(binary, spec, group=group)["definitions"][0]
    run = OwnedRun(tracefs, groups=[group])
    try:
        tracefs.add_uprobe(line)
        os.unlink(binary)                  # upgraded or removed: no DWARF to resolve any more
        gone = run_module("fleettrace.tracefs.uprobe", {"binary": binary, "spec": spec, "group": group,
                                                        "state": "absent"})
        assert not gone.get("failed"), gone
        assert gone["changed"] is True and gone["events"] == ["compute_L%d" % REPORT]
        assert our_lines(tracefs, group) == []
    finally:
        for left in our_lines(tracefs, group):
            tracefs.remove_uprobe(group, left.split()[0].split("/")[1])
        run.end()
