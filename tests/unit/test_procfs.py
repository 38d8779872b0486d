"""procfs parsing, priority arithmetic and symbolization (on this test process itself)."""

import os
import subprocess
import time
import sys

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils import mapped_code, process_target, procfs

STAT_RR = ("3796 (corosync) S 1 3796 3796 0 -1 4194560 1 0 0 0 10 20 0 0 -100 0 7 0 100 1 1 "
           "0 0 0 0 0 0 0 0 0 0 0 0 0 17 1 99 2 0 0 0 0 0 0 0 0 0 0 0 0 0")


def test_parse_stat_with_awkward_comm():
    stat = procfs.parse_stat(STAT_RR.replace("(corosync)", "(a) b (c)"))
    assert stat["comm"] == "a) b (c"
    assert stat["state"] == "S" and stat["priority"] == -100 and stat["rt_priority"] == 99
    assert stat["policy"] == 2 and stat["num_threads"] == 7 and stat["processor"] == 1


def test_priorities_of_the_talks_quiz():
    # corosync: SCHED_RR priority 99.
    rr = procfs.priorities(procfs.parse_stat(STAT_RR))
    assert rr == {"class": "RR", "nice": None, "rtprio": 99, "stat_priority": -100, "kernel_prio": 0,
                  "pri": 139, "opri": -40, "pri_foo": -120, "pri_bar": -99, "pri_api": 99}
    normal = procfs.priorities({"priority": 20, "nice": 0, "rt_priority": 0, "policy": 0})
    assert normal == {"class": "TS", "nice": 0, "rtprio": None, "stat_priority": 20, "kernel_prio": 120,
                      "pri": 19, "opri": 80, "pri_foo": 0, "pri_bar": 21, "pri_api": -21}
    assert set(procfs.PRIORITY_EXPLAINED) == set(normal)


def test_this_process_facts():
    facts = procfs.process_facts(os.getpid())
    assert facts["pid"] == os.getpid() and facts["policy"] == "SCHED_OTHER"
    assert facts["priorities"]["nice"] == os.nice(0)
    assert facts["state"] == "R"
    assert facts["num_threads"] == len(facts["threads"])
    with open(__file__) as handle:
        fd = handle.fileno()
        assert {"fd": fd, "target": os.path.abspath(__file__)} in procfs.fd_targets(os.getpid())
        assert procfs.fd_target(os.getpid(), fd) == os.path.abspath(__file__)


def test_gone_process():
    proc = subprocess.Popen(["true"])
    proc.wait()
    with pytest.raises(procfs.ProcessGone):
        procfs.process_facts(proc.pid)
    assert process_target.find_pids(pid=proc.pid) == []
    assert not procfs.process_alive(proc.pid)


def test_zombie_is_not_alive():
    proc = subprocess.Popen(["true"])
    for _attempt in range(200):
        with open("/proc/%d/stat" % proc.pid) as handle:
            if ") Z " in handle.read():
                break
        subprocess.run(["sleep", "0.01"], check=True)
    assert procfs.pid_exists(proc.pid) and not procfs.process_alive(proc.pid)
    proc.wait()


def test_find_pids(tmp_path):
    # One process that never forks: a shell could fork 'sleep', and a child
    # that has not exec'd yet carries its parent's cmdline.
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", str(tmp_path)])
    try:
        # Until the child has exec'd, its cmdline is still the forking Python's.
        deadline = time.time() + 10
        while str(tmp_path) not in " ".join(procfs.cmdline(proc.pid) or []) and time.time() < deadline:
            time.sleep(0.01)
        assert process_target.find_pids(cmdline_regex=r"time\.sleep\(30\) %s$" % tmp_path) == [proc.pid]
        assert proc.pid in process_target.find_pids(name=os.path.basename(sys.executable))
        pidfile = tmp_path / "pid"
        pidfile.write_text("%d\n" % proc.pid)
        assert process_target.find_pids(pidfile=str(pidfile)) == [proc.pid]
        pidfile.write_text("garbage")
        with pytest.raises(ValueError):
            process_target.find_pids(pidfile=str(pidfile))
    finally:
        proc.kill()
        proc.wait()


def test_kernel_stack_and_cgroup_parsing():
    assert procfs.parse_kernel_stack("[<0>] percpu_rwsem_wait+0x15f/0x1d0\n[<0>] vfs_write+0x3f0/0x450\n") == [
        "percpu_rwsem_wait+0x15f/0x1d0", "vfs_write+0x3f0/0x450"]
    assert procfs.parse_cgroup("0::/system.slice/corosync.service\n4:cpu,cpuacct:/\n") == [
        {"hierarchy": 0, "controllers": [], "path": "/system.slice/corosync.service"},
        {"hierarchy": 4, "controllers": ["cpu", "cpuacct"], "path": "/"}]


