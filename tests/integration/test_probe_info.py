"""fleettrace.tracefs.probe_info through Ansible, compared with `perf probe -L / -V`."""

import json
import re
import shutil
import subprocess

from tests.helpers import resolver_programs as programs  # noqa: E402

REPORT = programs.marker_line("report") - programs.decl_line("compute")


def test_lines_and_variables(run_playbook, tracefs, cc, tmp_path):
    binary = programs.build(cc, str(tmp_path), "demo_O2")
    tasks = [
        {"name": "lines", "fleettrace.tracefs.probe_info": {"binary": binary, "function": "compute"}},
        {"name": "variables", "fleettrace.tracefs.probe_info": {"binary": binary, "spec": "compute:%d" % REPORT}},
        {"name": "unknown", "fleettrace.tracefs.probe_info": {"binary": binary, "function": "nope"},
         "ignore_errors": True},
    ]
    result = run_playbook(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]) + "\n",
                          check=True)
    lines, variables, unknown = result.task("lines"), result.task("variables"), result.task("unknown")
    assert not [u for u in tracefs.list_uprobes() if u.path == binary]        # read-only
    assert lines["changed"] is False and variables["changed"] is False
    report = [l for l in lines["lines"] if l["relative_line"] == REPORT]
    assert report and report[0]["probeable"] and "MARK:report" in report[0]["source"]
    assert report[0]["line"] == programs.marker_line("report")
    assert lines["decl_line"] == programs.decl_line("compute")
    by_name = {v["name"]: v for v in variables["variables"]}
    assert by_name["k"]["fetcharg"] == "k=%si:s32" and by_name["k"]["type"] == "int"
    assert by_name["k"]["kind"] == "parameter" and by_name["k"]["location"] == "register %si"
    assert by_name["o"]["available"] is False and "o->field" in by_name["o"]["reason"]
    assert by_name["total"]["type"] == "long int" and by_name["total"]["available"]
    assert unknown.get("failed") and "nope not found" in unknown["msg"]
    perf = shutil.which("perf")
    if perf:
        listing = subprocess.run([perf, "probe", "-x", binary, "-L", "compute"], stdout=subprocess.PIPE,
                                 text=True, check=True).stdout
        perf_lines = [int(m) for m in re.findall(r"^\s+(\d+)\s", listing, re.M)]
        assert perf_lines == [l["relative_line"] for l in lines["lines"]]
        shown = subprocess.run([perf, "probe", "-x", binary, "-V", "compute:%d" % REPORT], stdout=subprocess.PIPE,
                               text=True, check=True).stdout
        perf_vars = set(re.findall(r"\t\t.*\s(\w+)$", shown, re.M))
        # perf -V lists only what it believes it can fetch: `o` it gets wrong (see test_uprobe_runtime),
        # `i` (the constant 4 after the loop, DW_OP_lit4; DW_OP_stack_value) it cannot express.
        assert perf_vars - {"o"} == {n for n, v in by_name.items() if v["available"]} - {"i"}
        assert by_name["i"]["fetcharg"] == "i=\\4:s32" and by_name["i"]["location"] == "constant 4"


def test_a_roles_empty_defaults_are_not_given(run_playbook, cc, tmp_path):
    """What a role passes as it is ('' and [] for what it was not given): the same answer as without them,
    and still a clear refusal when nothing, or a spec with a line to pick, is given."""
    binary = programs.build(cc, str(tmp_path), "demo_O2")
    empty = {"line_match": "", "debuginfo": "", "debuginfod_urls": [], "build_id": "", "spec": ""}
    tasks = [
        {"name": "plain", "fleettrace.tracefs.probe_info": {"binary": binary, "function": "compute"}},
        {"name": "defaults", "fleettrace.tracefs.probe_info": dict(empty, binary=binary, function="compute")},
        {"name": "spec only", "fleettrace.tracefs.probe_info": {"binary": binary, "function": "", "line": 0,
                                                                "spec": "compute:%d" % REPORT}},
        {"name": "nothing", "fleettrace.tracefs.probe_info": dict(empty, binary=binary, function=""),
         "ignore_errors": True},
        {"name": "spec and a line to pick", "fleettrace.tracefs.probe_info": {
            "binary": binary, "spec": "compute", "line_match": "total"}, "ignore_errors": True},
    ]
    result = run_playbook(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]) + "\n",
                          check=True)
    plain, defaults = result.task("plain"), result.task("defaults")
    assert not defaults.get("failed"), defaults
    assert defaults["lines"] == plain["lines"] and defaults["build_id"] == plain["build_id"]
    assert "spec" not in defaults                      # nothing picked: no line_match, line or args
    spec_only = result.task("spec only")
    assert not spec_only.get("failed") and spec_only["variables"] and spec_only["function"] == "compute", spec_only
    assert "give function (whose lines to list) or spec" in result.task("nothing")["msg"]
    assert "mutually exclusive: spec|line_match" in result.task("spec and a line to pick")["msg"]
