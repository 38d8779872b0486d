# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How much of the window a host's run-queue numbers cover: measured and unmeasured waits, with reasons.

Every format shows this next to the percentiles (docs/sched-audit.md, "Only waits
the trace proves"), so a reader knows what the numbers leave out.
"""


from ansible_collections.fleettrace.tracefs.plugins.module_utils.report.escape import xml_quoteattr as quoteattr

# The analysis's reason keys (sched/result.py), as a reader would say them.
REASON_TEXT = (
    ("woken_again", "woken again before a switch-in"),
    ("ran_without_switch_in", "ran without a recorded switch-in"),
    ("migrated_while_waiting", "migrated while waiting"),
    ("switched_in_elsewhere", "switched in on another CPU"),
    ("cpu_went_idle", "its CPU went idle"),
    ("events_lost", "events lost"),
    ("clock_order", "clock order"),
)


def coverage(sched):
    """{measured, unmeasured, fraction, reasons: {key: count}} of one sched_latency document."""
    sched = sched or {}
    cov = sched.get("coverage") or {}
    measured = cov.get("measured", ((sched.get("latency") or {}).get("all") or {}).get("count"))
    unmeasured = cov.get("unmeasured", sched.get("unmeasured_waits"))
    reasons = {k: v for k, v in (cov.get("unmeasured_by_reason") or sched.get("unmeasured_by_reason") or {}).items()
               if v}
    fraction = cov.get("measured_fraction")
    if fraction is None and measured is not None and unmeasured is not None and measured + unmeasured:
        fraction = round(measured / float(measured + unmeasured), 4)
    return {"measured": measured, "unmeasured": unmeasured, "fraction": fraction, "reasons": reasons}


def summary_fields(sched):
    """What host_summary adds: the unmeasured count, the measured fraction, the reasons."""
    cov = coverage(sched)
    if not sched:
        return {"unmeasured_waits": None, "measured_fraction": None, "unmeasured_by_reason": {}}
    return {"unmeasured_waits": cov["unmeasured"], "measured_fraction": cov["fraction"],
            "unmeasured_by_reason": cov["reasons"]}


def coverage_text(sched):
    """'measured 4750 of 4800 waits (99.0 %); not measured 50: ran without a recorded switch-in 30, ...'."""
    cov = coverage(sched)
    if cov["measured"] is None:
        return ""
    total = cov["measured"] + (cov["unmeasured"] or 0)
    text = "measured %d of %d waits" % (cov["measured"], total)
    if cov["fraction"] is not None:
        text += " (%.1f %%)" % (100.0 * cov["fraction"])
    if cov["unmeasured"]:
        named = dict(REASON_TEXT)
        reasons = ", ".join("%s %d" % (named.get(key, key), count)
                            for key, count in sorted(cov["reasons"].items(), key=lambda item: -item[1]))
        text += "; not measured %d (the trace does not prove them): %s" % (cov["unmeasured"], reasons or "-")
    return text


def coverage_properties(report):
    """JUnit ``<properties>`` with every audited host's coverage (the percentiles' context in CI)."""
    lines = []
    for name in sorted(report["hosts"]):
        sched = report["hosts"][name].get("sched_latency")
        if not sched:
            continue
        text = coverage_text(sched)
        summary = report["hosts"][name].get("summary") or {}
        lines.append("<property name=%s value=%s/>" % (quoteattr("%s.p99_us" % name), quoteattr(str(summary.get("p99_us")))))
        lines.append("<property name=%s value=%s/>" % (quoteattr("%s.coverage" % name), quoteattr(text)))
    return ["<properties>"] + lines + ["</properties>"] if lines else []
