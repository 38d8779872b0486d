#!/usr/bin/python
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r"""
---
module: probe_info
short_description: Show the probe-able lines of a function and the variables at a probe point, without perf
version_added: 0.1.0
description:
  - What C(perf probe -x BINARY -L FUNC) and C(-V FUNC:N) show, read from the binary's DWARF with pyelftools.
  - RV(lines) lists the lines of a function that have code, with the line relative to the function
    (the C(N) of C(FUNC:N)), their addresses and the source text when the source file is on the host;
    C(probeable=false) marks lines that share their address with another line (perf refuses those and
    suggests the other line).
  - With O(spec) naming a probe point, RV(variables) lists every parameter and local variable visible there,
    with its C type, where it lives, and the fetch arg that traces it, or why it cannot be traced there.
  - With O(resolve=true), RV(definitions) are the C(uprobe_events) lines that probe O(spec) with its fetch args,
    what M(fleettrace.tracefs.uprobe) would install; give them to a node that cannot resolve the probe itself
    (no pyelftools, no debug info) as its O(fleettrace.tracefs.uprobe#module:definition), guarded by RV(build_id).
  - Read-only; never changes anything. Needs no tracefs, no root and no kernel feature, only the binary (or its
    debug info) and pyelftools, so a controller or an execution environment resolves probes for its nodes this way.
author:
  - fleettrace developers (@fleettrace)
options:
  binary:
    description: Absolute path of the ELF executable or shared library.
    type: path
    required: true
  function:
    description:
      - Function whose probe-able lines to list (like C(perf probe -L FUNC)).
      - One of O(function) and O(spec) is required. An empty O(function), O(spec), O(line_match), O(debuginfo),
        O(build_id), O(group) or O(event) counts as not given (a role passes its empty defaults), and so do
        O(line=0) and an empty O(args). O(spec) goes with none of O(line_match), O(line) and O(args).
    type: str
  spec:
    description:
      - A probe point in C(perf probe) syntax, e.g. C(timer_function_scheduler_timeout:21) or C(main.c:120),
        whose visible variables to list (like C(perf probe -V)).
      - When O(function) is not given, the lines of the spec's function are listed too.
    type: str
  debuginfo:
    description: File that holds the DWARF of O(binary); default is searched like gdb does.
    type: path
  build_id:
    description: Expected GNU build-id of O(binary); the module fails when the file is a different build.
    type: str
  pid:
    description:
      - List what the code this process runs has at O(binary), not the file on disk. When that file was replaced
        since the process started (an upgrade without a restart), the mapped file is read through
        C(/proc/PID/map_files/) (see the O(fleettrace.tracefs.uprobe#module:pid) option of the uprobe module).
      - Fails when the process does not map O(binary).
    type: int
  line_match:
    description:
      - With O(function), pick the probe line instead of giving O(spec) (the line differs between releases and
        optimisation levels), namely the first probe-able line after the first line whose source text matches this regular
        expression. At -O2 the matching line itself often shares its address with another one (not probe-able),
        so the match is an anchor, typically the statement that computes the traced variable.
      - The module fails, listing the lines, when no line matches and O(line) is 0.
      - The picked spec (with O(args)) is RV(spec); O(resolve=true) resolves it.
    type: str
    version_added: 1.1.0
  line:
    description: With O(function), the probe line relative to its declaration when O(line_match) matches none (0 the entry).
    type: int
    default: 0
    version_added: 1.1.0
  args:
    description: With O(function), the fetch args appended to the picked spec (C(var=expr:type ...)).
    type: list
    elements: str
    default: []
    version_added: 1.1.0
  resolve:
    description:
      - Also resolve O(spec) (or the spec picked from O(function), O(line_match), O(line) and O(args)), with its
        fetch args (C(FUNC:N var=expr:type ...)), into RV(definitions).
    type: bool
    default: false
    version_added: 1.0.0
  group:
    description: Probe group named in RV(definitions) (with O(resolve=true)); default the spec's or the binary's name.
    type: str
    version_added: 1.0.0
  event:
    description: Event named in RV(definitions) (with O(resolve=true)); default the spec's or the function's name.
    type: str
    version_added: 1.0.0
extends_documentation_fragment:
  - fleettrace.tracefs.debuginfod
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing, so there is no diff.
notes:
  - Needs pyelftools on the target. No root needed when the binary and its debug info are readable; no tracefs.
seealso:
  - module: fleettrace.tracefs.uprobe
"""

