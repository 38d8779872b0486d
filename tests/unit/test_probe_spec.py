"""perf-probe spec parsing (no binary needed)."""

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import probe_spec


def test_function_line_and_casts():
    spec = probe_spec.parse("timer_function_scheduler_timeout:21 tv_diff:u64 o->in->z[2] s.f name=k")
    point = spec.point
    assert (point.function, point.relative_line, point.offset, point.is_return) == \
        ("timer_function_scheduler_timeout", 21, None, False)
    tv_diff, member, dotted, named = spec.args
    assert (tv_diff.variable, tv_diff.type_cast, tv_diff.default_name()) == ("tv_diff", "u64", "tv_diff_u64")
    assert member.accesses == [("->", "in"), ("->", "z"), ("[]", 2)]
    assert member.default_name() == "z"
    assert dotted.accesses == [(".", "f")] and dotted.default_name() == "f"
    assert (named.name, named.variable, named.default_name()) == ("name", "k", "name")


def test_file_spec_offsets_return_and_event_names():
    point = probe_spec.parse("main.c:120").point
    assert (point.source, point.absolute_line, point.function) == ("main.c", 120, None)
    point = probe_spec.parse("grp:ev=func@src/x.c+0x10").point
    assert (point.group, point.event, point.function, point.source, point.offset) == ("grp", "ev", "func", "src/x.c", 16)
    point = probe_spec.parse("ev=func%return $retval").point
    assert point.is_return and point.event == "ev" and point.group is None
    # perf's rule: a '.' before the first ':' and none of '+@%' makes a file spec.
    assert probe_spec.parse("func:3").point.function == "func"


def test_raw_and_special_args_are_kept():
    args = probe_spec.parse("f %di $stack2 +8(%sp) $params $vars r=%ax").args
    assert [a.raw for a in args[:3]] == ["%di", "$stack2", "+8(%sp)"]
    assert [a.is_special for a in args] == [False, False, False, True, True, False]
    assert (args[5].name, args[5].raw) == ("r", "%ax")


@pytest.mark.parametrize("text, words", [
    ("", "non-empty"),
    ("f:x", "not a number"),
    ("f#3", "must start with a function name"),
    ("f+x", "not a number"),
    ("f v:u7", "not one the kernel knows"),
    ("f a..b", "cannot read"),
    ("f%return localvar", "%return"),
    ("f\nv", "newline"),
    ("9bad=f", "not a C identifier"),
])
def test_bad_specs_say_what_is_wrong(text, words):
    with pytest.raises(probe_spec.ProbeSpecError) as info:
        probe_spec.parse(text)
    assert words in str(info.value)


@pytest.mark.parametrize("text, event", [
    ("f:3", "f_L3"), ("f", "f"), ("f:0", "f"), ("f+8", "f"), ("f%return", "f__return"), ("ev=f:2", "ev"),
    ("demo.c:33", None),       # the function at that line decides
])
def test_default_event_names_follow_perf(text, event):
    assert probe_spec.default_event(probe_spec.parse(text).point) == event


def test_default_group_cuts_the_basename_like_perf():
    assert probe_spec.default_group("/usr/lib/libpython3.11.so.1.0") == "probe_libpython3"
    assert probe_spec.default_group("/usr/sbin/corosync") == "probe_corosync"
