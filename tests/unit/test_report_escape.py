"""Text from the nodes cannot inject markup into report.md or break junit.xml (issue 10)."""

import xml.etree.ElementTree as ET

from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import document as report_document
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import junit as report_junit
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import markdown as report_markdown
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import model as report_model
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report.escape import fence, md, xml_text

HOSTILE_COMM = "z|x`\n## x"


def hostile_report():
    doc = {"schema": "fleettrace.threshold_capture/1", "host": "node`\n# owned", "status": "threshold_reached",
           "findings": [{"duration_ms": 900.0, "state": "D", "comm": HOSTILE_COMM, "pid": 7, "syscall": "write",
                         "fd": 3, "file": "/tmp/[a](http://evil)\x1b<script>",
                         "kernel_stack": ["vfs_write\n## frame", "```"]}]}
    checks = [{"name": "max_d_state_stall_ms", "value": "summary.max_d_ms", "max": 500}]
    return report_model.build_report([report_document.validate_document(doc, "test")], checks=checks)


def test_markdown_has_only_its_own_headings_and_rows():
    text = report_markdown.render_markdown(hostile_report())
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert [h.split(" ")[0] for h in headings] == ["#", "##", "##", "##"], headings
    assert "## x" not in [*headings] and "# owned" not in headings
    assert "z\\|x\\`" in text and "](http" not in text and "<script>" not in text and "\x1b" not in text
    table_rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert all(line.count(" | ") == 4 for line in table_rows), table_rows


def test_fence_outgrows_backticks_inside():
    assert fence(["a ``` b"]) == "````" and fence(["plain"]) == "```"


def test_junit_stays_valid_xml_with_control_characters():
    report = hostile_report()
    report["checks"][0]["host"] = "node\x01\x1b"
    report["checks"][0]["message"] = "stall of z\x07x"
    ET.fromstring(report_junit.render_junit(report).encode("utf-8"))   # raises on invalid XML
    assert xml_text("a\x00b") == "a\\x00b" and md("a\r\nb") == "a b"


def test_xml_quoting_is_saxutils_without_importing_it():
    """report/escape.py quotes as xml.sax.saxutils does (which imports urllib.request and http.client)."""
    from xml.sax.saxutils import escape as sax_escape, quoteattr as sax_quoteattr
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import escape as report_escape
    samples = ["", "plain", "a&b<c>d", 'say "hi"', "it's", "both \" and '", "tab\tnew\nline\rret", "&amp;"]
    for text in samples:
        assert report_escape.xml_quoteattr(text) == sax_quoteattr(text)
        assert report_escape.xml_escape(text) == sax_escape(text)
