"""When capture re-arms: a partly recorded stall whose recorded part does not explain it."""

from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import threshold


def finding(cause, began_before_capture, duration_ms=1100.0, asleep_ns=None, runnable_ns=None):
    return {"cause": cause, "began_before_capture": began_before_capture, "duration_ms": duration_ms,
            "asleep_ns": asleep_ns, "runnable_ns": runnable_ns}


def test_a_partial_stall_whose_cause_is_missing_is_rearmed():
    hit = {"triggered": True}
    # The demo's case: a held WDIOC_KEEPALIVE entered before arming left only a 22 us
    # runnable wait in the buffer, which must not pass for the cause of 1100 ms.
    assert threshold.needs_rearm(hit, [finding("runnable", True, runnable_ns=22000)])
    assert threshold.needs_rearm(hit, [finding("blocked", True, asleep_ns=100000000)])
    assert threshold.needs_rearm(hit, [finding("unexplained", True)])


def test_a_partial_stall_that_is_explained_is_kept():
    # The frozen file system's case: the buffer lost the earlier ticks, but the whole
    # D-state sleep (2018 ms of a 2164 ms stall) is there.
    hit = {"triggered": True}
    assert not threshold.needs_rearm(hit, [finding("blocked", True, duration_ms=2164.2, asleep_ns=2018800000)])
    assert not threshold.needs_rearm(hit, [finding("stopped", True, duration_ms=1000.0, asleep_ns=990000000)])


def test_a_whole_stall_or_no_trigger_is_kept():
    assert not threshold.needs_rearm({"triggered": True}, [finding("runnable", False, runnable_ns=22000)])
    assert not threshold.needs_rearm({"triggered": True}, [finding("unexplained", False)])
    assert not threshold.needs_rearm({"triggered": False}, [finding("unexplained", True)])
    assert not threshold.needs_rearm({"triggered": True}, [])


def test_the_culprit_call_is_a_boolean_and_options_only_for_a_call_on_an_fd():
    """Issue 20: a stall outside a system call has no call; the role's when: gets a boolean, never None."""
    write = {"name": "write", "fd": 3, "args": []}
    ioctl = {"name": "ioctl", "fd": 4, "args": [], "ioctl": {"value": 0x80045705}}
    cases = [
        ({"cause": "blocked", "pid": 7, "syscall": write, "fd": 3}, {"pid": 7, "call": "write", "fd": 3, "cmd": None}),
        ({"cause": "blocked", "pid": 7, "syscall": ioctl, "fd": 4},
         {"pid": 7, "call": "ioctl", "fd": 4, "cmd": 0x80045705}),
        ({"cause": "blocked", "pid": 7, "syscall": None, "fd": None}, None),          # freezer, page fault
        ({"cause": "blocked", "pid": 7, "syscall": {"name": "futex", "fd": None}, "fd": None}, None),
        ({"cause": "stopped", "pid": 7, "syscall": write, "fd": 3}, None),
        ({"cause": "runnable", "pid": 7, "syscall": None, "fd": None}, None),
    ]
    for first, expected in cases:
        assert threshold._culprit_call([first], 7) == expected, first
    assert threshold._culprit_call([], 7) is None


def test_a_rearmed_capture_that_saw_nothing_more_reports_the_first_stall():
    first = {"triggered": True, "stop_reason": "triggered", "duration": 2.5, "event_count": 40}
    last = {"triggered": False, "stop_reason": "timeout", "duration": 60.0, "event_count": 4000}
    found = [finding("unexplained", True)]
    result, finder, findings = threshold._earlier_stall(last, (first, "first finder", found))
    assert findings is found and finder == "first finder"
    assert result["triggered"] is True and result["stop_reason"] == "triggered" and result["duration"] == 2.5
    # What was recorded last stays what it is, and the result says whose events they are.
    assert result["event_count"] == 4000 and result["earlier_stall"] is True
    assert threshold.status(result, None) == threshold.STATUS_REACHED
