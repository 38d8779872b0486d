# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parameters at a function's first instruction, where gcc's DWARF can be wrong.

gcc -O2 describes a parameter that lives in a callee-saved register for the whole
body with one location expression (``DW_OP_reg6`` for ``i`` in xz's
``lzma_index_buffer_encode``), valid only once the prologue has moved it there: at
the first instruction that register still holds the caller's value.  perf probes
``FUNC`` there and traces the caller's %bp (runtime truth in
tests/integration/test_resolver_libs.py showed it for both tools).

At the entry of a function called by its symbol, the x86-64 ABI says where the
parameters are: the first six integer-class ones in %di, %si, %dx, %cx, %r8, %r9.
``at_entry`` returns that register instead, or refuses when the position is not
certain (a floating-point or struct parameter before it).
"""


from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import typeinfo as dwarf_types
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.location import LocationError

ABI_INTEGER_REGISTERS = ("di", "si", "dx", "cx", "r8", "r9")
CALLEE_SAVED = ("bx", "bp", "r12", "r13", "r14", "r15")
LOCATION_LIST_FORMS = ("DW_FORM_sec_offset", "DW_FORM_loclistx", "DW_FORM_data4", "DW_FORM_data8")
INTEGER_TAGS = ("DW_TAG_pointer_type", "DW_TAG_enumeration_type", "DW_TAG_reference_type")
FLOAT_ENCODINGS = (0x04, 0x03, 0x09)     # DW_ATE_float, DW_ATE_complex_float, DW_ATE_decimal_float
MAX_INTEGER_BYTES = 8


def at_entry(ctx, die, subprogram, value, address):
    """``value`` of parameter ``die`` at ``address``, corrected to the ABI register at the entry."""
    if value[0] != "reg" or value[1] not in CALLEE_SAVED or die.tag != "DW_TAG_formal_parameter":
        return value
    if subprogram is None or ctx.entry_pc(subprogram) != address:
        return value
    location = die.attributes.get("DW_AT_location")
    if location is None or location.form in LOCATION_LIST_FORMS:
        return value            # a location list says where it is at each address
    name = dwarf_types.name_of(subprogram)
    if address not in [vaddr for vaddr, _size in ctx.symbols.function(name or "")]:
        return value            # a clone (f.isra.0) may not follow the ABI
    position = 0
    for param in subprogram.iter_children():
        if param.tag != "DW_TAG_formal_parameter":
            continue
        if param.offset == die.offset:
            break
        if not _integer_class(dwarf_types.type_of(param)):
            raise LocationError("at the entry of %s gcc's location (%%%s) still holds the caller's value, and the "
                                "parameter's ABI register is unknown after a non-integer parameter; probe %s:1"
                                % (name, value[1], name))
        position += 1
    if position >= len(ABI_INTEGER_REGISTERS):
        raise LocationError("at the entry of %s gcc's location (%%%s) still holds the caller's value, and the "
                            "parameter is passed on the stack; probe %s:1" % (name, value[1], name))
    return ("reg", ABI_INTEGER_REGISTERS[position])


def _integer_class(type_die):
    stripped = dwarf_types.strip(type_die)
    if stripped is None:
        return False
    if stripped.tag in INTEGER_TAGS:
        return True
    return stripped.tag == "DW_TAG_base_type" and dwarf_types.attr_value(stripped, "DW_AT_encoding") \
        not in FLOAT_ENCODINGS and (dwarf_types.byte_size(stripped) or 0) <= MAX_INTEGER_BYTES
