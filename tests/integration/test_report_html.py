"""The HTML report of a real audit window renders in headless Chromium with its histogram."""

import json
import re
import shutil
import subprocess

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import svg as report_svg
from tests.helpers.chromium import CHROMIUM_FLAGS


def hex_rgb(color):
    return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))


def test_report_html_renders_histogram_in_headless_chromium(run_playbook, unique_name, tmp_path):
    image = pytest.importorskip("PIL.Image")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("chromium is not installed; run scripts/setup.sh")
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

    shot = tmp_path / "shot.png"
    proc = subprocess.run([chromium] + CHROMIUM_FLAGS + ["--user-data-dir=%s" % (tmp_path / "chromium-profile"),
                                                         "--screenshot=%s" % shot, "file://%s" % (out / "report.html")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert shot.exists(), proc.stderr[-2000:]
    picture = image.open(str(shot)).convert("RGB")
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
    assert max(heights) >= 50
    # One bar on screen per non-empty log2 bucket of report.json.
    runs = sum(1 for x in columns if x - 1 not in columns)
    assert runs == len(buckets), (runs, buckets)
