"""The HTML report of a real audit window renders in headless Chromium with its histogram, read in one look:
counts on a y axis and over each bar, the percentile and the worst wait marked, columns named by what they measure."""

import json
import re

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import svg as report_svg
from tests.helpers.chromium import color_extent, screenshot


def hex_rgb(color):
    return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))


def test_report_html_renders_histogram_in_headless_chromium(run_playbook, unique_name, tmp_path):
    image = pytest.importorskip("PIL.Image")
    out = tmp_path / "report"
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "window", "fleettrace.tracefs.sched_latency": {"duration": 2, "instance": unique_name("html")},
         "register": "window"},
        {"name": "report", "fleettrace.tracefs.latency_report": {
            "results": ["{{ window.sched_latency }}"], "dest": str(out),
            "checks": [{"name": "p99_wakeup_latency_us", "value": "summary.wakeup_p99_us", "max": 10 ** 9}]}},
    ]}]
    result = run_playbook(json.dumps(play) + "\n")
    assert result.rc == 0, result.stdout[-3000:]
    report = json.loads((out / "report.json").read_text())
    (host,) = report["hosts"].values()
    buckets = [b for b in host["sched_latency"]["latency"]["all"]["histogram_log2_us"] if b["count"]]
    assert len(buckets) >= 2

    html = (out / "report.html").read_text()
    # Self-contained: nothing to fetch, so it opens from disk anywhere.
    assert not re.search(r"https?://", html)
    assert not re.search(r"<(link|img|iframe|object|embed)\b|\bsrc=|@import|url\(", html)
    assert "default-src 'none'" in html

    # What the picture says, in its SVG: the y axis counts waits, each bar carries its bucket's count, one unit
    # on the x axis, the p99 and the worst wait marked at their values.
    overall = host["sched_latency"]["latency"]["all"]
    (hist,) = re.findall(r'<svg class="hist".*?</svg>', html)
    labels = re.findall(r">([^<>]+)</text>", hist)
    (axis_title,) = [t for t in labels if "log2" in t]
    assert "waits" in labels and re.match(r"^(us|ms|s) \(log2 buckets\)$", axis_title), labels
    bar_counts = [int(t) for t in re.findall(r'<rect [^>]*><title>[^<]*</title></rect><text [^>]*>(\d+)</text>', hist)]
    assert bar_counts == [b["count"] for b in buckets], (bar_counts, buckets)
    unit = axis_title.split()[0]
    assert [t for t in labels if t.startswith("p99 ")] == ["p99 %s %s" % (report_svg.in_unit(overall["p99_us"], {
        "us": 1.0, "ms": 1e3, "s": 1e6}[unit]), unit)]
    assert [t for t in labels if t.startswith("worst wait ")]
    # The fleet table names what each percentile is of.
    # (a kind of wait the window had none of has no columns: a quiet 2-CPU machine often has no preemption in 2 s).
    latency = host["sched_latency"]["latency"]
    for kind, group in (("all", "all waits, us"), ("wakeup", "wakeups, us"), ("preempt", "preemptions, us")):
        assert (group in html) == bool(latency[kind]["count"]), (group, latency[kind]["count"])

    shot = screenshot(str(out / "report.html"), tmp_path, "audit-report", width=1000, height=1400)
    picture = image.open(shot).convert("RGB")
    width, height = picture.size
    bar_color = hex_rgb(report_svg.BAR_COLOR)
    pixels = picture.load()
    columns = {}
    for x in range(width):
        for y in range(height):
            if pixels[x, y] == bar_color:
                columns[x] = columns.get(x, 0) + 1
    assert sum(columns.values()) > 500, "no histogram bars of colour %s in the screenshot" % report_svg.BAR_COLOR
    # Bars of different heights: the shape of the distribution, not one block.
    heights = set(columns.values())
    assert len(heights) >= 2, heights
    # The tallest bar is drawn as tall as the SVG says (its scale tops out at a round count, so not at a fixed size).
    tallest = max(float(h) for h in re.findall(r'<rect [^>]*height="([0-9.]+)" fill="%s"' % report_svg.BAR_COLOR, hist))
    assert max(heights) >= 0.8 * tallest >= 10, (sorted(heights), tallest)
    # One bar on screen per non-empty log2 bucket of report.json.
    # (The p99 and worst-wait marker lines are drawn over the bars: one that crosses a bar cuts it in two.)
    runs = sum(1 for x in columns if x - 1 not in columns)
    assert len(buckets) <= runs <= len(buckets) + 2, (runs, buckets)
    # The worst-wait marker is drawn, right of every bar but the last one's left edge.
    marked, left, _right = color_extent(shot, report_svg.STALL_COLOR)
    assert marked > 50 and left > min(columns), (marked, left)
    assert color_extent(shot, report_svg.PERCENTILE_COLOR)[0] > 50