EXAMPLES = r"""
# Needs first: /usr/sbin/corosync with its debug info; on the controller /srv/binaries/corosync, a copy of the nodes' build.
- name: Which lines of timer_function_scheduler_timeout can be probed?
  fleettrace.tracefs.probe_info:
    binary: /usr/sbin/corosync
    function: timer_function_scheduler_timeout
  register: lines

- name: Which variables can be traced at line 21 of it?
  fleettrace.tracefs.probe_info:
    binary: /usr/sbin/corosync
    spec: "timer_function_scheduler_timeout:21"
  register: at_line

- name: Resolve the probe on the controller for nodes without debug info (no tracefs or root needed)
  fleettrace.tracefs.probe_info:
    binary: /srv/binaries/corosync
    spec: "timer_function_scheduler_timeout:21 tv_diff=tv_diff:u64"
    resolve: true
  delegate_to: localhost
  register: resolved     # resolved.definitions and resolved.build_id go to the nodes' uprobe module

- name: Pick the first line where tv_diff is available
  ansible.builtin.set_fact:
    tv_diff_fetch: "{{ at_line.variables | selectattr('name', 'equalto', 'tv_diff') | selectattr('available') | map(attribute='fetcharg') | first }}"
"""

RETURN = r"""
mapped:
  description: With O(pid), the file the process maps for O(binary); C(replaced) true means the listing is of the code
    it runs, read through C(probe_path), not of the file now on disk.
  returned: with O(pid)
  type: dict
  sample: {"pid": 4242, "path": "/usr/sbin/corosync", "replaced": true, "probe_path": "/proc/4242/map_files/55d0c8a00000-55d0c8a0c000"}
function:
  description: The function whose lines are listed.
  returned: when lines are listed
  type: str
  sample: timer_function_scheduler_timeout
file:
  description: Source file that declares the function (as recorded in the DWARF).
  returned: when lines are listed
  type: str
  sample: /build/corosync/exec/main.c
decl_line:
  description: Line of the function's declaration; RV(lines[].relative_line) counts from it.
  returned: when lines are listed
  type: int
  sample: 1210
lines:
  description: Lines of the function that have code.
  returned: always (empty without O(function) or a function spec)
  type: list
  elements: dict
  contains:
    line:
      description: Absolute line number in RV(file).
      type: int
    relative_line:
      description: Line relative to the declaration, the C(N) in C(FUNC:N).
      type: int
    address:
      description: First address of the line.
      type: str
    addresses:
      description: All addresses of the line (loops and inlined copies give several).
      type: list
      elements: str
    probeable:
      description: False when the line shares its address with another line (perf and uprobe refuse it).
      type: bool
    source:
      description: The source text of the line, or null when the source file is not on the host.
      type: str
  sample: [{"line": 1231, "relative_line": 21, "address": "0x26097", "addresses": ["0x26097"], "probeable": true,
            "source": "\tif (tv_diff > schedmiss_event_tstamp) {"}]
variables:
  description: Variables visible at each address of O(spec).
  returned: when O(spec) is given
  type: list
  elements: dict
  contains:
    name:
      description: Variable name.
      type: str
    type:
      description: C type.
      type: str
    kind:
      description: C(parameter) or C(local).
      type: str
    address:
      description: The probe address this entry is about.
      type: str
    location:
      description: Where the value lives there (register, memory relative to a register, global memory, constant).
      type: str
    fetcharg:
      description: The uprobe fetch arg that traces it (null when not available).
      type: str
    available:
      description: Whether it can be traced at this address.
      type: bool
    reason:
      description: Why it cannot be traced (optimized out, computed value, ...), with where it is available.
      type: str
  sample: [{"name": "tv_diff", "type": "uint64_t", "kind": "local", "address": "0x26097", "location": "register %si",
            "fetcharg": "tv_diff=%si:x64", "available": true, "reason": null}]
definitions:
  description:
    - The C(uprobe_events) lines that probe O(spec) (one per address), as M(fleettrace.tracefs.uprobe) would write them.
    - Fetch args keep their C(x) types; the node's uprobe module rewrites them for a kernel that knows only C(u) types.
  returned: with O(resolve=true)
  type: list
  elements: str
  sample: ["p:fleettrace_resolved/tick /usr/sbin/corosync:0x26097 tv_diff=%si:u64"]
addresses:
  description: The probe addresses of RV(definitions).
  returned: with O(resolve=true)
  type: list
  elements: str
  sample: ["0x26097"]
group:
  description: The probe group named in RV(definitions).
  returned: with O(resolve=true)
  type: str
  sample: fleettrace_resolved
events:
  description: The event names in RV(definitions).
  returned: with O(resolve=true)
  type: list
  elements: str
  sample: [tick]
debuginfod_server:
  description: The debuginfod server that served the debug info.
  returned: when the debug info came from debuginfod
  type: str
  sample: http://127.0.0.1:8002
debuginfo_source:
  description: Where the DWARF came from, C(binary), C(local), C(file) or C(debuginfod).
  returned: when the debug info was found
  type: str
  sample: local
spec:
  description: The probe spec picked from O(function), O(line_match), O(line) and O(args).
  returned: with O(function) and O(line_match), O(line), O(args) or O(resolve=true)
  type: str
  sample: "timer_function_scheduler_timeout:11 tv_diff"
picked_line:
  description: The line O(line_match) picked (C(line), C(relative_line), C(addresses), C(source)), or null.
  returned: with O(function) and O(line_match), O(line), O(args) or O(resolve=true)
  type: dict
build_id:
  description: GNU build-id of the binary.
  returned: always
  type: str
  sample: 3b5c7f0e9a3d4c1b8e2f6a7d9c0b1e2f3a4b5c6d
binary:
  description: The binary asked about (O(binary) as given), for a controller step that reads every node's answer.
  returned: always
  type: str
  sample: /usr/sbin/corosync
"""

