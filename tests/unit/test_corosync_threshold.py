"""The corosync stall threshold (0.8 x token), as the sentinel playbook takes it."""

import os

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils import corosync_threshold as ct
from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import OptionError


def test_token_from_cmapctl_output():
    assert ct.token_from_output(0, "runtime.config.totem.token (u32) = 1000\n") == 1000
    assert ct.token_from_output(1, "runtime.config.totem.token (u32) = 1000\n") is None
    assert ct.token_from_output(0, "Can't get key runtime.config.totem.token. Error CS_ERR_NOT_EXIST\n") is None


def test_threshold_from_token_default_and_option():
    assert ct.threshold(token_ms=1000) == dict(threshold_ms=800.0, threshold_ns=800000000, token_timeout_ms=1000,
                                               source="cmapctl")
    assert ct.threshold() == dict(threshold_ms=2400.0, threshold_ns=2400000000, token_timeout_ms=0, source="default")
    assert ct.threshold(threshold_ms=0.5, token_ms=1000) == dict(threshold_ms=0.5, threshold_ns=500000,
                                                                 token_timeout_ms=0, source="option")


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf")])
def test_a_threshold_that_is_no_positive_number_is_refused(bad):
    with pytest.raises(OptionError, match="positive"):
        ct.threshold(threshold_ms=bad)


def test_read_token_from_a_cmapctl_and_without_one(tmp_path):
    cmapctl = tmp_path / "corosync-cmapctl"
    cmapctl.write_text("#!/bin/sh\necho \"$2 (u32) = 5000\"\n")
    cmapctl.chmod(0o755)
    assert ct.cmapctl_next_to(str(tmp_path / "corosync")) == str(cmapctl)
    assert ct.read_token(str(cmapctl)) == (5000, "")
    token, why = ct.read_token(os.path.join(str(tmp_path), "missing"))
    assert token is None and "missing" in why
