"""trace/per_cpu.py and the page spool: one place for CPUs, stats and lost events (issue 12, item 5)."""

import struct

from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import page_spool, per_cpu, ring_buffer

STATS = ("entries: 120\noverrun: {overrun}\ncommit overrun: {commit}\nbytes: 16684\n"
         "oldest event ts:   514.315439\nnow ts:   514.629908\ndropped events: {dropped}\nread events: 7\n")


def fake_instance(tmp_path, per_cpu_stats):
    for cpu, (overrun, commit, dropped) in per_cpu_stats.items():
        directory = tmp_path / "per_cpu" / ("cpu%d" % cpu)
        directory.mkdir(parents=True)
        (directory / "stats").write_text(STATS.format(overrun=overrun, commit=commit, dropped=dropped))
    (tmp_path / "per_cpu" / "not_a_cpu").mkdir()
    return str(tmp_path)


def test_online_cpus_and_stats_from_one_place(tmp_path):
    root = fake_instance(tmp_path, {0: (0, 0, 0), 1: (3, 0, 0), 10: (0, 0, 0)})
    assert per_cpu.online_cpus(root) == [0, 1, 10]
    stats = per_cpu.all_stats(root)
    assert stats[1] == {"entries": 120, "overrun": 3, "commit_overrun": 0, "bytes": 16684, "dropped_events": 0,
                        "read_events": 7}
    assert per_cpu.online_cpus(str(tmp_path / "missing")) == []


def test_commit_overruns_are_lost_events_for_capture_and_the_audit(tmp_path):
    # The bug: capture counted overrun + dropped, the audit also commit overruns. Both use per_cpu now.
    before = per_cpu.all_stats(fake_instance(tmp_path / "before", {0: (0, 0, 0), 1: (0, 0, 0)}))
    after = per_cpu.all_stats(fake_instance(tmp_path / "after", {0: (0, 5, 0), 1: (2, 0, 1)}))
    lost = per_cpu.lost_between(before, after)
    assert lost == {0: {"overrun": 0, "dropped": 5, "entries": 120, "commit_overrun": 5},
                    1: {"overrun": 2, "dropped": 1, "entries": 120}}
    assert per_cpu.lost_in(after[0]) == 5 and per_cpu.lost_in(after[1]) == 3
    # The stats spelling with spaces (other parsers keep it) counts the same.
    assert per_cpu.lost_in({"overrun": 1, "commit overrun": 2, "dropped events": 3}) == 6


HEADER_PAGE = """\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;
\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;
\tfield: char data;\toffset:16;\tsize:4080;\tsigned:0;
"""
EVENT_ID = 7


def page(base_ts, deltas, flags=0, missed=None):
    body = b"".join(struct.pack("=IHHi", (d << 5) | 2, EVENT_ID, 0, i) for i, d in enumerate(deltas))
    raw = struct.pack("=QQ", base_ts, len(body) | flags) + body
    if missed is not None:
        raw += struct.pack("=Q", missed)
    return raw + b"\0" * (page_spool.PAGE_SIZE - len(raw))


def spool_of(tmp_path, pages_by_cpu):
    spool = page_spool.PageSpool(str(tmp_path), [])
    import tempfile
    for cpu, pages in pages_by_cpu.items():
        handle = tempfile.TemporaryFile(dir=str(tmp_path))
        handle.write(b"".join(pages))
        spool.files[cpu] = handle
    return spool


def test_merged_events_come_in_time_order_across_cpus(tmp_path, monkeypatch):
    monkeypatch.setattr(page_spool, "CHUNK_PAGES", 1)
    spool = spool_of(tmp_path, {0: [page(100, [1, 1]), page(500, [1])], 1: [page(50, [0, 100]), page(300, [10])]})
    layout = ring_buffer.PageLayout.parse(HEADER_PAGE)
    decoders = {EVENT_ID: (struct.Struct("=4xi"), None, None)}
    events = [e for batch in spool.merged(layout, decoders) for e in batch]
    assert [(ts, cpu) for ts, cpu, _id, _f in events] == [(50, 1), (101, 0), (102, 0), (150, 1), (310, 1), (501, 0)]
    spool.close()


def test_losses_are_placed_between_pages(tmp_path):
    flags = ring_buffer.MISSED_EVENTS | ring_buffer.MISSED_STORED
    spool = spool_of(tmp_path, {0: [page(100, [1]), page(900, [1], flags, missed=42)],
                                1: [page(200, [1], ring_buffer.MISSED_EVENTS)]})
    layout = ring_buffer.PageLayout.parse(HEADER_PAGE)
    assert sorted(spool.losses(layout)) == [(0, 100, 900, 42), (1, None, 200, -1)]
    spool.close()
