"""The audit's window plan (module_utils/sched/window_plan.py): sync or async, and the numbers the role waits with."""

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import OptionError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched import window_plan

THREE = ["node1", "node2", "node3"]


def plan(duration=2, poll_seconds=2, async_mode="auto", hosts=None, left=None, forks=5, check_mode=False):
    hosts = THREE if hosts is None else hosts
    return window_plan.plan(duration, poll_seconds, async_mode, hosts, hosts if left is None else left, forks,
                            check_mode, "/srv/report")


@pytest.mark.parametrize("forks, expected", [(5, False), (3, False), (2, True), (1, True), (None, False), ("2", True)])
def test_auto_is_async_only_with_more_hosts_than_forks(forks, expected):
    assert plan(forks=forks)["async"] is expected


def test_ansible_default_forks_when_the_play_does_not_say():
    assert plan(hosts=["h%d" % i for i in range(6)], forks=None)["async"] is True


@pytest.mark.parametrize("mode, forks, expected", [("always", 50, True), ("never", 1, False)])
def test_always_and_never_ignore_the_forks(mode, forks, expected):
    assert plan(async_mode=mode, forks=forks)["async"] is expected


@pytest.mark.parametrize("mode", ["auto", "always", "never"])
def test_check_mode_is_always_synchronous(mode):
    planned = plan(async_mode=mode, forks=1, check_mode=True)
    assert planned["async"] is False and planned["async_seconds"] == 0


def test_the_choice_counts_every_host_of_the_play_not_those_left():
    # Two of three hosts already failed: still more hosts than forks, so still async.
    assert plan(left=["node1"], forks=2)["async"] is True


def test_async_numbers():
    planned = plan(duration=2.5, poll_seconds=3, forks=1)
    assert planned["async_seconds"] == 302           # the window plus 300 s for the analysis and a slow host
    assert planned["pause_seconds"] == 3             # the controller sleeps through the window, rounded up
    assert planned["retries"] == int(302.5 / 3) == 100
    assert planned["delay"] == 3


def test_synchronous_call_has_no_async_time():
    planned = plan(duration=30)
    assert planned["async"] is False and planned["async_seconds"] == 0
    assert planned["pause_seconds"] == 30 and planned["retries"] == 165 and planned["delay"] == 2


def test_numbers_given_as_text_as_extra_vars_give_them():
    planned = plan(duration="2", poll_seconds="1", forks="1")
    assert planned["async_seconds"] == 302 and planned["retries"] == 302 and planned["delay"] == 1


def test_message_says_what_the_audit_waits_for():
    assert plan(left=["node1", "node2"])["msg"] == (
        "Tracing scheduler events on 2 host(s) for 2 s (one window for all), then collecting per-host results "
        "into /srv/report/hosts")
    assert plan(duration=0.5, check_mode=True)["msg"] == (
        "Check mode: showing how scheduler events would be traced on 3 host(s) for 0.5 s (one window for all)"
        "; nothing is traced or saved")


@pytest.mark.parametrize("kwargs, words", [
    ({"async_mode": "sometimes"}, "async_mode: 'sometimes'; use auto"),
    ({"duration": 0}, "duration: 0; give a number of seconds greater than 0"),
    ({"duration": -1}, "duration: -1; give a number"),
    ({"duration": "soon"}, "duration: 'soon' is no number of seconds"),
    ({"duration": True}, "duration: True is no number of seconds"),
    ({"duration": float("nan")}, "greater than 0"),
    ({"duration": float("inf")}, "greater than 0"),
    ({"poll_seconds": 0}, "poll_seconds: 0; give a number of seconds greater than 0"),
    ({"poll_seconds": 0.5}, "poll_seconds: 0.5; give a whole number of seconds"),
    ({"forks": "many"}, "forks: 'many' is no number"),
])
def test_bad_input_is_refused_clearly(kwargs, words):
    with pytest.raises(OptionError) as caught:
        plan(**kwargs)
    assert words in caught.value.message


@pytest.mark.parametrize("seconds, text", [(2, "2"), (2.0, "2"), (2.5, "2.5"), (0.1, "0.1"), (600, "600")])
def test_duration_shown_as_written(seconds, text):
    assert window_plan.shown(seconds) == text
