#!/usr/bin/python
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r"""
---
module: probe_for_nodes
short_description: Resolve a probe on the controller, once per build-id, for the nodes that cannot
version_added: 1.1.0
description:
  - Takes every node's M(fleettrace.tracefs.probe_info) answer about its own binary (O(hosts) and O(registered), or
    O(nodes)) and decides where
    each node's probe is resolved. A node that lists the probe resolves it itself (O(resolve_on=auto)); the others,
    grouped by build-id, are resolved here once per build-id, and get the C(uprobe_events) lines to install,
    guarded by that build-id (the M(fleettrace.tracefs.uprobe) module renames them onto the node's binary).
  - For each build-id this host's copy of the binary (O(controller_binary), else the node's path) is used when it
    has that build-id and its debug info is found; else the binary of the first node of that build must be fetched
    to O(binaries_dir)C(/BUILD_ID/NAME); RV(fetch) lists what to fetch (with the ansible.builtin.fetch module), and a
    second call with O(resolve=true) resolves from the fetched file.
  - Run it on the controller once for the play (C(delegate_to=localhost), C(run_once=true)). Needs pyelftools here
    when a node needs the controller. Reads only.
  - The C(threshold_capture) role's C(resolve) entry point calls it.
author: fleettrace developers (@fleettrace)
attributes:
  check_mode:
    support: full
    description: Reads only; the same in check mode.
  diff_mode:
    support: none
    description: No diff.
options:
  hosts:
    description:
      - The nodes, usually C(ansible_play_hosts). With O(registered), the action plugin reads each node's registered
        M(fleettrace.tracefs.probe_info) result on the controller; a node without one (it did not run that task) is
        resolved nowhere (C(none) in RV(where)).
      - One of O(hosts) (with O(registered)) and O(nodes) is required, not both.
    type: list
    elements: str
  registered:
    description:
      - The variable the M(fleettrace.tracefs.probe_info) task registered on each node (with C(failed_when=false));
        several names may be given, the first a node has that is not a skipped task counts.
      - Only with O(hosts).
    type: list
    elements: str
  nodes:
    description:
      - Host name -> that node's M(fleettrace.tracefs.probe_info) result about its binary (registered with
        C(failed_when=false)). O(hosts) with O(registered) builds it from the registered results.
    type: dict
  resolve_on:
    description: C(auto) (the node when it can, else here), C(node) (always the node) or C(controller) (always here).
    type: str
    choices: [auto, node, controller]
    default: auto
  controller_binary:
    description: This host's copy of the binary (default the node's path, on this host).
    type: path
  binaries_dir:
    description: Where a node's binary is fetched to, as C(BUILD_ID/NAME) below it.
    type: path
    required: true
  resolve:
    description: Resolve the probe for each build (false only says what to fetch first).
    type: bool
    default: false
  function:
    description: The function to probe; the line is picked as M(fleettrace.tracefs.probe_info) picks it.
    type: str
  spec:
    description: A perf-probe style spec (instead of O(function)).
    type: str
  line_match:
    description: As M(fleettrace.tracefs.probe_info)'s.
    type: str
  line:
    description: As M(fleettrace.tracefs.probe_info)'s.
    type: int
    default: 0
  args:
    description: As M(fleettrace.tracefs.probe_info)'s.
    type: list
    elements: str
    default: []
  group:
    description: The probe group of the definitions (the node's C(uprobe) module puts them into its own).
    type: str
    default: fleettrace_resolved
  event:
    description: The probe event's name.
    type: str
  debuginfo:
    description: A debug info file for the binary on this host.
    type: path
extends_documentation_fragment:
  - fleettrace.tracefs.debuginfod
seealso:
  - module: fleettrace.tracefs.probe_info
  - module: fleettrace.tracefs.uprobe
"""

EXAMPLES = r"""
# Needs first: corosync on the nodes; pyelftools and its debug info (or debuginfod) on the controller.
- name: Ask each node whether it can resolve the probe itself
  fleettrace.tracefs.probe_info:
    binary: /usr/sbin/corosync
    function: timer_function_scheduler_timeout
  register: info
  failed_when: false

- name: Say which node binaries the controller needs
  fleettrace.tracefs.probe_for_nodes:
    hosts: "{{ ansible_play_hosts }}"
    registered: info
    binaries_dir: /var/cache/fleettrace/binaries
    function: timer_function_scheduler_timeout
  delegate_to: localhost
  run_once: true
  register: plan

- name: Fetch them
  ansible.builtin.fetch:
    src: "{{ item.src }}"
    dest: "{{ item.dest }}"
    flat: true
  delegate_to: "{{ item.host }}"
  run_once: true
  loop: "{{ plan.fetch }}"

- name: Resolve once per build-id for the nodes that cannot
  fleettrace.tracefs.probe_for_nodes:
    hosts: "{{ ansible_play_hosts }}"
    registered: info
    binaries_dir: /var/cache/fleettrace/binaries
    function: timer_function_scheduler_timeout
    line_match: "tv_diff = "
    args: ["tv_diff=tv_diff:u64"]
    resolve: true
  delegate_to: localhost
  run_once: true
  register: resolved    # resolved.nodes[inventory_hostname].definitions go to that node's uprobe module
"""

