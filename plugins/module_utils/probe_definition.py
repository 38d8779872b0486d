# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One ``uprobe_events`` line as a record: the one parser and the one formatter.

    p:GROUP/EVENT /path/binary:0xOFFSET[(0xREF_CTR)] [NAME=]FETCH[:TYPE] ...

The resolver (dwarf/) builds these records, tracefs reads them back from the
kernel, the ``uprobe`` module and its plans (uprobe_plans.py) and the sentinel
check, rename and write them: none of them splits or joins such a line itself
(tests/unit/test_probe_definition.py proves it), as perf has one parser and one
formatter per probe (``parse_probe_trace_command`` /
``synthesize_probe_trace_command``).

No ``re``: a resolver cache hit (dwarf/cache.py) parses its stored lines with
built-in modules only.
"""


from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError

KINDS = ("p", "r")      # an entry (or any instruction) probe, a return probe
_INTEGER_SIZES = ("8", "16", "32", "64")
_NAMED_TYPES = ("char", "string", "ustring", "symbol", "symstr", "%pd", "%pD")
_IDENTIFIER_START = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
_IDENTIFIER_REST = _IDENTIFIER_START + "0123456789"
_HEX_DIGITS = "0123456789abcdefABCDEF"


class DefinitionError(FleettraceError, ValueError):
    """Text that is not a uprobe_events line; the message quotes it and says what one looks like."""


def _identifier(text):
    return bool(text) and text[0] in _IDENTIFIER_START and all(c in _IDENTIFIER_REST for c in text)


def _integer(text):
    """0x1f, 31 -> int; anything else -> None."""
    if text[:2] in ("0x", "0X") and len(text) > 2 and all(c in _HEX_DIGITS for c in text[2:]):
        return int(text, 16)
    if text.isdigit():
        return int(text)
    return None


def is_type(text):
    """Whether ``text`` is a fetch type of the kernel's probe events (kprobetrace.rst), arrays included."""
    base, bracket, size = text.partition("[")
    if bracket and not (size.endswith("]") and size[:-1].isdigit()):
        return False
    if base in _NAMED_TYPES:
        return True
    if base[:1] in ("s", "u", "x") and base[1:] in _INTEGER_SIZES:
        return True
    if base.startswith("b") and "@" in base and "/" in base:     # b<bit-width>@<bit-offset>/<container-size>
        width, _at, rest = base[1:].partition("@")
        offset, _slash, container = rest.partition("/")
        return width.isdigit() and offset.isdigit() and container.isdigit()
    return False


def kernel_type(type_name, hex_types):
    """The type as this kernel takes it.

    The hexadecimal types x8/x16/x32/x64 came with Linux 4.17 ("tracing: probeevent:
    Add hexadecimal type support"); an older kernel refuses them.  Its u-type of the
    same size fetches the same bits and only prints them in decimal, as perf falls back
    when tracefs/README does not list x8/16/32/64.  ``hex_types``: whether it does.
    """
    if hex_types or not type_name or type_name[0] != "x":
        return type_name
    base, bracket, rest = type_name.partition("[")
    return "u" + base[1:] + bracket + rest if base[1:] in _INTEGER_SIZES else type_name


class FetchArg:
    """One fetch argument: ``name`` (None when unnamed), the ``expression`` the kernel fetches
    (%di, +8(%bx), $comm, \\0, @0x4010), and its ``type`` (None: the kernel's default)."""

    __slots__ = ("name", "expression", "type")

    def __init__(self, name, expression, type_name=None):
        self.name = name
        self.expression = expression
        self.type = type_name

    @classmethod
    def parse(cls, text, name=None):
        """``[NAME=]FETCH[:TYPE]`` -> FetchArg; with ``name``, ``text`` is only ``FETCH[:TYPE]``."""
        if name is not None:
            rest = text
        else:
            name, equals, rest = text.partition("=")
            if not equals or not _identifier(name):
                name, rest = None, text
        expression, colon, type_name = rest.rpartition(":")
        if not colon or not expression or not is_type(type_name):
            expression, type_name = rest, None
        if not expression:
            raise DefinitionError("fetch argument %r has no expression (NAME=FETCH[:TYPE], e.g. x=%%di:u64)" % text)
        return cls(name, expression, type_name)

    def text(self):
        """``[NAME=]FETCH[:TYPE]`` as written to uprobe_events."""
        typed = "%s:%s" % (self.expression, self.type) if self.type else self.expression
        return "%s=%s" % (self.name, typed) if self.name else typed

    def for_kernel(self, hex_types):
        return FetchArg(self.name, self.expression, kernel_type(self.type, hex_types))

    def key(self, index):
        """Comparable form: the kernel names an unnamed argument argN (N from 1) when it lists it."""
        name = None if self.name == "arg%d" % index else self.name
        return (name, self.expression, self.type)

    def __eq__(self, other):
        return isinstance(other, FetchArg) and (self.name, self.expression, self.type) == (
            other.name, other.expression, other.type)

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash((self.name, self.expression, self.type))

    def __repr__(self):
        return "FetchArg(%r)" % self.text()


