"""Headless Chromium as these tests start it: no network, no first-run, a fixed window.

``screenshot`` also keeps a copy of each picture in .cache/screenshots/ of the
checkout, so a person can look at what the tests looked at.
"""

import os
import shutil
import subprocess

import pytest

from tests.helpers.paths import REPO

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--window-size=1000,1400"]
SCREENSHOTS = os.path.join(REPO, ".cache", "screenshots")


def screenshot(page, work_dir, name, width=1400, height=2400):
    """PNG of ``page`` (a file path) at ``width`` x ``height``; returns its path (under ``work_dir``)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.fail("chromium is not installed; run scripts/setup.sh")
    shot = os.path.join(str(work_dir), name + ".png")
    flags = [f for f in CHROMIUM_FLAGS if not f.startswith("--window-size")] + ["--window-size=%d,%d" % (width, height)]
    proc = subprocess.run([chromium] + flags + ["--user-data-dir=%s" % os.path.join(str(work_dir), "chromium-profile"),
                                                "--screenshot=%s" % shot, "file://%s" % page],
                          capture_output=True, text=True, timeout=120, check=False)
    assert os.path.exists(shot), proc.stderr[-2000:]
    os.makedirs(SCREENSHOTS, exist_ok=True)
    shutil.copy(shot, os.path.join(SCREENSHOTS, name + ".png"))
    return shot


def rgb(color):
    return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))


def color_extent(png, color):
    """(pixel count, leftmost x, rightmost x) of ``color`` (``#rrggbb``) in the picture; (0, None, None) if absent."""
    image = pytest.importorskip("PIL.Image")
    chops = pytest.importorskip("PIL.ImageChops")
    picture = image.open(png).convert("RGB")
    red, green, blue = chops.difference(picture, image.new("RGB", picture.size, rgb(color))).split()
    exact = chops.lighter(chops.lighter(red, green), blue).point(lambda v: 255 if v == 0 else 0)
    box = exact.getbbox()
    if box is None:
        return (0, None, None)
    return (exact.histogram()[255], box[0], box[2] - 1)
