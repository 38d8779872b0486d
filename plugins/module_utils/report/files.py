# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""All report files rendered at once, and written only when their content changed."""


import json
import os

from ansible_collections.fleettrace.tracefs.plugins.module_utils import bounded
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import chrome_trace
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report.html_page import render_html
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report.junit import render_junit
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report.markdown import render_markdown

REPORT_FILES = ("report.json", "report.md", "report.html", "junit.xml", "trace.json")


def render_all(report):
    return {
        "report.json": json.dumps(report, indent=2, sort_keys=True, default=str) + "\n",
        "report.md": render_markdown(report),
        "report.html": render_html(report),
        "junit.xml": render_junit(report),
        "trace.json": chrome_trace.render(report),   # Perfetto / chrome://tracing
    }


def write_files(directory, rendered, mode=None):
    """Write the rendered files atomically (a temporary ``.NAME.PID.tmp``, then rename).

    Returns the names whose content changed; an unchanged file is not rewritten.
    """
    if not os.path.isdir(directory):
        os.makedirs(directory)
    changed = []
    for name, text in sorted(rendered.items()):
        path = os.path.join(directory, name)
        try:
            with bounded.open_regular(path, "report file") as handle:
                if handle.read().decode("utf-8", "replace") == text:
                    continue
        except (OSError, bounded.FileRefused):
            pass  # missing, or not a regular file: the rename below replaces it
        temp = os.path.join(directory, ".%s.%d.tmp" % (name, os.getpid()))
        try:
            with bounded.open_new(temp, "temporary file") as handle:
                handle.write(text)
            if mode is not None:
                os.chmod(temp, mode)
            os.rename(temp, path)
        finally:
            if os.path.exists(temp):
                os.unlink(temp)
        changed.append(name)
    return changed