RETURN = r"""
where:
  description: Host -> where its probe is resolved, C(node), C(controller) or C(none) (its binary unreadable there).
  returned: always
  type: dict
  sample: {"node1": "controller", "node2": "node"}
builds:
  description:
    - One per build-id resolved here, with C(build_id), C(host) (the first node of it), C(node_binary), C(copy)
      (this host's file tried first), C(fetched) (where a fetch puts the node's) and C(usable_copy).
  returned: always
  type: list
  elements: dict
fetch:
  description: The node binaries to fetch first (C(host), C(src), C(dest), C(build_id)); empty when every copy is usable.
  returned: always
  type: list
  elements: dict
nodes:
  description:
    - With O(resolve=true), host -> C(definitions) (empty when the node resolves itself), C(build_id), C(spec) (the
      line picked here) and C(debuginfo) (C(resolved_on), C(binary_from), C(source), C(server)).
  returned: when O(resolve=true)
  type: dict
unresolved:
  description: With O(resolve=true), host -> why neither the node nor the controller could resolve its probe.
  returned: when O(resolve=true)
  type: dict
resolved_builds:
  description: The build-ids resolved here (once each).
  returned: when O(resolve=true)
  type: list
  elements: str
"""

from ansible_collections.fleettrace.tracefs.plugins.module_utils import probe_for_nodes
from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import OptionError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.probe_definition import given_options
from ansible_collections.fleettrace.tracefs.plugins.module_utils.module_runner import run_module

PROBE = ("function", "spec", "line_match", "line", "args", "group", "event", "debuginfo", "debuginfod_urls",
         "debuginfod_timeout")


def body(module, result):
    params = module.params
    if params["hosts"] is not None or params["registered"] is not None:
        # The collection's action plugin replaces them by nodes on the controller before the module runs.
        raise OptionError("hosts and registered are read by the collection's probe_for_nodes action plugin on the "
                          "controller, which did not run here; give nodes (host -> probe_info result) instead")
    nodes = params["nodes"]
    if nodes is None:
        raise OptionError("give hosts (e.g. ansible_play_hosts) with registered (the probe_info task's variable), "
                          "or nodes (host -> probe_info result)")
    bad = sorted(host for host, answer in nodes.items() if not isinstance(answer, dict))
    if bad:
        raise OptionError("nodes must map each host to its probe_info result (a dict); not one for: %s"
                          % ", ".join(bad))
    # A role passes its empty defaults: '' and [] are "not given" (the debuginfod servers then come from the environment).
    probe = {name: value for name, value in given_options(params, PROBE).items() if name in PROBE}
    probe.update(line=params["line"], args=params["args"])
    if not (probe["function"] or probe["spec"]):
        raise OptionError("give function or spec: the probe to resolve")
    builds = probe_for_nodes.builds(nodes, params["resolve_on"], params["controller_binary"], params["binaries_dir"])
    for build in builds:
        build["usable_copy"] = probe_for_nodes.copy_lists_probe(build, probe)
    result.update(changed=False, builds=builds,
                  where={host: probe_for_nodes.where(answer, params["resolve_on"]) for host, answer in nodes.items()},
                  fetch=[dict(host=b["host"], src=b["node_binary"], dest=b["fetched"], build_id=b["build_id"])
                         for b in builds if not b["usable_copy"]])
    if not params["resolve"]:
        return
    by_build = {b["build_id"]: probe_for_nodes.resolve_build(b, b["usable_copy"], probe) for b in builds}
    result["nodes"], result["unresolved"] = probe_for_nodes.per_node(nodes, params["resolve_on"], by_build)
    result["resolved_builds"] = [b["build_id"] for b in builds]


def main():
    run_module(dict(nodes=dict(type="dict"),
                    hosts=dict(type="list", elements="str"),
                    registered=dict(type="list", elements="str"),
                    resolve_on=dict(type="str", choices=list(probe_for_nodes.RESOLVE_ON), default="auto"),
                    controller_binary=dict(type="path"),
                    binaries_dir=dict(type="path", required=True),
                    resolve=dict(type="bool", default=False),
                    function=dict(type="str"),
                    spec=dict(type="str"),
                    line_match=dict(type="str"),
                    line=dict(type="int", default=0),
                    args=dict(type="list", elements="str", default=[]),
                    group=dict(type="str", default="fleettrace_resolved"),
                    event=dict(type="str"),
                    debuginfo=dict(type="path"),
                    debuginfod_urls=dict(type="list", elements="str"),
                    debuginfod_timeout=dict(type="float")),
               body, supports_check_mode=True)


if __name__ == "__main__":
    main()
