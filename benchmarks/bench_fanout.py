"""Controller cost of the scheduling audit fanned out to 1, 5, 10 and 20 hosts.

Runs ``playbooks/audit-sched-latency.yml`` (audit + report) against N inventory
hosts that are this machine through the loopback sshd of
scripts/ssh-loopback.sh (started if needed, never stopped: it is shared), with
forks = N and a short tracing window, and reports per N:

* wall seconds of the whole play and outside the tracing window (wall - window);
* controller CPU seconds (rusage of ansible-playbook and everything it started
  on the controller: ssh clients, delegated modules, the report), in total and
  per host;
* the same for a play of one ``ping`` per host against the same inventory, run
  in turn with the audit: Ansible's own cost (start, connection, a module run);
* node CPU seconds per host: what the loopback sshd's sessions used, with
  everything they ran and waited for (the module runs; read from the sshd
  listener's reaped-children times once the run's own ssh masters are closed);
  a module that daemonizes (async) is not in it.

The sshd listens on 127.0.0.1..16; hosts beyond 16 reuse those addresses under
their own inventory names (each audit names its instance after the inventory
host, so they never collide).  Every audit runs on this 2-CPU machine, which
other agents load too: compare rows of one run.

    sudo .venv/bin/python benchmarks/bench_fanout.py [--hosts 1,5,10,20] [--window 2] [--repeat 2] [--async]

Results: benchmarks/results/fanout.json (``benchmarks/bench_results.py`` prints its figures).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SSH_LOOPBACK = os.path.join(REPO, "scripts", "ssh-loopback.sh")
ADDRESSES = 16   # scripts/ssh-loopback.sh MAX_HOSTS
SSHD_PID_FILE = "/var/lib/fleettrace/ssh-loopback/sshd.pid"
TICKS = os.sysconf("SC_CLK_TCK")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_results  # noqa: E402


def sshd_listener():
    with open(SSHD_PID_FILE) as handle:
        return int(handle.read().split()[0])


def reaped_cpu_s(pid):
    """CPU seconds of the children ``pid`` has reaped (cutime + cstime of /proc/PID/stat)."""
    with open("/proc/%d/stat" % pid) as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / TICKS


def children_of(pid):
    found = 0
    for status in os.listdir("/proc"):
        if status.isdigit():
            try:
                with open("/proc/%s/stat" % status) as handle:
                    found += int(handle.read().rsplit(")", 1)[1].split()[1]) == pid
            except OSError:
                continue
    return found


def close_masters(control_dir, listener, sessions_before):
    """End this run's ssh masters, then wait (bounded) until sshd has reaped their sessions."""
    for name in os.listdir(control_dir):
        subprocess.run(["ssh", "-o", "ControlPath=" + os.path.join(control_dir, name), "-O", "exit", "fanout"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30, check=False)
    deadline = time.monotonic() + 15
    while children_of(listener) > sessions_before and time.monotonic() < deadline:
        time.sleep(0.1)


def inventory(count, path):
    """node1..nodeN over the loopback sshd; the connection settings come from the script's own inventory."""
    base = path + ".base"
    subprocess.run(["bash", SSH_LOOPBACK, "inventory", "1", base], check=True, stdout=subprocess.DEVNULL)
    with open(base) as handle:
        variables = handle.read().split("[nodes:vars]", 1)[1]
    with open(path, "w") as handle:
        handle.write("[nodes]\n")
        for index in range(count):
            handle.write("node%d ansible_host=127.0.0.%d\n" % (index + 1, index % ADDRESSES + 1))
        handle.write("\n[nodes:vars]" + variables)
    os.unlink(base)


NO_OP_PLAY = """- name: Ansible's own cost (start, connect, one module per host)
  hosts: nodes
  gather_facts: false
  tasks:
    - name: One module round trip per host
      ansible.builtin.ping:
"""


def run(count, window, workdir, extra_env, mode, no_op=False):
    inv = os.path.join(workdir, "inv-%d.ini" % count)
    inventory(count, inv)
    report = os.path.join(workdir, "report-%d" % count)
    # Masters of our own, closed after the run, so the node side's CPU is in sshd's books.
    control = tempfile.mkdtemp(prefix="cp", dir=workdir)
    env = dict(os.environ, ANSIBLE_FORKS=str(max(5, count)), ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
               ANSIBLE_SSH_CONTROL_PATH_DIR=control,
               PATH=os.path.join(REPO, ".venv", "bin") + os.pathsep + os.environ["PATH"], **extra_env)
    # The report module runs on the controller through the local connection, which passes this
    # environment on: with PYTHONUNBUFFERED set (some CI and agent shells), Python 3.11 reads the
    # piped module one byte per read(), ~0.7 us CPU per byte of its payload. Nodes over ssh never had it.
    env.pop("PYTHONUNBUFFERED", None)
    listener = sshd_listener()
    sessions_before = children_of(listener)
    node_cpu_before = reaped_cpu_s(listener)
    cmd = [os.path.join(REPO, ".venv", "bin", "ansible-playbook"), "-i", inv,
           os.path.join(REPO, "playbooks", "audit-sched-latency.yml"),
           "-e", json.dumps({"sched_audit_duration": window, "sched_audit_poll_seconds": 1,
                             "sched_audit_stack_traces": False, "fleettrace_report_dir": report,
                             "sched_audit_async": mode})]
    if no_op:
        playbook = os.path.join(workdir, "no-op.yml")
        with open(playbook, "w") as handle:
            handle.write(NO_OP_PLAY)
        cmd = cmd[:3] + [playbook]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True)
    out = proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    close_masters(control, listener, sessions_before)
    node_cpu = reaped_cpu_s(listener) - node_cpu_before
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("the %s of %d hosts failed:\n%s" % ("no-op play" if no_op else "audit", count, out[-3000:]))
    cpu = usage.ru_utime + usage.ru_stime
    if no_op:
        return {"hosts": count, "wall_s": round(wall, 2), "controller_cpu_s": round(cpu, 2),
                "node_cpu_s": round(node_cpu, 2)}
    with open(os.path.join(report, "report.json")) as handle:
        hosts = json.load(handle)["hosts"]
    windows = [h["sched_latency"]["window"]["duration_s"] for h in hosts.values() if h.get("sched_latency")]
    if len(windows) != count:
        raise SystemExit("expected %d host results, got %d" % (count, len(windows)))
    return {"hosts": count, "wall_s": round(wall, 2), "window_s": round(max(windows), 2),
            "outside_window_s": round(wall - max(windows), 2), "controller_cpu_s": round(cpu, 2),
            "controller_cpu_s_per_host": round(cpu / count, 3), "node_cpu_s": round(node_cpu, 2),
            "node_cpu_s_per_host": round(node_cpu / count, 3)}


