# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Probe points to addresses: FUNC, FUNC+OFF, FUNC:N, FILE:N, inlined copies (perf's rules).

Every function takes a ``context.DwarfContext`` first and returns
``[(vaddr, cu, default event name, scope DIE or None)]`` or raises ``ResolveError``;
the scope DIE is the copy of the function the address was chosen for (see
probe_scope.probe_scope).  docs/uprobe.md ("DWARF rules") says why each rule is perf's.
"""


import os

from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import functions
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import line_table as dwarf_line_table
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import lines as dwarf_lines
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import names
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import scopes
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import typeinfo as dwarf_types
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.errors import ResolveError

# FUNC+OFF outside the line and symbol tables: list the instruction starts this far after the entry.
NEAR_ENTRY_BYTES = 256
MAX_STARTS_SHOWN = 16
# gcc numbers the pieces of a partially inlined function f.part.0, f.part.1, ...: looked up by name.
PART_CLONES = 4


class NoCode(ResolveError):
    """FUNC:N has no code in one unit's copy of the function (another unit's copy may have it)."""


def return_addresses(ctx, point):
    """Where FUNC%return probes: the entry of every out-of-line copy.

    The symbols of that exact name first (static copies in several units included), as
    perf does; else the copies the DWARF describes with code (a clone such as
    ``f.constprop.0`` when gcc kept no plain ``f``), except ``f.part.N`` pieces: gcc's
    partial inlining splits one call over ``f`` and ``f.part.N``, and a return probe on
    both would fire twice for it.  Not the PLT stubs perf adds for exported functions
    (a return probe there fires a second time for the same calls)."""
    found = functions.find_function(ctx, point.function, point.source)
    units = {cu.cu_offset for cu, _die in found}
    result = [vaddr for vaddr, _size in ctx.symbols.function(point.function)
              if not point.source or ctx.cu_offset_for_address(vaddr) in units]
    if not result:
        pieces = {vaddr for number in range(PART_CLONES)
                  for vaddr, _size in ctx.symbols.function("%s.part.%d" % (point.function, number))}
        for _cu, die in found:
            entry = ctx.entry_pc(die) if ctx.die_ranges(die) else None
            if entry is not None and entry not in result and entry not in pieces:
                result.append(entry)
    if not result:
        raise ResolveError("function %s has no out-of-line copy in %s (neither in the debug info nor in the symbol "
                           "table): a %%return probe needs one; it exists only as inlined copies, which have no "
                           "return to probe" % (point.function, ctx.binary))
    return result


def addresses(ctx, point, spec, force):
    """[(vaddr, cu, default event name, scope DIE or None)] for the probe point, each address once."""
    results, seen = [], set()
    for target in _addresses(ctx, point, spec, force):
        if target[0] not in seen:
            seen.add(target[0])
            results.append(target if len(target) == 4 else target + (None,))
    return results


def _addresses(ctx, point, spec, force):
    if point.function is None:
        return file_line_addresses(ctx, point)
    found = functions.find_function(ctx, point.function, point.source)
    if not found:
        where = " (in %s)" % point.source if point.source else ""
        raise ResolveError("function %s not found in the debug info of %s%s; is it spelled right and "
                           "compiled into this binary?" % (point.function, ctx.binary, where))
    if point.relative_line == 0:
        point.relative_line = None      # perf: FUNC:0 is FUNC itself (name, prologue rule)
    results, units, no_code = [], set(), None
    event = event_name(point, found[0][1])
    for cu, die in found:
        # perf (probe_point_search_cb): the first DIE of the function in each unit decides;
        # an abstract one (inline) stands for all its instances there.  C++ overloads and
        # same-named methods of other classes are other functions: each gets this rule (perf
        # stops at the first of them in each unit).
        key = (cu.cu_offset, functions.identity(die))
        if key in units:
            continue
        units.add(key)
        if point.relative_line is not None:
            try:
                results += function_line_addresses(ctx, point, cu, die)
            except NoCode as exc:       # another unit's copy may have the line
                no_code = no_code or exc
            continue
        if ctx.die_ranges(die):
            results.append(_entry(ctx, point, spec, cu, die, force))
            continue
        copies = functions.instances(ctx, cu, die)
        if point.offset is not None and copies:
            raise ResolveError("%s has inlined copies; FUNC+OFFSET needs a single out-of-line copy. Use %s or %s:N "
                               "instead" % (point.function, point.function, point.function))
        # Every copy, inlined or out of line, at its entry (no prologue skip, as perf).
        results += [(pc, copy.cu, event, copy) for pc, copy in copies]     # LTO: another unit
    if not results and point.relative_line is None:
        # Definitions without code (an exported alias of another function's code): perf falls
        # back to the symbol table, so do we.  The function whose DIE holds that code is this
        # function's code too: its variables are the ones there.
        for vaddr, _size in ctx.symbols.function(point.function):
            unit = ctx.cu_offset_for_address(vaddr)
            cu = ctx.cu_at(unit) if unit is not None else found[0][0]
            results.append((vaddr + (point.offset or 0), cu, event, scopes.subprogram_at(ctx, cu, vaddr)))
    if not results and no_code is not None:
        raise no_code
    if not results:
        raise ResolveError("function %s has no code in %s: no out-of-line copy, no inlined copy with code and no "
                           "symbol" % (point.function, ctx.binary))
    return results


def event_name(point, die):
    """perf's event name for the function: its name, C++ components joined by '_'; for a linkage name
    the DWARF's name of the function it picked."""
    if names.is_mangled(point.function):
        return names.event_base("%s::%s" % (names.qualifier_of(die), dwarf_types.name_of(die)))
    return point.event_base


