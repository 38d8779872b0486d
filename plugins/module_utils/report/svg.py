# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Inline SVG pictures for the HTML report (no scripts, no external references)."""


BAR_COLOR = "#1f77b4"      # histogram bars (the screenshot test looks for it)


def svg_histogram(buckets, width=420, height=140):
    """log2 histogram as inline SVG bars (no scripts, no external references)."""
    if not buckets:
        return '<p class="empty">no samples</p>'
    top = max(b["count"] for b in buckets) or 1
    slot = float(width - 40) / len(buckets)
    parts = ['<svg class="hist" width="%d" height="%d" '
             'viewBox="0 0 %d %d" role="img">' % (width, height + 30, width, height + 30)]
    for index, bucket in enumerate(buckets):
        bar_height = 0 if not bucket["count"] else max(2.0, (height - 10) * bucket["count"] / float(top))
        x = 30 + index * slot
        parts.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s-%s us: %d</title></rect>'
                     % (x, height - bar_height, max(slot - 2, 1), bar_height, BAR_COLOR, bucket["low_us"], bucket["high_us"],
                        bucket["count"]))
        if index % 2 == 0:
            parts.append('<text x="%.1f" y="%d" font-size="9" text-anchor="middle">%s</text>'
                         % (x + slot / 2, height + 12, _short_us(bucket["low_us"])))
    parts.append('<line x1="28" y1="%d" x2="%d" y2="%d" stroke="#444"/>' % (height, width - 8, height))
    parts.append('<text x="%d" y="%d" font-size="10">us (log2 buckets)</text>' % (width // 2 - 40, height + 26))
    parts.append("</svg>")
    return "".join(parts)


def _short_us(value):
    if value >= 1000000:
        return "%ds" % (value // 1000000)
    if value >= 1000:
        return "%dms" % (value // 1000)
    return str(value)
