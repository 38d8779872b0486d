"""ChangePlan on a fake tracefs directory: all or nothing, undo, and what could not be undone."""

import os
import shutil

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import cleanup
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.changes import ChangePlan, failure_message
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.error_log import TracefsError


def _write(path, text):
    def do():
        with open(path, "w") as handle:
            handle.write(text)
    return do


def _read(path):
    with open(path) as handle:
        return handle.read()


def _refused(message="Invalid argument"):
    def do():
        raise TracefsError(message)
    return do


def _tree(root):
    """{relative path: content or None for a directory}: the whole fake tracefs."""
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs:
            found[os.path.relpath(os.path.join(directory, name), root)] = None
        for name in files:
            found[os.path.relpath(os.path.join(directory, name), root)] = _read(os.path.join(directory, name))
    return found


@pytest.fixture
def fake(tmp_path):
    """A tracefs-like directory: a global setting and one existing instance with an enable file."""
    root = tmp_path / "tracing"
    (root / "instances" / "old").mkdir(parents=True)
    (root / "tracing_on").write_text("1")
    (root / "instances" / "old" / "enable").write_text("0")
    return str(root)


def _instance_plan(root, then=None):
    """mkdir an instance and set it up (no undo: inside the new directory), change a setting outside
    it (with undo), then ``then`` (a failing step, or nothing)."""
    new = os.path.join(root, "instances", "new")
    old_enable = os.path.join(root, "instances", "old", "enable")
    plan = ChangePlan()
    plan.mkdir(new, lambda: os.mkdir(new), lambda: shutil.rmtree(new))
    plan.write(os.path.join(new, "buffer_size_kb"), "1024", _write(os.path.join(new, "buffer_size_kb"), "1024"))
    plan.write(old_enable, "1", _write(old_enable, "1"), _write(old_enable, "0"))
    if then is not None:
        plan.write(os.path.join(root, "instances", "old", "filter"), "bad ==", then)
    return plan


def test_a_failed_step_leaves_the_directory_as_found(fake):
    before = _tree(fake)
    plan = _instance_plan(fake, then=_refused())
    with pytest.raises(TracefsError) as exc:
        plan.apply()
    assert _tree(fake) == before
    assert exc.value.failed_command.startswith("echo 'bad ==' > ")
    assert exc.value.not_undone == []
    assert plan.applied == []
    assert failure_message(exc.value).endswith("nothing was changed (the writes already made were undone)")


def test_undo_takes_back_an_applied_plan_newest_first(fake):
    before = _tree(fake)
    order = []
    plan = _instance_plan(fake)
    plan.add("note", lambda: order.append("do"), lambda: order.append("undo"))
    plan.apply()
    assert _read(os.path.join(fake, "instances", "old", "enable")) == "1"
    assert os.path.isdir(os.path.join(fake, "instances", "new"))
    with pytest.raises(ValueError):
        plan.apply()            # applied twice would lose what to undo
    assert plan.undo() == []
    assert _tree(fake) == before and order == ["do", "undo"]
    plan.apply()                # undone: it may be applied again
    assert plan.undo() == []
    assert _tree(fake) == before


def test_a_step_without_undo_outside_a_created_directory_is_named(fake):
    global_on = os.path.join(fake, "tracing_on")
    plan = ChangePlan()
    plan.write(global_on, "0", _write(global_on, "0"))          # nothing undoes it
    plan.write(os.path.join(fake, "x"), "1", _refused())
    with pytest.raises(TracefsError) as exc:
        plan.apply()
    assert exc.value.not_undone == ["echo '0' > %s: nothing undoes this step" % global_on]
    message = failure_message(exc.value)
    assert "Invalid argument" in message and "could not be undone: echo '0' > %s" % global_on in message


def test_failed_undos_are_named_unless_the_directory_holding_them_went(fake):
    new = os.path.join(fake, "instances", "new")
    inside = os.path.join(new, "trigger")

    def plan_with(rmdir):
        plan = ChangePlan()
        plan.mkdir(new, lambda: os.mkdir(new), rmdir)
        plan.write(inside, "traceoff", _write(inside, "traceoff"), _refused("Device or resource busy"))
        plan.write(os.path.join(fake, "y"), "1", _refused())
        return plan

    with pytest.raises(TracefsError) as exc:
        plan_with(lambda: shutil.rmtree(new)).apply()
    assert exc.value.not_undone == [] and not os.path.exists(new)

    with pytest.raises(TracefsError) as exc:
        plan_with(_refused("Device or resource busy")).apply()
    assert exc.value.not_undone == ["mkdir %s: Device or resource busy" % new,
                                    "echo 'traceoff' > %s: Device or resource busy" % inside]


def test_an_undo_failure_does_not_stop_the_older_undos(fake):
    old_enable = os.path.join(fake, "instances", "old", "enable")
    plan = ChangePlan()
    plan.write(old_enable, "1", _write(old_enable, "1"), _write(old_enable, "0"))
    plan.add("stuck", lambda: None, _refused("busy"))
    plan.apply()
    assert plan.undo() == ["stuck: busy"]
    assert _read(old_enable) == "0"


def test_a_check_has_nothing_to_undo(fake):
    plan = ChangePlan()
    plan.check("test build-id", lambda: None)
    plan.add("refused", _refused())
    with pytest.raises(TracefsError) as exc:
        plan.apply()
    assert exc.value.not_undone == []


def test_removal_runs_past_refusals(fake):
    done = []
    plan = ChangePlan()
    plan.add("rmdir a", _refused("Device or resource busy"))
    plan.add("rmdir b", lambda: done.append("b"))
    assert cleanup.remove_all(plan) == ["rmdir a: Device or resource busy"]
    assert done == ["b"]