class ProbeDefinition:
    """One probe: ``kind`` (p or r), ``group``, ``event``, the ``path`` and file ``offset`` of the
    probed instruction, the semaphore's ``ref_ctr`` offset (USDT; None without), and its ``args``."""

    __slots__ = ("kind", "group", "event", "path", "offset", "ref_ctr", "args")

    def __init__(self, kind, group, event, path, offset, args=(), ref_ctr=None):
        self.kind = kind
        self.group = group
        self.event = event
        self.path = path
        self.offset = offset
        self.ref_ctr = ref_ctr
        self.args = tuple(args)

    # -- the one parser -------------------------------------------------------------------
    @classmethod
    def parse(cls, line):
        """A uprobe_events line (as written, or as the kernel lists it) -> ProbeDefinition."""
        if not isinstance(line, str):
            raise DefinitionError("uprobe definition %r is not text" % (line,))
        words = line.split()
        if len(words) < 2:
            raise DefinitionError("cannot parse uprobe definition %r: expected "
                                  "'p:GROUP/EVENT /path/binary:0xOFFSET [ARGS]'" % line)
        head, place = words[0], words[1]
        kind, colon, name = head.partition(":")
        group, slash, event = name.partition("/")
        # r10: (a kretprobe's maxactive) is accepted and dropped: uprobes have none.
        kind_ok = kind[:1] in KINDS and (kind[1:] == "" or kind[1:].isdigit())
        if not (colon and slash and group and event and kind_ok) or "/" in event:
            raise DefinitionError("cannot parse uprobe definition %r: it must start with 'p:GROUP/EVENT' or "
                                  "'r:GROUP/EVENT'" % line)
        path, offset, ref_ctr = cls._parse_place(place, line)
        return cls(kind[0], group, event, path, offset, [FetchArg.parse(word) for word in words[2:]], ref_ctr)

    @staticmethod
    def _parse_place(place, line):
        ref_ctr = None
        if place.endswith(")") and "(" in place:
            place, _paren, counter = place[:-1].rpartition("(")
            ref_ctr = _integer(counter)
            if ref_ctr is None:
                raise DefinitionError("uprobe definition %r: reference counter %r is not a number" % (line, counter))
        path, colon, offset_text = place.rpartition(":")
        offset = _integer(offset_text) if colon else None
        if not path or offset is None:
            raise DefinitionError("uprobe definition %r: the place must be /path/binary:0xOFFSET, got %r"
                                  % (line, place))
        return path, offset, ref_ctr

    # -- the one formatter -----------------------------------------------------------------
    def line(self):
        """The uprobe_events line."""
        place = "%s:0x%x" % (self.path, self.offset)
        if self.ref_ctr is not None:
            place += "(0x%x)" % self.ref_ctr
        return " ".join(["%s:%s/%s" % (self.kind, self.group, self.event), place] + [arg.text() for arg in self.args])

    # -- as the callers use it ------------------------------------------------------------------
    def for_kernel(self, hex_types):
        """The definition as a kernel takes it: ``hex_types`` False for one without x8..x64 (kernel_type)."""
        return ProbeDefinition(self.kind, self.group, self.event, self.path, self.offset,
                               [arg.for_kernel(hex_types) for arg in self.args], self.ref_ctr)

    def renamed(self, group=None, event=None, path=None):
        """A copy under another group and/or event name (for a run of its own), or on another path
        to the same build (a copy of the binary elsewhere)."""
        return ProbeDefinition(self.kind, group or self.group, event or self.event, path or self.path, self.offset,
                               self.args, self.ref_ctr)

    def key(self):
        """Comparable form: what the kernel keeps, whatever the spelling of the offset or argN names."""
        return (self.kind, self.group, self.event, self.path, self.offset, self.ref_ctr,
                tuple(arg.key(index) for index, arg in enumerate(self.args, 1)))

    def __eq__(self, other):
        return isinstance(other, ProbeDefinition) and self.key() == other.key()

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash(self.key())

    def __repr__(self):
        return "ProbeDefinition(%r)" % self.line()


def removal(group, event):
    """The uprobe_events command that removes the event GROUP/EVENT (all its probes)."""
    return "-:%s/%s" % (group, event)


def lines(definitions):
    """The uprobe_events lines of several definitions."""
    return [definition.line() for definition in definitions]


def given_options(values, names):
    """``values`` (a module's params) with the options ``names`` that are '' or [] set to None: a role passes
    every option, its empty defaults included, and those mean "not given"."""
    return dict(values, **{name: None for name in names if values.get(name) in ("", [])})


def given_lines(definitions):
    """The definition lines actually given: ``definitions`` (a list, a single line as a string, or None) without
    its empty entries, so a role's empty default ('' or []) gives none."""
    if isinstance(definitions, str):
        definitions = [definitions]
    return [line for line in definitions or [] if isinstance(line, str) and line.strip()]


def chosen_spec(spec, picked=None):
    """The probe spec: ``spec`` when given (not empty), else the one probe_info picked (``picked``: its result,
    registered; a skipped task's has none); '' when neither."""
    if spec and spec.strip():
        return spec.strip()
    found = picked.get("spec") if isinstance(picked, dict) and not picked.get("skipped") else None
    return found.strip() if isinstance(found, str) else ""


def event_names(definitions):
    """Their event names, each once, in order."""
    names = []
    for definition in definitions:
        if definition.event not in names:
            names.append(definition.event)
    return names
