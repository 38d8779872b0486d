# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parse a ``perf probe`` style spec into plain objects.

Grammar (perf 6.1)::

    [[GRP:]EV=]FUNC[@SRC][:RLN|+OFF|%return] [ARG ...]
    [[GRP:]EV=]SRC:ALN [ARG ...]
    ARG := [NAME=]VAR[->field|.field|[i]]...[:TYPE] | $params | $vars | raw fetch arg

Nothing here reads a binary; ``dwarf_resolver`` gives the parts meaning.
"""


import os
import re

from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import names as dwarf_names
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.errors import DwarfError


class ProbeSpecError(DwarfError, ValueError):
    """A spec that does not follow the perf probe syntax."""


_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_IDENT_RE = re.compile(r"^%s$" % _IDENT)
_ACCESS_RE = re.compile(r"(->|\.)(%s)|\[(\d+)\]" % _IDENT)
# Types the kernel's fetch args accept after ':'.
_TYPE_RE = re.compile(r"^(?:[sux](?:8|16|32|64)|string|ustring|symbol|b\d+@\d+/\d+)$")
# Fetch args that perf copies as they are: registers, $stackN, $retval,
# $comm, memory (+8(%sp)), @addresses, immediates.
_RAW_PREFIXES = ("%", "$", "+", "-", "@", "\\")


class ProbePoint:
    """Where to probe: a function (+line/offset/return) or a file line."""

    def __init__(self, function=None, source=None, relative_line=None, absolute_line=None,
                 offset=None, is_return=False, group=None, event=None):
        self.function = function
        self.source = source
        self.relative_line = relative_line
        self.absolute_line = absolute_line
        self.offset = offset
        self.is_return = is_return
        self.group = group
        self.event = event

    @property
    def event_base(self):
        """perf's event name for the function (C++ names joined by '_': ns_Class_method)."""
        return dwarf_names.event_base(self.function)

    def __repr__(self):
        return "ProbePoint(%r)" % (self.__dict__,)


class ProbeArg:
    """One argument: a C variable with accesses and a type, or a raw fetch arg.

    ``accesses`` is a list of ``('->', field)``, ``('.', field)`` or ``('[]', index)``.
    """

    def __init__(self, text, name=None, variable=None, accesses=None, type_cast=None, raw=None):
        self.text = text
        self.name = name
        self.variable = variable
        self.accesses = accesses or []
        self.type_cast = type_cast
        self.raw = raw

    @property
    def is_raw(self):
        return self.raw is not None

    @property
    def is_special(self):
        return self.variable in ("$params", "$vars")

    def default_name(self):
        """The argument name perf gives: NAME=, else last field, else var_type."""
        if self.name:
            return self.name
        fields = [a[1] for a in self.accesses if a[0] in ("->", ".")]
        if fields:
            return fields[-1]
        if self.type_cast:
            return "%s_%s" % (self.variable, self.type_cast.replace("@", "_").replace("/", "_"))
        return self.variable

    def __repr__(self):
        return "ProbeArg(%r)" % (self.text,)


class ProbeSpec:
    def __init__(self, point, args, text):
        self.point = point
        self.args = args
        self.text = text

    def __repr__(self):
        return "ProbeSpec(%r)" % (self.text,)


def _parse_int(text, what, spec):
    try:
        return int(text, 0)
    except ValueError:
        raise ProbeSpecError("%s %r in probe spec %r is not a number" % (what, text, spec))


