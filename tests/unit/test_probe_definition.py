"""The uprobe_events line as one record (probe_definition.py): one parser, one formatter, one
kernel-feature rewrite, and no other file in the collection that splits or builds such a line."""

import ast
import os
import re

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils import uprobe_plans
from ansible_collections.fleettrace.tracefs.plugins.module_utils.probe_definition import (
    DefinitionError, FetchArg, ProbeDefinition, event_names, kernel_type, removal)
from tests.helpers.paths import REPO

LINE = "p:probe_corosync/timer_L21 /usr/sbin/corosync:0x26097 tv_diff_u64=%si:u64 flags=+8(%bx):x32"


def test_a_line_round_trips_through_its_fields():
    definition = ProbeDefinition.parse(LINE)
    assert (definition.kind, definition.group, definition.event) == ("p", "probe_corosync", "timer_L21")
    assert (definition.path, definition.offset, definition.ref_ctr) == ("/usr/sbin/corosync", 0x26097, None)
    assert [(a.name, a.expression, a.type) for a in definition.args] == [
        ("tv_diff_u64", "%si", "u64"), ("flags", "+8(%bx)", "x32")]
    assert definition.line() == LINE


@pytest.mark.parametrize("text, fields", [
    ("%di", (None, "%di", None)),
    ("$comm:string", (None, "$comm", "string")),
    ("name=+0(+8(%di)):string", ("name", "+0(+8(%di))", "string")),
    ("flag=+40(-24(%bp)):b3@0/32", ("flag", "+40(-24(%bp))", "b3@0/32")),
    ("arr=+0(%di):x8[4]", ("arr", "+0(%di)", "x8[4]")),
    ("gcount=@+0x4010:s64", ("gcount", "@+0x4010", "s64")),
    ("v=\\deade12d:x32", ("v", "\\deade12d", "x32")),
])
def test_fetch_args_split_into_name_expression_and_type(text, fields):
    arg = FetchArg.parse(text)
    assert (arg.name, arg.expression, arg.type) == fields
    assert arg.text() == text


def test_the_kernel_listing_compares_equal_to_what_was_written():
    """The kernel pads the offset and names unnamed arguments argN when it lists uprobe_events."""
    written = ProbeDefinition.parse("p:g/e /bin/x:0x1c4 %di:u64 y=%si")
    listed = ProbeDefinition.parse("p:g/e /bin/x:0x00000000000001c4 arg1=%di:u64 y=%si")
    assert written == listed and written.key() == listed.key()
    assert written != ProbeDefinition.parse("p:g/e /bin/x:0x1c8 %di:u64 y=%si")


def test_a_semaphore_reference_counter_is_kept():
    definition = ProbeDefinition.parse("p:sdt/ev /usr/lib/libx.so:0x1234(0x5678) %ax")
    assert (definition.offset, definition.ref_ctr) == (0x1234, 0x5678)
    assert definition.line() == "p:sdt/ev /usr/lib/libx.so:0x1234(0x5678) %ax"


@pytest.mark.parametrize("line", ["p:g /x:0x1", "q:g/e /x:0x1", "p:g/e /x", "p:g/e /x:zz", "p:g/e/f /x:0x1",
                                  "p:g/e", "", "p:g/e /x:0x1 x=", "p:g/e /x:0x1(zz)"])
def test_text_that_is_no_definition_is_refused_naming_it(line):
    with pytest.raises(DefinitionError) as info:
        ProbeDefinition.parse(line)
    assert repr(line) in str(info.value) or "x=" in str(info.value)


def test_hex_types_become_u_types_only_for_a_kernel_without_them():
    definition = ProbeDefinition.parse("p:g/e /bin/x:0x10 a=%di:x64 b=+0(%si):x8[4] c=%dx:s32 d=$comm:string")
    assert definition.for_kernel(hex_types=True).line() == definition.line()
    assert definition.for_kernel(hex_types=False).line() == (
        "p:g/e /bin/x:0x10 a=%di:u64 b=+0(%si):u8[4] c=%dx:s32 d=$comm:string")
    assert kernel_type(None, False) is None and kernel_type("x16", False) == "u16"


