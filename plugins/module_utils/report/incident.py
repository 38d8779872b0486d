# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The incident part of a host's HTML section: the finding in sentences, the talk's two
histograms (the culprit call's latency on its fd, the probed value over the capture)
and the usual guesses with the numbers that settle them."""


import html

from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import svg as report_svg

US_PER = {"ns": 1e-3, "us": 1.0, "ms": 1e3}


def _numbers(summary):
    count = summary.get("count")
    return "%s sample%s, p50 %s ms, p99 %s ms, max %s ms" % ((count, "" if count == 1 else "s") + tuple(
        summary.get(key) for key in ("p50_ms", "p99_ms", "max_ms")))


def _threshold_and_stall(diagnose, finding):
    """Markers of the probed value's histogram: the threshold and the stall's value (field in ns, us or ms)."""
    per = US_PER.get(diagnose.get("field_unit"))
    markers = []
    if per is not None:
        threshold = diagnose.get("threshold")
        if isinstance(threshold, (int, float)):
            markers.append(report_svg.marker(threshold * per, "threshold", report_svg.THRESHOLD_COLOR))
        value = finding.get("value")
        if isinstance(value, (int, float)):
            markers.append(report_svg.marker(value * per, "stall", report_svg.STALL_COLOR))
    return markers


def _blocked(finding):
    """Marker of the culprit call's histogram: how long the call blocked in the stall."""
    blocked = finding.get("blocked_ns")
    if not isinstance(blocked, (int, float)):
        return []
    return [report_svg.marker(blocked / 1e3, "this stall: blocked", report_svg.STALL_COLOR)]


def render_incident_html(diagnose):
    """HTML for a threshold_capture result (``diagnose``); empty when it has none of these parts."""
    e = html.escape
    out = []
    findings = diagnose.get("findings") or []
    first = findings[0] if findings and isinstance(findings[0], dict) else {}
    if findings and findings[0].get("explanation"):
        out.append("<h3>Finding</h3><ul>%s</ul>" % "".join("<li>%s</li>" % e(s) for s in findings[0]["explanation"]))
    latency = diagnose.get("culprit_latency")
    if latency and latency.get("count") is not None:
        what = "%s on fd %s" % (latency.get("call"), latency.get("fd"))
        if latency.get("cmd"):
            what += " (%s)" % latency["cmd"].get("text")
        out.append('<h3 class="culprit-latency">%s: %s</h3>' % (e(what), e(_numbers(latency))))
        out.append(report_svg.svg_histogram(latency.get("histogram_log2_us") or [], "calls", _blocked(first)))
    values = diagnose.get("probe_values")
    if values and values.get("count"):
        out.append('<h3 class="probe-values">%s over the capture: %s</h3>' % (
            e(str(diagnose.get("field", "probed value"))), e(_numbers(values))))
        out.append(report_svg.svg_histogram(values.get("histogram_log2_us") or [], "probe hits",
                                            _threshold_and_stall(diagnose, first)))
    guesses = diagnose.get("guesses") or []
    if guesses:
        out.append("<h3>The usual guesses</h3><table><thead><tr><th>guess</th><th>ruled out</th><th>seen</th>"
                   "<th>why</th></tr></thead><tbody>")
        for guess in guesses:
            verdict = {True: "yes", False: "no"}.get(guess.get("ruled_out"), "no data")
            out.append("<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>" % (
                e(guess.get("guess", "")), verdict, e(guess.get("seen", "")), e(guess.get("why", ""))))
        out.append("</tbody></table>")
    return "\n".join(out)
