# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Function names as a spec gives them and as the DWARF holds them, C and C++.

A spec names a function the way a C or C++ programmer writes it: ``inflate``,
``Compress`` (every function of that name: overloads, methods of several
classes), ``snappy::Compress``, ``leveldb::DBImpl::Get``, ``Arena::Allocate``
(the last components, in any enclosing namespace), ``ns::Cache<int>::Get`` (one
instantiation) or ``ns::Cache::Get`` (all of them), ``~Iterator``,
``Slice::operator==``; or a linkage (mangled) name from ``nm``, which picks one
overload.  The DWARF holds the last component in ``DW_AT_name`` (with template
arguments: ``Get<int>``), the enclosing namespaces and classes as the parents of
the declaration, and the mangled name in ``DW_AT_linkage_name``.  Anonymous and
inline namespaces (``std::__cxx11``) are left out of qualifiers, as C++ lets a
name leave them out.
"""


import re

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_TEMPLATE_ARGS = r"(?:<[^\s@%]*>)?"
_COMPONENT = r"(?:~?%s%s|operator[^\s:@%%]+)" % (_IDENTIFIER, _TEMPLATE_ARGS)
QUALIFIED = re.compile(r"^%s(?:::%s)*$" % (_COMPONENT, _COMPONENT))
_NOT_IDENTIFIER = re.compile(r"[^A-Za-z0-9_]+")
EVENT_NAME_MAX = 63        # the kernel's event names are C identifiers below 64 characters
NAMESPACE_TAGS = ("DW_TAG_namespace",)
CLASS_TAGS = ("DW_TAG_class_type", "DW_TAG_structure_type", "DW_TAG_union_type")


def is_mangled(text):
    return text.startswith("_Z")


def split(text):
    """``'ns::Cache<a::b>::Get'`` -> ``['ns', 'Cache<a::b>', 'Get']`` (``::`` inside <> kept)."""
    parts, depth, start, index = [], 0, 0, 0
    while index < len(text):
        char = text[index]
        if char == "<" and not text.startswith("operator", start):
            depth += 1
        elif char == ">" and depth and not text.startswith("operator", start):
            depth -= 1
        elif depth == 0 and text.startswith("::", index):
            parts.append(text[start:index])
            index += 2
            start = index
            continue
        index += 1
    parts.append(text[start:])
    return parts


def base(component):
    """A component without its template arguments (``Get<int>`` -> ``Get``; operators kept whole)."""
    if component.startswith("operator"):
        return component
    cut = component.find("<")
    return component if cut < 0 else component[:cut]


# gcc spells template arguments of base types in full ('scale<long int>'); a spec holds no spaces.
_LONG_FORMS = ((re.compile(r"\b(long long|long|short|unsigned|signed)( unsigned| signed)? int\b"), r"\1\2"),
               (re.compile(r"\s+"), ""))


def _normal(component):
    """A component as a spec can write it: base-type template arguments without ' int', no spaces."""
    for pattern, replacement in _LONG_FORMS:
        component = pattern.sub(replacement, component)
    return component


def lookup_key(text):
    """What the function index files a function under: the last component without template arguments
    (a linkage name as it is)."""
    return text if is_mangled(text) else base(split(text)[-1])


def event_base(text):
    """An event name for a function: its components joined by '_' (perf's name for a C function),
    C identifier characters only, at most EVENT_NAME_MAX long."""
    parts = [base(part)[1:] + "_dtor" if part.startswith("~") else base(part) for part in split(text) if part]
    name = _NOT_IDENTIFIER.sub("_", "_".join(parts)) or "func"
    if len(parts) > 1 or not re.match(r"^%s$" % _IDENTIFIER, parts[0] if parts else ""):
        name = name.strip("_") or "func"        # '~Cart' -> 'Cart_dtor', 'operator==' -> 'operator'
    if name[0].isdigit():
        name = "_" + name
    return name[:EVENT_NAME_MAX]


class FunctionName:
    """The function a spec names, matched against DWARF names (see the module docstring)."""

    def __init__(self, text):
        self.text = text
        self.mangled = is_mangled(text)
        self.parts = [text] if self.mangled else split(text)
        self.key = lookup_key(text)

    @property
    def qualified(self):
        return len(self.parts) > 1

    def matches(self, qualifier, name, linkage_name=None):
        """Whether a DIE named ``name`` (``DW_AT_name``) inside ``qualifier`` (``'ns::Class'``, '' at the
        top) with ``linkage_name`` is this function."""
        if self.mangled:
            return linkage_name == self.text
        if name is None:
            return False
        have = (split(qualifier) if qualifier else []) + [name]
        if len(have) < len(self.parts):
            return False
        for wanted, found in zip(reversed(self.parts), reversed(have)):
            if wanted == found or (base(wanted) == wanted and base(found) == wanted):
                continue
            if base(wanted) == wanted or _normal(wanted) != _normal(found):
                return False
        return True


def qualifier_of(die):
    """``'ns::Class'`` of a pyelftools DIE: the namespaces and classes around the DIE that declares it
    (followed through DW_AT_specification / DW_AT_abstract_origin)."""
    seen = 0
    while seen < 8:
        for link in ("DW_AT_specification", "DW_AT_abstract_origin"):
            if link in die.attributes:
                die = die.get_DIE_from_attribute(link)
                break
        else:
            break
        seen += 1
    parts = []
    parent = die.get_parent()
    while parent is not None and parent.tag in NAMESPACE_TAGS + CLASS_TAGS:
        name = parent.attributes.get("DW_AT_name")
        if name is not None and "DW_AT_export_symbols" not in parent.attributes:
            value = name.value
            parts.append(value.decode("utf-8", "replace") if isinstance(value, bytes) else value)
        parent = parent.get_parent()
    return "::".join(reversed(parts))


def linkage_name_of(die):
    """DW_AT_linkage_name of a DIE or of the DIE it completes, else None."""
    seen = 0
    while die is not None and seen < 8:
        attr = die.attributes.get("DW_AT_linkage_name") or die.attributes.get("DW_AT_MIPS_linkage_name")
        if attr is not None:
            value = attr.value
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        for link in ("DW_AT_specification", "DW_AT_abstract_origin"):
            if link in die.attributes:
                die = die.get_DIE_from_attribute(link)
                break
        else:
            return None
        seen += 1
    return None
