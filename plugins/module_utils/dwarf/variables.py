# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Variables at a probe address: find the DIE perf would, translate its
location, follow members and elements, and say why when it cannot be traced.

Every function takes a ``context.DwarfContext`` first.
"""


from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import entry as dwarf_entry
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import line_table as dwarf_line_table
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import lines as dwarf_lines
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import location as dwarf_location
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import scopes
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import typeinfo as dwarf_types
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.context import cu_base
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.location import LocationError, OptimizedOut
from ansible_collections.fleettrace.tracefs.plugins.module_utils.probe_definition import FetchArg

STRING_CASTS = ("string", "ustring")
AGGREGATE_TAGS = ("DW_TAG_structure_type", "DW_TAG_union_type", "DW_TAG_class_type")
SIGN_BIT_64 = 1 << 63
TWO_TO_64 = 1 << 64
MEMBERS_SHOWN = 4       # members suggested when a struct value is refused


class VariableNote:
    """What became of one requested variable at one probe address."""

    def __init__(self, expression, name, address, fetcharg=None, type_name=None, location=None,
                 reason=None, kernel_type=None):
        self.expression = expression
        self.name = name
        self.address = address
        self.fetcharg = fetcharg
        self.type_name = type_name
        self.location = location
        self.reason = reason
        self.kernel_type = kernel_type
        self.value = None
        self.expansion = None       # "$params" / "$vars" when the variable came from one
        self.die_offset = None      # the variable's DIE, and the scope DIE it was looked up in (None: a global)
        self.scope_offset = None

    @property
    def available(self):
        return self.reason is None

    def as_dict(self):
        return {"expression": self.expression, "name": self.name, "address": "0x%x" % self.address,
                "fetcharg": self.fetcharg, "type": self.type_name, "kernel_type": self.kernel_type,
                "location": self.location, "available": self.available, "reason": self.reason,
                "expansion": self.expansion,
                "dwarf": {"variable": _hex(self.die_offset), "scope": _hex(self.scope_offset)}}


def _hex(offset):
    return None if offset is None else "0x%x" % offset


def location_ops(ctx, die, attr_name, address, cu):
    """Parsed ops of the location of ``die`` at ``address``; raises OptimizedOut."""
    attr = die.attributes.get(attr_name)
    if attr is None:
        raise OptimizedOut("it has no location (optimized out)")
    try:
        location = ctx.loc_parser.parse_from_attribute(attr, cu["version"], die)
    except NotImplementedError as exc:
        raise LocationError("its location list uses a form pyelftools cannot read (%s)" % exc)
    except (ValueError, AssertionError):
        raise LocationError("its %s has a form that is not a location" % attr_name)
    if hasattr(location, "loc_expr"):
        return ctx.expr_parser.parse_expr(location.loc_expr)
    base = cu_base(cu)
    for entry in location:
        if hasattr(entry, "base_address"):
            base = entry.base_address
            continue
        if not hasattr(entry, "loc_expr"):
            continue
        low = entry.begin_offset if entry.is_absolute else base + entry.begin_offset
        high = entry.end_offset if entry.is_absolute else base + entry.end_offset
        if low <= address < high:
            return ctx.expr_parser.parse_expr(entry.loc_expr)
    raise OptimizedOut("it is optimized out at this address")


def available_ranges(ctx, die, cu):
    """(low, high, expression) ranges where a location-list variable has a location."""
    attr = die.attributes.get("DW_AT_location")
    if attr is None:
        return []
    try:
        location = ctx.loc_parser.parse_from_attribute(attr, cu["version"], die)
    except Exception:  # noqa: BLE001 - only used for a hint in an error message
        return []
    if hasattr(location, "loc_expr"):
        return []
    base, ranges = cu_base(cu), []
    for entry in location:
        if hasattr(entry, "base_address"):
            base = entry.base_address
        elif hasattr(entry, "loc_expr"):
            low = entry.begin_offset if entry.is_absolute else base + entry.begin_offset
            high = entry.end_offset if entry.is_absolute else base + entry.end_offset
            if high > low:
                ranges.append((low, high, entry.loc_expr))
    return ranges


def frame_base(ctx, function_die, cu):
    def base(address):
        ops = location_ops(ctx, function_die, "DW_AT_frame_base", address, cu)
        return dwarf_location.frame_base_value(ops, ctx.cfa_at, address)
    return base


def variable_value(ctx, die, cu, address, subprogram):
    """Fetch value of a variable DIE at ``address``; raises LocationError."""
    if "DW_AT_location" not in die.attributes:
        const = dwarf_types.origin_attr(die, "DW_AT_const_value")[0]
        if const is not None and isinstance(const.value, int):
            return ("imm", const.value)
        if "DW_AT_const_value" in die.attributes:
            raise LocationError("it is a constant the kernel cannot hold as an immediate")
        # Globals declared here but defined elsewhere get their address from the
        # symbol table in fetch_arg (global_value).
        raise OptimizedOut("it has no location (optimized out)")
    ops = location_ops(ctx, die, "DW_AT_location", address, cu)
    return dwarf_location.translate(ops, frame_base(ctx, subprogram, cu), address)


def find_variable(ctx, name, cu, chain, address):
    """(die, kind) of a variable visible at address: the probed function's own first (perf's order,
    scopes.walk_visible), then CU globals.  Never a variable of an enclosing function or of a nested
    inlined call: the one of that name there is another variable (and may have another type)."""
    if chain:
        fallback = None
        for die in scopes.walk_visible(ctx, scopes.scope_of(chain), address):
            if die.tag not in scopes.VARIABLE_TAGS or dwarf_types.name_of(die) != name:
                continue
            attrs = die.attributes
            if "DW_AT_location" in attrs or "DW_AT_const_value" in attrs or "DW_AT_external" in attrs:
                return die, "local"
            fallback = fallback or die
        if fallback is not None:
            return fallback, "local"
    infos = ctx.top_level(cu)
    if infos is None:
        for child in cu.get_top_DIE().iter_children():
            if child.tag == "DW_TAG_variable" and dwarf_types.name_of(child) == name:
                return child, "global"
        return None, None
    found = None
    for info in infos:
        if info["tag"] == "DW_TAG_variable" and (info.get("DW_AT_name") or (None,))[0] == name:
            found = ctx.die_at(cu, info["offset"])
            if "DW_AT_location" in info:        # prefer the definition over a declaration
                break
    return (found, "global") if found is not None else (None, None)


def global_value(ctx, die):
    """A global defined elsewhere (extern): take its address from the symbol table."""
    name = dwarf_types.name_of(die)
    places = ctx.symbols.data_object(name)
    if len(places) == 1:
        return ("global", places[0][0])
    return None


def fetch_arg(ctx, arg, cu, chain, address, table, die=None):
    """ProbeArg -> VariableNote (available or with the reason).  ``die``: the variable's DIE when the
    caller found it already ($params, $vars), else it is looked up by name (find_variable)."""
    note = VariableNote(arg.text, arg.default_name(), address)
    kind = "local"
    if die is None:
        die, kind = find_variable(ctx, arg.variable, cu, chain, address)
    if die is None:
        scope = scopes.scope_of(chain) if chain else None
        if scope is None:
            note.reason = ("variable %s is not visible: the debug info describes no function at 0x%x"
                           % (arg.variable, address))
            return note
        visible = [dwarf_types.name_of(d) for d in scopes.scope_variables(ctx, chain, address)]
        note.reason = ("variable %s is not visible at 0x%x (in %s); visible here: %s"
                       % (arg.variable, address, dwarf_types.name_of(scope), ", ".join(visible) or "none"))
        return note
    note.die_offset = die.offset
    if kind != "global":
        note.scope_offset = scopes.scope_of(chain).offset
    subprogram = chain[0] if chain else None
    type_die = dwarf_types.type_of(die)
    try:
        if kind == "abstract":
            raise OptimizedOut("it is optimized out in this inlined copy")
        try:
            value = variable_value(ctx, die, cu, address, subprogram)
        except OptimizedOut:
            if kind == "global":
                value = global_value(ctx, die)
                if value is None:
                    raise
            else:
                raise
        if kind == "local" and scopes.scope_of(chain) is subprogram:
            value = dwarf_entry.at_entry(ctx, die, subprogram, value, address)
        value, type_die, kernel_type = apply_accesses(arg, value, type_die)
    except LocationError as exc:
        reason = str(exc)
        stripped = dwarf_types.strip(dwarf_types.type_of(die))
        if stripped is None or stripped.tag != "DW_TAG_pointer_type":
            reason = reason.split(" Its members (", 1)[0]      # only pointers have members to follow
        note.reason = "%s: %s" % (arg.variable if not arg.accesses else arg.text.split(":")[0], reason)
        if isinstance(exc, OptimizedOut) and kind != "global":
            hint = availability_hint(ctx, die, cu, table, chain)
            if hint:
                note.reason += "; " + hint
        return note
    note.type_name = dwarf_types.c_name(type_die)
    note.kernel_type = kernel_type
    note.location = dwarf_location.describe(value)
    note.value = value
    return note


def availability_hint(ctx, die, cu, table, chain):
    """Where the variable can be traced instead: its lines, absolute and as FUNC:N."""
    table = table or dwarf_line_table.line_table(ctx, cu)
    subprogram = chain[0] if chain else None        # its frame base serves every variable
    function = scopes.scope_of(chain) if chain else None     # FUNC:N lines count from its declaration
    lines = set()
    for low, high, expr in available_ranges(ctx, die, cu):
        try:
            dwarf_location.translate(ctx.expr_parser.parse_expr(expr), frame_base(ctx, subprogram, cu), low)
        except LocationError:
            continue            # has a location there, but not one uprobes can read
        for row in table.rows_between(low, high):
            if row.is_stmt:
                lines.add(row.line)
    if not lines:
        if function is not None and function.tag == "DW_TAG_inlined_subroutine":
            return "it is not traceable anywhere in this copy of %s (inlined into %s)" % (
                dwarf_types.name_of(function), dwarf_types.name_of(subprogram))
        return "it is not traceable anywhere in this function"
    ordered = sorted(lines)
    text = "it is available at line%s %s" % ("s" if len(ordered) > 1 else "", dwarf_lines.compress_lines(ordered))
    decl = dwarf_types.origin_attr(function, "DW_AT_decl_line")[0] if function is not None else None
    if decl is not None:
        text += " (%s:%s)" % (dwarf_types.name_of(function),
                              dwarf_lines.compress_lines([l - decl.value for l in ordered]).replace(", ", ", :"))
    return text


def _through_reference(value, type_die):
    """A C++ reference (T&, T&&) holds an address but names the object: the value is the one it refers to."""
    if dwarf_types.is_reference(type_die):
        return dwarf_location.deref(value), dwarf_types.type_of(dwarf_types.strip(type_die))
    return value, type_die


def apply_accesses(arg, value, type_die):
    """Members, array elements, casts: (value, type_die, kernel type)."""
    kernel_type = None
    value, type_die = _through_reference(value, type_die)
    for op, operand in arg.accesses:
        stripped = dwarf_types.strip(type_die)
        if stripped is None:
            raise LocationError("it has no type information")
        if op == "->":
            if stripped.tag != "DW_TAG_pointer_type":
                raise LocationError("'->%s' needs a pointer, but %s is %s; use '.%s'"
                                    % (operand, arg.variable, dwarf_types.c_name(type_die), operand))
            target = dwarf_types.strip(dwarf_types.type_of(stripped))
            member, offset = struct_member(target, operand, type_die)
            value = dwarf_location.deref(dwarf_location.add(value, offset))
        elif op == ".":
            if stripped.tag == "DW_TAG_pointer_type":
                raise LocationError("'.%s' needs a struct, but %s is a pointer (%s); use '->%s'"
                                    % (operand, arg.variable, dwarf_types.c_name(type_die), operand))
            member, offset = struct_member(stripped, operand, type_die)
            value = add_offset(value, offset, operand)
        else:
            if stripped.tag == "DW_TAG_array_type":
                element = dwarf_types.type_of(stripped)
                value = add_offset(value, operand * (dwarf_types.byte_size(element) or 0), "[%d]" % operand)
            elif stripped.tag == "DW_TAG_pointer_type":
                element = dwarf_types.type_of(stripped)
                value = dwarf_location.deref(dwarf_location.add(value, operand * (dwarf_types.byte_size(element) or 0)))
            else:
                raise LocationError("'[%d]' needs an array or pointer, not %s" % (operand, dwarf_types.c_name(type_die)))
            type_die = element
            value, type_die = _through_reference(value, type_die)
            continue
        bit = dwarf_types.bitfield(member, offset)
        type_die = dwarf_types.type_of(member)
        if bit is not None:
            value = add_offset(value, bit[0] - offset, "a bitfield")
            kernel_type = bit[1]
        value, type_die = _through_reference(value, type_die)
    stripped = dwarf_types.strip(type_die)
    cast = arg.type_cast
    if cast not in STRING_CASTS or (stripped is not None and stripped.tag != "DW_TAG_pointer_type"):
        dwarf_location.check_fetchable(value, arg.variable)
    if cast in STRING_CASTS:
        if stripped is not None and stripped.tag == "DW_TAG_pointer_type":
            value = dwarf_location.deref(value)
        elif stripped is not None and stripped.tag == "DW_TAG_array_type":
            if not dwarf_types.is_char(dwarf_types.type_of(stripped)):
                raise LocationError("':string' needs a char array or pointer, not %s; name an element ([i])"
                                    % dwarf_types.c_name(type_die))
            if value[0] not in ("mem", "global"):
                raise LocationError("it is an array not in memory, so it cannot be read as a string")
        else:
            raise LocationError("':string' needs a char pointer or array, not %s" % dwarf_types.c_name(type_die))
        return value, type_die, cast
    if cast:
        return value, type_die, cast
    if kernel_type:
        return value, type_die, kernel_type
    kernel_type = dwarf_types.suffix(type_die)
    if kernel_type is None:
        raise LocationError(_aggregate_refusal(arg, type_die))
    if value[0] == "imm" and kernel_type.startswith("s") and value[1] >= SIGN_BIT_64:
        value = ("imm", value[1] - TWO_TO_64)
    return value, type_die, kernel_type


def _aggregate_refusal(arg, type_die):
    """Policy for struct, union, array and vector values: refuse, saying what to trace instead.

    A uprobe argument is one number or one string.  perf fetches 8 bytes of the aggregate
    as a number (or with no type at all), which reads as a meaningless value; a member, an
    element or, for char arrays, the string is what a user means."""
    stripped = dwarf_types.strip(type_die)
    what = "it is a %s" % dwarf_types.c_name(type_die)
    expression = arg.text.split("=", 1)[-1].split(":", 1)[0]       # this->mutex_ in 'NAME=this->mutex_:u64'
    if stripped is not None and stripped.tag in AGGREGATE_TAGS:
        members = dwarf_types.member_names(stripped)[:MEMBERS_SHOWN]
        return "%s; name a member, e.g. %s" % (what, ", ".join("%s.%s" % (expression, m) for m in members) or
                                               "%s.field" % expression)
    if stripped is not None and stripped.tag == "DW_TAG_array_type":
        if dwarf_types.is_char(dwarf_types.type_of(stripped)):
            return "%s; name a member or element, or read it as text with %s:string" % (what, expression)
        return "%s; name a member or element, e.g. %s[0]" % (what, expression)
    return "%s; name a member (.field / ->field), an element ([i]) or cast it (:string for char arrays)" % what


def struct_member(struct_die, field, type_die):
    if struct_die is None or struct_die.tag not in AGGREGATE_TAGS:
        raise LocationError("'%s' is not a member: %s is not a struct or union" % (field, dwarf_types.c_name(type_die)))
    found = dwarf_types.find_member(struct_die, field)
    if found is None:
        raise LocationError("%s has no member '%s' (members: %s)"
                            % (dwarf_types.c_name(struct_die), field, ", ".join(dwarf_types.member_names(struct_die))))
    return found


def add_offset(value, offset, what):
    if value[0] == "mem":
        return ("mem", value[1] + offset, value[2])
    if value[0] == "global":
        return ("global", value[1] + offset)
    raise LocationError("%s is held in a register here, not in memory, so %s cannot be addressed" % ("it", what))


def fetch_arg_of(note, delta):
    """The ``FetchArg`` of an available note (kept as its ``fetcharg`` text); ``delta`` = vaddr - file
    offset of the probe."""
    arg = FetchArg(note.name, dwarf_location.render(note.value, delta), note.kernel_type)
    note.fetcharg = arg.text()
    return arg