def figures(rows):
    """Outside the window: one host (seconds, and the CPU both sides spent), the most hosts against one."""
    first, last = rows[0], rows[-1]
    found = [{"measure": "audit of %d host, wall outside the window" % first["hosts"], "ours": first["outside_window_s"],
              "unit": "s", "target": "<= 5 (quiet)"},
             {"measure": "audit of %d host, CPU (controller + node)" % first["hosts"],
              "ours": round(first["controller_cpu_s"] + first["node_cpu_s"], 2), "unit": "CPU-s", "target": "",
              "other": round(first["no_op"]["controller_cpu_s"] + first["no_op"]["node_cpu_s"], 2),
              "tool": "a play of one ping per host"},
             {"measure": "audit of %d host, wall outside the window" % first["hosts"],
              "ours": first["outside_window_s"], "other": first["no_op"]["wall_s"], "unit": "s",
              "tool": "a play of one ping per host", "target": ""}]
    if last is not first:
        found.append({"measure": "outside the window, %d hosts / %d host" % (last["hosts"], first["hosts"]),
                      "ours": last["outside_window_s"], "other": first["outside_window_s"], "unit": "s",
                      "tool": "the same audit of %d host" % first["hosts"], "target": "<= 1.5"})
        # Every loopback "host" runs on this machine's CPUs: Ansible's own one-ping play grows too, and
        # the audit's growth beside it is the part that would be ours on a real fleet.
        growth = "growth %d -> %d hosts outside the window, against a ping play's" % (first["hosts"], last["hosts"])
        found.append({"measure": growth,
                      "ours": round(last["outside_window_s"] / first["outside_window_s"], 2),
                      "other": round(last["no_op"]["wall_s"] / first["no_op"]["wall_s"], 2), "unit": "x",
                      "tool": "a play of one ping per host, the same hosts", "target": ""})
        found.append({"measure": "controller CPU per host, %d hosts" % last["hosts"],
                      "ours": last["controller_cpu_s_per_host"], "unit": "CPU-s", "target": "< 1"})
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--hosts", default="1,5,10,20")
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--async", dest="mode", action="store_const", const="always", default="auto",
                        help="start every window async and poll (the role's path for fewer forks than hosts)")
    parser.add_argument("--no-pipelining", action="store_true", help="measure with pipelining off, for comparison")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (tracefs, the loopback sshd)")
    subprocess.run(["bash", SSH_LOOPBACK, "start"], check=True, stdout=subprocess.DEVNULL)
    extra_env = {"ANSIBLE_PIPELINING": "False"} if args.no_pipelining else {}
    workdir = tempfile.mkdtemp(prefix="fleettrace-fanout-")
    load_before = os.getloadavg()
    rows = []
    try:
        print("%6s %8s %9s %11s %10s %13s %14s | %12s %10s %10s" % (
            "hosts", "wall s", "window s", "outside s", "ctl cpu s", "cpu s / host", "node cpu/host",
            "no-op wall s", "ctl cpu s", "node cpu s"))
        for count in [int(n) for n in args.hosts.split(",")]:
            runs, no_ops = [], []
            for _run in range(args.repeat):   # interleaved: the other agents' load hits both alike
                runs.append(run(count, args.window, workdir, extra_env, args.mode))
                no_ops.append(run(count, args.window, workdir, extra_env, args.mode, no_op=True))
            row = dict(min(runs, key=lambda r: r["outside_window_s"]))
            row["runs"] = runs
            row["no_op"] = dict(min(no_ops, key=lambda r: r["wall_s"]))
            row["no_op_runs"] = no_ops
            rows.append(row)
            cells = (count, row["wall_s"], row["window_s"], row["outside_window_s"], row["controller_cpu_s"],
                     row["controller_cpu_s_per_host"], row["node_cpu_s_per_host"], row["no_op"]["wall_s"],
                     row["no_op"]["controller_cpu_s"], row["no_op"]["node_cpu_s"])
            print("%6d %8.2f %9.2f %11.2f %10.2f %13.3f %14.3f | %12.2f %10.2f %10.2f" % cells)
            sys.stdout.flush()
        if rows[0]["outside_window_s"]:
            print("outside-window growth %d -> %d hosts: %.2fx" % (
                rows[0]["hosts"], rows[-1]["hosts"], rows[-1]["outside_window_s"] / rows[0]["outside_window_s"]))
        name = "fanout%s%s" % ("-no-pipelining" if args.no_pipelining else "", "-async" if args.mode == "always" else "")
        bench_results.record(name, figures(rows), rows=rows, window_s=args.window, loadavg_before=load_before,
                             pipelining=not args.no_pipelining, sched_audit_async=args.mode)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
