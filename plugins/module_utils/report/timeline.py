# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One stall drawn: an inline SVG timeline of a diagnose finding.

Three lanes on one time axis (seconds of the trace clock, shown relative to
the late tick):

* probe -- the probe hits of the task kept in the host's events, the one
  over the threshold (the late tick) in red, with its value;
* task  -- the off-CPU interval from the switch-out to the switch-in, with
  its state (D: uninterruptible) and length;
* syscall -- the system call in flight from its entry, with fd and file.

Findings come from trace/correlate.py and may gain fields; every field is
read with a default, and a finding without the timestamps to draw gets no
picture (None).  No scripts, no external references: the page stays
self-contained.
"""


import html

WIDTH = 1200         # the viewBox; the page stretches the picture to its width (CSS)
LEFT = 70            # room for the lane names
RIGHT = 20
LANE_HEIGHT = 34
TOP = 24
LATE_COLOR = "#d62728"    # the late tick (same red as the report's stalls)
HIT_COLOR = "#1f77b4"
OFFCPU_COLOR = {"D": "#ff7f0e", "S": "#9467bd"}
SYSCALL_COLOR = "#2ca02c"
LANES = ("probe", "task", "syscall")


def _num(value):
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def syscall_label(finding):
    call = finding.get("syscall")
    name = call.get("name") if isinstance(call, dict) else call
    fd = finding.get("fd")
    if fd is None and isinstance(call, dict):
        fd = call.get("fd")
    target = "fd %s" % fd if fd is not None else ""
    if finding.get("file"):
        target += " -> %s" % finding["file"]
    return "%s(%s)" % (name, target) if name else ""


def probe_hits(finding, events):
    """Timestamps of the probe's hits of the finding's task among the host's events."""
    probe = str(finding.get("probe_event") or "")
    name = probe.rsplit(":", maxsplit=1)[-1]
    pid = finding.get("pid")
    hits = []
    for event in events or []:
        if not isinstance(event, dict) or _num(event.get("timestamp")) is None:
            continue
        if event.get("event") in (probe, name) and (pid is None or event.get("pid") == pid):
            hits.append(float(event["timestamp"]))
    late = _num(finding.get("timestamp"))
    if late is not None and late not in hits:
        hits.append(late)
    return sorted(hits)


def intervals(finding):
    """What to draw, in trace seconds: {late, hits, off: (start, end, state), call: (start, end, label)}."""
    late = _num(finding.get("timestamp"))
    if late is None:
        return None
    out = {"late": late, "off": None, "call": None}
    start = _num(finding.get("switched_out_at"))
    if start is not None:
        end = _num(finding.get("blocked_until"))
        if end is None and _num(finding.get("blocked_ns")) is not None:
            end = start + finding["blocked_ns"] / 1e9
        out["off"] = (start, end if end is not None else late, str(finding.get("state") or "?"))
    call = finding.get("syscall")
    entered = _num(call.get("timestamp")) if isinstance(call, dict) else None
    if entered is not None:
        returned = out["off"][1] if out["off"] else late
        out["call"] = (entered, max(returned, entered), syscall_label(finding))
    return out


UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3}


def previous_hit(finding, unit):
    """The tick before the late one, when the probed value is the delay since it (in ``unit``)."""
    late, value = _num(finding.get("timestamp")), _num(finding.get("value"))
    if late is None or value is None or unit not in UNIT_SECONDS:
        return None
    return late - value * UNIT_SECONDS[unit]


