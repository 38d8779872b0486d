#!/usr/bin/python
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r"""
---
module: uprobe
short_description: Create or remove a user-space probe (uprobe) from a perf-probe spec, without perf
version_added: 0.1.0
description:
  - Resolves a C(perf probe) style spec such as C(timer_function_scheduler_timeout:21 tv_diff:u64) into
    C(uprobe_events) lines with the binary's DWARF debug info (pyelftools), the way
    C(perf probe -x BINARY --definition SPEC) does, and writes them to C(/sys/kernel/tracing/uprobe_events).
  - Where perf gives the right answer, the lines are identical (address, fetch args, types, group and
    event names). Where perf traces a wrong value or gives up (globals, values computed by DWARF
    expressions, entry values, bitfields, separate debug files), the module traces the true value or fails
    that variable with the reason, for example that it is optimized out at that line and where it is available.
  - Instead of a spec, ready O(definition) lines (resolved elsewhere, e.g. on the controller for nodes without
    debug info) can be given, guarded by O(build_id). Each offset must be where this host's line table or symbol
    table says an instruction starts (else O(force)); on a host with neither, O(build_id) is required. The
    binary's build-id is checked again right before the write. With O(group), every definition must name that
    group; without it, a definition may not replace probes already in its group.
  - A probe is only placed at an address that the line table or the symbol table names; a C(FUNC+OFFSET)
    elsewhere needs O(force), because a probe inside an instruction corrupts the traced program.
  - All lines are added or none. When the kernel refuses one, the ones already added are removed.
  - C(state=absent) disables the event in every tracefs instance and then removes it; it removes only the
    events named by this spec (or O(group)/O(event)).
author:
  - fleettrace developers (@fleettrace)
options:
  binary:
    description:
      - Absolute path of the ELF executable or shared library to probe.
      - Required with a non-empty O(spec).
    type: path
  spec:
    description:
      - The probe in C(perf probe) syntax, C([[GROUP:]EVENT=]FUNC[@SRC][:RELLINE|+OFFSET|%return] [ARG ...])
        or C(SRC.c:LINE [ARG ...]).
      - ARG is C([NAME=]VAR[->field|.field|[i]]...[:TYPE]) with TYPE one of C(s8)...C(s64), C(u8)...C(u64),
        C(x8)...C(x64), C(string); or C($params), C($vars); or a raw fetch arg such as C(%di) or C($retval).
      - An empty spec counts as not given. When O(definition) has a non-empty line, the definition wins and the
        spec is not resolved (a role may pass both, the spec and the lines resolved from it elsewhere).
      - One of a non-empty O(spec) and a non-empty O(definition) line is required with O(state=present).
    type: str
  picked:
    description:
      - What M(fleettrace.tracefs.probe_info) returned when it picked the probe line (registered). When O(spec) is
        empty, its RV(fleettrace.tracefs.probe_info#module:spec) is the spec. A skipped task's result gives none,
        so a role can pass it whether the line was picked or not.
    type: dict
    version_added: 1.1.0
  definition:
    description:
      - Ready C(uprobe_events) lines, as returned in RV(definitions) by an earlier run (e.g. in check mode on a
        host with debug info) or by M(fleettrace.tracefs.probe_info) with O(fleettrace.tracefs.probe_info#module:resolve=true)
        (on a controller without tracefs or root). Each line is checked and written as it is.
      - A single line may be given as a string. Empty lines are ignored, so an empty string or list means no
        definition (then O(spec) is used). A non-empty line wins over O(spec).
    type: list
    elements: str
  build_id:
    description:
      - Expected GNU build-id (hex) of O(binary) (or of the binary named in O(definition)).
      - The module fails without writing anything when the file on the host is a different build.
      - An empty build-id counts as not given.
    type: str
  group:
    description:
      - Event group. Default as perf, C(probe_) plus the binary name up to the first character that is not a
        letter, digit or C(_) (C(probe_corosync)). Letters, digits, C(_) and C(-) only.
    type: str
  event:
    description:
      - Event name. Default as perf, C(FUNC_L<N>) for C(FUNC:N), C(FUNC) for a function entry,
        C(FUNC__return) for C(FUNC%return), the function's name for C(FILE:LINE).
    type: str
  rename:
    description:
      - With O(definition), give the lines this task's O(group) (required then), and O(binary)'s path when it is
        given, instead of refusing lines that name another group or file, for example lines resolved once on the
        controller (from its copy of the binary) for every node of a run. Give O(build_id) to make sure the
        file is the same build.
      - O(event) renames them too when they all name one event; lines with events of their own (C(NAME),
        C(NAME_1), ... for inlined copies whose arguments differ) keep their names.
      - Without it, a definition must already name O(group), and O(event) renames every line.
      - With O(spec) it changes nothing (the resolved lines take O(group) and O(event) anyway), so a role may set it
        whether it passes a spec or a definition.
    type: bool
    default: false
  debuginfo:
    description:
      - File that holds the DWARF of O(binary) (for example made by C(objcopy --only-keep-debug)).
      - Default is searched like gdb does, in the binary, C(/usr/lib/debug/<path>.debug),
        C(/usr/lib/debug/.build-id/xx/rest.debug) and through C(.gnu_debuglink). Its build-id must match.
      - An empty path counts as not given.
    type: path
  pid:
    description:
      - The process the probe is for. The probe goes onto the code this process runs, not onto the file at
        O(binary). When that file was replaced since the process started (an upgrade without a restart, so
        C(/proc/PID/exe) says "(deleted)"), a probe on the path would land on the new file, which the process
        does not run, and never fire. The spec is then resolved from the mapped file and the probe placed on it
        through C(/proc/PID/map_files/); RV(mapped) says so.
      - Fails when the process does not map O(binary) (a probe that cannot fire in it), or when O(definition)
        was resolved for another build than the one the process runs.
      - Only with O(state=present).
    type: int
  force:
    description:
      - Allow C(FUNC+OFFSET), or a O(definition) offset, at an address that neither the line table nor the symbol
        table names.
    type: bool
    default: false
  allow_unavailable:
    description:
      - Leave out variables that cannot be traced at the probe address (optimized out, computed) instead of
        failing. RV(variables) says which and why.
    type: bool
    default: false
  cache:
    description:
      - Use and fill the resolver cache under C(~/.cache/fleettrace/resolver) (keyed by build-id), which makes
        repeated resolutions of the same spec fast. Check mode uses it too (it is a cache of the DWARF, not a
        change to what is traced), so a controller resolving in check mode pays once per build-id.
    type: bool
    default: true
  state:
    description:
      - C(present) adds the probe (replacing a same-named one with a different definition).
      - C(absent) disables it in every instance and removes it.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - fleettrace.tracefs.debuginfod
attributes:
  check_mode:
    support: full
    description: >-
      Returns the exact lines it would write (RV(definitions)) and writes nothing to tracefs (the resolver's caches
      under C(~/.cache/fleettrace) are filled as in any run).
  diff_mode:
    support: full
    description: Shows the probe's C(uprobe_events) lines before and after.
notes:
  - Needs root (C(become=true)), a kernel with uprobes, and pyelftools on the target when O(spec) is used
    (O(definition) needs no pyelftools).
  - The probe fires in every process that runs the binary; enable it only in a private instance
    (M(fleettrace.tracefs.instance), M(fleettrace.tracefs.event)) to keep others' traces clean.
seealso:
  - module: fleettrace.tracefs.probe_info
  - module: fleettrace.tracefs.event
"""

