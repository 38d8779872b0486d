"""Where each node's probe is resolved: on the node, or on the controller once per build-id."""

from ansible_collections.fleettrace.tracefs.plugins.module_utils import probe_for_nodes as pfn
from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError

PROBE = dict(function="tick", spec=None, line_match="gap = ", line=0, args=["gap=gap:u64"], group="fleettrace_resolved",
             event="tick", debuginfo=None, debuginfod_urls=None, debuginfod_timeout=None)
CAN = {"binary": "/usr/sbin/d", "build_id": "aa", "lines": [{"line": 1}], "debuginfo_source": "binary"}
CANNOT = {"binary": "/usr/sbin/d", "build_id": "bb", "lines": [], "failed": True, "msg": "no pyelftools"}
# A crashed module under failed_when: false: no 'failed', no listing.
CRASHED = {"binary": "/usr/sbin/d", "build_id": "bb", "msg": "unexpected error"}
UNREADABLE = {"binary": "/usr/sbin/d", "build_id": None, "failed": True, "msg": "No such file"}


def test_where_each_node_is_resolved():
    assert pfn.where(CAN, "auto") == "node"
    assert pfn.where(CANNOT, "auto") == pfn.where(CRASHED, "auto") == "controller"
    assert pfn.where(CAN, "controller") == "controller"
    assert pfn.where(CANNOT, "node") == "node"
    assert pfn.where(UNREADABLE, "auto") == "none"


def test_one_build_per_build_id_from_its_first_node():
    nodes = {"n1": CAN, "n2": CANNOT, "n3": dict(CANNOT, binary="/opt/d"), "n4": UNREADABLE,
             "n5": dict(CANNOT, build_id="cc")}
    builds = pfn.builds(nodes, "auto", None, "/cache")
    assert [(b["build_id"], b["host"], b["copy"], b["fetched"]) for b in builds] == [
        ("bb", "n2", "/usr/sbin/d", "/cache/bb/d"), ("cc", "n5", "/usr/sbin/d", "/cache/cc/d")]
    assert pfn.builds(nodes, "auto", "/srv/d", "/cache")[0]["copy"] == "/srv/d"
    assert [b["build_id"] for b in pfn.builds(nodes, "controller", None, "/cache")] == ["aa", "bb", "cc"]


def fake_look_up(listing=True, definitions=("p:g/tick /usr/sbin/d:0x10 gap=%ax:u64",), error=None):
    calls = []

    def look_up(result, binary, **asked):
        calls.append((binary, asked))
        if error:
            raise error
        result.update(lines=[{"line": 1}] if listing else [], debuginfo_source="debuginfod",
                      debuginfod_server="http://d")
        if asked.get("resolve"):
            result.update(definitions=list(definitions), spec="tick:3 gap=gap:u64")
        return result
    return look_up, calls


def test_the_copy_is_used_when_it_lists_the_probe_else_the_fetched_binary():
    build = pfn.builds({"n2": CANNOT}, "auto", "/srv/d", "/cache")[0]
    look_up, calls = fake_look_up()
    assert pfn.copy_lists_probe(build, PROBE, look_up) is True
    assert calls == [("/srv/d", dict(function="tick", build_id="bb", debuginfo=None, debuginfod_urls=None,
                                     debuginfod_timeout=None))]
    assert pfn.copy_lists_probe(build, PROBE, fake_look_up(error=FleettraceError("wrong build-id"))[0]) is False
    assert pfn.copy_lists_probe(build, PROBE, fake_look_up(listing=False)[0]) is False
    look_up, calls = fake_look_up()
    built = pfn.resolve_build(build, False, PROBE, look_up)
    assert calls[0][0] == "/cache/bb/d" and calls[0][1]["line_match"] == "gap = " and calls[0][1]["resolve"]
    assert built == dict(definitions=["p:g/tick /usr/sbin/d:0x10 gap=%ax:u64"], file="/cache/bb/d",
                         spec="tick:3 gap=gap:u64", binary_from="fetched_from_node", source="debuginfod",
                         server="http://d", message="")


