#!/usr/bin/env bash
# All benchmarks, side by side with the tools people use today (perf probe, perf sched,
# trace-cmd, bpftrace), ending with one table of every figure this run measured (with when and
# where).  Every figure quoted in docs/ comes from here.  Each prints ratios, not verdicts: the
# machine may be loaded by others, so only ratios from the same run compare.
set -euo pipefail
cd "$(dirname "$0")/.."
since=$(date +%s)
section() { printf '\n== %s\n' "$*"; }

# bpftrace is one of the tools compared (Debian's 0.17 runs as root); the rest comes with setup.sh.
if ! command -v bpftrace >/dev/null && command -v apt-get >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bpftrace >/dev/null || echo "bench: bpftrace not installed, left out"
fi

section "issue 24 points 1-2: probe resolver vs perf probe (cold and warm; one probe through Ansible)"
# The resolver's benchmarks (cold start on libpython and the sqlite3 amalgamation, one probe task
# against a no-op module) go in this section; each records its figures with
# benchmarks/bench_results.py so that the table at the end shows them with the others.
.venv/bin/python benchmarks/bench_resolver.py --runs 7

section "trace text parser: events/s and peak memory"
.venv/bin/python benchmarks/bench_trace_parser.py --real

section "issue 24 point 3: whole CPU per sched_switch at ~70k and ~210k events/s: the audit's collector vs perf sched record + latency, trace-cmd record + report, bpftrace"
.venv/bin/python benchmarks/bench_sched_latency.py --seconds 5 --steps 20000,60000 --repeat 3

section "where the collector's CPU goes: one window's pages recorded at ~100k events/s, then decoded and analysed again per phase"
pages=$(mktemp -d)
.venv/bin/python benchmarks/profile_sched_decode.py record "$pages" --seconds 3 --rounds 30000
.venv/bin/python benchmarks/profile_sched_decode.py replay "$pages" --repeat 5 --split
rm -rf "$pages"

section "observer effect on a program's own wakeup latency; one thread's waits vs the program, perf sched latency and bpftrace"
.venv/bin/python benchmarks/bench_ground_truth.py --seconds 5 --rounds 3

section "issue 24 point 4: the audit's fixed cost, 1 and 20 loopback hosts, wall and CPU outside the window"
.venv/bin/python benchmarks/bench_fanout.py --hosts 1,20 --window 2 --repeat 2

section "issue 21 point 4: an armed sentinel's cost while nothing happens, 10 minutes on real corosync, beside polling, trace-cmd and bpftrace"
.venv/bin/python benchmarks/bench_sentinel_idle.py --seconds 600 --target corosync

section "every figure of this run"
.venv/bin/python benchmarks/bench_results.py --since "$since"
