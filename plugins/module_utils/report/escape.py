# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Text from traced programs (comm names, file names, stacks) made inert for each output.

A process may name itself ``z|x`\\n## x``: printed raw, that starts a heading
in report.md, breaks a table row or closes a code fence; a control character
makes junit.xml invalid XML.  These helpers are applied where a renderer
prints such text.
"""


import re

# What lets text from a node start markup mid-line: code spans, table cells,
# raw HTML, emphasis with '*', and links ('[x](y)', '[x][y]').  Line starts
# (headings, lists, quotes) are always the renderer's own text, since line
# breaks are replaced.  '_' is left alone: GFM never emphasises inside words.
_MD_SPECIAL = re.compile(r"([\\`|*])")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029]+")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# XML 1.0 allows tab, newline, carriage return and these ranges only.
_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def md(value):
    """One line of Markdown text that renders as the literal value."""
    text = _LINE_BREAKS.sub(" ", "%s" % (value,))
    text = _CONTROL.sub(lambda m: "\\x%02x" % ord(m.group(0)), text)
    text = _MD_SPECIAL.sub(r"\\\1", text).replace("<", "&lt;")
    return text.replace("](", "]\\(").replace("][", "]\\[")


def code_line(value):
    """A line inside a fenced or indented code block: no line break, no control characters."""
    text = _LINE_BREAKS.sub(" ", "%s" % (value,))
    return _CONTROL.sub(lambda m: "\\x%02x" % ord(m.group(0)), text)


def fence(lines):
    """A code fence longer than any run of backticks in ``lines``, so none of them can close it."""
    longest = max([len(run) for line in lines for run in re.findall(r"`+", line)] or [0])
    return "`" * max(3, longest + 1)


def xml_text(value):
    """Text XML 1.0 accepts: characters it forbids shown as \\xNN (escape <>& separately)."""
    return _XML_INVALID.sub(lambda m: "\\x%02x" % ord(m.group(0)) if ord(m.group(0)) < 256
                            else "\\u%04x" % ord(m.group(0)), "%s" % (value,))


def xml_escape(text):
    """``xml.sax.saxutils.escape``: importing saxutils imports urllib.request and http.client, a
    fifth of the report module's start-up."""
    return text.replace("&", "&amp;").replace(">", "&gt;").replace("<", "&lt;")


def xml_quoteattr(text):
    """``xml.sax.saxutils.quoteattr``: an attribute value with its quotes."""
    text = xml_escape(text).replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;")
    if '"' not in text:
        return '"%s"' % text
    if "'" not in text:
        return "'%s'" % text
    return '"%s"' % text.replace('"', "&quot;")
