"""probe_info's choice of the probe line (uprobe_plans.pick_line): once, in Python, for every role."""

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.uprobe_plans import pick_line

# corosync's timer_function_scheduler_timeout at -O2: the matching line shares its address (not probe-able).
LINES = [
    {"line": 100, "relative_line": 0, "probeable": True, "source": "static void f(void *data)"},
    {"line": 105, "relative_line": 5, "probeable": True, "source": "\ttv_current = qb_util_nano_current_get();"},
    {"line": 110, "relative_line": 10, "probeable": False, "source": "\ttv_diff = tv_current - tv_prev;"},
    {"line": 111, "relative_line": 11, "probeable": True, "source": "\ttimeout_data->tv_prev = tv_current;"},
    {"line": 112, "relative_line": 12, "probeable": True, "source": "\tif (tv_diff > max) {"},
]


def test_the_first_probeable_line_after_the_anchor_is_picked():
    spec, picked = pick_line("f", LINES, r"tv_diff\s*=", 0, ["tv_diff=%ax:u64"])
    assert spec == "f:11 tv_diff=%ax:u64" and picked["line"] == 111


def test_no_match_falls_back_to_the_line_given_or_says_which_lines_there_are():
    assert pick_line("f", LINES, "nowhere", 5, []) == ("f:5", None)
    assert pick_line("f", LINES, None, 0, ["x"]) == ("f x", None)
    with pytest.raises(FleettraceError) as caught:
        pick_line("f", LINES, "nowhere", 0, [])
    assert 'matches "nowhere" (source available here)' in caught.value.message and "[0, 5, 10, 11, 12]" in caught.value.message
    without_source = [dict(entry, source=None) for entry in LINES]
    with pytest.raises(FleettraceError) as caught:
        pick_line("f", without_source, "tv_diff", 0, [])
    assert "source not available here" in caught.value.message


def test_a_bad_expression_is_a_clear_error():
    with pytest.raises(FleettraceError) as caught:
        pick_line("f", LINES, "(", 0, [])
    assert "not a regular expression" in caught.value.message
