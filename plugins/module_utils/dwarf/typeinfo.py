# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""DWARF types: C names, kernel fetch-type suffixes, struct members.

Suffixes follow perf: signed integers ``sN``, everything else ``xN``
(N = 8 * byte size, at most 64).  Bitfields get the kernel's
``b<width>@<bit from the LSB>/<container bits>`` form, computed for
little-endian x86 (perf's is big-endian and wrong there).
"""


from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.errors import DwarfError

_TRANSPARENT = ("DW_TAG_typedef", "DW_TAG_const_type", "DW_TAG_volatile_type", "DW_TAG_restrict_type",
                "DW_TAG_atomic_type")
REFERENCE_TAGS = ("DW_TAG_reference_type", "DW_TAG_rvalue_reference_type")      # C++ T& and T&&
_SIGNED_ENCODINGS = (0x5, 0x6)          # DW_ATE_signed, DW_ATE_signed_char
_CHAR_ENCODINGS = (0x6, 0x8)            # DW_ATE_signed_char, DW_ATE_unsigned_char


class TypeError_(DwarfError):
    """A C expression that does not fit the variable's type."""


def attr_value(die, name, default=None):
    attr = die.attributes.get(name)
    return attr.value if attr is not None else default


def name_of(die):
    """DW_AT_name, following abstract_origin/specification."""
    seen = 0
    while die is not None and seen < 8:
        attr = die.attributes.get("DW_AT_name")
        if attr is not None:
            value = attr.value
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        for link in ("DW_AT_abstract_origin", "DW_AT_specification"):
            if link in die.attributes:
                die = die.get_DIE_from_attribute(link)
                break
        else:
            return None
        seen += 1
    return None


def origin_attr(die, name):
    """An attribute of ``die`` or of its abstract origin / specification."""
    seen = 0
    while die is not None and seen < 8:
        if name in die.attributes:
            return die.attributes[name], die
        for link in ("DW_AT_abstract_origin", "DW_AT_specification"):
            if link in die.attributes:
                die = die.get_DIE_from_attribute(link)
                break
        else:
            return None, None
        seen += 1
    return None, None


def type_of(die):
    attr, owner = origin_attr(die, "DW_AT_type")
    if attr is None:
        return None
    return owner.get_DIE_from_attribute("DW_AT_type")


def strip(type_die):
    """Skip typedefs and qualifiers."""
    while type_die is not None and type_die.tag in _TRANSPARENT:
        type_die = type_of(type_die)
    return type_die


def byte_size(type_die):
    type_die = strip(type_die)
    if type_die is None:
        return None
    size = attr_value(type_die, "DW_AT_byte_size")
    if size is None and type_die.tag in ("DW_TAG_pointer_type",) + REFERENCE_TAGS:
        return type_die.cu["address_size"]
    if size is None and type_die.tag == "DW_TAG_array_type":
        count = array_length(type_die)
        element = byte_size(type_of(type_die))
        return count * element if count is not None and element is not None else None
    return size


def array_length(type_die):
    for child in type_die.iter_children():
        if child.tag == "DW_TAG_subrange_type":
            if "DW_AT_count" in child.attributes:
                return child.attributes["DW_AT_count"].value
            if "DW_AT_upper_bound" in child.attributes:
                return child.attributes["DW_AT_upper_bound"].value + 1
    return None


def c_name(type_die, depth=0):
    """A readable C name: 'int', 'struct outer *', 'char [16]', 'const char *'."""
    if type_die is None:
        return "void"
    if depth > 12:
        return "..."
    tag = type_die.tag
    name = name_of(type_die)
    if tag == "DW_TAG_base_type" or tag == "DW_TAG_typedef":
        return name or "?"
    if tag == "DW_TAG_structure_type":
        return "struct %s" % (name or "<anonymous>")
    if tag == "DW_TAG_union_type":
        return "union %s" % (name or "<anonymous>")
    if tag == "DW_TAG_enumeration_type":
        return "enum %s" % (name or "<anonymous>")
    if tag == "DW_TAG_pointer_type":
        inner = c_name(type_of(type_die), depth + 1)
        return inner + ("*" if inner.endswith("*") else " *")
    if tag in REFERENCE_TAGS:
        return c_name(type_of(type_die), depth + 1) + (" &" if tag == "DW_TAG_reference_type" else " &&")
    if tag == "DW_TAG_const_type":
        inner = c_name(type_of(type_die), depth + 1)
        return inner if inner.startswith("const ") else "const " + inner
    if tag == "DW_TAG_volatile_type":
        return "volatile " + c_name(type_of(type_die), depth + 1)
    if tag == "DW_TAG_restrict_type":
        return c_name(type_of(type_die), depth + 1) + " restrict"
    if tag == "DW_TAG_array_type":
        count = array_length(type_die)
        return "%s [%s]" % (c_name(type_of(type_die), depth + 1), "" if count is None else count)
    if tag == "DW_TAG_subroutine_type":
        return "function"
    return name or tag.replace("DW_TAG_", "")


def is_char(type_die):
    type_die = strip(type_die)
    return (type_die is not None and type_die.tag == "DW_TAG_base_type"
            and attr_value(type_die, "DW_AT_encoding") in _CHAR_ENCODINGS)


def suffix(type_die):
    """Kernel fetch type for a value of this type, or None for aggregates."""
    stripped = strip(type_die)
    if stripped is None:
        return None
    tag = stripped.tag
    size = byte_size(stripped)
    if tag in ("DW_TAG_structure_type", "DW_TAG_union_type", "DW_TAG_array_type", "DW_TAG_class_type") or not size:
        return None
    bits = min(8 * size, 64)
    if bits not in (8, 16, 32, 64):
        bits = 64
    if tag == "DW_TAG_base_type" and attr_value(stripped, "DW_AT_encoding") in _SIGNED_ENCODINGS:
        return "s%d" % bits
    return "x%d" % bits


def _member_offset(member):
    attr = member.attributes.get("DW_AT_data_member_location")
    if attr is None:
        return 0
    if isinstance(attr.value, int):
        return attr.value
    # DWARF 2 style: an expression, almost always DW_OP_plus_uconst N.
    value = list(attr.value)
    if value and value[0] == 0x23:
        result, shift = 0, 0
        for byte in value[1:]:
            result |= (byte & 0x7f) << shift
            shift += 7
            if not byte & 0x80:
                break
        return result
    raise TypeError_("member %s has a computed location" % name_of(member))


def is_reference(type_die):
    stripped = strip(type_die)
    return stripped is not None and stripped.tag in REFERENCE_TAGS


def find_member(struct_die, field):
    """``(member_die, byte_offset)``, searching anonymous members and (C++) base classes too."""
    for child in struct_die.iter_children():
        if child.tag == "DW_TAG_inheritance":
            base = strip(type_of(child))
            found = find_member(base, field) if base is not None else None
            if found is not None:
                return found[0], _member_offset(child) + found[1]
            continue
        if child.tag != "DW_TAG_member":
            continue
        name = name_of(child)
        if name == field:
            return child, _member_offset(child)
        if name is None:
            inner = strip(type_of(child))
            if inner is not None and inner.tag in ("DW_TAG_structure_type", "DW_TAG_union_type"):
                found = find_member(inner, field)
                if found is not None:
                    return found[0], _member_offset(child) + found[1]
    return None


def member_names(struct_die):
    """Data members, a C++ class's base classes' after its own."""
    found, bases = [], []
    for child in struct_die.iter_children():
        if child.tag == "DW_TAG_member" and name_of(child):
            found.append(name_of(child))
        elif child.tag == "DW_TAG_inheritance" and strip(type_of(child)) is not None:
            bases += member_names(strip(type_of(child)))
    return found + bases


def bitfield(member, offset):
    """``(byte_offset_of_container, kernel_type)`` for a bitfield member, else None."""
    width = attr_value(member, "DW_AT_bit_size")
    if width is None:
        return None
    container = byte_size(type_of(member)) or 4
    if "DW_AT_data_bit_offset" in member.attributes:          # DWARF 4/5: from the struct start
        total = member.attributes["DW_AT_data_bit_offset"].value
    else:                                                     # DWARF 2/3: from the MSB of the unit
        unit = attr_value(member, "DW_AT_byte_size", container)
        total = offset * 8 + unit * 8 - attr_value(member, "DW_AT_bit_offset", 0) - width
        container = unit
    start = (total // (container * 8)) * container
    if total - start * 8 + width > container * 8:
        start = total // 8
    return start, "b%d@%d/%d" % (width, total - start * 8, container * 8)
