# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the ``uprobe`` module checks and plans to write to ``uprobe_events``.

A ready ``definition`` is installed only when it is safe on a production
node: the binary is the build it was resolved for (its build-id is
required), the group is the one the caller owns, and the offset is where an
instruction starts according to the binary's line table or symbol table (a
probe inside an instruction corrupts the traced program: wrong results or
SIGSEGV).  ``plan_uprobes`` builds the ``ChangePlan`` whose commands check
mode prints and whose steps apply runs.
"""


import bisect
import os
import re

from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.probe_definition import (
    ProbeDefinition, chosen_spec, event_names, given_lines, given_options, removal)
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import validate
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.changes import ChangePlan
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.error_log import TracefsError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import debuginfo as dwarf_debuginfo
from ansible_collections.fleettrace.tracefs.plugins.module_utils.elf import reader as elf_reader

BUILD_ID = re.compile(r"^[0-9a-fA-F]{2,}$")
# How many known instruction starts around a refused offset the message lists.
NEAR_STARTS = 8


class PlanError(FleettraceError):
    """A definition or plan that must not be written; the message says why and what to do."""


# -- instruction boundaries ----------------------------------------------------------
def known_starts(binary, headers, build_id):
    """Sorted addresses where the symbol table or the line table says an instruction starts.

    Returns (addresses, sources); sources names what was read ('symbols',
    'line table of FILE').  Empty when the binary is stripped and no debug info
    is found: then only the build-id vouches for the offset.  ``headers``: the
    binary's, already read (its build-id is ``build_id``).
    """
    starts, sources = set(), []
    for entries, _names in headers.symbol_tables():
        found = [e[4] for e in elf_reader.iter_symbols(entries)
                 if elf_reader.symbol_type(e[1]) == elf_reader.STT_FUNC and e[3] != elf_reader.SHN_UNDEF and e[4]]
        starts.update(found)
    if starts:
        sources.append("the symbol table")
    try:
        from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import lines as dwarf_lines
        from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.context import DwarfContext
        info = dwarf_debuginfo.find_debuginfo(binary, expected_build_id=build_id, headers=headers)
        context = DwarfContext(binary, info)
    except (ImportError, FleettraceError):    # no pyelftools, no debug info, a debug file refused
        return sorted(starts), sources
    try:
        starts.update(dwarf_lines.instruction_starts(context))
    finally:
        context.close()
    sources.append("the line table of %s" % info.debug.path)
    return sorted(starts), sources


def check_boundary(definition, headers, build_id, build_id_given=False):
    """Refuse ``definition``'s offset unless an instruction starts there (as far as the binary tells).

    A symbol table alone names only function starts, not line addresses: without a line table here,
    a given build-id that matches the binary vouches for the offset (it was resolved from that
    build's debug info, e.g. on the controller), as it does when the binary has no tables at all.
    """
    path, offset, line = definition.path, definition.offset, definition.line()
    vaddr = headers.file_offset_to_vaddr(offset)
    if vaddr is None:
        raise PlanError("definition %r: offset 0x%x is in no loadable segment of %s: it is not code of this "
                        "binary. Resolve the spec again for this build. Nothing was written." % (line, offset, path))
    starts, sources = known_starts(path, headers, build_id)
    if not starts:
        return "no symbol table or debug info on this host: the build-id match vouches for 0x%x" % offset
    index = bisect.bisect_left(starts, vaddr)
    if index < len(starts) and starts[index] == vaddr:
        return "0x%x starts an instruction per %s" % (vaddr, " and ".join(sources))
    if build_id_given and not any(source.startswith("the line table") for source in sources):
        return ("no line table on this host (only %s): the build-id match vouches for 0x%x"
                % (" and ".join(sources), vaddr))
    near = starts[max(0, index - NEAR_STARTS // 2):index + NEAR_STARTS // 2]
    raise PlanError("definition %r: address 0x%x (file offset 0x%x) is not where %s says an instruction starts, "
                    "so the probe may land inside an instruction and corrupt %s (wrong results or SIGSEGV). "
                    "Known instruction starts near it: %s. Resolve the probe from a spec, or set force: true only "
                    "if you know it is an instruction boundary. Nothing was written."
                    % (line, vaddr, offset, " and ".join(sources), path, ", ".join("0x%x" % a for a in near)))


# -- which probe ------------------------------------------------------------------------
def chosen_probe(params):
    """The uprobe module's ``params`` with the probe to install decided: ``definition`` (its non-empty lines,
    or None) or ``spec`` (or None), never both.

    A role passes every option, its empty defaults included: empty definition lines and an empty spec
    count as not given (so do an empty build_id and debuginfo), and the spec probe_info picked (``picked``, its registered result) stands in for
    an empty spec.  A definition line that is left wins over the spec, which is then not resolved (it is
    typically the spec the definition was resolved from, on the controller).  Refused (PlanError,
    nothing written): nothing to probe, a spec without the binary to resolve it in.
    """
    lines = given_lines(params.get("definition"))
    spec = chosen_spec(params.get("spec"), params.get("picked")) or None
    if spec and not params.get("binary"):
        raise PlanError("spec %r needs binary, the file to resolve it in; give binary, or ready definition lines "
                        "instead of the spec" % spec)
    chosen = dict(given_options(params, ("build_id", "debuginfo")), definition=lines or None,
                  spec=None if lines else spec)
    if chosen.get("state", "present") == "present" and not (lines or spec):
        raise PlanError("nothing to probe: give spec (with binary) or definition lines; an empty spec and empty "
                        "definition lines count as not given")
    if not (lines or spec or chosen.get("event")):
        raise PlanError("state=absent needs the spec, the definition lines, or group and event of the probe to remove")
    return chosen


# -- definitions ------------------------------------------------------------------------
def parsed_definitions(lines):
    """The definition lines as ProbeDefinition records; refused (PlanError) when one is no such line."""
    records = []
    for line in lines:
        try:
            validate.expression(line, "uprobe definition")
            record = ProbeDefinition.parse(line)
        except FleettraceError as exc:
            raise PlanError("definition %r is not a uprobe_events line like "
                            "'p:GROUP/EVENT /path/binary:0xOFFSET ARGS': %s" % (line, exc))
        if not record.path.startswith("/"):
            raise PlanError("definition %r must be 'p:' or 'r:' with an absolute path and offset "
                            "(/path/binary:0xOFFSET)" % line)
        records.append(record)
    return records


def renamed(records, group, event=None, path=None):
    """The records under this run's ``group``; under its ``event`` too when they all share one event name
    (copies with names of their own, NAME and NAME_1 for inlined copies whose arguments differ, keep them);
    on ``path`` when given (the same build there: resolved from a copy, e.g. on the controller)."""
    one_event = event if event and len(event_names(records)) == 1 else None
    return [record.renamed(group=group, event=one_event, path=path) for record in records]


def from_definitions(params, check_boundaries=True):
    """Checked definitions: {group, events, records, definitions (their lines), build_id, variables,
    addresses, notes, binaries}.

    ``params``: the uprobe module's (definition lines, binary, build_id, group, event, force, rename).
    With ``rename`` the lines take ``group`` (and ``event``, see ``renamed``, and ``binary``'s path)
    instead of being refused for naming another group or file.  Without ``build_id`` a line is accepted only where this host's symbol or
    line table confirms the instruction start; the binary's own build-id is then recorded and checked
    again right before the write.
    """
    if params.get("build_id") and not BUILD_ID.match(params["build_id"]):
        raise PlanError("build_id %r must be the hex GNU build-id (e.g. from 'readelf -n' or an earlier "
                        "result's build_id)" % params["build_id"])
    records = parsed_definitions(params["definition"])
    if params.get("rename"):
        if not params.get("group"):
            raise PlanError("rename needs the 'group' the definitions are to take (this run's own)")
        path = os.path.abspath(params["binary"]) if params.get("binary") else None
        records = renamed(records, params["group"], params.get("event"), path)
    headers_of = {}     # path -> ELF headers: read, and its build-id checked, once per file
    notes, build_id = [], None
    for index, record in enumerate(records):
        line = record.line()
        path = record.path
        if params.get("binary") and os.path.abspath(params["binary"]) != path:
            raise PlanError("definition %r probes %s, not binary %s" % (line, path, params["binary"]))
        if params.get("group") and record.group != params["group"]:
            raise PlanError("definition %r names group %r, not this run's group %r: a definition may only name "
                            "the caller's own group (another group's probe would be replaced). Rename it to %r, "
                            "or set rename: true." % (line, record.group, params["group"], params["group"]))
        if path not in headers_of:
            try:
                if not os.path.isfile(path):
                    raise dwarf_debuginfo.DebugInfoError("%s is not a regular file" % path)
                headers_of[path] = dwarf_debuginfo.elf_headers(path)
            except dwarf_debuginfo.DebugInfoError as exc:
                raise PlanError("definition %r: %s" % (line, exc))
            actual = headers_of[path].build_id
            if params.get("build_id") and actual != params["build_id"].lower():
                raise PlanError("build-id of %s is %s, not the expected %s: this host has a different build; "
                                "resolve the spec again for it. Nothing was written."
                                % (path, actual, params["build_id"]))
        build_id = headers_of[path].build_id
        if check_boundaries and not params.get("force"):
            note = check_boundary(record, headers_of[path], build_id, build_id_given=bool(params.get("build_id")))
            if note.startswith("no symbol table") and not params.get("build_id"):
                raise PlanError("definition %r: %s has no symbol table and no debug info here, so nothing can "
                                "confirm that 0x%x starts an instruction; give 'build_id' (the build the definition "
                                "was resolved for). Nothing was written." % (line, path, record.offset))
            notes.append(note)
        if params.get("event") and not params.get("rename"):
            records[index] = record.renamed(event=params["event"])
    groups = {record.group for record in records}
    if len(groups) != 1:
        raise PlanError("all definition lines must share one group, got %s" % ", ".join(sorted(groups)))
    return {"group": groups.pop(), "events": event_names(records), "records": records,
            "definitions": [record.line() for record in records], "build_id": build_id,
            "variables": [], "addresses": [], "notes": notes, "binaries": sorted(headers_of)}


def onto_running_code(params):
    """(params, MappedCode): the spec or the definitions aimed at the code process ``params['pid']`` runs.

    When the file at the binary's path is still the one the process maps,
    nothing changes.  When it was replaced (an upgrade without a restart) the
    spec is resolved from, and the definitions are placed on, the mapped file
    (``/proc/PID/map_files/...``); a definition resolved for another build than
    the running one is refused (``MappedCodeError``): it could never fire.  A
    spec's expected build-id that is the file on disk's (the caller looked at
    the path) becomes the running code's.  The default group stays named after
    the binary.
    """
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import probe_spec
    path = params.get("binary")
    records = parsed_definitions(params["definition"]) if params.get("definition") else []
    if records:
        paths = {record.path for record in records}
        if path is None and len(paths) == 1:
            path = paths.pop()
        elif path is None or (paths != {os.path.abspath(path)} and not params.get("rename")):
            raise PlanError("with 'pid', every definition must name one binary, the one the process maps; got %s"
                            % ", ".join(sorted(paths)))
    # Here, not at the top: only 'pid' needs procfs and the maps (compiled from the zip on each module run).
    from ansible_collections.fleettrace.tracefs.plugins.module_utils import mapped_code
    running = mapped_code.mapped_code(params["pid"], path)
    if records:
        running.check_build(params.get("build_id"))
    if not running.replaced:
        return params, running
    changed = dict(params, binary=running.probe_path,
                   group=params.get("group") or probe_spec.default_group(path))
    if records:
        changed["definition"] = [record.renamed(path=running.probe_path).line() for record in records]
    elif (params.get("build_id") or "").lower() == running.disk_build_id:
        # The build-id the caller saw on disk: the spec is resolved from the running code's own DWARF instead.
        changed["build_id"] = running.build_id
    return changed, running


def build_id_guard(plan, binaries, build_id):
    """First step of a definition plan: the binary is still the build checked (it may be replaced meanwhile)."""
    def check():
        for path in binaries:
            actual = dwarf_debuginfo.read_build_id(path)
            if actual != build_id:
                raise TracefsError("build-id of %s changed to %s (was %s when the definition was checked): the "
                                   "binary was replaced; nothing was written" % (path, actual, build_id))
    plan.check("test build-id of %s = %s" % (" ".join(binaries), build_id), check)


# -- the plan ----------------------------------------------------------------------------
def ours(group, events):
    """Predicate on ProbeDefinition records: the named events plus perf-style copies (NAME_1, ...)."""
    patterns = [re.compile(r"^%s(_\d+)?$" % re.escape(e)) for e in events]

    def match(record):
        return record.group == group and any(p.match(record.event) for p in patterns)
    return match


def plan_uprobes(fs, group, events, wanted, existing, guard=None):
    """(plan, current records, current event names): replace our probes by ``wanted`` unless equal.

    ``wanted``: ProbeDefinition records as this kernel takes them (``fs.for_this_kernel``);
    ``existing``: the kernel's (``fs.list_uprobes()``); ``guard``: (binaries, build_id) checked
    as the plan's first step.
    """
    current = [record for record in existing if ours(group, events)(record)]
    current_events = event_names(current)
    plan = ChangePlan()
    if sorted(r.key() for r in current) == sorted(r.key() for r in wanted):
        return plan, current, current_events
    uprobe_path = fs.path("uprobe_events")
    if guard and wanted:
        build_id_guard(plan, *guard)
    for name in current_events:
        # Undone by adding the same lines back: a refused new line leaves the probes as they were.
        plan.write(uprobe_path, removal(group, name), (lambda n=name: fs.remove_uprobe(group, n)),
                   (lambda n=name: [fs.add_uprobe(r) for r in current if r.event == n]), append=True)
    added = []
    for record in wanted:
        name = record.event

        def add(record=record, name=name):
            fs.add_uprobe(record)
            if name not in added:
                added.append(name)

        def undo(name=name):
            if name in added and any(u.group == group and u.event == name for u in fs.list_uprobes()):
                fs.remove_uprobe(group, name)
                added.remove(name)
        plan.write(uprobe_path, record.line(), add, undo, append=True)
    return plan, current, current_events


def pick_line(function, lines, line_match=None, line=0, args=()):
    """(spec, picked line or None) for a probe on ``function`` from its probe-able ``lines`` (probe_info's listing).

    The probe line differs between releases and optimisation levels: with ``line_match`` (a
    regular expression on the source text) the first probe-able line after the first matching
    line is taken.  At -O2 the matching line itself often shares its address with another one
    (not probe-able): the match is an anchor, typically the statement that computes the traced
    variable.  Without a match, ``line`` (relative to the declaration; 0: the function's entry).
    """
    picked = None
    if line_match:
        try:
            pattern = re.compile(line_match)
        except re.error as exc:
            raise FleettraceError("line_match %r is not a regular expression: %s" % (line_match, exc))
        anchors = [entry["line"] for entry in lines if isinstance(entry.get("source"), str)
                   and pattern.search(entry["source"])]
        after = [entry for entry in lines if anchors and entry.get("probeable") and entry["line"] > anchors[0]]
        picked = after[0] if after else None
        if picked is None and not line:
            with_source = any(isinstance(entry.get("source"), str) for entry in lines)
            raise FleettraceError(
                "no probe-able line of %s matches %s (source %savailable here) and no line was given; lines: %s. "
                "Give a spec, or a line relative to the function's declaration"
                % (function, _quoted(line_match), "" if with_source else "not ",
                   [entry["relative_line"] for entry in lines]))
    relative = picked["relative_line"] if picked is not None else line
    spec = " ".join([function + (":%d" % relative if relative and relative > 0 else "")] + list(args or ()))
    return spec, picked


def _quoted(text):
    return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"')