def _entry(ctx, point, spec, cu, die, force):
    """FUNC or FUNC+OFF in an out-of-line copy: (address, cu, event name, scope)."""
    entry = ctx.entry_pc(die)
    if point.offset is not None:
        address = entry + point.offset
        table = dwarf_line_table.line_table(ctx, cu)
        if not force and not table.has_address(address) and not ctx.symbols.is_function_start(address):
            starts = ["+%d" % n for n in sorted({row.address - entry
                                                 for row in table.rows_between(entry, entry + NEAR_ENTRY_BYTES)})]
            raise ResolveError("%s+%d (0x%x) is not an address the line table or symbol table names, so it "
                               "may be inside an instruction and would corrupt the program; known "
                               "instruction starts near it: %s. Set force: true only if you know it is "
                               "an instruction boundary." % (point.function, point.offset, address,
                                                             ", ".join(starts[:MAX_STARTS_SHOWN])))
        return (address, cu, event_name(point, die), die)
    address = entry
    if any(not a.is_raw for a in spec.args) and not scopes.is_optimized(cu):
        address = dwarf_lines.prologue_end(ctx, cu, die, entry)
    return (address, cu, event_name(point, die), die)


def function_line_addresses(ctx, point, cu, die):
    """FUNC:N in one unit's DIE for FUNC: [(address, unit, event name)].  The line's code is searched
    in the DIE's unit and, for a DIE without code of its own, in the units holding its copies (LTO)."""
    decl_line = dwarf_types.origin_attr(die, "DW_AT_decl_line")[0]
    file_name = dwarf_lines.decl_file_name(ctx, die)
    if decl_line is None or file_name is None:
        raise ResolveError("function %s has no declaration line in the debug info" % point.function)
    line = decl_line.value + point.relative_line
    same_file = dwarf_lines.file_matcher(file_name)
    # Per unit, the DIEs whose code may hold the line: the function itself, else its copies (perf walks
    # an inline function's instances; with LTO they are in other units).
    holders = {cu.cu_offset: (cu, [die])}
    if not ctx.die_ranges(die):
        copies = functions.instances(ctx, cu, die)
        if copies:
            holders = {}
            for _pc, copy in copies:
                holders.setdefault(copy.cu.cu_offset, (copy.cu, []))[1].append(copy)
    found = [(address, unit) for unit, dies in holders.values()
             for address in dwarf_lines.line_addresses(ctx, unit, same_file, line, dies)]
    if not found:
        # The lines of the copies with code of their own: the DIE itself, else its out-of-line copies.
        holders = [die] if ctx.die_ranges(die) else [
            copy for _pc, copy in functions.instances(ctx, cu, die)
            if copy.tag == functions.SUBPROGRAM and ctx.die_ranges(copy)]
        lines = set()
        for holder in holders:
            lines.update(dwarf_lines.function_lines(ctx, holder.cu, holder))
        if not lines:
            alias = " (its symbol is an alias of another function's code)" if ctx.symbols.function(point.function) \
                else ""
            raise NoCode("%s:%d (%s:%d) has no code in any copy of %s: no out-of-line copy of its own%s, and no "
                         "inlined copy holds that line; probe %s itself, or a line of the function it is inlined "
                         "into" % (point.function, point.relative_line, os.path.basename(file_name), line,
                                   point.function, alias, point.function))
        relative = sorted({l - decl_line.value for l in lines})
        raise NoCode("%s:%d (%s:%d) has no code: no probe-able address. Probe-able lines of %s: %s"
                     % (point.function, point.relative_line, os.path.basename(file_name), line,
                        point.function, dwarf_lines.compress_lines(relative)))
    for address, unit in found:
        found_file, found_line = dwarf_lines.line_at(ctx, unit, address)
        if found_line is not None and found_line != line and same_file(found_file or ""):
            if ctx.die_contains(die, address) or scopes.in_inlined_copy(ctx, unit, die, address):
                instead = "%s:%d" % (point.function, found_line - decl_line.value)
            else:       # the line lies outside the function: only a file line names it
                instead = "%s:%d" % (found_file, found_line)
            raise ResolveError("%s:%d (%s:%d) is sharing the address 0x%x with other lines. Please try to "
                               "probe at %s instead."
                               % (point.function, point.relative_line, os.path.basename(file_name), line,
                                  address, instead))
    return [(address, unit, "%s_L%d" % (event_name(point, die), point.relative_line)) for address, unit in found]


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
