"""The incident's Python core: ioctl and syscall decoding, every kind of stall, guesses, latency pairing."""

import os
import subprocess

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import correlate, evidence, ioctl, latency, syscalls
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace.text_parser import parse_trace

# name -> the header that defines it, for the truth printed by the C compiler.
HEADER_NAMES = {
    "linux/watchdog.h": ["WDIOC_GETSUPPORT", "WDIOC_GETSTATUS", "WDIOC_SETOPTIONS", "WDIOC_KEEPALIVE",
                         "WDIOC_SETTIMEOUT", "WDIOC_GETTIMEOUT", "WDIOC_SETPRETIMEOUT", "WDIOC_GETTIMELEFT",
                         "WDIOC_GETBOOTSTATUS", "WDIOC_GETTEMP", "WDIOC_GETPRETIMEOUT"],
    "linux/fs.h": ["FIFREEZE", "FITHAW", "FITRIM", "BLKGETSIZE64", "BLKSSZGET", "BLKFLSBUF", "BLKBSZGET",
                   "FS_IOC_GETFLAGS", "FS_IOC_SETFLAGS", "FS_IOC_FIEMAP", "FS_IOC_FSGETXATTR", "FICLONE",
                   "FICLONERANGE", "BLKDISCARD", "BLKZEROOUT", "FS_IOC_GETVERSION", "BLKROGET", "BLKRRPART"],
    "sys/ioctl.h": ["TCGETS", "TCSETS", "TIOCGWINSZ", "FIONREAD", "TIOCOUTQ", "TIOCGPTN", "FIONBIO"],
}


def test_ioctl_names_and_fields_agree_with_the_kernel_headers(tmp_path):
    cc = subprocess.run(["sh", "-c", "command -v gcc || command -v cc"], stdout=subprocess.PIPE,
                        text=True, check=False).stdout.strip()
    if not cc or not os.path.exists("/usr/include/linux/watchdog.h"):
        pytest.skip("needs a C compiler and the kernel headers")
    source = tmp_path / "cmds.c"
    lines = ["#include <stdio.h>", "#include <linux/fiemap.h>"] + ["#include <%s>" % h for h in HEADER_NAMES]
    lines.append("int main(void) {")
    for names in HEADER_NAMES.values():
        lines += ['printf("%s %%lu\\n", (unsigned long)(%s));' % (n, n) for n in names]
    lines.append("return 0; }")
    source.write_text("\n".join(lines) + "\n")
    subprocess.run([cc, "-o", str(tmp_path / "cmds"), str(source)], check=True)
    out = subprocess.run([str(tmp_path / "cmds")], stdout=subprocess.PIPE, text=True, check=True).stdout
    truth = {name: int(value) for name, value in (line.split() for line in out.splitlines())}
    wrong = [(n, hex(v), ioctl.decode(v)["text"]) for n, v in sorted(truth.items()) if ioctl.decode(v)["name"] != n]
    assert not wrong, wrong


def test_ioctl_decoding_without_a_name():
    keepalive = ioctl.decode(0x80045705)
    assert keepalive["macro"] == "_IOR('W', 5, int)" and keepalive["text"] == "WDIOC_KEEPALIVE"
    assert (keepalive["dir"], keepalive["type"], keepalive["nr"], keepalive["size"]) == ("read", "W", 5, 4)
    unknown = ioctl.decode(0xC0185A01)  # _IOWR('Z', 1, 24 bytes): no family we name
    assert unknown["name"] is None and unknown["text"] == "_IOWR('Z', 1, 24)"
    assert ioctl.decode(0x1234)["text"] == "_IO(0x12, 52)"


def test_calls_print_like_strace():
    paths = {10: "/dev/watchdog"}
    assert syscalls.short_call("ioctl", [10, 0x80045705, 0, 0, 0, 0], paths) == "ioctl(fd 10 -> /dev/watchdog, WDIOC_KEEPALIVE)"
    assert syscalls.format_call("ioctl", [10, 0xC0045877, 0, 0, 0, 0]) == "ioctl(fd 10, FIFREEZE, 0x0)"
    assert syscalls.format_call("openat", [0xFFFFFF9C, 0x1000, 0o2101, 0o644, 0, 0]) == \
        "openat(AT_FDCWD, 0x1000, O_WRONLY|O_CREAT|O_APPEND, 0x1a4)"
    assert syscalls.open_flags(0o2000000 | 0o4010000 | 2) == "O_RDWR|O_SYNC|O_CLOEXEC"
    assert syscalls.format_call("write", {"fd": 3, "buf": 0x10, "count": 7}, {3: "/var/log/x"}) == \
        "write(fd 3 -> /var/log/x, 0x10, 7)"
    assert syscalls.format_call("syscall_999", [1, 2]) == "syscall_999(0x1, 0x2)"


def line(ts, body, pid=3796, cpu=1, comm="corosync"):
    return "%16s-%-7d [%03d] d..2. %12s: %s" % (comm, pid, cpu, ts, body)


