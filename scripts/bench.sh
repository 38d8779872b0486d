#!/usr/bin/env bash
# All benchmarks, side by side with the tools people use today (perf probe,
# trace-cmd).  Run on a quiet machine: each prints ratios, not verdicts.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== probe resolver vs perf probe --definition (cold and warm)"
.venv/bin/python benchmarks/bench_resolver.py --runs 7
echo "== trace text parser: events/s and peak memory"
.venv/bin/python benchmarks/bench_trace_parser.py --real
echo "== sched_latency collector vs trace-cmd record, same events, same run"
.venv/bin/python benchmarks/bench_sched_latency.py --seconds 5
echo "== fleet audit fanned out to 1, 5, 10 and 20 loopback hosts: wall outside the window, CPU per host"
.venv/bin/python benchmarks/bench_fanout.py --hosts 1,5,10,20 --window 2 --repeat 2