def test_renaming_keeps_the_copies_own_event_names():
    lines = ["p:fleettrace_resolved/f_L3 /ctl/copy:0x10 v=%di:s32", "p:fleettrace_resolved/f_L3_1 /ctl/copy:0x40 v=%si:s64"]
    records = [ProbeDefinition.parse(line) for line in lines]
    renamed = uprobe_plans.renamed(records, "fleettrace_run1", "mine", "/usr/sbin/daemon")
    assert [r.line() for r in renamed] == ["p:fleettrace_run1/f_L3 /usr/sbin/daemon:0x10 v=%di:s32",
                                           "p:fleettrace_run1/f_L3_1 /usr/sbin/daemon:0x40 v=%si:s64"]
    one = uprobe_plans.renamed(records[:1], "fleettrace_run1", "mine")
    assert [r.line() for r in one] == ["p:fleettrace_run1/mine /ctl/copy:0x10 v=%di:s32"]
    assert event_names(renamed) == ["f_L3", "f_L3_1"] and removal("g", "e") == "-:g/e"


# -- the proof that no other file parses or builds the line -----------------------------------
# Telltales of a uprobe_events line taken apart or put together by hand: the KIND:GROUP/EVENT head,
# the PATH:0xOFFSET place, the removal command, a regex over the kinds, the x-type rewrite.
PYTHON_TELLTALES = [re.compile(p) for p in (r"%s:%s/%s", r"%s:0x%x", r"-:%s/%s", r"\[pr\]", r"\^\(?\[?p",
                                            r"x\(8\|16", r"\^p:", r"\^r:")]
YAML_TELLTALES = [re.compile(p) for p in (r"regex_replace.*\[pr", r"regex_replace.*'\^p:",
                                          r"probe_spec\s*\.split\(", r"definitions?\s*\|\s*map\('replace'",
                                          r"definitions?\s*\|\s*map\('regex_replace'")]
HOME = os.path.join("plugins", "module_utils", "probe_definition.py")


def _strings(path):
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def test_the_line_is_parsed_and_formatted_in_exactly_one_module():
    found = []
    for top in ("plugins",):
        for root, _dirs, names in os.walk(os.path.join(REPO, top)):
            for name in names:
                path = os.path.join(root, name)
                relative = os.path.relpath(path, REPO)
                if not name.endswith(".py") or relative == HOME:
                    continue
                for line, text in _strings(path):
                    if any(p.search(text) for p in PYTHON_TELLTALES):
                        found.append("%s:%d %r" % (relative, line, text))
    for top in ("roles", "playbooks"):
        for root, _dirs, names in os.walk(os.path.join(REPO, top)):
            for name in names:
                path = os.path.join(root, name)
                with open(path, errors="replace") as handle:
                    for line, text in enumerate(handle, 1):
                        if any(p.search(text) for p in YAML_TELLTALES):
                            found.append("%s:%d %s" % (os.path.relpath(path, REPO), line, text.strip()))
    assert not found, ("uprobe_events lines are parsed and built only in %s (ProbeDefinition); "
                       "found by hand in:\n%s" % (HOME, "\n".join(found)))
    # ... and the telltales do catch the old ways (the test could fail).
    assert any(p.search(r"^(?P<type>[pr])\d*:(?P<group>[^/\s]+)") for p in PYTHON_TELLTALES)
    assert any(p.search('"%s:%s/%s" % (self.kind, self.group, event)') for p in PYTHON_TELLTALES)
    assert any(p.search(r"""map('regex_replace', '^([pr][0-9]*):[^/ ]+/', 'x')""") for p in YAML_TELLTALES)
    assert any(p.search("(threshold_capture_probe_spec.split() | first)") for p in YAML_TELLTALES)