def test_parse_maps():
    text = ("55d1c0a00000-55d1c0a21000 r-xp 00001000 fd:01 131 /usr/bin/x y\n"
            "7ffd43928000-7ffd43949000 rw-p 00000000 00:00 0                          [stack]\n")
    maps = mapped_code.parse_maps(text, files_only=False)
    first = maps[0]
    assert (first.start, first.end, first.perms, first.offset, first.name) == (
        0x55d1c0a00000, 0x55d1c0a21000, "r-xp", 0x1000, "/usr/bin/x y")
    assert maps[1].name == "[stack]"
    assert [m.name for m in mapped_code.parse_maps(text)] == ["/usr/bin/x y"]


def test_symbolize_a_libc_function_of_this_process():
    import ctypes
    libc = ctypes.CDLL(None)
    address = ctypes.cast(libc.getpid, ctypes.c_void_p).value
    frame = mapped_code.symbolize(os.getpid(), [address + 4, 8])
    assert frame[0]["object"] and "libc" in frame[0]["object"]
    assert frame[0]["symbol"] in ("getpid+0x4", "__getpid+0x4"), frame
    assert frame[1] == {"address": "0x8", "object": None, "symbol": None}


def test_symbolize_a_gone_process():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    with pytest.raises(procfs.ProcessGone):
        mapped_code.symbolize(proc.pid, [0x1000])


def test_user_stack_frames_of_every_form():
    import ctypes
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import event_sink
    libc = ctypes.CDLL(None)
    address = ctypes.cast(libc.getpid, ctypes.c_void_p).value + 4
    live = mapped_code.symbolize(os.getpid(), [address])[0]
    record = {"pid": os.getpid(), "user_stack": [
        " <%016x>" % address,                                       # bare address: needs the maps
        "%s[+%s]" % (live["object"], live["offset"]),              # option sym-userobj: file alone
        "??"]}
    gone = event_sink.symbolize_user_stacks([record])
    assert gone == []
    frames = record["user_stack"]
    assert frames[0]["symbol"] == live["symbol"] and frames[0]["address"] == "0x%x" % address
    assert frames[1]["symbol"] == live["symbol"] and frames[1]["object"] == live["object"]
    assert frames[2] == {"address": None, "object": None, "symbol": None, "text": "??"}

    dead = {"pid": 999999999, "user_stack": [" <%016x>" % address]}
    assert event_sink.symbolize_user_stacks([dead], pid_alive=lambda pid: False) == [999999999]
    assert dead["user_stack"] == [{"address": "0x%x" % address, "object": None, "symbol": None}]


def test_target_criteria_checked_found_and_said(tmp_path):
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError, OptionError
    with pytest.raises(OptionError, match="not a valid regular expression"):
        process_target.check_target({"cmdline_regex": "("})
    with pytest.raises(OptionError, match="positive process id"):
        process_target.check_target({"pid": 0})
    me = {"name": None, "pid": os.getpid(), "pidfile": None, "cmdline_regex": None}
    process_target.check_target(me)
    assert process_target.find_target(me) == [os.getpid()]
    assert process_target.describe_target(me) == "pid %d" % os.getpid()
    with pytest.raises(FleettraceError, match="cannot read pidfile"):
        process_target.find_target({"pidfile": str(tmp_path / "missing.pid")})


def test_empty_criteria_and_pid_0_are_not_given():
    given = process_target.given_criteria({"name": "", "pid": 0, "pidfile": "", "cmdline_regex": "corosync -f"})
    assert given == {"name": None, "pid": None, "pidfile": None, "cmdline_regex": "corosync -f"}
    assert process_target.given_criteria({"pid": -3})["pid"] == -3     # refused by check_target, not dropped


def test_criteria_that_name_the_process_twice_or_not_at_all_are_refused():
    process_target.check_exclusive(process_target.given_criteria({"pid": 0, "name": "corosync"}))
    process_target.check_exclusive(process_target.given_criteria({"name": "corosync", "cmdline_regex": "-f"}))
    with pytest.raises(process_target.OptionError, match=r"mutually exclusive: pid\|name"):
        process_target.check_exclusive(process_target.given_criteria({"pid": 42, "name": "corosync"}))
    with pytest.raises(process_target.OptionError, match=r"mutually exclusive: pidfile\|cmdline_regex"):
        process_target.check_exclusive(process_target.given_criteria({"pidfile": "/run/x.pid", "cmdline_regex": "x"}))
    with pytest.raises(process_target.OptionError, match="give one of name, pid, pidfile, cmdline_regex"):
        process_target.check_exclusive(process_target.given_criteria({"pid": 0, "name": ""}))
