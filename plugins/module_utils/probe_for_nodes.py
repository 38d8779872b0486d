# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Resolve where it can, ship where it must: where each node's probe is resolved.

Each node has answered probe_info about its own binary (registered with failed_when: false, so a
node that cannot answer still says its build-id when it could read it).  A node that lists the probe
resolves it itself (resolve_on auto or node); the others are grouped by build-id and the controller
resolves each build once: from its own copy of the binary when that copy lists the probe for that
build-id, else from the first such node's binary fetched to BINARIES_DIR/BUILD_ID/NAME.
"""

import os

from ansible_collections.fleettrace.tracefs.plugins.module_utils import probe_lookup
from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError

RESOLVE_ON = ("auto", "node", "controller")


def where(answer, resolve_on):
    """node, controller or none (a node whose build-id is unknown: its binary cannot be read there)."""
    if resolve_on == "node" or (resolve_on == "auto" and probe_lookup.listed(answer)):
        return "node"
    return "controller" if answer.get("build_id") else "none"


def builds(nodes, resolve_on, controller_binary, binaries_dir):
    """One dict per distinct build-id the controller resolves, in the nodes' order: the first node that
    runs it (``host``, ``node_binary``), the controller's copy to try first and where a fetch puts the node's."""
    found = {}
    for host, answer in nodes.items():
        build_id = answer.get("build_id")
        if where(answer, resolve_on) != "controller" or build_id in found:
            continue
        binary = answer.get("binary") or ""
        found[build_id] = dict(build_id=build_id, host=host, node_binary=binary, copy=controller_binary or binary,
                               fetched=os.path.join(binaries_dir, build_id, os.path.basename(binary)))
    return list(found.values())


def _reason(exc):
    return exc.sentence() if isinstance(exc, FleettraceError) else str(exc)


def copy_lists_probe(build, probe, look_up=probe_lookup.look_up):
    """Whether the controller's copy has the build-id and lists the probe (its debug info is found)."""
    # As everywhere in the role: a spec names the exact place and wins over the function.
    asked = dict(spec=probe["spec"]) if probe["spec"] else dict(function=probe["function"])
    try:
        return probe_lookup.listed(look_up({}, build["copy"], build_id=build["build_id"], debuginfo=probe["debuginfo"],
                                           debuginfod_urls=probe["debuginfod_urls"],
                                           debuginfod_timeout=probe["debuginfod_timeout"], **asked))
    except (FleettraceError, OSError):
        return False


def resolve_build(build, usable_copy, probe, look_up=probe_lookup.look_up):
    """What the controller resolved for one build: definitions, spec, binary_from, source, server, message."""
    path, binary_from = (build["copy"], "controller_copy") if usable_copy else (build["fetched"], "fetched_from_node")
    if probe["spec"]:
        picked = dict(spec=probe["spec"])
    else:
        picked = dict(function=probe["function"], line_match=probe["line_match"] or None, line=probe["line"],
                      args=probe["args"])
    answer = {}
    message = ""
    try:
        look_up(answer, path, resolve=True, build_id=build["build_id"], debuginfo=probe["debuginfo"],
                debuginfod_urls=probe["debuginfod_urls"], debuginfod_timeout=probe["debuginfod_timeout"],
                group=probe["group"], event=probe["event"], **picked)
    except (FleettraceError, OSError) as exc:
        message = _reason(exc)
    return dict(definitions=answer.get("definitions", []), file=path, spec=probe["spec"] or answer.get("spec", ""),
                binary_from=binary_from, source=answer.get("debuginfo_source"), server=answer.get("debuginfod_server"),
                message=message)


def per_node(nodes, resolve_on, by_build):
    """threshold_capture_resolved of each node, and the nodes the controller could not resolve for (why)."""
    resolved, unresolved = {}, {}
    for host, answer in nodes.items():
        place = where(answer, resolve_on)
        build_id = answer.get("build_id") or ""
        if place != "controller":
            resolved[host] = dict(definitions=[], build_id=build_id, spec="",
                                  debuginfo=dict(resolved_on=place, binary_from="node",
                                                 source=answer.get("debuginfo_source"), server=None))
            continue
        built = by_build.get(build_id, {})
        resolved[host] = dict(definitions=built.get("definitions", []), build_id=build_id, spec=built.get("spec", ""),
                              debuginfo=dict(resolved_on=place, binary_from=built.get("binary_from"),
                                             source=built.get("source"), server=built.get("server")))
        if not resolved[host]["definitions"]:
            unresolved[host] = ("cannot resolve the probe for %s (build-id %s) on %s: %s; nor on the controller: %s"
                                % (answer.get("binary") or "the binary", build_id, host, answer.get("msg", ""),
                                   built.get("message") or "not tried"))
    return resolved, unresolved
