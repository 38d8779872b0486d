"""Manifests are data from disk, not orders (issue 22, 3 and 4), on the real tracefs through the modules.

Whoever can write /run/fleettrace/runs (root, a bug, a full disk) must not make fleettrace remove
another tool's or another run's objects, stop every module on the node, or own a name twice. Each
case writes its files into a runs directory of its own (FLEETTRACE_RUNS_DIR: the modules and the
reapers of other tests on this machine never see them), then drives the modules as a play would.
"""

import json
import multiprocessing
import os
import subprocess
import time

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import lifecycle
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import owner as run_owner
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs.manifest import OwnershipError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs.store import RUNS_DIR_VARIABLE, RunStore
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import Tracefs
from tests.helpers.owned import OwnedRun
from tests.helpers.paths import REPO


@pytest.fixture(autouse=True)
def private_runs(tmp_path, monkeypatch):
    """This test's runs directory, for the test process and the modules it runs (a local connection)."""
    monkeypatch.setenv(RUNS_DIR_VARIABLE, str(tmp_path / "run" / "runs"))
    store = RunStore()
    store.ensure()
    return store


def runs_path(*parts):
    return os.path.join(RunStore().dir, *parts)


def write_manifest(tag, data):
    with open(runs_path(tag + ".json"), "wb") as handle:
        handle.write(data if isinstance(data, bytes) else json.dumps(data).encode())


def quarantined(tag):
    return [n for n in os.listdir(runs_path("quarantine")) if n.startswith(tag + ".json.")]


def expired_manifest(tag, instances, groups=()):
    dead = subprocess.Popen(["true"])
    owner = run_owner.process(dead.pid, "a killed play")
    dead.wait()
    return {"schema": "fleettrace.run/2", "tag": tag, "kind": "play", "nonce": "ab" * 16,
            "owner": dict(owner.to_dict(), start=owner.start or 1), "created": time.time() - 100, "lease": 0.0,
            "lease_until": time.time() - 90, "deadline": time.time() + 3600, "tracefs": "/sys/kernel/tracing",
            "objects": {"instances": list(instances), "groups": list(groups)}}


def test_a_malformed_manifest_stops_nothing_and_what_it_named_still_goes(tracefs, unique_name, run_module,
                                                                         run_playbook):
    """`{"schema", "tag"}` only, or cut short: every module still works (no KeyError), the file is
    quarantined and named in the next module's warning and in cleanup.yml, and the instance it named
    (the prefix and its tag) is removed."""
    tag = unique_name("cut")
    other = unique_name("bare")
    tracefs.instance(tag + "_x").create()
    try:
        write_manifest(other, {"schema": "fleettrace.run/2", "tag": other})
        write_manifest(tag, ('{"schema": "fleettrace.run/2", "tag": "%s", "objects": {"instances": ["%s_x"'
                             % (tag, tag)).encode())
        result = run_module("fleettrace.tracefs.instance", {"name": unique_name("works"), "state": "absent"})
        assert not result.get("failed"), result.get("msg")
        warnings = " ".join(result.get("warnings", []))
        assert tag in warnings and other in warnings and "quarantined" in warnings, result.get("warnings")
        assert not tracefs.instance(tag + "_x").exists(), "what the cut manifest named was left"
        assert quarantined(tag) and quarantined(other)
        assert not os.path.exists(runs_path(tag + ".json"))
        started = run_module("fleettrace.tracefs.run", {"tag": unique_name("next"), "instances": [], "deadline": 60})
        assert not started.get("failed"), started.get("msg")
        run_module("fleettrace.tracefs.run", {"tag": started["tag"], "nonce": started["nonce"], "state": "finished"})
        cleaned = run_playbook(os.path.join(REPO, "playbooks", "cleanup.yml"), extra_vars={"cleanup_hosts": "localhost"})
        report = cleaned.task("Remove fleettrace's probes, instances and triggers")
        assert any(tag in path for path in report["quarantined"]), report["quarantined"]
        assert "quarantined" in cleaned.stdout
    finally:
        if tracefs.instance(tag + "_x").exists():
            tracefs.instance(tag + "_x").remove()


