"""fleettrace.tracefs.proc_info against real processes, compared with what ps and /proc say."""

import os
import subprocess
import time

import pytest

from tests.helpers import capture_program
from tests.helpers.frozen_fs import LoopExt4, missing_requirements

PS_COLUMNS = ("cls", "ni", "rtprio", "pri", "opri", "priority", "pri_foo", "pri_bar", "pri_baz", "pri_api")
# procps column -> our key in priorities{}
PS_TO_KEY = {"cls": "class", "ni": "nice", "rtprio": "rtprio", "pri": "pri", "opri": "opri",
             "priority": "stat_priority", "pri_foo": "pri_foo", "pri_bar": "pri_bar", "pri_baz": "kernel_prio",
             "pri_api": "pri_api"}


@pytest.fixture(scope="module")
def tick_binary(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    return capture_program.build("gcc", tmp_path_factory.mktemp("tick_loop_info"))


def start_tick(binary, heartbeat, tmp_path, setup=None):
    out = open(str(tmp_path / "out.txt"), "w")
    proc = subprocess.Popen([binary, heartbeat, "20", "0"], stdout=out, preexec_fn=setup)
    deadline = time.monotonic() + 10
    while "ready" not in (tmp_path / "out.txt").read_text():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return proc, out


def ps_view(pid):
    text = subprocess.run(["ps", "-o", ",".join(PS_COLUMNS), "--no-headers", "-p", str(pid)],
                          stdout=subprocess.PIPE, text=True, check=True).stdout.split()
    view = {}
    for column, value in zip(PS_COLUMNS, text):
        view[PS_TO_KEY[column]] = None if value == "-" else (value if column == "cls" else int(value))
    return view


@pytest.mark.parametrize("policy,nice,rtprio", [
    ("SCHED_RR", 0, 42), ("SCHED_OTHER", 7, None), ("SCHED_FIFO", 0, 99)])
def test_priorities_match_ps(tick_binary, run_module, tmp_path, policy, nice, rtprio):
    def setup():
        if rtprio:
            os.sched_setscheduler(0, getattr(os, policy), os.sched_param(rtprio))
        else:
            os.nice(nice)
    proc, out = start_tick(tick_binary, str(tmp_path / "heartbeat"), tmp_path, setup)
    try:
        result = run_module("fleettrace.tracefs.proc_info", {"pid": proc.pid})
        assert not result.get("failed"), result.get("msg")
        assert result["changed"] is False and result["pids"] == [proc.pid]
        info = result["processes"][0]
        assert info["policy"] == policy
        assert info["priorities"]["rtprio"] == rtprio
        # Runtime truth: every priority view equals what procps prints for the same process.
        expected = ps_view(proc.pid)
        got = {key: info["priorities"][key] for key in expected}
        assert got == expected
        assert {"fd": 10, "target": str(tmp_path / "heartbeat")} in info["fds"]
        assert info["comm"] == "tick_loop" and info["cmdline"].startswith(tick_binary)
        assert len(info["threads"]) == 1 and info["threads"][0]["tid"] == proc.pid
        assert info["threads"][0]["policy"] == policy
        assert info["cgroup"] and info["state"] in ("S", "R")
        assert "kernel_prio" in result["priority_legend"]
    finally:
        proc.kill()
        proc.wait()
        out.close()


def test_find_by_name_pidfile_regex_and_missing(tick_binary, run_module, tmp_path, run_token):
    proc, out = start_tick(tick_binary, str(tmp_path / "heartbeat"), tmp_path)
    try:
        pidfile = tmp_path / "tick.pid"
        pidfile.write_text("%d\n" % proc.pid)
        by_file = run_module("fleettrace.tracefs.proc_info", {"pidfile": str(pidfile), "threads": False})
        assert by_file["pids"] == [proc.pid] and "threads" not in by_file["processes"][0]

        by_regex = run_module("fleettrace.tracefs.proc_info", {"cmdline_regex": str(tmp_path / "heartbeat")})
        assert by_regex["pids"] == [proc.pid]

        by_name = run_module("fleettrace.tracefs.proc_info", {"name": "tick_loop", "fds": False}, check=True)
        assert proc.pid in by_name["pids"] and by_name["changed"] is False

        missing_name = "nothing_%s" % run_token
        missing = run_module("fleettrace.tracefs.proc_info", {"name": missing_name})
        assert missing.get("failed") and "no process matches name %s" % missing_name in missing["msg"]
        allowed = run_module("fleettrace.tracefs.proc_info", {"name": missing_name, "allow_missing": True})
        assert not allowed.get("failed") and allowed["processes"] == []

        both = run_module("fleettrace.tracefs.proc_info", {"pid": proc.pid, "name": "x"})
        assert both.get("failed") and "mutually exclusive: pid|name" in both["msg"]
        # A role's defaults (pid 0, empty strings) count as not given.
        defaults = run_module("fleettrace.tracefs.proc_info", {"pid": 0, "name": "tick_loop", "pidfile": "",
                                                               "cmdline_regex": "", "fds": False})
        assert not defaults.get("failed") and proc.pid in defaults["pids"], defaults
        nothing = run_module("fleettrace.tracefs.proc_info", {"pid": 0, "name": ""})
        assert nothing.get("failed") and "give one of name, pid, pidfile, cmdline_regex" in nothing["msg"]
        negative = run_module("fleettrace.tracefs.proc_info", {"pid": -4})
        assert negative.get("failed") and "pid must be a positive process id, got -4" in negative["msg"]
        bad_regex = run_module("fleettrace.tracefs.proc_info", {"cmdline_regex": "("})
        assert bad_regex.get("failed") and "not a valid regular expression" in bad_regex["msg"]
        no_file = run_module("fleettrace.tracefs.proc_info", {"pidfile": str(tmp_path / "none.pid")})
        assert no_file.get("failed") and "cannot read pidfile" in no_file["msg"]
    finally:
        proc.kill()
        proc.wait()
        out.close()


def test_d_state_writer_on_frozen_fs(tick_binary, run_module, tmp_path):
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    with LoopExt4(tmp_path, size_mb=16) as fs:
        proc, out = start_tick(tick_binary, fs.file("heartbeat"), tmp_path)
        try:
            with fs.frozen():
                time.sleep(0.2)  # the next heartbeat write blocks on the frozen fs
                result = run_module("fleettrace.tracefs.proc_info", {"pid": proc.pid})
            info = result["processes"][0]
            assert info["state"] == "D", info
            assert info["state_name"].startswith("disk sleep")
            assert info["wchan"] == "percpu_rwsem_wait"
            assert info["kernel_stack"][0].startswith("percpu_rwsem_wait")
            assert any(frame.startswith("vfs_write") for frame in info["kernel_stack"])
            assert {"fd": 10, "target": fs.file("heartbeat")} in info["fds"]
        finally:
            proc.kill()
            proc.wait()
            out.close()
