"""Which probe a role's call installs, decided in Python (issue 20): the uprobe module's definition or spec
(uprobe_plans.chosen_probe), the spec picked by probe_info (probe_definition.chosen_spec) and the
definition lines given (probe_definition.given_lines), with a role's empty defaults counting as none."""

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils.probe_definition import chosen_spec, given_lines, given_options
from ansible_collections.fleettrace.tracefs.plugins.module_utils.uprobe_plans import PlanError, chosen_probe

LINE = "p:fleettrace_resolved/tick /usr/bin/prog:0x1139 gap=%di:u64"


def params(**given):
    base = dict(binary="/usr/bin/prog", spec=None, definition=None, picked=None, event=None, state="present")
    base.update(given)
    return base


@pytest.mark.parametrize("value, lines", [
    ("", []), ([], []), ([""], []), (["", "  "], []), (None, []),
    (LINE, [LINE]), (["", LINE, ""], [LINE]), ([LINE, LINE + " x=%si"], [LINE, LINE + " x=%si"]),
])
def test_empty_definition_lines_are_not_given(value, lines):
    assert given_lines(value) == lines


def test_a_definition_line_wins_over_the_spec_which_is_not_resolved():
    chosen = chosen_probe(params(spec="tick:3 gap", definition=["", LINE]))
    assert chosen["definition"] == [LINE] and chosen["spec"] is None


def test_an_empty_definition_leaves_the_spec():
    chosen = chosen_probe(params(spec=" tick:3 gap ", definition=[""]))
    assert chosen["definition"] is None and chosen["spec"] == "tick:3 gap"


def test_the_picked_spec_stands_in_for_an_empty_spec_only():
    picked = {"changed": False, "spec": "tick:7 gap", "lines": []}
    assert chosen_probe(params(spec="", picked=picked))["spec"] == "tick:7 gap"
    assert chosen_probe(params(spec="tick:3", picked=picked))["spec"] == "tick:3"
    assert chosen_probe(params(definition=[LINE], picked=picked))["spec"] is None


def test_a_skipped_pick_gives_no_spec():
    skipped = {"changed": False, "skipped": True, "skip_reason": "Conditional result was False"}
    assert chosen_spec("", skipped) == "" and chosen_spec(None, None) == ""
    assert chosen_spec("", {"skipped": True, "spec": "stale:1"}) == ""
    with pytest.raises(PlanError, match="nothing to probe"):
        chosen_probe(params(spec="", definition=[""], picked=skipped))


def test_nothing_to_probe_is_refused_with_what_to_give():
    with pytest.raises(PlanError, match="nothing to probe: give spec .with binary. or definition lines"):
        chosen_probe(params())


def test_a_spec_without_binary_is_refused_even_when_a_definition_wins():
    with pytest.raises(PlanError, match="needs binary"):
        chosen_probe(params(binary=None, spec="tick:3", definition=[LINE]))
    assert chosen_probe(params(binary=None, definition=LINE))["definition"] == [LINE]


def test_state_absent_needs_something_to_name_the_probe():
    assert chosen_probe(params(state="absent", event="tick"))["spec"] is None
    with pytest.raises(PlanError, match="state=absent needs"):
        chosen_probe(params(state="absent"))


def test_an_empty_build_id_and_debuginfo_are_not_given():
    chosen = chosen_probe(params(spec="tick", build_id="", debuginfo=""))
    assert chosen["build_id"] is None and chosen["debuginfo"] is None
    assert chosen_probe(params(spec="tick", build_id="ab12"))["build_id"] == "ab12"


def test_probe_options_take_empty_strings_and_lists_as_not_given():
    values = {"function": "", "spec": "f:3", "debuginfod_urls": [], "line": 0, "args": []}
    assert given_options(values, ("function", "spec", "debuginfod_urls")) == {
        "function": None, "spec": "f:3", "debuginfod_urls": None, "line": 0, "args": []}
