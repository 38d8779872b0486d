# -*- coding: utf-8 -*-
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Probe points to addresses: FUNC, FUNC+OFF, FUNC:N, FILE:N, inlined copies (perf's rules).

Every function takes a ``context.DwarfContext`` first and returns
``[(vaddr, cu, default event name)]`` or raises ``ResolveError``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import lines as dwarf_lines
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import scopes
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import typeinfo as dwarf_types
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.context import ResolveError

# FUNC+OFF outside the line and symbol tables: list the instruction starts this far after the entry.
NEAR_ENTRY_BYTES = 256
MAX_STARTS_SHOWN = 16


def addresses(ctx, point, spec, force):
    """[(vaddr, cu, default event name)] for the probe point."""
    if point.function is None:
        return file_line_addresses(ctx, point)
    functions = scopes.find_function(ctx, point.function, point.source)
    if not functions:
        where = " (in %s)" % point.source if point.source else ""
        raise ResolveError("function %s not found in the debug info of %s%s; is it spelled right and "
                           "compiled into this binary?" % (point.function, ctx.binary, where))
    if point.relative_line == 0:
        point.relative_line = None      # perf: FUNC:0 is FUNC itself (name, prologue rule)
    results = []
    for cu, die in functions:
        entry = ctx.entry_pc(die)
        if entry is None and point.relative_line is None:
            # Inline-only: like perf, one probe at the entry of every inlined copy.
            if point.offset is not None:
                raise ResolveError("%s exists only as inlined copies; FUNC+OFFSET needs out-of-line code. "
                                   "Use %s or %s:N instead" % (point.function, point.function, point.function))
            copies = scopes.inlined_copies(ctx, cu, die)
            if not copies:
                raise ResolveError("%s is declared inline but no inlined copy has code in %s"
                                   % (point.function, ctx.binary))
            results += [(address, cu, point.function) for address in copies]
            continue
        if point.offset is not None:
            address = entry + point.offset
            table = dwarf_lines.line_table(ctx, cu)
            if not force and not table.has_address(address) and not ctx.symbols.is_function_start(address):
                starts = ["+%d" % n for n in sorted(set(row_address - entry
                                                        for row_address, _o, _l, _f, _s, end in table.rows
                                                        if entry <= row_address < entry + NEAR_ENTRY_BYTES
                                                        and not end))]
                raise ResolveError("%s+%d (0x%x) is not an address the line table or symbol table names, so it "
                                   "may be inside an instruction and would corrupt the program; known "
                                   "instruction starts near it: %s. Set force: true only if you know it is "
                                   "an instruction boundary." % (point.function, point.offset, address,
                                                                 ", ".join(starts[:MAX_STARTS_SHOWN])))
            results.append((address, cu, point.function))
        elif point.relative_line is not None:
            results += function_line_addresses(ctx, point, cu, die)
        else:
            address = entry
            if any(not a.is_raw for a in spec.args) and not scopes.is_optimized(cu):
                address = dwarf_lines.prologue_end(ctx, cu, die, entry)
            results.append((address, cu, point.function))
    return results


def function_line_addresses(ctx, point, cu, die):
    table = dwarf_lines.line_table(ctx, cu)
    decl_line = dwarf_types.origin_attr(die, "DW_AT_decl_line")[0]
    decl_file = dwarf_types.origin_attr(die, "DW_AT_decl_file")[0]
    if decl_line is None or decl_file is None:
        raise ResolveError("function %s has no declaration line in the debug info" % point.function)
    file_name = table.file_name(decl_file.value)
    line = decl_line.value + point.relative_line
    same_file = dwarf_lines.file_matcher(file_name)
    addresses = dwarf_lines.line_addresses(ctx, cu, same_file, line, die)
    if not addresses and not ctx.die_ranges(die):
        raise ResolveError("%s:%d (%s:%d) has no code in any inlined copy of %s (it has no out-of-line copy)"
                           % (point.function, point.relative_line, os.path.basename(file_name), line,
                              point.function))
    if not addresses:
        lines = dwarf_lines.function_lines(ctx, cu, die)
        relative = sorted(set(l - decl_line.value for l in lines))
        raise ResolveError("%s:%d (%s:%d) has no code: no probe-able address. Probe-able lines of %s: %s"
                           % (point.function, point.relative_line, os.path.basename(file_name), line,
                              point.function, dwarf_lines.compress_lines(relative)))
    for address in addresses:
        found_file, found_line = dwarf_lines.line_at(ctx, cu, address)
        if found_line is not None and found_line != line and same_file(found_file or ""):
            if ctx.die_contains(die, address) or scopes.in_inlined_copy(ctx, cu, die, address):
                instead = "%s:%d" % (point.function, found_line - decl_line.value)
            else:       # the line lies outside the function: only a file line names it
                instead = "%s:%d" % (found_file, found_line)
            raise ResolveError("%s:%d (%s:%d) is sharing the address 0x%x with other lines. Please try to "
                               "probe at %s instead."
                               % (point.function, point.relative_line, os.path.basename(file_name), line,
                                  address, instead))
    return [(a, cu, "%s_L%d" % (point.function, point.relative_line)) for a in addresses]


def file_line_addresses(ctx, point):
    matcher = dwarf_lines.file_matcher(point.source, suffix=True)
    results = []
    for cu in dwarf_lines.cus_for_source(ctx, point.source):
        addresses = dwarf_lines.line_addresses(ctx, cu, matcher, point.absolute_line)
        for address in addresses:
            found_file, found_line = dwarf_lines.line_at(ctx, cu, address)
            if found_line is not None and found_line != point.absolute_line and matcher(found_file or ""):
                raise ResolveError("%s:%d is sharing the address 0x%x with other lines. Please try to probe at "
                                   "%s:%d instead." % (point.source, point.absolute_line, address,
                                                       point.source, found_line))
            chain = scopes.scope_chain(ctx, cu, address)
            name = dwarf_types.name_of(chain[0]) if chain else None
            results.append((address, cu, name or "L%d" % point.absolute_line))
    if not results:
        raise ResolveError("%s:%d has no code in %s (no line-table row for it); pick a line with a statement"
                           % (point.source, point.absolute_line, ctx.binary))
    return results
