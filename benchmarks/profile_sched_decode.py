"""Profile the sched audit's decode + analysis on saved raw pages (no tracing while profiling).

Record once (root; a paced ping-pong load runs while our collector copies pages):

    sudo .venv/bin/python benchmarks/profile_sched_decode.py record DIR [--seconds 3] [--rounds 20000]

DIR then holds the per-CPU spool files (``cpuN.pages``), ``header_page``, the
events' ``format`` files and the per-CPU ``stats`` of the window.  Replay them
through the collector's own ``analyse()`` as often as wanted:

    .venv/bin/python benchmarks/profile_sched_decode.py replay DIR [--repeat 5] [--profile] [--out result.json]

``replay`` prints the CPU seconds per event of decode + analysis (best of
``--repeat``), optionally a cProfile table, and writes the analysis result as
sorted JSON (``--out``) so that two versions of the code can be compared on the
same pages byte for byte (``cmp before.json after.json``); ``--split`` prints the CPU of each
phase (loss scan, decode + merge, analysis loop, fold + result).  ``--decode-digest``
also prints a sha256 of every decoded event, to pin decoding alone.

Before and after a change, on the same pages:

    .venv/bin/python benchmarks/profile_sched_decode.py replay DIR --baseline main [--rounds 8]

replays the collection as of the git ref and the working tree in turns (one process per replay,
interleaved so that a machine whose load comes and goes charges both alike), prints the CPU per
event of each (least and median of the rounds) and says whether their result documents are
identical byte for byte; with ``--split``, then the phases of each.
"""

import argparse
import cProfile
import glob
import hashlib
import json
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# --baseline runs this script again with an older collection here.
COLLECTIONS = os.environ.get("FLEETTRACE_PROFILE_COLLECTIONS") or os.path.join(REPO, ".cache", "collections")
sys.path.insert(0, COLLECTIONS)

# pylint: disable=wrong-import-position
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import page_spool  # noqa: E402
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched import analysis  # noqa: E402
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched import collector as sched_collector  # noqa: E402
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched import pages as sched_pages  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_results  # noqa: E402

LOAD_PAIRS = 2


def record(args):
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import core as tracefs_core
    os.makedirs(args.dir, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="fleettrace-profile-")
    try:
        load_binary = os.path.join(workdir, "sched_load")
        subprocess.run(["gcc", "-O2", "-pthread", "-o", load_binary,
                        os.path.join(REPO, "benchmarks", "sched_load.c")], check=True)
        load = subprocess.Popen([load_binary, str(LOAD_PAIRS), str(args.rounds), str(args.seconds + 3)])
        time.sleep(1.0)
        tracefs = tracefs_core.Tracefs()
        analyzer = analysis.SchedAnalyzer()
        collector = sched_collector.SchedCollector(tracefs, sched_collector.default_instance_name("profile"),
                                                   analyzer)
        try:
            collector.setup()
            collector.record(args.seconds)
            for name in collector.events:
                text = collector.instance.read("events", "sched", name, "format")
                _write(args.dir, "events__sched__%s__format" % name, text)
            _write(args.dir, "events__header_page", tracefs.read("events/header_page"))
            _write(args.dir, "stats.json", json.dumps(collector.stats))
            for cpu, handle in collector.spool.files.items():
                handle.flush()
                handle.seek(0)
                with open(os.path.join(args.dir, "cpu%d.pages" % cpu), "wb") as out:
                    shutil.copyfileobj(handle, out)
        finally:
            collector.close()
            load.kill()
            load.wait()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("recorded %d bytes of pages into %s" % (collector.bytes_read, args.dir))


def _write(directory, name, text):
    with open(os.path.join(directory, name), "w") as handle:
        handle.write(text)