def test_each_node_gets_its_record_and_a_build_that_failed_fails_only_its_nodes():
    nodes = {"n1": CAN, "n2": CANNOT, "n3": dict(CANNOT, build_id="cc"), "n4": UNREADABLE}
    builds = pfn.builds(nodes, "auto", None, "/cache")
    by_build = {"bb": pfn.resolve_build(builds[0], True, PROBE, fake_look_up()[0]),
                "cc": pfn.resolve_build(builds[1], True, PROBE, fake_look_up(error=FleettraceError("no DWARF"))[0])}
    resolved, unresolved = pfn.per_node(nodes, "auto", by_build)
    assert resolved["n1"] == dict(definitions=[], build_id="aa", spec="", debuginfo=dict(
        resolved_on="node", binary_from="node", source="binary", server=None))
    assert resolved["n2"]["definitions"] and resolved["n2"]["debuginfo"] == dict(
        resolved_on="controller", binary_from="controller_copy", source="debuginfod", server="http://d")
    assert resolved["n4"]["debuginfo"]["resolved_on"] == "none" and resolved["n4"]["build_id"] == ""
    assert list(unresolved) == ["n3"]
    assert unresolved["n3"] == ("cannot resolve the probe for /usr/sbin/d (build-id cc) on n3: no pyelftools; "
                                "nor on the controller: no DWARF")


def test_ready_definitions_are_used_as_given_else_the_probe_is_resolved_here(monkeypatch):
    from ansible_collections.fleettrace.tracefs.plugins.module_utils import probe_lookup
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import OptionError
    assert probe_lookup.ready_or_resolved(["", "p:g/e /bin/d:0x10"], "", "/bin/d") == (["p:g/e /bin/d:0x10"], None)
    assert probe_lookup.ready_or_resolved(["p:g/e /bin/d:0x10"], "AB", "/bin/d") == (["p:g/e /bin/d:0x10"], "AB")
    asked = []

    def look_up(result, binary, **options):
        asked.append((binary, options))
        result.update(definitions=["p:g/tick /bin/d:0x20"], build_id="cd")
        return result
    monkeypatch.setattr(probe_lookup, "look_up", look_up)
    assert probe_lookup.ready_or_resolved([""], "", "/bin/d", function="tick", line_match="gap = ", args=["gap=gap:u64"],
                                          event="tick", debuginfod_urls=[]) == (["p:g/tick /bin/d:0x20"], "cd")
    assert asked == [("/bin/d", dict(resolve=True, group="fleettrace_resolved", event="tick", debuginfo=None,
                                     debuginfod_urls=None, debuginfod_timeout=None, function="tick",
                                     line_match="gap = ", line=0, args=["gap=gap:u64"]))]
    try:
        probe_lookup.ready_or_resolved([], None, "/bin/d")
    except OptionError as exc:
        assert "probe_spec or probe_function" in str(exc)
    else:
        raise AssertionError("no definitions and no probe were accepted")


def test_a_spec_wins_over_the_function_in_the_copy_check_as_in_the_resolution():
    """The role installs the spec when both are given: the controller's copy is asked about the spec."""
    build = pfn.builds({"n2": CANNOT}, "auto", "/srv/d", "/cache")[0]
    both = dict(PROBE, spec="tick:7 gap", line_match=None, args=[])
    look_up, calls = fake_look_up()
    assert pfn.copy_lists_probe(build, both, look_up) is True
    assert calls[0][1].get("spec") == "tick:7 gap" and "function" not in calls[0][1]
    look_up, calls = fake_look_up()
    pfn.resolve_build(build, True, both, look_up)
    assert calls[0][1].get("spec") == "tick:7 gap" and "function" not in calls[0][1]
