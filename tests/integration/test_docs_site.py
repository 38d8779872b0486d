"""The docs site: antsibull-docs pages of every module, role and plugin plus docs/*.md, built by Sphinx
without a warning, and every link inside it leads to a page and anchor that exist."""

import os
import subprocess

from tests.helpers.paths import REPO

CHECK_LINKS = os.path.join(REPO, "scripts", "check-site-links.py")


def test_docs_site_builds_with_every_page_and_no_broken_link(tmp_path):
    out = tmp_path / "site"
    proc = subprocess.run(["bash", os.path.join(REPO, "scripts", "docs-site.sh"), str(out)],
                          capture_output=True, text=True, timeout=900, check=False)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-5000:]
    assert "WARNING" not in log, log[-5000:]
    assert "0 broken" in log, log[-2000:]
    html = out / "html"
    pages = html / "collections" / "fleettrace" / "tracefs"
    modules = sorted(name[:-3] for name in os.listdir(os.path.join(REPO, "plugins", "modules")) if name.endswith(".py"))
    roles = sorted(os.listdir(os.path.join(REPO, "roles")))
    for module in modules:
        assert (pages / ("%s_module.html" % module)).is_file(), module
    for role in roles:
        assert (pages / ("%s_role.html" % role)).is_file(), role
    guides = sorted(name[:-3] for name in os.listdir(os.path.join(REPO, "docs")) if name.endswith(".md"))
    for guide in guides:
        assert (html / "guides" / ("%s.html" % guide)).is_file(), guide
    index = (html / "index.html").read_text()
    for guide in guides:
        assert 'href="guides/%s.html"' % guide in index, "%s is not in the site's table of contents" % guide
    # The same text ansible-doc shows: a new option of probe_info and its return value are on its page.
    probe_info = (pages / "probe_info_module.html").read_text()
    assert "parameter-resolve" in probe_info and "return-definitions" in probe_info


def test_link_checker_finds_a_missing_page_and_a_missing_anchor(tmp_path):
    (tmp_path / "a.html").write_text('<a href="b.html#there">b</a> <a href="b.html#nowhere">x</a> '
                                     '<a href="gone.html">y</a> <a href="https://example.org/">out</a> <p id="top">')
    (tmp_path / "b.html").write_text('<h1 id="there">b</h1> <a href="a.html#top">back</a> <a href="/a.html">root</a>')
    proc = subprocess.run(["python3", CHECK_LINKS, str(tmp_path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert sorted(line for line in proc.stdout.splitlines() if line.startswith("broken")) == [
        "broken link in a.html: b.html#nowhere (no such anchor)", "broken link in a.html: gone.html (no such file)"]
    assert "1 links out of the site not followed" in proc.stdout
