# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""DWARF location expressions -> kernel fetch args (x86_64).

A fetch value is a tuple:

* ``('reg', 'di')``        the value is in a register
* ``('mem', k, inner)``    the value is in memory at value(inner) + k
* ``('global', vaddr)``    the value is in memory at a link-time address
* ``('imm', n)``           the value is a constant
* ``('sum', v, k)``        computed: value(v) + k (only usable under a dereference)
* ``('addr', X)``          computed: the link-time address X itself

Only what the kernel can fetch is translated; anything else raises
``LocationError`` with the reason, per variable (perf would abort the whole
spec, or worse, read the wrong memory for multi-op expressions).
"""


from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.errors import DwarfError

X86_64_REGISTERS = ("ax", "dx", "cx", "bx", "si", "di", "bp", "sp",
                    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "ip")


class LocationError(DwarfError):
    """The value exists but cannot be fetched by the kernel at this address."""


class OptimizedOut(LocationError):
    """No location covers the address."""


def register_name(number):
    if 0 <= number < 16:
        return X86_64_REGISTERS[number]
    if 17 <= number <= 32:
        raise LocationError("it is in SSE register xmm%d, which uprobes cannot read" % (number - 17))
    raise LocationError("it is in DWARF register %d, which uprobes cannot read" % number)


def render(value, text_delta):
    """Fetch-arg text of ``value``; ``text_delta`` = probe vaddr - probe file offset."""
    kind = value[0]
    if kind == "reg":
        return "%" + value[1]
    if kind == "mem":
        return "%+d(%s)" % (value[1], render(value[2], text_delta))
    if kind == "global":
        # The kernel resolves '@+X' relative to the probed file's mapping:
        # address = (probe address - probe file offset) + X.
        return "@+0x%x" % (value[1] - text_delta)
    if kind == "imm":
        return "\\%d" % value[1]
    raise ValueError(value)


def describe(value):
    """Human words for where a value lives (probe_info's 'location')."""
    kind = value[0]
    if kind == "reg":
        return "register %%%s" % value[1]
    if kind == "mem":
        inner = value[2]
        if inner[0] == "reg":
            return "memory at %%%s%+d" % (inner[1], value[1])
        return "memory at %+d from %s" % (value[1], describe(inner))
    if kind == "global":
        return "global memory at 0x%x" % value[1]
    if kind == "imm":
        return "constant %d" % value[1]
    return str(value)


def _names(ops):
    return " ".join(op.op_name for op in ops)


def add(value, number):
    """``value + number`` as a symbolic value (an address or a computed value)."""
    if number == 0:
        return value
    kind = value[0]
    if kind == "sum":
        return ("sum", value[1], value[2] + number) if value[2] + number else value[1]
    if kind == "addr":
        return ("addr", value[1] + number)
    if kind == "const":
        return ("const", value[1] + number)
    return ("sum", value, number)


def deref(address_value):
    """The value in memory at ``address_value``."""
    kind = address_value[0]
    if kind == "sum":
        return ("mem", address_value[2], address_value[1])
    if kind == "addr":
        return ("global", address_value[1])
    if kind == "const":
        raise LocationError("it is at a constant address 0x%x, which uprobes cannot read" % address_value[1])
    return ("mem", 0, address_value)


def _register_of(op):
    name = op.op_name
    if name in ("DW_OP_regx", "DW_OP_bregx"):
        return register_name(op.args[0])
    prefix = "DW_OP_breg" if name.startswith("DW_OP_breg") else "DW_OP_reg"
    return register_name(int(name[len(prefix):]))


def translate(ops, frame_base, address):
    """Parsed DWARF ops -> fetch value, evaluated symbolically on a stack.

    ``frame_base(address)`` returns the frame base as an address value (only
    called for DW_OP_fbreg).  A result may be ``('sum', v, k)`` (v + k) or
    ``('addr', X)`` (the address of a global): computed values the kernel
    cannot fetch as such, but a following ``->field`` folds k into the
    dereference offset, so they can still be traced correctly.
    """
    if not ops:
        raise OptimizedOut("it has an empty location (optimized out)")
    names = [op.op_name for op in ops]
    if any(n in ("DW_OP_entry_value", "DW_OP_GNU_entry_value") for n in names):
        raise LocationError("its value here is only known as the value it had at function entry "
                            "(DW_OP_entry_value); probe the function entry instead")
    if any(n in ("DW_OP_piece", "DW_OP_bit_piece") for n in names):
        raise LocationError("it is split into pieces across registers/memory (%s)" % _names(ops))
    if any(n in ("DW_OP_implicit_pointer", "DW_OP_GNU_implicit_pointer") for n in names):
        raise LocationError("it is a pointer that was optimized away (DW_OP_implicit_pointer)")
    first = ops[0]
    if len(ops) == 1 and (first.op_name.startswith("DW_OP_reg")):
        return ("reg", _register_of(first))
    if len(ops) == 1 and first.op_name == "DW_OP_implicit_value":
        data = bytes(first.args[1]) if len(first.args) > 1 else b""
        if 0 < len(data) <= 8:
            return ("imm", int.from_bytes(data, "little", signed=False))
        raise LocationError("it is an implicit value of %d bytes" % len(data))
    stack = []
    is_value = False
    for op in ops:
        name = op.op_name
        if name.startswith("DW_OP_breg"):
            stack.append(add(("reg", _register_of(op)), op.args[-1]))
        elif name == "DW_OP_fbreg":
            stack.append(add(frame_base(address), op.args[0]))
        elif name == "DW_OP_addr":
            stack.append(("addr", op.args[0]))
        elif name.startswith("DW_OP_lit"):
            stack.append(("const", int(name[len("DW_OP_lit"):])))
        elif name.startswith("DW_OP_const") and name[-1] in "us" and name[len("DW_OP_const"):-1].isdigit():
            stack.append(("const", op.args[0]))
        elif name in ("DW_OP_deref",) and stack:
            stack.append(deref(stack.pop()))
        elif name == "DW_OP_plus_uconst" and stack:
            stack.append(add(stack.pop(), op.args[0]))
        elif name in ("DW_OP_plus", "DW_OP_minus") and len(stack) >= 2:
            right, left = stack.pop(), stack.pop()
            sign = 1 if name == "DW_OP_plus" else -1
            if right[0] == "const":
                stack.append(add(left, sign * right[1]))
            elif left[0] == "const" and sign == 1:
                stack.append(add(right, left[1]))
            else:
                raise LocationError("its value is computed by the DWARF expression '%s' (a sum of two "
                                    "registers/memory values), which uprobes cannot compute" % _names(ops))
        elif name == "DW_OP_stack_value" and op is ops[-1] and stack:
            is_value = True
        else:
            raise LocationError("its location '%s' is not one uprobes can fetch (%s)" % (_names(ops), name))
    if len(stack) != 1:
        raise LocationError("its location '%s' is not one uprobes can fetch" % _names(ops))
    result = stack[0]
    if not is_value:
        return deref(result)
    if result[0] == "const":
        return ("imm", result[1])
    return result


def check_fetchable(value, expression):
    """Raise when a computed value is left that the kernel cannot fetch."""
    if value[0] == "sum":
        raise LocationError("its value is computed as %s %s %d (a DWARF expression ending in "
                            "DW_OP_stack_value), not stored anywhere uprobes can read; perf would read memory "
                            "instead and trace a wrong value. Its members (%s->field) can be traced."
                            % (render_hint(value[1]), "+" if value[2] >= 0 else "-", abs(value[2]), expression))
    if value[0] == "addr":
        raise LocationError("its value is the address 0x%x (of a global), not stored anywhere; trace what it "
                            "points to (%s->field) instead" % (value[1], expression))
    if value[0] == "cfa":
        raise LocationError("it is the frame base itself")
    return value


def render_hint(value):
    try:
        return render(value, 0)
    except (ValueError, LocationError):
        return str(value)


def frame_base_value(ops, cfa_at, address):
    """The frame base as an address value: ``('sum', ('reg', r), k)`` or ``('reg', r)``."""
    if len(ops) == 1 and ops[0].op_name == "DW_OP_call_frame_cfa":
        register, offset = cfa_at(address)
        return add(("reg", register_name(register)), offset)
    if len(ops) == 1 and ops[0].op_name.startswith("DW_OP_reg"):
        return ("reg", _register_of(ops[0]))
    if len(ops) == 1 and ops[0].op_name.startswith("DW_OP_breg"):
        return add(("reg", _register_of(ops[0])), ops[0].args[-1])
    raise LocationError("its frame base '%s' is not supported" % _names(ops))