EXAMPLES = r"""
# Needs first: /usr/sbin/corosync with its debug info (in the binary, /usr/lib/debug or debuginfod).
- name: Probe the line that computes the timer difference in corosync
  fleettrace.tracefs.uprobe:
    binary: /usr/sbin/corosync
    spec: "timer_function_scheduler_timeout:21 tv_diff:u64"
  become: true
  register: probe

- name: Resolve on the controller (which has the debug info) without touching it ...
  fleettrace.tracefs.uprobe:
    binary: /usr/sbin/corosync
    spec: "timer_function_scheduler_timeout:21 tv_diff:u64"
  check_mode: true
  delegate_to: localhost
  run_once: true
  register: resolved

- name: ... and install the lines on nodes with the same build
  fleettrace.tracefs.uprobe:
    definition: "{{ resolved.definitions }}"
    build_id: "{{ resolved.build_id }}"
  become: true

- name: Install lines resolved under another name in this run's own group and event
  fleettrace.tracefs.uprobe:
    definition: "{{ resolved.definitions }}"
    build_id: "{{ resolved.build_id }}"
    group: fleettrace_run42
    event: timer_L21
    rename: true
  become: true

- name: Remove the probe again
  fleettrace.tracefs.uprobe:
    binary: /usr/sbin/corosync
    spec: "timer_function_scheduler_timeout:21"
    state: absent
  become: true
"""

