"""Debug info by build-id from a real debuginfod on loopback, for a stripped binary.

The uprobe module (through Ansible) finds no DWARF in the binary nor in
/usr/lib/debug, asks elfutils' debuginfod serving a directory of
``objcopy --only-keep-debug`` files, checks the download's build-id, caches it
and resolves; the probe then traces what the program really held.  Servers
that are down, hang or serve another build give a clear error and leave
uprobe_events untouched.
"""

import json
import os
import re

import pytest

from tests.helpers import debuginfod_servers as servers
from tests.helpers.owned import OwnedRun
from tests.helpers.uprobe_truth import REPORT, assert_matches, program_records, trace_records

import subprocess

from tests.helpers import resolver_programs as programs  # noqa: E402

SPEC = "compute:%d total k o->name:string" % REPORT
FIELDS = {"k": "k", "total": "total", "name": "name"}


@pytest.fixture(scope="module")
def served(tmp_path_factory, cc):
    """(stripped binary, build-id, debug file, running real debuginfod, the other build)."""
    work = tmp_path_factory.mktemp("debuginfod")
    served_dir = work / "served"
    served_dir.mkdir()
    full = programs.build(cc, str(work), "demo_O0")
    stripped, debug = servers.split_debug(full, str(served_dir), "demo_stripped")
    other = programs.build(cc, str(work), "demo_O2")   # another build-id: the "wrong" answer
    server = servers.RealDebuginfod(str(served_dir), str(work))
    build_id = servers.build_id_of(stripped)
    try:
        server.start(build_id)
        yield stripped, build_id, debug, server, other
    finally:
        server.stop()


def uprobe_play(binary, group, urls, cache, timeout=10, check=False):
    task = {"name": "probe", "fleettrace.tracefs.uprobe": {
        "binary": binary, "spec": SPEC, "group": group, "event": "tick", "debuginfod_urls": urls,
        "debuginfod_timeout": timeout, "cache": False},
        "environment": {"DEBUGINFOD_CACHE_PATH": cache}, "ignore_errors": True}
    if check:
        task["check_mode"] = True
    return json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [task]}]) + "\n"


def our_lines(tracefs, group):
    return [u.line() for u in tracefs.list_uprobes() if u.group == group]


def test_stripped_binary_resolved_from_real_debuginfod_traces_the_truth(served, tracefs, unique_name, run_playbook,
                                                                        tmp_path):
    stripped, build_id, _debug, server, _other = served
    cache = str(tmp_path / "cache")
    group = unique_name("dbgd")
    result = run_playbook(uprobe_play(stripped, group, [servers.down_url(), server.url], cache))
    probe = result.task("probe")
    inst = tracefs.instance(unique_name("inst"))
    run = OwnedRun(tracefs, instances=[inst.name])
    try:
        assert not probe.get("failed"), probe.get("msg")
        assert probe["debuginfo_source"] == "debuginfod" and probe["debuginfod_server"] == server.url
        assert probe["build_id"] == build_id
        # The client's cache layout, a verified file with the binary's build-id.
        cached = os.path.join(cache, build_id, "debuginfo")
        assert servers.build_id_of(cached) == build_id and probe["debuginfo"] == cached
        assert len(server.requests()) >= 1
        inst.create()
        for event in probe["events"]:
            inst.event(group, event).set_enabled(True)
        proc = subprocess.run([stripped, "3", "lbl"], stdout=subprocess.PIPE, text=True, check=True,
                              timeout=60)
        traced = trace_records(inst.read("trace"))
    finally:
        if inst.exists():
            inst.remove()
        run.end()
        for event in {u.event for u in tracefs.list_uprobes() if u.group == group}:
            tracefs.remove_uprobe(group, event)
    assert_matches(traced, program_records(proc.stdout, "compute"), "k", FIELDS)

    # Again, with the server down: the cached download is used (it names its server), nobody is asked.
    asked = len(server.requests())
    again = run_playbook(uprobe_play(stripped, group, [servers.down_url()], cache, check=True)).task("probe")
    assert not again.get("failed"), again.get("msg")
    assert again["debuginfod_server"] == server.url and again["definitions"] == probe["definitions"]
    assert len(server.requests()) == asked


@pytest.mark.parametrize("kind", ["down", "slow", "wrong", "html", "error", "missing"])
def test_bad_servers_fail_clearly_and_write_nothing(kind, served, tracefs, unique_name, run_playbook, tmp_path):
    stripped, build_id, _debug, server, other = served
    cache = str(tmp_path / "cache")
    group = unique_name("bad")
    expected = {
        "down": r"cannot connect",
        "slow": r"no (complete )?answer within 2(\.0)? s",
        "wrong": r"has build-id %s, not %s" % (servers.build_id_of(other), build_id),
        "error": r"HTTP 500",
        "html": r"answered, but it is not an ELF file \(it starts with b'<html>",
        "missing": r"HTTP 404 \(the server does not have this build\)",
    }[kind]
    if kind == "down":
        result = run_playbook(uprobe_play(stripped, group, [servers.down_url()], cache, timeout=2))
    elif kind == "missing":
        # The real server, asked for a build it does not have (the O2 build, stripped here).
        stripped_other = str(tmp_path / "other_stripped")
        subprocess.run(["strip", "--strip-all", "-o", stripped_other, other], check=True)
        result = run_playbook(uprobe_play(stripped_other, group, [server.url], cache, timeout=10))
    else:
        with servers.BadServer(kind, payload=other) as bad:
            result = run_playbook(uprobe_play(stripped, group, [bad.url], cache, timeout=2))
        assert bad.hits and bad.hits[0] == "/buildid/%s/debuginfo" % build_id
    probe = result.task("probe")
    assert probe.get("failed"), probe
    assert re.search(expected, probe["msg"]), probe["msg"]
    assert "no debuginfod server gave the debug info" in probe["msg"] and "looked at" in probe["msg"]
    # Other agents share this kernel: only our group is ours to check.
    assert our_lines(tracefs, group) == []
    # Nothing kept from a bad answer: no file, no half-written temporary.
    leftovers = []
    for root, _dirs, files in os.walk(cache):
        leftovers += [os.path.join(root, name) for name in files]
    assert leftovers == []
