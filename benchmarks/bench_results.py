"""Every benchmark's figures in one table, each with when and where it was measured.

A benchmark records its figures with ``record(name, figures, **facts)``: it
writes benchmarks/results/<name>.json with the date, host, kernel, CPU count and
load average next to them.  A figure is a dict:

    {"measure": "whole CPU per sched_switch, 69k events/s", "ours": 2.1, "other": 2.4,
     "tool": "perf sched record + perf sched latency", "unit": "us", "target": "<= 1"}

(``ratio`` = ours / other is added unless given: a median of same-run ratios), or, for a
figure with no tool beside it,
``{"measure": ..., "ours": ..., "unit": ..., "target": ...}``.

``make bench`` ends with ``python benchmarks/bench_results.py``, which prints every
figure of the results written in this run (or all with ``--all``).

    .venv/bin/python benchmarks/bench_results.py [--since EPOCH] [--all]
"""

import argparse
import glob
import json
import os
import socket
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "benchmarks", "results")


def record(name, figures, **facts):
    """Write benchmarks/results/<name>.json: ``facts`` (the raw numbers) and ``figures``, stamped."""
    for figure in figures:
        if figure.get("ratio") is None and figure.get("other"):
            figure["ratio"] = round(figure["ours"] / figure["other"], 2)
    document = {"benchmark": name, "measured": time.strftime("%Y-%m-%d %H:%M %Z"), "measured_epoch": time.time(),
                "host": socket.gethostname(), "kernel": os.uname().release, "cpus": os.cpu_count(),
                "loadavg_at_end": [round(v, 1) for v in os.getloadavg()], "figures": figures}
    document.update(facts)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "%s.json" % name), "w") as handle:
        json.dump(document, handle, indent=2)
    return document


def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return "%.0f" % value if abs(value) >= 1000 else "%.1f" % value if abs(value) >= 10 else "%.3g" % value
    return str(value)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--since", type=float, default=0.0, help="only results written after this epoch time")
    parser.add_argument("--all", action="store_true", help="every result file, however old")
    args = parser.parse_args()
    documents = []
    for path in sorted(glob.glob(os.path.join(RESULTS, "*.json"))):
        try:
            with open(path) as handle:
                document = json.load(handle)
        except (OSError, ValueError):
            continue
        if "figures" in document and (args.all or document.get("measured_epoch", 0) >= args.since):
            documents.append(document)
    if not documents:
        print("no benchmark results%s in %s" % ("" if args.all else " from this run", RESULTS))
        return
    print("%-58s %9s %9s %6s %-5s %-9s  %s" % ("measure", "ours", "other", "ratio", "unit", "target", "tool"))
    for document in documents:
        print("-- %s: %s on %s (kernel %s, %d CPUs, load average %s at the end)" % (
            document["benchmark"], document["measured"], document["host"], document["kernel"], document["cpus"],
            "/".join(str(v) for v in document["loadavg_at_end"])))
        for figure in document["figures"]:
            print("%-58s %9s %9s %6s %-5s %-9s  %s" % (
                figure["measure"][:58], _cell(figure.get("ours")), _cell(figure.get("other")),
                _cell(figure.get("ratio")), figure.get("unit", ""), figure.get("target", ""), figure.get("tool", "")))


if __name__ == "__main__":
    main()