RETURN = r"""
group:
  description: Event group of the probe.
  returned: always
  type: str
  sample: probe_corosync
events:
  description: Event names (one, unless the probe addresses need different arguments).
  returned: always
  type: list
  elements: str
  sample: [timer_function_scheduler_timeout_L21]
group_events:
  description: The same as C(group:event), as M(fleettrace.tracefs.event) and M(fleettrace.tracefs.capture) name them.
  returned: always
  type: list
  elements: str
  sample: [probe_corosync:timer_function_scheduler_timeout_L21]
definitions:
  description: The C(uprobe_events) lines written (or, in check mode or for C(absent), resolved).
  returned: always
  type: list
  elements: str
  sample: ["p:probe_corosync/timer_function_scheduler_timeout_L21 /usr/sbin/corosync:0x26097 tv_diff_u64=%si:u64"]
build_id:
  description: GNU build-id of the binary the definitions belong to.
  returned: always
  type: str
  sample: 3b5c7f0e9a3d4c1b8e2f6a7d9c0b1e2f3a4b5c6d
addresses:
  description: Link-time addresses of the probes (one per line in RV(definitions)).
  returned: when resolved from a spec
  type: list
  elements: str
  sample: ["0x26097"]
variables:
  description:
    - One entry per requested variable and probe address, with the fetch arg, C type, kernel type and where the
      value lives, or C(available=false) and the reason it cannot be traced there.
  returned: always
  type: list
  elements: dict
  sample: [{"expression": "tv_diff:u64", "name": "tv_diff_u64", "address": "0x26097", "fetcharg": "tv_diff_u64=%si:u64",
            "type": "uint64_t", "kernel_type": "u64", "location": "register %si", "available": true, "reason": null}]
left_out:
  description:
    - What C($params) and C($vars) did not trace, one entry per variable and probe address, with the reason (its
      value is computed by a DWARF expression, optimized out, a constant, an aggregate). Also in check mode.
    - C($params) lists the probed function's own parameters only, never those of calls inlined into it.
  returned: when resolved from a spec
  type: list
  elements: dict
  sample: [{"name": "bitD", "address": "0x2085d", "expansion": "$params",
            "reason": "bitD: its value is computed as %sp + 192 (a DWARF expression ending in DW_OP_stack_value) ..."}]
cached:
  description: Whether the resolution came from the resolver cache (keyed by build-id) instead of the DWARF.
  returned: when resolved from a spec
  type: bool
  sample: true
debuginfo:
  description: File the DWARF was read from.
  returned: when resolved from a spec without the cache
  type: str
  sample: /usr/lib/debug/.build-id/3b/5c7f0e9a3d4c1b8e2f6a7d9c0b1e2f3a4b5c6d.debug
notes:
  description: For O(definition), how each offset was confirmed as an instruction start.
  returned: with definition
  type: list
  elements: str
debuginfo_source:
  description:
    - Where the DWARF came from, C(binary), C(local) (C(/usr/lib/debug), debuglink), C(file) (O(debuginfo)) or
      C(debuginfod) (then RV(debuginfod_server) names the server, or C(cache)).
  returned: when resolved from a spec
  type: str
  sample: debuginfod
debuginfod_server:
  description: The debuginfod server that served the DWARF (also when it came from the cache of an earlier download).
  returned: when RV(debuginfo_source) is C(debuginfod)
  type: str
  sample: https://debuginfod.debian.net
mapped:
  description:
    - With O(pid), the file the process maps for O(binary) and where the probe went; C(replaced) true means
      the file on disk is another one than the code the process runs, and C(probe_path) is the
      C(/proc/PID/map_files/) link the probe was placed on.
  returned: with O(pid)
  type: dict
  sample: {"pid": 4242, "task": "corosync[4242]", "path": "/usr/sbin/corosync", "mapped_as": "/usr/sbin/corosync (deleted)",
           "deleted": true, "replaced": true, "probe_path": "/proc/4242/map_files/55d0c8a00000-55d0c8a0c000",
           "build_id": "3b5c7f0e9a3d4c1b8e2f6a7d9c0b1e2f3a4b5c6d", "disk_build_id": "9f0e1d2c3b4a59687766554433221100ffeeddcc"}
commands:
  description: The writes made (or that would be made) to C(uprobe_events), as shell commands.
  returned: always
  type: list
  elements: str
  sample: ["echo 'p:probe_corosync/timer_function_scheduler_timeout_L21 /usr/sbin/corosync:0x26097 tv_diff_u64=%si:u64' >> /sys/kernel/tracing/uprobe_events"]
"""

