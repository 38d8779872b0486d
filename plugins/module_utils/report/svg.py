# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Inline SVG histograms for the HTML report (no scripts, no external references).

Read in one look: a y axis with counts (and each bar's count above it), the x
axis in one unit chosen for the range shown, every bucket edge labelled (a bar
spans from its left edge to its right edge), and vertical markers for the
values that matter (the threshold, the stall, a percentile).  Only the buckets
from the first to the last non-empty one (or marker) are drawn.
"""


import html
import math

BAR_COLOR = "#1f77b4"      # histogram bars (the screenshot test looks for it)
AXIS_COLOR = "#444444"
GRID_COLOR = "#dddddd"
THRESHOLD_COLOR = "#000000"
STALL_COLOR = "#d62728"    # the stall, in the report's stall red
PERCENTILE_COLOR = "#7f7f7f"

LEFT = 56                  # room for the y axis and its labels
RIGHT = 16
TOP = 18                   # room for the marker labels above the plot
BOTTOM = 46                # room for the edge labels and the axis title


def marker(value_us, name, color):
    """A vertical line at ``value_us`` on a histogram, labelled with ``name`` and the value in the axis' unit."""
    return {"us": value_us, "name": name, "color": color}


def axis_unit(largest_us):
    """(unit, microseconds per unit) for an axis whose largest value is ``largest_us``."""
    if largest_us >= 10000000:
        return "s", 1000000.0
    if largest_us >= 10000:
        return "ms", 1000.0
    return "us", 1.0


def in_unit(value_us, per_unit):
    """A number of the axis unit, three significant digits (1.02, 16.4, 524, 1049)."""
    value = value_us / per_unit
    if value == 0:
        return "0"
    if value >= 1000:
        return "%d" % round(value)
    text = "%.3g" % value
    return text


def _nice_ceiling(count):
    """Smallest 1, 2 or 5 times a power of ten that is >= count (the y axis' top)."""
    if count <= 1:
        return 1
    power = 10 ** int(math.floor(math.log10(count)))
    for step in (1, 2, 5, 10):
        if step * power >= count:
            return step * power
    return 10 * power


def _bucket_of(buckets, value_us):
    for index, bucket in enumerate(buckets):
        if value_us < bucket["high_us"]:
            return index
    return len(buckets) - 1


def svg_histogram(buckets, count_noun="samples", markers=(), width=640, height=170):
    """log2 histogram as inline SVG; ``markers`` from ``marker()``."""
    markers = [m for m in markers if isinstance(m.get("us"), (int, float)) and not isinstance(m.get("us"), bool)]
    filled = [i for i, b in enumerate(buckets) if b.get("count")]
    if not filled:
        return '<p class="empty">no samples</p>'
    spots = filled + [_bucket_of(buckets, m["us"]) for m in markers]
    first, last = min(spots), max(spots)
    shown = buckets[first:last + 1]
    unit, per_unit = axis_unit(shown[-1]["high_us"])
    top = _nice_ceiling(max(b["count"] for b in shown))
    plot_w = width - LEFT - RIGHT
    plot_top = TOP + 12 * len(markers)
    plot_h = height - plot_top - BOTTOM
    base = plot_top + plot_h
    slot = float(plot_w) / len(shown)
    e = html.escape
    parts = ['<svg class="hist" width="%d" height="%d" viewBox="0 0 %d %d" role="img" font-family="sans-serif">'
             % (width, height, width, height)]
    # y axis: gridlines and counts at 0, half and the top.
    ticks = [0, top // 2, top] if top >= 2 else [0, top]
    for tick in ticks:
        y = base - plot_h * tick / float(top)
        parts.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s"/>' % (LEFT, y, width - RIGHT, y, GRID_COLOR))
        parts.append('<text x="%d" y="%.1f" font-size="10" text-anchor="end">%d</text>' % (LEFT - 4, y + 3, tick))
    parts.append('<text x="12" y="%.1f" font-size="10" text-anchor="middle" transform="rotate(-90 12 %.1f)">%s</text>'
                 % (plot_top + plot_h / 2.0, plot_top + plot_h / 2.0, e(count_noun)))
    parts.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s"/>' % (LEFT, plot_top, LEFT, base, AXIS_COLOR))
    # Bars, each with its count above it.
    for index, bucket in enumerate(shown):
        x = LEFT + index * slot
        count = bucket.get("count") or 0
        if count:
            bar_h = max(2.0, plot_h * count / float(top))
            parts.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s-%s %s: %d %s'
                         '</title></rect>' % (x + 1, base - bar_h, max(slot - 2, 1), bar_h, BAR_COLOR,
                                              in_unit(bucket["low_us"], per_unit), in_unit(bucket["high_us"], per_unit),
                                              unit, count, e(count_noun)))
            parts.append('<text x="%.1f" y="%.1f" font-size="10" text-anchor="middle">%d</text>'
                         % (x + slot / 2, base - bar_h - 3, count))
    # x axis: every bucket edge, in one unit; slanted when the slots are narrow.
    parts.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s"/>' % (LEFT, base, width - RIGHT, base, AXIS_COLOR))
    slanted = slot < 34
    edges = [shown[0]["low_us"]] + [b["high_us"] for b in shown]
    for index, edge in enumerate(edges):
        x = LEFT + index * slot
        parts.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s"/>' % (x, base, x, base + 4, AXIS_COLOR))
        label = in_unit(edge, per_unit)
        if slanted:
            parts.append('<text x="%.1f" y="%d" font-size="10" text-anchor="end" transform="rotate(-40 %.1f %d)">%s'
                         '</text>' % (x + 3, base + 14, x + 3, base + 14, label))
        else:
            parts.append('<text x="%.1f" y="%d" font-size="10" text-anchor="middle">%s</text>' % (x, base + 15, label))
    parts.append('<text x="%d" y="%d" font-size="11" text-anchor="middle">%s (log2 buckets)</text>'
                 % (LEFT + plot_w // 2, height - 4, unit))
    # Markers: a dashed line where the value falls (log2 inside its bucket), its label above the plot.
    for number, mark in enumerate(markers):
        index = _bucket_of(shown, mark["us"])
        bucket = shown[index]
        if bucket["low_us"] > 0 and mark["us"] > bucket["low_us"]:
            fraction = math.log(mark["us"] / float(bucket["low_us"]), 2) / math.log(
                bucket["high_us"] / float(bucket["low_us"]), 2)
        elif bucket["low_us"] == 0:
            fraction = mark["us"] / float(bucket["high_us"])
        else:
            fraction = 0.0
        x = LEFT + (index + min(max(fraction, 0.0), 1.0)) * slot
        label_y = TOP - 4 + 12 * number
        parts.append('<line class="marker" x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-width="2" '
                     'stroke-dasharray="5,3"/>' % (x, label_y + 3, x, base, mark["color"]))
        anchor = "end" if x > LEFT + plot_w * 0.6 else "start"
        parts.append('<text x="%.1f" y="%d" font-size="10" fill="%s" text-anchor="%s">%s</text>'
                     % (x + (-4 if anchor == "end" else 4), label_y + 8, mark["color"], anchor,
                        e("%s %s %s" % (mark["name"], in_unit(mark["us"], per_unit), unit))))
    parts.append("</svg>")
    return "".join(parts)