def parse_point(text, spec=None):
    spec = spec if spec is not None else text
    group = event = None
    if "=" in text:
        name_part, text = text.split("=", 1)
        if ":" in name_part:
            group, event = name_part.split(":", 1)
        else:
            event = name_part
        if not _IDENT_RE.match(event):
            raise ProbeSpecError("event name %r in probe spec %r is not a C identifier" % (event, spec))
        if group is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_-]*$", group):
            raise ProbeSpecError("group name %r in probe spec %r may hold only letters, digits, '_' and '-'"
                                 % (group, spec))
    if not text:
        raise ProbeSpecError("probe spec %r names no function or source line" % spec)
    text = text.replace("\\:", ":")       # perf's escaped C++ scope (ns\:\:f)
    first_colon = text.find(":")
    is_file = (not any(c in text for c in "+@%")
               and first_colon > 0 and "." in text[:first_colon] and "::" not in text)
    if is_file:
        source, _sep, line = text.partition(":")
        if not line.isdigit():
            raise ProbeSpecError("source line %r in probe spec %r must be FILE:LINE with a line number"
                                 % (text, spec))
        return ProbePoint(source=source, absolute_line=int(line), group=group, event=event)
    # A C++ name holds '::' (ns::Class::method); a single ':' starts the line number.
    match = re.match(r"^(?P<func>(?:::|[^@:+%])+)(?:@(?P<src>[^:+%]+))?(?P<rest>.*)$", text)
    if not match or not dwarf_names.QUALIFIED.match(match.group("func")):
        raise ProbeSpecError("probe point %r in spec %r must start with a function name (a C identifier, a C++ "
                             "name such as ns::Class::method, or a linkage name) or be FILE.c:LINE" % (text, spec))
    point = ProbePoint(function=match.group("func"), source=match.group("src"), group=group, event=event)
    rest = match.group("rest")
    if rest == "":
        pass
    elif rest == "%return":
        point.is_return = True
    elif rest.startswith(":"):
        point.relative_line = _parse_int(rest[1:], "relative line", spec)
        if point.relative_line < 0:
            raise ProbeSpecError("relative line in %r must not be negative" % spec)
    elif rest.startswith("+"):
        point.offset = _parse_int(rest[1:], "offset", spec)
    else:
        raise ProbeSpecError("cannot read %r after the function name in probe spec %r: use FUNC:LINE, "
                             "FUNC+OFFSET or FUNC%%return" % (rest, spec))
    return point


def parse_arg(text, spec=None):
    spec = spec if spec is not None else text
    name = None
    body = text
    match = re.match(r"^(%s)=(.+)$" % _IDENT, text)
    if match:
        name, body = match.group(1), match.group(2)
    if body in ("$params", "$vars"):
        if name:
            raise ProbeSpecError("%s in probe spec %r expands to several arguments and takes no NAME=" % (body, spec))
        return ProbeArg(text, variable=body)
    if body.startswith(_RAW_PREFIXES) or body[0].isdigit():
        return ProbeArg(text, name=name, raw=body)
    type_cast = None
    var_part = body
    # The type follows the last ':' (C expressions here hold no ':').
    if ":" in body:
        var_part, type_cast = body.rsplit(":", 1)
        if not _TYPE_RE.match(type_cast):
            raise ProbeSpecError("type %r of argument %r in probe spec %r is not one the kernel knows "
                                 "(s8..s64, u8..u64, x8..x64, string)" % (type_cast, text, spec))
    match = re.match(r"^(%s)(.*)$" % _IDENT, var_part)
    if not match:
        raise ProbeSpecError("argument %r in probe spec %r is not a C variable, $params, $vars or a fetch arg"
                             % (text, spec))
    variable, rest = match.group(1), match.group(2)
    accesses = []
    position = 0
    while position < len(rest):
        access = _ACCESS_RE.match(rest, position)
        if not access:
            raise ProbeSpecError("cannot read %r in argument %r of probe spec %r: use ->field, .field or [index]"
                                 % (rest[position:], text, spec))
        if access.group(3) is not None:
            accesses.append(("[]", int(access.group(3))))
        else:
            accesses.append((access.group(1), access.group(2)))
        position = access.end()
    return ProbeArg(text, name=name, variable=variable, accesses=accesses, type_cast=type_cast)


def parse(text):
    """``'func:3 a b->c:u64'`` -> ``ProbeSpec``; raises ``ProbeSpecError``."""
    if not isinstance(text, str) or not text.strip():
        raise ProbeSpecError("probe spec must be a non-empty string like 'func:3 var'")
    if "\n" in text or "\r" in text:
        raise ProbeSpecError("probe spec %r contains a newline" % text)
    words = text.split()
    point = parse_point(words[0], text)
    args = [parse_arg(word, text) for word in words[1:]]
    if point.is_return and any(not a.is_raw for a in args):
        raise ProbeSpecError("probe spec %r: a %%return probe can fetch $retval and registers, not C variables "
                             "(they are gone when the function returns)" % text)
    return ProbeSpec(point, args, text)


def default_group(binary):
    """perf's group: 'probe_' + basename up to the first char outside [A-Za-z0-9_]."""
    return "probe_" + re.match(r"[A-Za-z0-9_]*", os.path.basename(binary)).group(0)


def default_event(point):
    """perf's event name when the spec alone decides it (None for FILE:LINE: the function there does)."""
    if point.event:
        return point.event
    if point.function is None:
        return None
    if point.is_return:
        return point.event_base + "__return"
    if point.relative_line:
        return "%s_L%d" % (point.event_base, point.relative_line)
    return point.event_base
