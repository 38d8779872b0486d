# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What probe_info answers about one binary: its build-id, the probe-able lines of a function, the
picked probe line, the variables there and, with ``resolve``, the ``uprobe_events`` definitions.

One home for the probe_info module (on a node) and probe_for_nodes (on the controller, once per
build-id).  Needs pyelftools, imported late: without it the build-id is still known (a caller can
resolve elsewhere by it) and the error says what is missing.
"""

import re

from ansible_collections.fleettrace.tracefs.plugins.module_utils import uprobe_plans
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import debuginfo as dwarf_debuginfo
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import debuginfod
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import probe_spec
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.errors import DwarfError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError, OptionError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.probe_definition import given_lines


def look_up(result, binary, function=None, spec=None, debuginfo=None, build_id=None, resolve=False, group=None,
            event=None, debuginfod_urls=None, debuginfod_timeout=None, line_match=None, line=0, args=()):
    """Fill ``result`` (a dict, filled as far as it got when this raises) with probe_info's return values."""
    result.setdefault("lines", [])
    result.setdefault("build_id", None)
    try:
        # Known without pyelftools (struct only): a caller can resolve elsewhere by it when this host cannot.
        result["build_id"] = dwarf_debuginfo.read_build_id(binary)
    except dwarf_debuginfo.DebugInfoError:
        pass
    try:
        import elftools  # noqa: F401 - the resolver imports it late; say so before any work
        from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import resolver as dwarf_resolver
    except ImportError as exc:
        raise FleettraceError("probe_info needs the Python package pyelftools on this host (pip install pyelftools): %s"
                              % exc)
    if build_id is not None and not re.match(r"^[0-9a-fA-F]{2,}$", build_id):
        raise OptionError("build_id %r must be a hex GNU build-id" % build_id)
    resolver = None
    try:
        found = debuginfod.locate(binary, explicit=debuginfo, expected_build_id=build_id,
                                  urls=debuginfod.server_urls(debuginfod_urls), timeout=debuginfod_timeout)
        result["debuginfo_source"] = found["source"]
        if found["server"]:
            result["debuginfod_server"] = found["server"]
        resolver = dwarf_resolver.Resolver(binary, debuginfo=found["path"], expected_build_id=build_id)
        result["build_id"] = resolver.build_id
        parsed = probe_spec.parse(spec) if spec else None
        wanted_function = function
        if wanted_function is None and parsed is not None:
            wanted_function = parsed.point.function
        if wanted_function:
            listing = resolver.probeable_lines(wanted_function,
                                               parsed.point.source if parsed is not None and not function else None)
            result.update(function=listing["function"], file=listing["file"], decl_line=listing["decl_line"],
                          lines=listing["lines"])
        wanted_spec = spec
        if function and (line_match or line or args or resolve):
            # The probe line picked here, not in a role: the same choice on every node and on the controller.
            wanted_spec, picked = uprobe_plans.pick_line(listing["function"], listing["lines"], line_match, line, args)
            result.update(spec=wanted_spec, picked_line=picked)
        if wanted_spec is not None:
            result["variables"] = resolver.variables_at(wanted_spec)
        if resolve:
            resolved = resolver.resolve(wanted_spec, group=group, event=event).as_dict()
            result.update(definitions=resolved["definitions"], addresses=resolved["addresses"],
                          group=resolved["group"], events=resolved["events"])
    except DwarfError as exc:
        raise exc.reworded("probe_info on %s: %s" % (binary, exc.message))
    finally:
        if resolver is not None:
            resolver.close()
    return result


def listed(result):
    """Whether a probe_info answer (a registered result, also of a failed call) lists the probe: the binary
    and its debug info are usable there."""
    return not result.get("failed") and (bool(result.get("lines")) or "variables" in result)


def ready_or_resolved(definitions, build_id, binary, spec=None, function=None, line_match=None, line=0, args=(),
                      group="fleettrace_resolved", event=None, debuginfo=None, debuginfod_urls=None,
                      debuginfod_timeout=None):
    """(definitions, build_id) to install: the ready ones (empty lines dropped) with the build-id they were
    resolved for, else the probe resolved here (``spec``, or the line of ``function`` picked as probe_info picks it)."""
    ready = given_lines(definitions)
    if ready:
        return ready, build_id or None
    if not (spec or function):
        raise OptionError("give definitions, or probe_spec or probe_function to resolve the probe here")
    picked = dict(spec=spec) if spec else dict(function=function, line_match=line_match or None, line=line,
                                               args=list(args or []))
    answer = look_up({}, binary, resolve=True, group=group, event=event, debuginfo=debuginfo or None,
                     debuginfod_urls=debuginfod_urls or None, debuginfod_timeout=debuginfod_timeout, **picked)
    return answer["definitions"], answer["build_id"]
