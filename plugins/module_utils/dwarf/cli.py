# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Command line like ``perf probe -x BIN --definition SPEC`` (used by benchmarks).

    python -S -m ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.cli \\
        -x BIN [--debuginfo FILE] [--no-cache] 'SPEC' ...

Prints one uprobe_events line per probe address; errors go to stderr (exit 1).
A cache hit needs only built-in modules, so it can run with ``python -S``
(no site-packages scan); on a miss the site-packages are added to reach
pyelftools.  No argparse: its import alone costs more than a cache hit.
"""


import sys

from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import cache as dwarf_cache
from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError

USAGE = "usage: dwarf.cli -x BINARY [--debuginfo FILE] [--no-cache] SPEC [SPEC ...]\n"


def parse_args(argv):
    options = {"binary": None, "debuginfo": None, "cache": True, "specs": []}
    words = list(argv)
    while words:
        word = words.pop(0)
        if word in ("-x", "--exec") and words:
            options["binary"] = words.pop(0)
        elif word == "--debuginfo" and words:
            options["debuginfo"] = words.pop(0)
        elif word == "--no-cache":
            options["cache"] = False
        elif word in ("-h", "--help") or word.startswith("-") and not options["specs"] and word != "-":
            return None
        else:
            options["specs"].append(word)
    if not options["binary"] or not options["specs"]:
        return None
    return options


def _add_site():
    """Started with -S: a cache miss needs pyelftools from site-packages (added once, before resolving).

    The interpreter's or virtualenv's own site-packages is added directly (site.main() also reads
    every .pth file: ~3 ms); when pyelftools is not there (a distribution's dist-packages, a user
    site), site.main() finds it."""
    if not sys.flags.no_site or "site" in sys.modules:
        return
    import os
    version = "python%d.%d" % sys.version_info[:2]
    for root in (os.path.dirname(os.path.dirname(os.path.abspath(sys.executable))), sys.prefix):
        path = os.path.join(root, "lib", version, "site-packages")
        if os.path.isdir(os.path.join(path, "elftools")):
            if path not in sys.path:
                sys.path.append(path)
            return
    import site
    site.main()


def resolve(options, spec):
    return dwarf_cache.cached_resolve(options["binary"], spec, debuginfo=options["debuginfo"],
                                      use_cache=options["cache"], on_miss=_add_site)


def main(argv=None):
    options = parse_args(sys.argv[1:] if argv is None else argv)
    if options is None:
        sys.stderr.write(USAGE)
        return 2
    status = 0
    for spec in options["specs"]:
        try:
            result = resolve(options, spec)
        except FleettraceError as exc:      # one line each, as perf prints its errors
            sys.stderr.write("error: %s\n" % " ".join(exc.sentence().split()))
            status = 1
            continue
        sys.stdout.write("".join(line + "\n" for line in result["definitions"]))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