class Saved:
    """The saved window: pages, decoders built from the saved formats, stats."""

    def __init__(self, directory):
        def read_format(group, name):
            return _read(directory, "events__%s__%s__format" % (group, name))
        events = sorted(re.match(r"events__sched__(\w+)__format", os.path.basename(p)).group(1)
                        for p in glob.glob(os.path.join(directory, "events__sched__*__format")))
        self.layout, self.decoders, self.kinds = sched_pages.build_decoders(
            read_format, _read(directory, "events__header_page"), events)
        self.stats = {int(cpu): stats for cpu, stats in json.loads(_read(directory, "stats.json")).items()}
        self.spool = page_spool.PageSpool(directory, [])
        for path in sorted(glob.glob(os.path.join(directory, "cpu*.pages"))):
            cpu = int(re.search(r"cpu(\d+)\.pages$", path).group(1))
            self.spool.files[cpu] = open(path, "rb")  # pylint: disable=consider-using-with


def _read(directory, name):
    with open(os.path.join(directory, name)) as handle:
        return handle.read()


def analyse_once(directory):
    saved = Saved(directory)
    analyzer = analysis.SchedAnalyzer()
    start = time.process_time()   # ns resolution (os.times counts 10 ms ticks)
    sched_pages.analyse_pages(analyzer, saved.spool, saved.layout, saved.decoders, saved.kinds, saved.stats)
    analyzer.finish()
    result = analyzer.result()
    cpu = time.process_time() - start
    saved.spool.close()
    return result, cpu


def decode_digest(directory):
    saved = Saved(directory)
    digest = hashlib.sha256()
    count = 0
    for batch in saved.spool.merged(saved.layout, saved.decoders):
        for event in batch:
            digest.update(repr(event).encode())
            count += 1
    saved.spool.close()
    return count, digest.hexdigest()


def phases_once(directory):
    """CPU seconds of each phase of one replay, all timed in that replay: loss scan, decode + merge
    (the page generator's own time), the analysis loop (the rest of ``analyse_pages``: ``feed``, and
    freeing each batch's events), the folds of waits into the series the loop makes every FOLD_AT
    waits, fold + result at the end."""
    saved = Saved(directory)
    analyzer = analysis.SchedAnalyzer()
    spent = {"loss scan": 0.0, "decode + merge": 0.0, "folds in the loop": 0.0}

    def timed(name, call):
        def run(*args):
            begun = time.process_time()
            try:
                return call(*args)
            finally:
                spent[name] += time.process_time() - begun
        return run

    merged = saved.spool.merged

    def timed_merged(layout, decoders):
        batches = merged(layout, decoders)
        step = timed("decode + merge", lambda: next(batches, None))
        while True:
            batch = step()
            if batch is None:
                return
            yield batch
    saved.spool.merged = timed_merged
    saved.spool.losses = timed("loss scan", saved.spool.losses)
    fold = analyzer.waits.flush
    analyzer.waits.flush = timed("folds in the loop", fold)
    start = time.process_time()
    sched_pages.analyse_pages(analyzer, saved.spool, saved.layout, saved.decoders, saved.kinds, saved.stats)
    pages = time.process_time() - start
    analyzer.waits.flush = fold
    start = time.process_time()
    analyzer.finish()
    analyzer.result()
    result = time.process_time() - start
    saved.spool.close()
    phases = dict(spent)
    phases["analysis loop"] = max(0.0, pages - sum(spent.values()))
    phases["fold + result"] = result
    return phases


def split(args, events, switches):
    """Where the time goes: each phase's best of ``--repeat``, per event, and its share."""
    best = {}
    for _run in range(args.repeat):
        for name, seconds in phases_once(args.dir).items():
            best[name] = min(best.get(name, seconds), seconds)
    total = sum(best.values())
    figures = []
    for name, seconds in best.items():
        print("  %-15s %.3f us/event  %4.1f %%" % (name, seconds * 1e6 / events, 100.0 * seconds / total))
        figures.append({"measure": "replay of %d events: %s, per event" % (events, name),
                        "ours": round(seconds * 1e6 / events, 3), "unit": "us", "target": ""})
    figures.append({"measure": "replay of %d events: all phases, per sched_switch" % events,
                    "ours": round(total * 1e6 / max(1, switches), 3), "unit": "us", "target": ""})
    bench_results.record("sched_decode_phases", figures, events=events, switches=switches, best_seconds=best)


