"""When capture re-arms: a stall that began before arming is never the answer, whatever it seems to show."""

from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import threshold


def finding(cause, began_before_capture):
    return {"cause": cause, "began_before_capture": began_before_capture}


def test_a_stall_begun_before_arming_is_rearmed_whatever_its_partial_cause():
    hit = {"triggered": True}
    # The demo's case: a held WDIOC_KEEPALIVE entered before arming left only a 22 us
    # runnable wait in the buffer, which must not be reported as the cause of 1100 ms.
    for cause in ("unexplained", "runnable", "stopped", "blocked"):
        assert threshold._needs_rearm(hit, [finding(cause, True)]), cause


def test_a_whole_stall_or_no_trigger_is_kept():
    assert not threshold._needs_rearm({"triggered": True}, [finding("runnable", False)])
    assert not threshold._needs_rearm({"triggered": True}, [finding("unexplained", False)])
    assert not threshold._needs_rearm({"triggered": False}, [finding("unexplained", True)])
    assert not threshold._needs_rearm({"triggered": True}, [])