import contextlib
import os

from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import validate
from ansible_collections.fleettrace.tracefs.plugins.module_utils import uprobe_plans
from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError, OptionError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.module_runner import run_module
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.changes import failure_message
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import Tracefs
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.errors import DwarfError
# Imported where they are used, not here: every import is compiled from the AnsiballZ zip on each run
# (no bytecode cache), and a check-mode run answered by the result cache needs none of them: the run
# bookkeeping (runs.lifecycle, runs.removal: about half of this module's import time), the spec parser
# (state=absent without the binary) and the build-id reader of a failed run.


def resolve_spec(module, params):
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import cache as dwarf_cache
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import debuginfod
    try:
        import elftools  # noqa: F401 - only to give a clear message when it is missing
    except ImportError:
        raise FleettraceError("resolving a spec needs the Python package pyelftools on %s (pip install pyelftools), "
                              "or give ready 'definition' lines resolved on a host that has it" % os.uname()[1])
    try:
        # The binary, /usr/lib/debug, the given file, then debuginfod servers by build-id.
        found = debuginfod.locate(params["binary"], explicit=params["debuginfo"], expected_build_id=params["build_id"],
                                  urls=debuginfod.server_urls(params["debuginfod_urls"]),
                                  timeout=params["debuginfod_timeout"])
        # The located debug info goes along: it is not searched, nor its build-id read, again.
        resolved = dwarf_cache.cached_resolve(
            params["binary"], params["spec"], group=params["group"], event=params["event"],
            debuginfo=found["path"], build_id=params["build_id"], force=params["force"],
            allow_unavailable=params["allow_unavailable"], use_cache=params["cache"], info=found["info"])
        resolved.update(debuginfo_source=found["source"])
        if found["server"]:
            resolved.update(debuginfod_server=found["server"])
        return resolved
    except DwarfError as exc:   # ResolveError (NoCode too), ProbeSpecError, DebugInfoError, ...
        raise exc.reworded("cannot resolve spec %r in %s: %s" % (params["spec"], params["binary"], exc.message))


def absent_names(module, params):
    """(group, [events]) to remove, from group/event or by resolving the spec."""
    if params["definition"]:
        resolved = uprobe_plans.from_definitions(dict(params, build_id=None), check_boundaries=False)
        return resolved["group"], resolved["events"], resolved
    if params["event"] and not params["spec"]:
        group = params["group"]
        if not group:
            raise OptionError("state=absent with 'event' needs 'group' too (or give the 'spec')")
        return group, [params["event"]], {"records": [], "build_id": None, "variables": []}
    try:
        resolved = resolve_spec(module, dict(params, allow_unavailable=True))
    except FleettraceError as exc:
        # Cleanup must work when the binary or its debug info is gone (upgraded, removed):
        # perf's names follow from the spec alone, except for FILE:LINE.
        from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import probe_spec
        try:
            point = probe_spec.parse(params["spec"]).point
        except probe_spec.ProbeSpecError:
            raise exc
        event = params["event"] or probe_spec.default_event(point)
        if event is None:
            raise FleettraceError("%s; to remove a FILE:LINE probe without resolving it, give 'group' and 'event'" % exc)
        group = params["group"] or point.group or probe_spec.default_group(params["binary"])
        return group, [event], {"records": [], "build_id": None, "variables": []}
    return resolved["group"], resolved["events"], resolved


ARGUMENT_SPEC = dict(
    binary=dict(type="path"),
    spec=dict(type="str"),
    definition=dict(type="list", elements="str"),
    build_id=dict(type="str"),
    group=dict(type="str"),
    event=dict(type="str"),
    debuginfo=dict(type="path"),
    debuginfod_urls=dict(type="list", elements="str"),
    debuginfod_timeout=dict(type="float"),
    force=dict(type="bool", default=False),
    allow_unavailable=dict(type="bool", default=False),
    cache=dict(type="bool", default=True),
    pid=dict(type="int"),
    rename=dict(type="bool", default=False),
    picked=dict(type="dict"),
    state=dict(type="str", default="present", choices=["present", "absent"]),
)


def _holding(group):
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import lifecycle
    return lifecycle.holding([group])