def against_baseline(args):
    """Interleaved replays of the working tree and ``--baseline``: CPU per event of each, same result?"""
    import statistics
    import bench_sched_latency   # pylint: disable=import-outside-toplevel
    workdir = tempfile.mkdtemp(prefix="fleettrace-profile-baseline-")
    try:
        trees = (("baseline " + args.baseline, bench_sched_latency.baseline_tree(args.baseline, workdir)),
                 ("working tree", COLLECTIONS))
        per_event = {name: [] for name, _root in trees}
        outputs = {}
        for _round in range(args.rounds):
            for index, (name, root) in enumerate(trees):
                out = os.path.join(workdir, "result%d.json" % index)
                env = dict(os.environ, FLEETTRACE_PROFILE_COLLECTIONS=root)
                text = subprocess.run([sys.executable, os.path.abspath(__file__), "replay", args.dir, "--repeat", "1",
                                       "--out", out], env=env, check=True, stdout=subprocess.PIPE,
                                      universal_newlines=True).stdout
                per_event[name].append(float(re.search(r"= ([0-9.]+) us/event", text).group(1)))
                outputs[name] = _read(workdir, os.path.basename(out))
        for name, values in per_event.items():
            print("%-20s %.3f us/event least, %.3f median of %d rounds"
                  % (name, min(values), statistics.median(values), len(values)))
        (before, old), (after, new) = per_event.items()
        print("working tree / baseline: %.3f least, %.3f median of the rounds' ratios"
              % (min(new) / min(old), statistics.median(n / o for n, o in zip(new, old))))
        print("result documents identical: %s" % ("yes" if outputs[before] == outputs[after] else "NO"))
        if args.split:   # each tree's phases (the working tree's last: its figures are the ones recorded)
            for name, root in trees:
                env = dict(os.environ, FLEETTRACE_PROFILE_COLLECTIONS=root)
                print(name + ":")
                sys.stdout.flush()
                subprocess.run([sys.executable, os.path.abspath(__file__), "replay", args.dir, "--repeat",
                                str(args.repeat), "--split"], env=env, check=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def replay(args):
    if args.baseline:
        against_baseline(args)
        return
    best = None
    result = None
    for _run in range(args.repeat):
        result, cpu = analyse_once(args.dir)
        best = cpu if best is None else min(best, cpu)
    events = sum(result["event_counts"].values())
    switches = result["event_counts"].get("sched_switch", 0)
    print("%d events, %d switches: best %.3f CPU-s = %.3f us/event, %.3f us/switch"
          % (events, switches, best, best * 1e6 / events, best * 1e6 / max(1, switches)))
    if args.split:
        split(args, events, switches)
    if args.decode_digest:
        print("decoded: %d events, sha256 %s" % decode_digest(args.dir))
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(analyse_once, args.dir)
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=1, sort_keys=True, default=repr)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("dir")
    rec.add_argument("--seconds", type=float, default=3.0)
    rec.add_argument("--rounds", type=int, default=20000, help="ping-pong round trips per second")
    rep = sub.add_parser("replay")
    rep.add_argument("dir")
    rep.add_argument("--repeat", type=int, default=5)
    rep.add_argument("--profile", action="store_true")
    rep.add_argument("--top", type=int, default=25)
    rep.add_argument("--decode-digest", action="store_true")
    rep.add_argument("--split", action="store_true", help="CPU per phase (recorded for bench_results)")
    rep.add_argument("--out")
    rep.add_argument("--baseline", default="", help="git ref: replay it and the working tree in turns (see above)")
    rep.add_argument("--rounds", type=int, default=8, help="interleaved rounds with --baseline")
    args = parser.parse_args()
    (record if args.command == "record" else replay)(args)


if __name__ == "__main__":
    main()
