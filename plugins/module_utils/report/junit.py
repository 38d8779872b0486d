# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet report's checks as JUnit XML (junit.xml), one testcase per host per check."""


import json

from ansible_collections.fleettrace.tracefs.plugins.module_utils.report.coverage import coverage_properties
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import escape


def quoteattr(value):
    return escape.xml_quoteattr(escape.xml_text(value))


def xml_escape(value):
    # Control characters from comm names would make the file invalid XML.
    return escape.xml_escape(escape.xml_text(value))


DOWN_CASE = "result"


def render_junit(report, suite="fleettrace.sched_latency"):
    """One testcase per host per check; skipped when the host has no data for it.

    A host that gave no result (unreachable, failed) is one testcase ``result`` with an error.
    """
    checks = report["checks"]
    down = report.get("down") or []
    failures = len([c for c in checks if c["status"] == "failed"])
    skipped = len([c for c in checks if c["status"] == "skipped"])
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           "<testsuites>",
           "<testsuite name=%s tests=\"%d\" failures=\"%d\" errors=\"%d\" skipped=\"%d\" timestamp=%s>"
           % (quoteattr(suite), len(checks) + len(down), failures, len(down), skipped, quoteattr(report["generated"]))]
    out += coverage_properties(report)
    for item in down:
        out.append("<testcase classname=%s name=%s>" % (quoteattr(item["host"]), quoteattr(DOWN_CASE)))
        out.append("<error message=%s type=%s>%s</error>" % (
            quoteattr("%s: %s" % (item["status"], item.get("msg") or "")), quoteattr(item["status"]),
            xml_escape(json.dumps(item, sort_keys=True, default=str))))
        out.append("</testcase>")
    for c in checks:
        out.append("<testcase classname=%s name=%s>" % (quoteattr(c["host"]), quoteattr(c["check"])))
        if c["status"] == "failed":
            out.append("<failure message=%s type=\"threshold\">%s</failure>"
                       % (quoteattr(c["message"]), xml_escape(json.dumps(c, sort_keys=True, default=str))))
        elif c["status"] == "skipped":
            out.append("<skipped message=%s/>" % quoteattr(c["message"]))
        out.append("</testcase>")
    out += ["</testsuite>", "</testsuites>"]
    return "\n".join(out) + "\n"
