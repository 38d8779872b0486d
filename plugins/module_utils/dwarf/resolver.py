# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Resolve a perf-probe spec into ``uprobe_events`` lines with pyelftools.

Follows ``perf probe --definition`` (perf 6.1) where perf is right: same
addresses, fetch args, types, group and event names; see
docs/uprobe.md ("Where we differ from perf, on purpose") for globals,
multi-op expressions, entry values, bitfields, separate debug files.
Speed: the compile unit is found through the symbol table and
.debug_aranges, and only that unit is parsed.

``Resolver`` is the facade: the work is done by functions over one shared
``context.DwarfContext`` (points, scopes, lines, variables).  A perf-like
command line is in ``dwarf.cli``.
"""


import os

from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import debuginfo as dwarf_debuginfo
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import functions
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import line_table as dwarf_line_table
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import lines as dwarf_lines
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import location as dwarf_location
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import points
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import probe_scope
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import probe_spec
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import scopes
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import typeinfo as dwarf_types
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import variables
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.context import DwarfContext
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.errors import ResolveError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.variables import VariableNote
from ansible_collections.fleettrace.tracefs.plugins.module_utils.elf.reader import EM_X86_64
from ansible_collections.fleettrace.tracefs.plugins.module_utils.probe_definition import FetchArg, ProbeDefinition

__all__ = ["ResolveError", "Resolution", "Resolver", "VariableNote", "resolve"]


class Resolution:
    """The result: one ``ProbeDefinition`` per probe address (``records``)."""

    def __init__(self, binary, build_id, group, event, kind, probes, notes, debuginfo):
        self.binary = binary
        self.build_id = build_id
        self.group = group
        self.event = event
        self.kind = kind
        self.probes = probes      # list of (vaddr, file_offset, [FetchArg])
        self.notes = notes
        self.debuginfo = debuginfo

    @property
    def event_names(self):
        """One name per probe: shared when the kernel can append them to one event.

        The kernel appends a probe to an existing event only when its
        arguments have the same names and types; otherwise perf-style
        suffixes (_1, _2, ...) keep the names apart.
        """
        signatures = {tuple(_arg_signature(a) for a in args) for _v, _o, args in self.probes}
        if len(signatures) <= 1:
            return [self.event] * len(self.probes)
        return [self.event if i == 0 else "%s_%d" % (self.event, i) for i in range(len(self.probes))]

    @property
    def records(self):
        return [ProbeDefinition(self.kind, self.group, event, self.binary, offset, args)
                for (_vaddr, offset, args), event in zip(self.probes, self.event_names)]

    @property
    def definitions(self):
        """The uprobe_events lines of the records."""
        return [record.line() for record in self.records]

    @property
    def left_out(self):
        """What ``$params``/``$vars`` did not trace, per address, with the reason."""
        return [{"name": n.name, "address": "0x%x" % n.address, "expansion": n.expansion, "reason": n.reason}
                for n in self.notes if n.expansion and not n.available]

    def as_dict(self):
        """Plain data (JSON, the cache), plus ``records``: the same definitions as ProbeDefinition."""
        records = self.records
        return {"binary": self.binary, "build_id": self.build_id, "group": self.group,
                "events": _unique(self.event_names), "event": self.event,
                "definitions": [record.line() for record in records], "records": records,
                "addresses": ["0x%x" % p[0] for p in self.probes],
                "variables": [n.as_dict() for n in self.notes], "left_out": self.left_out,
                "debuginfo": self.debuginfo}


class Resolver:
    """Everything about one binary; resolve() may be called for many specs."""

    def __init__(self, binary, debuginfo=None, expected_build_id=None, info=None):
        """``info``: the ``debuginfo.DebugInfo`` already located (and its build-id checked) for
        ``binary``; without it the debug info is searched here."""
        self.binary = os.path.abspath(binary)
        self.info = info or dwarf_debuginfo.find_debuginfo(self.binary, explicit=debuginfo,
                                                           expected_build_id=expected_build_id)
        if self.info.binary.e_machine != EM_X86_64:
            raise ResolveError("%s is not an x86_64 binary (ELF machine %d): the resolver knows only x86_64's "
                               "DWARF registers; resolve on an x86_64 host is not enough, the target must be x86_64"
                               % (self.binary, self.info.binary.e_machine))
        self.context = DwarfContext(self.binary, self.info)

    def close(self):
        self.context.close()

    @property
    def build_id(self):
        return self.info.build_id

    @property
    def symbols(self):
        return self.context.symbols

    # -- whole specs ------------------------------------------------------------------------
    def resolve(self, spec_text, group=None, event=None, force=False, allow_unavailable=False):
        """Spec text -> ``Resolution``; raises ResolveError / ProbeSpecError."""
        spec = probe_spec.parse(spec_text)
        point = spec.point
        group = group or point.group or probe_spec.default_group(self.binary)
        kind = "r" if point.is_return else "p"
        if point.is_return:
            event = event or point.event or point.event_base + "__return"
            args = [FetchArg.parse(a.raw, name=a.name) for a in spec.args]
            return Resolution(self.binary, self.build_id, group, event, kind,
                              [(vaddr, self.context.file_offset(vaddr), args)
                               for vaddr in points.return_addresses(self.context, point)],
                              [], self.info.debug.path)
        targets = points.addresses(self.context, point, spec, force)    # [(vaddr, cu, name, scope)]
        event = event or point.event or targets[0][2]
        probes, notes = [], []
        for vaddr, cu, _name, scope in targets:
            offset = self.context.file_offset(vaddr)
            args, address_notes = self._args_at(spec, cu, vaddr, allow_unavailable, scope)
            probes.append((vaddr, offset, args))
            notes.extend(address_notes)
        return Resolution(self.binary, self.build_id, group, event, kind, probes, notes, self.info.debug.path)

    def _args_at(self, spec, cu, address, allow_unavailable, scope=None):
        if not spec.args:
            return [], []   # no scope to look up (an inline-only function may have hundreds of copies)
        ctx = self.context
        chain = probe_scope.chain_for(ctx, cu, address, spec.point, scope)
        table = None        # the line table is only needed for hints in error messages
        delta = address - ctx.file_offset(address)
        args, notes, failures = [], [], []
        for arg in spec.args:
            if arg.is_raw:
                args.append(FetchArg.parse(arg.raw, name=arg.name))
                continue
            if arg.is_special:
                for die in scopes.scope_variables(ctx, chain, address, arg.variable == "$params"):
                    name = dwarf_types.name_of(die)
                    sub = probe_spec.ProbeArg(name, variable=name)
                    note = variables.fetch_arg(ctx, sub, cu, chain, address, table, die=die)
                    note.expansion = arg.variable
                    notes.append(note)
                    if note.available and note.value[0] == "imm" and "DW_AT_location" in die.attributes:
                        # perf leaves values computed as constants out of $params/$vars; named, they are traced.
                        note.reason = "it is the constant %d here (name it to trace it)" % note.value[1]
                    if note.available:
                        args.append(variables.fetch_arg_of(note, delta))
                continue
            note = variables.fetch_arg(ctx, arg, cu, chain, address, table)
            notes.append(note)
            if note.available:
                args.append(variables.fetch_arg_of(note, delta))
            else:
                failures.append(note)
        if failures and not allow_unavailable:
            raise ResolveError("cannot trace %s at 0x%x: %s" % (
                ", ".join(n.expression for n in failures), address, "; ".join(n.reason for n in failures)))
        return args, notes

    # -- probe_info -----------------------------------------------------------------------
    def probeable_lines(self, function, source=None):
        """Like ``perf probe -L FUNC``: [{line, relative_line, addresses, source}]."""
        ctx = self.context
        found = functions.find_function(ctx, function, source)
        if not found:
            raise ResolveError("function %s not found in the debug info of %s" % (function, self.binary))
        # The out-of-line copy when there is one (its lines are the function's); else the abstract DIE.
        cu, die = next(((c, d) for c, d in found if ctx.die_ranges(d)), found[0])
        table = dwarf_line_table.line_table(ctx, cu)
        decl_line = dwarf_types.origin_attr(die, "DW_AT_decl_line")[0].value
        file_name = dwarf_lines.decl_file_name(ctx, die)
        source_lines = dwarf_lines.read_source(file_name, cu)
        lines = []
        same_file = dwarf_lines.file_matcher(file_name)
        for line in sorted(set(dwarf_lines.function_lines(ctx, cu, die)) | {decl_line}):
            addresses = [a for a in dwarf_lines.line_addresses(ctx, cu, same_file, line, die)
                         if ctx.die_contains(die, a)]
            # perf -L lists a line when one of its addresses maps back to it;
            # FUNC:N is accepted only when all of them do.
            reversible = []
            for address in addresses:
                found_file, found_line = dwarf_lines.line_at(ctx, cu, address)
                if found_line is None or found_line == line or not same_file(found_file or ""):
                    reversible.append(address)
            if not reversible:
                continue
            lines.append({"line": line, "relative_line": line - decl_line,
                          "addresses": ["0x%x" % a for a in addresses],
                          "address": "0x%x" % reversible[0],
                          "probeable": len(reversible) == len(addresses),
                          "source": source_lines[line - 1].rstrip("\n") if source_lines and line <= len(source_lines) else None})
        return {"function": function, "file": file_name, "decl_line": decl_line, "lines": lines,
                "build_id": self.build_id}

    def variables_at(self, spec_text):
        """Like ``perf probe -V``: every variable visible at each address of the spec."""
        ctx = self.context
        spec = probe_spec.parse(spec_text)
        if spec.point.is_return:
            raise ResolveError("a %return probe sees no C variables")
        targets = points.addresses(ctx, spec.point, spec, force=True)
        result = []
        for address, cu, _name, scope in targets:
            chain = probe_scope.chain_for(ctx, cu, address, spec.point, scope)
            table = dwarf_line_table.line_table(ctx, cu)
            delta = address - ctx.file_offset(address)
            for die in scopes.scope_variables(ctx, chain, address):
                name = dwarf_types.name_of(die)
                note = variables.fetch_arg(ctx, probe_spec.ProbeArg(name, variable=name), cu, chain, address, table)
                entry = {"name": name, "address": "0x%x" % address,
                         "type": dwarf_types.c_name(dwarf_types.type_of(die)),
                         "kind": "parameter" if die.tag == "DW_TAG_formal_parameter" else "local",
                         "available": note.available, "location": note.location, "reason": note.reason,
                         "fetcharg": None}
                if not note.available and note.reason and ("name a member" in note.reason or ":string" in note.reason):
                    # A char array reads as a string; other aggregates need a member named.
                    as_string = variables.fetch_arg(
                        ctx, probe_spec.ProbeArg(name + ":string", variable=name, type_cast="string"),
                        cu, chain, address, table)
                    if as_string.available:
                        note = as_string
                if note.available:
                    entry["fetcharg"] = FetchArg(name, dwarf_location.render(note.value, delta), note.kernel_type).text()
                    entry["location"] = note.location
                    entry["available"], entry["reason"] = True, None
                result.append(entry)
        return result


def _arg_signature(arg):
    """What the kernel compares to append a probe to an event: names and types (the fetch itself
    when untyped, to stay on the safe side)."""
    return (arg.name, arg.type or arg.expression) if arg.name else (arg.text(),)


def _unique(items):
    seen = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def resolve(binary, spec, group=None, event=None, debuginfo=None, build_id=None, force=False,
            allow_unavailable=False, info=None):
    """One-shot: resolve ``spec`` in ``binary`` and return ``Resolution.as_dict()``.

    ``info``: the located ``debuginfo.DebugInfo`` (not searched again)."""
    resolver = Resolver(binary, debuginfo=debuginfo, expected_build_id=build_id, info=info)
    try:
        return resolver.resolve(spec, group=group, event=event, force=force,
                                allow_unavailable=allow_unavailable).as_dict()
    finally:
        resolver.close()