def switch(ts, prev, state, nxt, prev_comm="corosync", next_comm="corosync", cpu=1):
    return line(ts, "sched_switch: prev_comm=%s prev_pid=%d prev_prio=120 prev_state=%s ==> next_comm=%s "
                    "next_pid=%d next_prio=120" % (prev_comm, prev, state, next_comm, nxt), pid=prev, cpu=cpu)


def wakeup(ts, pid, waker=0):
    return line(ts, "sched_wakeup: comm=corosync pid=%d prio=120 target_cpu=001" % pid, pid=waker, comm="swapper/1")


def tick(ts, value):
    return line(ts, "tick: (0x401000) tv_diff=%d" % value)


def enter(ts, nr, *args):
    return line(ts, "sys_enter: NR %d (%s)" % (nr, ", ".join("%x" % a for a in args + (0,) * (6 - len(args)))))


def exit_(ts, nr):
    return line(ts, "sys_exit: NR %d = 0" % nr)


def stalls(lines, states=correlate.ALL_STATES):
    events = parse_trace("\n".join(lines) + "\n")["events"]
    return correlate.find_stalls(events, "tick", "tv_diff", 500 * 10 ** 6, states=states, resolve_fds=False, unit="ns")


def test_s_state_ioctl_is_the_culprit_and_the_idle_wait_is_left_out():
    finding = stalls([
        tick("1.000000", 10 ** 6),
        enter("1.000010", 16, 10, 0x80045705), switch("1.000020", 3796, "S", 0, next_comm="swapper/1"),
        wakeup("2.000020", 3796), switch("2.000030", 0, "R", 3796, prev_comm="swapper/1"),
        exit_("2.000040", 16),
        enter("2.000050", 232, 4, 0, 1, 100), switch("2.000060", 3796, "S", 0, next_comm="swapper/1"),
        wakeup("2.100060", 3796), switch("2.100070", 0, "R", 3796, prev_comm="swapper/1"), exit_("2.100080", 232),
        tick("2.100090", 1100090000),
    ])[0]
    assert finding["cause"] == "blocked" and finding["state"] == "S"
    assert finding["asleep_ns"] == 10 ** 9 and finding["runnable_ns"] == 10000
    assert finding["syscall"]["short"] == "ioctl(fd 10, WDIOC_KEEPALIVE)"
    assert finding["excluded"]["syscall"] == "epoll_wait" and finding["excluded"]["asleep_ns"] == 100 * 10 ** 6
    assert finding["duration_ms"] == 1100.09
    assert "Left out: 100.0 ms asleep in epoll_wait" in " ".join(finding["explanation"])


def test_runnable_names_who_ran_instead_and_stopped_says_so():
    runnable = stalls([
        tick("1.000000", 10 ** 6),
        enter("1.000010", 230, 1, 0, 0, 0), switch("1.000020", 3796, "S", 0, next_comm="swapper/1"),
        wakeup("1.020000", 3796),
        switch("1.700000", 4242, "R", 3796, prev_comm="hog"),
        tick("1.700010", 700010000),
    ])[0]
    assert runnable["cause"] == "runnable" and runnable["state"] == "R"
    assert runnable["runnable_ns"] == 680 * 10 ** 6 and runnable["ran_instead"] == {"comm": "hog", "pid": 4242}
    # Without the CPU context only the last task before the switch-in is known: not called the culprit.
    assert "hog[4242] ran last before it (who held the CPU was not recorded)" in runnable["summary"]
    assert runnable["runnable_wait"]["from_ns"] == 1020000000 and runnable["runnable_wait"]["until_ns"] == 1700000000
    assert runnable["excluded"]["syscall"] == "clock_nanosleep"

    stopped = stalls([
        tick("1.000000", 10 ** 6),
        enter("1.000010", 230, 1, 0, 0, 0), switch("1.000020", 3796, "T", 0, next_comm="swapper/1"),
        wakeup("2.000020", 3796), switch("2.000030", 0, "R", 3796, prev_comm="swapper/1"),
        tick("2.000040", 1000040000),
    ])[0]
    assert stopped["cause"] == "stopped" and stopped["state"] == "T" and stopped["asleep_ns"] == 10 ** 9
    assert "SIGSTOP or a debugger" in stopped["explanation"][1]


def test_preempted_while_running_is_runnable_and_inlined_probe_copies_all_count():
    text = "\n".join([
        tick("1.000000", 10 ** 6),
        switch("1.000100", 3796, "R+", 4242, next_comm="hog"),
        switch("1.800100", 4242, "S", 3796, prev_comm="hog"),
        line("1.800200", "tick_2: (0x401100) tv_diff=800200000"),
    ]) + "\n"
    events = parse_trace(text)["events"]
    finder = correlate.StallFinder(["grp:tick", "grp:tick_2"], "tv_diff", 500 * 10 ** 6, states=correlate.ALL_STATES,
                                   resolve_fds=False, unit="ns")
    for record in events:
        finder.feed(record)
    finding = finder.findings()[0]
    assert finding["cause"] == "runnable" and finding["left_in_state"] == "R"
    assert finding["runnable_ns"] == 800 * 10 ** 6 and finding["asleep_ns"] == 0
    assert finding["ran_instead"] == {"comm": "hog", "pid": 4242}
    assert "preempted at 1.000100 s" in finding["explanation"][1]