from ansible_collections.fleettrace.tracefs.plugins.module_utils import mapped_code, probe_lookup, uprobe_plans
from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import OptionError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.probe_definition import given_options
from ansible_collections.fleettrace.tracefs.plugins.module_utils.module_runner import run_module

LOOKUP_OPTIONS = ("function", "spec", "debuginfo", "build_id", "resolve", "group", "event", "debuginfod_urls",
                  "debuginfod_timeout", "line_match", "line", "args")
# Empty counts as not given (a role passes its defaults).
OPTIONAL_TEXT = ("function", "spec", "debuginfo", "build_id", "group", "event", "debuginfod_urls", "line_match")


def body(module, result):
    params = given_options(module.params, OPTIONAL_TEXT)
    if not (params["function"] or params["spec"]):
        raise OptionError("give function (whose lines to list) or spec (a probe point); an empty one counts as not given")
    picking = [name for name in ("line_match", "line", "args") if params[name]]
    if params["spec"] and picking:
        raise OptionError("parameters are mutually exclusive: spec|%s (%s picks the line of function; with a spec "
                          "give neither)" % (picking[0], picking[0]))
    result.update(lines=[], build_id=None, binary=params["binary"])
    if params["pid"] is not None:
        try:
            params, running = uprobe_plans.onto_running_code(params)
        except mapped_code.MappedCodeError as exc:
            raise exc.reworded("probe_info on %s: %s" % (params["binary"], exc.message))
        result["mapped"] = running.facts()
    probe_lookup.look_up(result, params["binary"], **{name: params[name] for name in LOOKUP_OPTIONS})


def main():
    run_module(
        dict(
            binary=dict(type="path", required=True),
            function=dict(type="str"),
            spec=dict(type="str"),
            debuginfo=dict(type="path"),
            build_id=dict(type="str"),
            resolve=dict(type="bool", default=False),
            group=dict(type="str"),
            event=dict(type="str"),
            debuginfod_urls=dict(type="list", elements="str"),
            debuginfod_timeout=dict(type="float"),
            pid=dict(type="int"),
            line_match=dict(type="str"),
            line=dict(type="int", default=0),
            args=dict(type="list", elements="str", default=[]),
        ),
        # Which of them are given (empty values are not) is checked in body.
        body,
        supports_check_mode=True)


if __name__ == "__main__":
    main()
