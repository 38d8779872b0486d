"""The stall threshold from corosync's token timeout (trace/token_timeout.py): once, in Python."""

from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import token_timeout


def test_the_token_is_read_from_cmapctl_output():
    assert token_timeout.parse_token_ms(0, "runtime.config.totem.token (u32) = 3000\n") == 3000
    assert token_timeout.parse_token_ms(0, "runtime.config.totem.token (u32) =1000") == 1000
    assert token_timeout.parse_token_ms(1, "runtime.config.totem.token (u32) = 3000") is None
    assert token_timeout.parse_token_ms(0, "Can't get key runtime.config.totem.token. Error CS_ERR_NOT_EXIST") is None
    assert token_timeout.parse_token_ms(0, "") is None and token_timeout.parse_token_ms(0, None) is None


def test_corosync_warns_at_eight_tenths_of_the_token():
    why = "threshold 2400 ms = 0.8 x token 3000 ms (as corosync warns)"
    assert token_timeout.threshold(token_ms=3000) == (2400.0, 3000, why)
    assert token_timeout.threshold(token_ms=1001)[0] == 1001 * 0.8


def test_a_given_threshold_wins_and_an_unread_token_is_unknown():
    assert token_timeout.threshold(given_ms=250, token_ms=3000) == (250.0, 0, "threshold 250 ms as given")
    assert token_timeout.threshold(given_ms=0.5)[2] == "threshold 0.5 ms as given"
    ms, token, why = token_timeout.threshold()
    assert (ms, token) == (2400.0, 0) and "could not be read" in why
    assert token_timeout.threshold(default_token_ms=1000)[:2] == (800.0, 0)
