"""Decoding and analysis pinned on raw pages recorded from a real kernel (no kernel needed).

tests/unit/data/sched_pages: the first 40 ring-buffer pages of each of 2 CPUs, as the
collector copied them (benchmarks/profile_sched_decode.py record, kernel 6.18, ping-pong load),
with that kernel's format files.  They hold switches, wakeups, wakeup_new, migrations and waits
the analysis cannot prove.  A faster decoder or analysis must give exactly these events and
these numbers: the expected values were produced by the collector as of commit 8d3bf36 (before
its speed-up) and checked equal after it.
"""

import collections
import gzip
import hashlib
import os
import shutil
import tempfile

from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import page_spool
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched import analysis as sa
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched import pages as sched_pages

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "sched_pages")
EVENTS = ("sched_migrate_task", "sched_switch", "sched_wakeup", "sched_wakeup_new")
DECODED_COUNT = 5737
DECODED_SHA256 = "6985002dd59b2fd191c8af0f07e992d40818730e2146dd0a8816173644b0b0d7"


def read(name):
    with open(os.path.join(DATA, name)) as handle:
        return handle.read()


def recorded():
    """(layout, decoders, kinds, spool) of the recorded pages, decoders built as the collector builds them."""
    layout, decoders, kinds = sched_pages.build_decoders(
        lambda group, name: read("events__%s__%s__format" % (group, name)), read("events__header_page"), EVENTS)
    spool = page_spool.PageSpool(DATA, [])
    for cpu in (0, 1):
        handle = tempfile.TemporaryFile()
        with gzip.open(os.path.join(DATA, "cpu%d.pages.gz" % cpu)) as pages:
            shutil.copyfileobj(pages, handle)
        spool.files[cpu] = handle
    return layout, decoders, kinds, spool


def test_every_decoded_field_of_recorded_pages_is_pinned():
    layout, decoders, kinds, spool = recorded()
    try:
        events = [event for batch in spool.merged(layout, decoders) for event in batch]
    finally:
        spool.close()
    assert kinds == {371: "sched_migrate_task", 372: "sched_switch", 374: "sched_wakeup", 373: "sched_wakeup_new"}
    # Readable samples: (ts, cpu, id, fields); names the analysis does not use are left empty.
    assert events[:3] == [
        (13428830620536, 1, 372, (b"", 4029, 1, b"ansible-playboo\0", 4064)),
        (13428831420575, 0, 374, (1212, b"", 1206, 0)),
        (13428831424802, 0, 372, (b"", 1212, 0, b"python" + b"\0" * 10, 1206)),
    ]
    assert [e for e in events if e[2] == 371][0] == (13428844023687, 1, 371, (4065, 15, 1, 0))
    assert [e for e in events if e[2] == 373][0] == (13428838708871, 0, 373, (1212, b"", 4065, 1))
    assert collections.Counter(kinds[e[2]] for e in events) == {
        "sched_switch": 3384, "sched_wakeup": 2304, "sched_migrate_task": 44, "sched_wakeup_new": 5}
    assert [e[0] for e in events] == sorted(e[0] for e in events)
    # Every field of every event, in order.
    digest = hashlib.sha256()
    for event in events:
        digest.update(repr(event).encode())
    assert (len(events), digest.hexdigest()) == (DECODED_COUNT, DECODED_SHA256)


def test_the_audit_of_recorded_pages_is_pinned():
    layout, decoders, kinds, spool = recorded()
    analyzer = sa.SchedAnalyzer()
    try:
        assert sched_pages.analyse_pages(analyzer, spool, layout, decoders, kinds, {0: {}, 1: {}}) == (0, 0)
    finally:
        spool.close()
    analyzer.finish()
    result = analyzer.result()
    assert result["coverage"] == {
        "measured": 3343, "unmeasured": 23, "measured_fraction": 0.9932,
        "unmeasured_by_reason": {"woken_again": 2, "ran_without_switch_in": 17, "migrated_while_waiting": 3,
                                 "switched_in_elsewhere": 1, "cpu_went_idle": 0, "events_lost": 0,
                                 "clock_order": 0}}
    percentiles = {name: tuple(series[key] for key in ("count", "p50_us", "p90_us", "p99_us", "p99_9_us", "max_us"))
                   for name, series in result["latency"].items()}
    assert percentiles == {"all": (3343, 2.313, 8.813, 1316.264, 4186.617, 4982.114),
                           "preempt": (1058, 2.463, 10.806, 2328.565, 4524.812, 4982.114),
                           "wakeup": (2285, 1.603, 8.653, 30.18, 2605.428, 3492.827)}
    assert {cpu: (s["count"], s["p99_us"], s["max_us"]) for cpu, s in result["per_cpu"].items()} == {
        "0": (1700, 1547.59, 4524.812), "1": (1643, 597.371, 4982.114)}
    assert (result["inferred_switch_ins"], result["woken_while_running"], result["clock_underflows"]) == (17, 1, 0)
    worst = result["worst_waits"][0]
    assert (worst["pid"], worst["cpu"], worst["kind"], worst["latency_us"]) == (4064, 1, "preempt", 4982.114)
    assert worst["ran_meanwhile"][0] == {"comm": "ansible-playboo", "pid": 4065, "us": 4358.664}