def test_a_hit_without_explanation_is_still_a_finding():
    first = stalls([tick("2.000000", 900 * 10 ** 6)])[0]
    assert first["cause"] == "unexplained" and first["began_before_capture"] is True
    assert first["duration_ms"] == 900.0
    assert "may have begun before tracing was armed" in first["explanation"][1]
    busy = stalls([tick("1.000000", 10 ** 6), tick("1.900000", 900 * 10 ** 6)])[0]
    assert busy["cause"] == "unexplained" and busy["began_before_capture"] is False
    assert "never left the CPU" in busy["explanation"][1]


def test_a_short_stretch_does_not_explain_a_long_stall():
    # A keepalive entered before arming: only its wakeup, switch-in and a 0.1 ms preemption are in the buffer.
    finding = stalls([
        wakeup("2.000000", 3796), switch("2.000010", 0, "R", 3796, prev_comm="swapper/1"),
        exit_("2.000020", 16),
        switch("2.000030", 3796, "R+", 4242, next_comm="ansible-playboo"),
        switch("2.000130", 4242, "S", 3796, prev_comm="ansible-playboo"),
        tick("2.000200", 1100 * 10 ** 6),
    ])[0]
    assert finding["cause"] == "unexplained" and finding["began_before_capture"] is True
    assert finding["missing_cause"][0] == "the longest stretch found (runnable, 0.1 ms) is only 0 % of the stall"
    assert finding["duration_ms"] == 1100.0 and finding["ran_instead"] is None


def test_probe_values_are_the_distribution_of_every_hit():
    events = parse_trace("\n".join([tick("1.0", 20 * 10 ** 6), tick("1.02", 21 * 10 ** 6),
                                    tick("1.9", 880 * 10 ** 6)]) + "\n")["events"]
    finder = correlate.StallFinder("tick", "tv_diff", 500 * 10 ** 6, resolve_fds=False, unit="ns")
    for record in events:
        finder.feed(record)
    summary = latency.distribution(finder.probe_values())
    assert summary["count"] == 3 and summary["p50_ms"] == 21.0 and summary["max_ms"] == 880.0


def snapshot(time_s, idle, steal, majflt, run_delay_ns, ksm_sharing=0, vmlck=0):
    return {"time": time_s, "clock_ticks": 100, "majflt": majflt, "run_delay_ns": run_delay_ns, "VmLck": vmlck,
            "cpu": {"user": 100, "nice": 0, "system": 50, "idle": idle, "iowait": 0, "irq": 0, "softirq": 0,
                    "steal": steal}, "ksm": {"run": 1 if ksm_sharing else 0, "pages_sharing": ksm_sharing}}


def test_guesses_are_settled_from_the_counters():
    finding = {"duration_ms": 1000.0, "cause": "blocked", "runnable_total_ns": 10 ** 5}
    quiet = evidence.settle(snapshot(0, 1000, 0, 5, 0), snapshot(2, 1390, 0, 5, 10 ** 5), finding, token_timeout_ms=1000)
    assert [g["ruled_out"] for g in quiet] == [True, True, True, True, True]
    assert "CPU idle 100.0 %" in quiet[0]["seen"] and "VmLck 0 kB, 0 major fault" in quiet[2]["seen"]
    busy_vm = evidence.settle(snapshot(0, 1000, 0, 5, 0), snapshot(2, 1010, 300, 9, 0, ksm_sharing=50), finding)
    verdicts = {g["guess"]: g["ruled_out"] for g in busy_vm}
    assert verdicts == {"overloaded host": True, "overloaded VM host": False, "memory not locked": False,
                        "token timeout too low": None, "KSM": False}


def test_snapshot_reads_this_process():
    facts = evidence.snapshot(os.getpid())
    assert facts["cpu"]["idle"] > 0 and facts["majflt"] >= 0 and "VmLck" in facts


def test_latency_pairs_entries_with_exits_and_filters_in_the_kernel():
    assert latency.filters(42, "ioctl", fd=10, cmd=0x80045705) == (
        "common_pid == 42 && fd == 10 && cmd == 2147768069", "common_pid == 42")
    pairing = latency.Pairing("ioctl", fd=10, cmd=0x80045705, max_samples=2)
    records = parse_trace("\n".join([
        enter("1.000000", 16, 10, 0x80045705), exit_("1.000100", 16),
        enter("1.100000", 16, 11, 0x80045705), exit_("1.100050", 16),   # another fd: not this culprit
        enter("1.200000", 16, 10, 0x80045705), exit_("2.200000", 16),
        enter("2.300000", 16, 10, 0x80045705), exit_("2.300010", 16),   # after max_samples
    ]) + "\n")["events"]
    for record in records:
        pairing.add(record)
    assert pairing.done() and [s["ns"] for s in pairing.samples] == [100000, 10 ** 9]
    assert pairing.series.summary(unit="ms")["max_ms"] == 1000.0