def plan_probes(module, params):
    """(plan, group, events, wanted, current, current_events, resolved): what to write, and why."""
    guard = None
    if params["group"] is not None:
        validate.group_name(params["group"])
    if params["event"] is not None:
        validate.event_name(params["event"])
    if params["build_id"] is not None and not uprobe_plans.BUILD_ID.match(params["build_id"]):
        raise OptionError("build_id %r must be the hex GNU build-id (e.g. from 'readelf -n' or an earlier "
                          "result's build_id)" % params["build_id"])
    fs = Tracefs(check_mode=module.check_mode)
    fs.require("uprobes", "a user-space probe")
    if not module.check_mode:
        from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import removal
        removal.reap_expired_quietly(fs, warn=module.warn)
    if params["state"] == "absent":
        group, events, resolved = absent_names(module, params)
        wanted = []
    else:
        if params["spec"]:
            # A long resolution over ssh: the run of the group is renewed while the controller waits.
            with _holding(params["group"]) if params["group"] and not module.check_mode else contextlib.nullcontext():
                resolved = resolve_spec(module, params)
        else:
            resolved = uprobe_plans.from_definitions(params)
            guard = (resolved["binaries"], resolved["build_id"])
        group, events = resolved["group"], resolved["events"]
        validate.group_name(group)
        for name in events:
            validate.event_name(name)
        wanted = [fs.for_this_kernel(record) for record in resolved["records"]]
        for record in wanted:
            validate.expression(record.line(), "uprobe definition")
    if not module.check_mode:
        from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import lifecycle
        if params["state"] == "present":
            lifecycle.working_on([group])       # renewed; refused when its run ended
        else:
            lifecycle.touch_quietly([group])
    changes, current, current_events = uprobe_plans.plan_uprobes(fs, group, events, wanted, fs.list_uprobes(), guard)
    if params["definition"] and not params["group"] and current and changes:
        raise FleettraceError("uprobe group %s already has %s; a definition without 'group' may not replace "
                              "probes it does not own: give the run's own 'group'"
                              % (group, ", ".join(record.line() for record in current)))
    return changes, group, events, wanted, current, current_events, resolved


def body(module, result):
    params = module.params
    result.update(group=None, events=[], group_events=[], definitions=[], build_id=None, variables=[], commands=[])
    validate.numbers(params, pids=("pid",))
    # A definition line wins over a spec; empty ones are not given (a role passes its empty defaults).
    params = uprobe_plans.chosen_probe(params)
    if params["pid"] is not None and params["state"] == "present":
        params, running = uprobe_plans.onto_running_code(params)
        result["mapped"] = running.facts()
        if running.note():
            module.warn(running.note())
    try:
        changes, group, events, wanted, current, current_events, resolved = plan_probes(module, params)
    except FleettraceError:
        # The binary's build-id, when readable: the caller can resolve it elsewhere (controller) by it.
        if not result["build_id"] and params["binary"] and os.path.isfile(params["binary"]):
            from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import debuginfo as dwarf_debuginfo
            try:
                result["build_id"] = dwarf_debuginfo.read_build_id(params["binary"])
            except dwarf_debuginfo.DebugInfoError:
                pass
        raise

    result.update(group=group, events=events, group_events=["%s:%s" % (group, event) for event in events],
                  definitions=[record.line() for record in wanted or resolved["records"]],
                  build_id=resolved.get("build_id"), variables=resolved.get("variables", []))
    for key in ("addresses", "left_out", "cached", "debuginfo", "debuginfo_source", "debuginfod_server", "notes"):
        if key in resolved:
            result[key] = resolved[key]
    result["changed"] = bool(changes)
    result["commands"] = changes.commands
    if module._diff:
        before, after = [record.line() for record in current], [record.line() for record in wanted]
        result["diff"] = dict(before="\n".join(before) + ("\n" if before else ""),
                              after="\n".join(after) + ("\n" if after else ""),
                              before_header="uprobe_events (%s)" % group, after_header="uprobe_events (%s)" % group)
    if changes and not module.check_mode:
        try:
            changes.apply()
        except FleettraceError as exc:
            msg = "adding the probe failed: " + failure_message(exc, "the lines already added were removed again")
            if current and params["state"] == "present":
                msg += " (the earlier definition of %s/%s was replaced and is gone)" % (group, ", ".join(current_events))
            result["changed"] = bool(current)
            raise exc.reworded(msg)


def main():
    # Which of spec and definition is given, and what each needs, is decided by uprobe_plans.chosen_probe.
    run_module(ARGUMENT_SPEC, body, supports_check_mode=True)


if __name__ == "__main__":
    main()