def test_a_forged_manifest_removes_neither_another_tools_nor_a_live_runs_objects(
        tracefs, unique_name, run_token, run_module):
    """An expired hand-written manifest naming another tool's instance, or a live run's instance and
    group: the next module call removes none of them."""
    foreign = "other_%s_tool" % run_token
    base = unique_name("liv")
    live = base + "_run"
    run = OwnedRun(tracefs, instances=[live], groups=[live])
    forged = [unique_name("forged"), base]     # its own tag; a prefix of the live run's names
    try:
        tracefs.instance(foreign).create()
        tracefs.instance(live).create()
        write_manifest(forged[0], expired_manifest(forged[0], [foreign, live]))
        write_manifest(forged[1], expired_manifest(forged[1], [live], [live]))
        result = run_module("fleettrace.tracefs.cleanup", {})
        assert not result.get("failed"), result.get("msg")
        assert tracefs.instance(foreign).exists(), "another tool's instance was removed"
        assert tracefs.instance(live).exists(), "a live run's instance was removed"
        assert quarantined(forged[0]), "the manifest naming foreign objects was trusted"
        # Expired, and kept (harmless) while a name it lists but may not remove still exists.
        assert lifecycle.load(forged[1]) is not None
    finally:
        run.end()
        if tracefs.instance(foreign).exists():
            tracefs.instance(foreign).remove()


def _start(args):
    tag, name, ready = args
    while time.time() < ready:
        time.sleep(0.001)
    try:
        manifest = lifecycle.start(Tracefs(), tag, instances=[name], deadline=60, lease=60, spawn=False)
        return tag, manifest.nonce
    except OwnershipError as exc:
        return tag, str(exc)


def test_two_runs_never_own_one_name(tracefs, unique_name, run_module):
    """The same not-yet-existing instance in 8 simultaneous starts under different tags: exactly one
    owns it; the run module refuses the next, and the winner's end is the only one that removes it."""
    base = unique_name("race")
    name = base + "_a_b_c_d_e_f_g_h"
    tags = [base] + [base + "_a_b_c_d_e_f_g_h"[:2 * i] for i in range(1, 8)]
    ready = time.time() + 1.0
    with multiprocessing.Pool(8) as pool:
        outcomes = dict(pool.map(_start, [(tag, name, ready) for tag in tags]))
    winners = [tag for tag, what in outcomes.items() if "already" not in what and "claimed" not in what]
    try:
        assert len(winners) == 1, outcomes
        refused = run_module("fleettrace.tracefs.run", {"tag": name, "instances": [name], "deadline": 60})
        assert refused.get("failed") and "already belongs to run %s" % winners[0] in refused["msg"], refused["msg"]
        tracefs.instance(name).create()
        assert lifecycle.finish(tracefs, winners[0], outcomes[winners[0]])[1] == []
        assert not tracefs.instance(name).exists()
    finally:
        for tag in winners:
            lifecycle.finish(tracefs, tag, force=True)
        if tracefs.instance(name).exists():
            tracefs.instance(name).remove()


def test_a_huge_manifest_is_refused_and_one_on_disk_is_quarantined(tracefs, unique_name, run_module):
    """20,000 names: the run module refuses them at once; a 1.5 MiB file on disk is moved aside,
    and the instance of its own that it named is still removed."""
    tag = unique_name("huge")
    names = ["%s_%d" % (tag, i) for i in range(20000)]
    started = time.monotonic()
    refused = run_module("fleettrace.tracefs.run", {"tag": tag, "instances": names, "deadline": 60})
    assert refused.get("failed") and "20000 items" in refused["msg"], refused.get("msg")
    print("20,000 names refused in %.1f s (the play's round trip included)" % (time.monotonic() - started))
    tracefs.instance(names[0]).create()
    try:
        write_manifest(tag, json.dumps(expired_manifest(tag, names[:1] + names * 3)).encode())
        assert os.path.getsize(runs_path(tag + ".json")) > 1 << 20
        result = run_module("fleettrace.tracefs.cleanup", {})
        assert not result.get("failed"), result.get("msg")
        assert quarantined(tag)
        assert not tracefs.instance(names[0]).exists()
    finally:
        if tracefs.instance(names[0]).exists():
            tracefs.instance(names[0]).remove()
