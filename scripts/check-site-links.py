"""Every link inside a built static site leads somewhere: the file exists and so does the #anchor.

    python3 scripts/check-site-links.py SITE_DIR

Links out of the site (http:, https:, mailto:) are counted, not followed: the
site is built where there is no network.  A path starting with / is taken from
the site's root (the theme's home link): the site is served from a root of its
own.  Exits 1 naming each broken link.
"""

import html.parser
import os
import sys
import urllib.parse


class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []
        self.anchors = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name"):
            if attrs.get(key):
                self.anchors.add(attrs[key])
        for key in ("href", "src"):
            if attrs.get(key) and not (tag == "link" and attrs.get("rel") in ("canonical",)):
                self.links.append(attrs[key])


def parse(path):
    page = Page()
    with open(path, encoding="utf-8") as handle:
        page.feed(handle.read())
    return page


def main(site):
    site = os.path.abspath(site)
    pages = {}
    for directory, _dirs, files in os.walk(site):
        for name in files:
            if name.endswith(".html"):
                pages[os.path.join(directory, name)] = None
    if not pages:
        print("check-site-links: no HTML pages under %s" % site)
        return 1
    broken, outside, checked = [], set(), 0
    for path in sorted(pages):
        for link in parse(path).links:
            parts = urllib.parse.urlsplit(link)
            if parts.scheme or link.startswith("//"):
                if parts.scheme in ("http", "https", "mailto"):
                    outside.add(link)
                    continue
                if parts.scheme != "data":
                    broken.append((path, link, "scheme %s" % parts.scheme))
                continue
            base = site if parts.path.startswith("/") else os.path.dirname(path)
            target = os.path.normpath(os.path.join(base, urllib.parse.unquote(parts.path).lstrip("/"))) \
                if parts.path else path
            checked += 1
            if os.path.isdir(target):
                target = os.path.join(target, "index.html")
            if not (target + os.sep).startswith(site + os.sep) or not os.path.isfile(target):
                broken.append((path, link, "no such file"))
                continue
            if parts.fragment and target.endswith(".html"):
                if pages.get(target) is None:
                    pages[target] = parse(target).anchors
                if urllib.parse.unquote(parts.fragment) not in pages[target]:
                    broken.append((path, link, "no such anchor"))
    for path, link, why in broken:
        print("broken link in %s: %s (%s)" % (os.path.relpath(path, site), link, why))
    print("check-site-links: %d pages, %d links inside the site checked, %d broken; %d links out of the site "
          "not followed" % (len(pages), checked, len(broken), len(outside)))
    return 1 if broken else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
