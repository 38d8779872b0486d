# -*- coding: utf-8 -*-
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Command line like ``perf probe -x BIN --definition SPEC`` (used by benchmarks).

    python -m ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf_cli -x BIN 'SPEC' ...

Only the build-id keyed cache is consulted before pyelftools is imported,
so a repeat answers without parsing DWARF.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import sys

from ansible_collections.fleettrace.tracefs.plugins.module_utils import dwarf_cache
from ansible_collections.fleettrace.tracefs.plugins.module_utils import dwarf_debuginfo
from ansible_collections.fleettrace.tracefs.plugins.module_utils import probe_spec


def main(argv=None):
    parser = argparse.ArgumentParser(description="resolve perf-probe specs into uprobe_events lines")
    parser.add_argument("-x", "--exec", dest="binary", required=True, help="ELF executable or shared library")
    parser.add_argument("--debuginfo", help="file with the DWARF (default: searched like gdb does)")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the resolver cache")
    parser.add_argument("specs", nargs="+", help="perf probe specs, e.g. 'func:3 var:u64'")
    options = parser.parse_args(argv)
    status = 0
    for spec in options.specs:
        try:
            result = dwarf_cache.cached_resolve(options.binary, spec, debuginfo=options.debuginfo,
                                                use_cache=not options.no_cache)
        except (probe_spec.ProbeSpecError, dwarf_debuginfo.DebugInfoError) as exc:
            sys.stderr.write("error: %s\n" % exc)
            status = 1
            continue
        except Exception as exc:  # ResolveError is imported lazily with pyelftools
            if type(exc).__name__ != "ResolveError":
                raise
            sys.stderr.write("error: %s\n" % exc)
            status = 1
            continue
        for line in result["definitions"]:
            sys.stdout.write(line + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