def svg(finding, events=None, unit=None):
    """The finding's timeline as an ``<svg>`` string, or None when it has no timestamps to draw.

    ``unit`` (ns, us, ms) of the probed value: the tick before the late one is drawn where the
    value says it was when the host's events no longer hold it.
    """
    parts = intervals(finding)
    if parts is None:
        return None
    late = parts["late"]
    hits = probe_hits(finding, events)
    before = previous_hit(finding, unit)
    if before is not None and not [h for h in hits if h < late]:
        hits = sorted(hits + [before])
    points = [late] + hits[-3:]
    for key in ("off", "call"):
        if parts[key]:
            points += [parts[key][0], parts[key][1]]
    low, high = min(points), max(points)
    span = (high - low) or 0.001
    low, high = low - span * 0.05, high + span * 0.05
    # The hits before the window's start would squeeze the drawing: keep the last ones in view.
    hits = [h for h in hits if h >= low]

    def x(t):
        return LEFT + (t - low) / (high - low) * (WIDTH - LEFT - RIGHT)

    def lane_y(name):
        return TOP + LANES.index(name) * LANE_HEIGHT

    e = html.escape
    height = TOP + len(LANES) * LANE_HEIGHT + 26
    out = ['<svg class="timeline" width="100%%" viewBox="0 0 %d %d" preserveAspectRatio="xMinYMin meet" role="img" '
           'aria-label="timeline of the stall">' % (WIDTH, height)]
    for name in LANES:
        y = lane_y(name)
        out.append('<text x="4" y="%d" font-size="11">%s</text>' % (y + 18, name))
        out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#ddd"/>' % (LEFT, y + 28, WIDTH - RIGHT, y + 28))
    y = lane_y("probe")
    for hit in hits:
        color = LATE_COLOR if hit == late else HIT_COLOR
        out.append('<line class="%s" x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-width="3">'
                   '<title>probe hit at %+.6f s</title></line>'
                   % ("late-tick" if hit == late else "probe-hit", x(hit), y + 4, x(hit), y + 26, color, hit - late))
    value = finding.get("value")
    label = "late tick: %s=%s" % (finding.get("field") or "value", value) if value is not None else "late tick"
    if finding.get("duration_ms") is not None:
        label += " (%s ms)" % finding["duration_ms"]
    anchor = "end" if x(late) > WIDTH / 2 else "start"
    out.append('<text x="%.1f" y="%d" font-size="10" fill="%s" text-anchor="%s">%s</text>'
               % (x(late) + (-5 if anchor == "end" else 5), y + 12, LATE_COLOR, anchor, e(label)))
    if parts["off"]:
        start, end, state = parts["off"]
        y = lane_y("task")
        color = OFFCPU_COLOR.get(state, "#7f7f7f")
        text = "off CPU in %s %.1f ms" % (state, (end - start) * 1000)
        out.append('<rect class="offcpu" x="%.1f" y="%d" width="%.1f" height="22" fill="%s"><title>%s</title></rect>'
                   % (x(start), y + 4, max(x(end) - x(start), 1), color, e(text)))
        out.append('<text x="%.1f" y="%d" font-size="10">%s</text>' % (x(start) + 3, y + 19, e(text)))
    if parts["call"]:
        start, end, text = parts["call"]
        y = lane_y("syscall")
        out.append('<rect class="syscall" x="%.1f" y="%d" width="%.1f" height="22" fill="%s" fill-opacity="0.35">'
                   '<title>%s</title></rect>' % (x(start), y + 4, max(x(end) - x(start), 1), SYSCALL_COLOR, e(text)))
        out.append('<text x="%.1f" y="%d" font-size="10">%s</text>' % (x(start) + 3, y + 19, e(text)))
    axis_y = TOP + len(LANES) * LANE_HEIGHT + 14
    # Seconds relative to the late tick, at six evenly spaced points of the drawn span.
    first = low + span * 0.05
    for step in range(6):
        t = first + (late - first) * step / 5.0 if late > first else first
        out.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#999"/>' % (x(t), axis_y - 12, x(t), axis_y - 8))
        out.append('<text x="%.1f" y="%d" font-size="10" text-anchor="middle">%+.3f s</text>' % (x(t), axis_y, t - late))
    out.append("</svg>")
    return "".join(out)


def host_timelines(entry, limit=10):
    """HTML blocks (caption and SVG) for the diagnose findings of one host's report entry."""
    diag = entry.get("diagnose") or {}
    blocks = []
    for finding in [f for f in diag.get("findings") or [] if isinstance(f, dict)][:limit]:
        picture = svg(finding, diag.get("events"), diag.get("field_unit"))
        if picture is None:
            continue
        caption = finding.get("summary") or "%s[%s]" % (finding.get("comm", "?"), finding.get("pid", "?"))
        blocks.append('<figure class="stall-timeline">%s<figcaption>%s</figcaption></figure>'
                      % (picture, html.escape(str(caption))))
    return blocks
