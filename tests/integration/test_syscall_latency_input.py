"""syscall_latency on bad input: a clear error, nothing changed (issue 20)."""

import os

import pytest

MODULE = "fleettrace.tracefs.syscall_latency"


@pytest.mark.parametrize("check", [False, True], ids=["run", "check"])
def test_a_pid_that_does_not_run_is_refused(run_module, unique_name, check):
    name = unique_name("lat")
    result = run_module(MODULE, {"instance": name, "pid": 999999, "call": "ioctl", "duration": 1}, check=check)
    assert result.get("failed") and not result.get("changed"), result
    assert "pid 999999: no such task" in result["msg"]
    assert "0 ioctl call(s)" not in str(result)
    assert not os.path.exists(os.path.join("/sys/kernel/tracing/instances", name))


@pytest.mark.parametrize("check", [False, True], ids=["run", "check"])
def test_a_call_the_kernel_does_not_have_is_refused_with_the_choices(run_module, unique_name, check):
    name = unique_name("lat")
    result = run_module(MODULE, {"instance": name, "pid": os.getpid(), "call": "ioctll", "duration": 1}, check=check)
    assert result.get("failed") and not result.get("changed"), result
    assert "call 'ioctll' is not a system call of this kernel (did you mean ioctl" in result["msg"]
    choices = result["msg"].split("valid choices: ", 1)[1].split(", ")
    assert {"ioctl", "write", "epoll_wait"} <= set(choices) and choices == sorted(choices)
    assert not os.path.exists(os.path.join("/sys/kernel/tracing/instances", name))


def test_check_mode_of_a_running_task_and_a_real_call_says_what_it_would_record(run_module, unique_name):
    name = unique_name("lat")
    result = run_module(MODULE, {"instance": name, "pid": os.getpid(), "call": "ioctl", "fd": 3}, check=True)
    assert result["changed"] and not result.get("failed"), result
    assert result["message"].startswith("would record ioctl with filters 'common_pid == %d && fd == 3'" % os.getpid())


def test_samples_0_is_no_limit_and_a_negative_count_is_refused(run_module, unique_name):
    """A role passes its default of 0: the measurement then ends after its duration only."""
    name = unique_name("lat")
    unlimited = run_module(MODULE, {"instance": name, "pid": os.getpid(), "call": "ioctl", "duration": 0.3,
                                    "samples": 0})
    assert unlimited["changed"] and not unlimited.get("failed"), unlimited
    assert unlimited["latency"]["duration_s"] >= 0.25, unlimited["latency"]
    negative = run_module(MODULE, {"instance": name, "pid": os.getpid(), "call": "ioctl", "samples": -1})
    assert negative.get("failed") and not negative.get("changed"), negative
    assert "samples positive or 0 (no limit), got 10.0 and -1" in negative["msg"]
    assert not os.path.exists(os.path.join("/sys/kernel/tracing/instances", name))
