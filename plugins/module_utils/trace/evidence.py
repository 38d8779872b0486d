# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mailing list's guesses settled with numbers.

When a cluster node's daemon stalls, the first suggestions are an overloaded
host, an overloaded VM host, memory that is not locked, a token timeout that
is too low, and KSM.  ``snapshot`` reads what the node's counters say before
and after the capture window (/proc/stat, the target's status, stat and
schedstat, /sys/kernel/mm/ksm); ``settle`` states, for each guess, what the
node showed and whether it is ruled out, against the stall the capture found.
No tracefs access.
"""


import os
import time

PROC_STAT_CPU = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
KSM_DIR = "/sys/kernel/mm/ksm"
STAT_MAJFLT = 9       # index of majflt in the fields after "(comm) " of /proc/PID/stat (field 12)
# A guess is ruled out when what it would take is under this share of the stall.
SMALL_SHARE = 0.1


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None


def snapshot(pid, proc="/proc", ksm_dir=KSM_DIR):
    """The counters the guesses need, now (missing files give None)."""
    facts = {"time": time.time(), "clock_ticks": os.sysconf("SC_CLK_TCK")}
    text = _read(os.path.join(proc, "stat")) or ""
    for line in text.splitlines():
        if line.startswith("cpu "):
            values = [int(v) for v in line.split()[1:1 + len(PROC_STAT_CPU)]]
            facts["cpu"] = dict(zip(PROC_STAT_CPU, values))
    status = _read(os.path.join(proc, str(pid), "status")) or ""
    for line in status.splitlines():
        key, _sep, value = line.partition(":")
        if key in ("VmLck", "VmRSS", "VmSwap"):
            facts[key] = int(value.split()[0])
    stat = _read(os.path.join(proc, str(pid), "stat"))
    if stat:
        facts["majflt"] = int(stat[stat.rindex(")") + 2:].split()[STAT_MAJFLT])
    schedstat = _read(os.path.join(proc, str(pid), "schedstat"))
    if schedstat:
        facts["run_delay_ns"] = int(schedstat.split()[1])
    ksm = {}
    for name in ("run", "pages_sharing", "pages_shared"):
        value = _read(os.path.join(ksm_dir, name))
        if value is not None:
            ksm[name] = int(value.strip())
    facts["ksm"] = ksm
    return facts


def _delta(before, after, key):
    if before.get(key) is None or after.get(key) is None:
        return None
    return after[key] - before[key]


def _guess(name, seen, ruled_out, why):
    return {"guess": name, "seen": seen, "ruled_out": ruled_out, "why": why}


def settle(before, after, finding=None, token_timeout_ms=None):
    """One entry per guess: {guess, seen, ruled_out (True/False/None: no data), why}."""
    stall_ms = finding.get("duration_ms") if finding else None
    cause = finding.get("cause") if finding else None
    window_s = max(after["time"] - before["time"], 1e-9)
    ms_per_tick = 1000.0 / (after.get("clock_ticks") or 100)
    guesses = []
    cpu_b, cpu_a = before.get("cpu"), after.get("cpu")
    total = sum(cpu_a[k] - cpu_b[k] for k in PROC_STAT_CPU) if cpu_b and cpu_a else 0
    runq_stall_ms = (finding.get("runnable_total_ns") or 0) / 1e6 if finding else None
    delay = _delta(before, after, "run_delay_ns")
    if total:
        idle = 100.0 * (cpu_a["idle"] - cpu_b["idle"] + cpu_a["iowait"] - cpu_b["iowait"]) / total
        seen = "CPU idle %.1f %% over the %.1f s window; the target waited %s ms for a CPU in the window" % (
            idle, window_s, "%.1f" % (delay / 1e6) if delay is not None else "?")
        if runq_stall_ms is not None:
            seen += ", %.1f ms of it between the late tick and the one before" % runq_stall_ms
        small = stall_ms is not None and runq_stall_ms is not None and runq_stall_ms < SMALL_SHARE * stall_ms
        guesses.append(_guess("overloaded host", seen, bool(small and cause != "runnable"),
                              "the stall was not time spent waiting for a CPU" if small and cause != "runnable"
                              else "the target waited for a CPU during the stall"))
        steal_ms = (cpu_a["steal"] - cpu_b["steal"]) * ms_per_tick
        seen = "steal time %.0f ms over the window (%.2f %% of all CPU time)" % (steal_ms, 100.0 * (cpu_a["steal"] - cpu_b["steal"]) / total)
        small = stall_ms is not None and steal_ms < SMALL_SHARE * stall_ms
        guesses.append(_guess("overloaded VM host", seen, small,
                              "the hypervisor took less than %d %% of the stall from this node" % (SMALL_SHARE * 100)
                              if small else "the hypervisor took CPU time comparable to the stall"))
    else:
        guesses.append(_guess("overloaded host", "no /proc/stat", None, "no data"))
        guesses.append(_guess("overloaded VM host", "no /proc/stat", None, "no data"))
    faults = _delta(before, after, "majflt")
    locked = after.get("VmLck")
    seen = "VmLck %s kB, %s major fault(s) during the window" % (locked, faults)
    if faults is None:
        guesses.append(_guess("memory not locked", seen, None, "the target's counters could not be read"))
    else:
        guesses.append(_guess("memory not locked", seen, faults == 0,
                              "no major fault: no page of the target had to be read from disk" if faults == 0
                              else "the target waited for %d page(s) from disk" % faults))
    if token_timeout_ms is None or stall_ms is None:
        guesses.append(_guess("token timeout too low", "token timeout not given" if token_timeout_ms is None
                              else "no stall length", None, "no data"))
    else:
        stall = float(stall_ms)
        seen = "the loop was not scheduled for %.1f ms; the token timeout is %d ms" % (stall, token_timeout_ms)
        guesses.append(_guess("token timeout too low", seen, True,
                              "the timeout only notices the stall: the loop itself stopped for %.1f ms%s" % (
                                  stall, ", longer than the timeout" if stall >= token_timeout_ms else "")))
    ksm = after.get("ksm") or {}
    if "run" not in ksm:
        guesses.append(_guess("KSM", "no %s on this kernel" % KSM_DIR, True, "KSM is not built in"))
    else:
        seen = "KSM run=%d, pages_sharing=%d" % (ksm["run"], ksm.get("pages_sharing", 0))
        off = ksm["run"] == 0 and ksm.get("pages_sharing", 0) == 0
        guesses.append(_guess("KSM", seen, off or (faults == 0 and ksm.get("pages_sharing", 0) == 0),
                              "KSM merges no page" if off or ksm.get("pages_sharing", 0) == 0
                              else "KSM shares pages on this node"))
    return guesses
