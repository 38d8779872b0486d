"""Differential sampler: our resolver against `perf probe --definition` on real libraries.

Used by tests/integration/test_resolver_libs.py and benchmarks/bench_resolver_libs.py
(not by the collection).  The libraries come from scripts/build-libs.sh (zlib, lz4,
liblzma from Debian source at -O0/-O2, DWARF 5/4).

`catalog(binary)` walks the whole DWARF with pyelftools (slow, independent of the
resolver's shortcuts) and lists every function: out-of-line copies, clones,
inline-only functions, their parameters, locals, members of pointed-to structs and
source lines.  `sample(catalog, n, seed)` draws specs of every kind from it with a
fixed seed; `compare()` resolves each with both tools and `classify()` names the
difference, so new classes show up as new keys rather than as a fixed list of cases.
"""

import collections
import os
import random
import re
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PERF = shutil.which("perf")
LIBS = {"zlib": "libz.so", "lz4": "liblz4.so", "xz": "liblzma.so", "zstd": "libzstd.so", "sqlite3": "libsqlite3.so",
        "snappy": "libsnappy.so", "leveldb": "libleveldb.so"}
VARIANTS = ("O0", "O0dw4", "O2", "O2dw4")
# Every build of scripts/build-libs.sh, by set: the C libraries at four variants, zstd at its own
# -O3 too, the sqlite3 amalgamation, two C++ libraries, and zlib built with LTO.
BUILDS = (["%s-%s" % (lib, v) for lib in ("zlib", "lz4", "xz") for v in VARIANTS]
          + ["zstd-O2", "zstd-O3", "sqlite3-O2", "snappy-O2", "leveldb-O2", "zlib-O2lto"])
# The differential suite's builds: all but the sqlite3 amalgamation, whose one 8 MB unit takes
# minutes to catalog with plain pyelftools (benchmarks use it for speed).
SUITE = [label for label in BUILDS if not label.startswith("sqlite3")]

SPEC_KINDS = ("func", "params", "return", "line", "line_vars", "line_var", "member", "var", "string")


def build_libraries():
    """Run scripts/build-libs.sh (cached); return {name-variant: library path}."""
    proc = subprocess.run(["bash", os.path.join(REPO, "scripts", "build-libs.sh")], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError("scripts/build-libs.sh failed:\n" + proc.stderr[-3000:])
    root = proc.stdout.strip().splitlines()[-1]
    return root, {label: os.path.join(root, label, LIBS[label.split("-")[0]]) for label in BUILDS}


# -- catalog ----------------------------------------------------------------------------
class Function:
    def __init__(self, name):
        self.name = name
        self.copies = 0             # out-of-line subprograms with code
        self.inlined = 0            # inlined_subroutine copies
        self.abstract = False
        self.params = []            # [(name, kind)] kind: scalar / pointer / struct_ptr / char_ptr / aggregate / other
        self.locals = []
        self.members = []           # ["p->m"]
        self.lines = set()          # absolute lines with is_stmt rows in its code (declaring file)
        self.decl_line = None
        self.symbol = None          # (vaddr, size) when in the symbol table
        self.exported = False       # in .dynsym: what the driver programs call
        self.identities = set()     # (unit, DIE naming it): C++ overloads and namesake methods are several
        self.linkage_names = set()  # C++: the mangled names of its definitions

    @property
    def overloaded(self):
        """Several functions of this name in one unit (C++ overloads, methods of several classes)."""
        units = [unit for unit, _identity in self.identities]
        return len(units) != len(set(units))

    @property
    def inline_only(self):
        return self.copies == 0 and self.inlined > 0


def _strip(die):
    while die is not None and die.tag in ("DW_TAG_typedef", "DW_TAG_const_type", "DW_TAG_volatile_type",
                                          "DW_TAG_restrict_type", "DW_TAG_atomic_type"):
        die = die.get_DIE_from_attribute("DW_AT_type") if "DW_AT_type" in die.attributes else None
    return die


def _type_of(die):
    return die.get_DIE_from_attribute("DW_AT_type") if "DW_AT_type" in die.attributes else None


def _origin(die):
    seen = 0
    while seen < 4 and die is not None:
        for attr in ("DW_AT_abstract_origin", "DW_AT_specification"):
            if attr in die.attributes:
                die = die.get_DIE_from_attribute(attr)
                break
        else:
            return die
        seen += 1
    return die


def _name(die):
    die = _origin(die)
    attr = die.attributes.get("DW_AT_name") if die is not None else None
    return attr.value.decode("utf-8", "replace") if attr is not None else None


def _linkage(die):
    seen = 0
    while die is not None and seen < 4:
        if "DW_AT_linkage_name" in die.attributes:
            return die.attributes["DW_AT_linkage_name"].value.decode("utf-8", "replace")
        for attr in ("DW_AT_abstract_origin", "DW_AT_specification"):
            if attr in die.attributes:
                die = die.get_DIE_from_attribute(attr)
                break
        else:
            return None
        seen += 1
    return None


def _kind(type_die):
    t = _strip(type_die)
    if t is None:
        return "other", None
    if t.tag in ("DW_TAG_reference_type", "DW_TAG_rvalue_reference_type"):
        return "reference", None
    if t.tag == "DW_TAG_pointer_type":
        target = _strip(_type_of(t))
        if target is not None and target.tag in ("DW_TAG_structure_type", "DW_TAG_union_type") \
                and "DW_AT_declaration" not in target.attributes:
            return "struct_ptr", target
        if target is not None and target.tag == "DW_TAG_base_type" and "char" in (_name(target) or ""):
            return "char_ptr", None
        return "pointer", None
    if t.tag in ("DW_TAG_base_type", "DW_TAG_enumeration_type"):
        return ("scalar" if (t.attributes.get("DW_AT_byte_size").value if "DW_AT_byte_size" in t.attributes else 0) <= 8
                and "float" not in (_name(t) or "") and "double" not in (_name(t) or "") else "other"), None
    if t.tag in ("DW_TAG_structure_type", "DW_TAG_union_type", "DW_TAG_array_type"):
        return "aggregate", None
    return "other", None


def _block_locals(block):
    """[(name, kind)] of the variables of a lexical block and of the blocks nested in it (not of
    inlined calls: those are the callee's)."""
    found = []
    for child in block.iter_children():
        if child.tag == "DW_TAG_variable" and _name(child):
            found.append((_name(child), _kind(_type_of(_origin(child)))[0]))
        elif child.tag == "DW_TAG_lexical_block":
            found += _block_locals(child)
    return found


def catalog(binary):
    """{name: Function} from a full pyelftools walk of ``binary``."""
    from elftools.elf.elffile import ELFFile
    functions = {}
    with open(binary, "rb") as handle:
        elf = ELFFile(handle)
        symbols, exported = {}, set()
        for section in ("SHT_SYMTAB", "SHT_DYNSYM"):
            for table in elf.iter_sections(section):
                for sym in table.iter_symbols():
                    if sym["st_info"]["type"] == "STT_FUNC" and sym["st_shndx"] != "SHN_UNDEF":
                        symbols.setdefault(sym.name, (sym["st_value"], sym["st_size"]))
                        if section == "SHT_DYNSYM":
                            exported.add(sym.name)
        dwarf = elf.get_dwarf_info()
        for cu in dwarf.iter_CUs():
            lineprog = dwarf.line_program_for_CU(cu)
            rows = [e.state for e in lineprog.get_entries() if e.state is not None and not e.state.end_sequence
                    and e.state.is_stmt] if lineprog is not None else []
            for die in cu.iter_DIEs():
                if die.tag not in ("DW_TAG_subprogram", "DW_TAG_inlined_subroutine"):
                    continue
                name = _name(die)
                if not name:
                    continue
                if "<" in name and not name.startswith("operator"):
                    name = name[:name.index("<")]       # a template: every instantiation (no spaces in a spec)
                fn = functions.setdefault(name, Function(name))
                has_code = "DW_AT_low_pc" in die.attributes or "DW_AT_ranges" in die.attributes
                if die.tag == "DW_TAG_inlined_subroutine":
                    fn.inlined += 1
                    continue
                if "DW_AT_inline" in die.attributes:
                    fn.abstract = True
                if "DW_AT_declaration" in die.attributes:
                    continue
                source = _origin(die)
                fn.identities.add((cu.cu_offset, source.offset))
                if has_code:
                    fn.copies += 1
                    if _linkage(die):
                        fn.linkage_names.add(_linkage(die))
                if fn.decl_line is None and "DW_AT_decl_line" in source.attributes:
                    fn.decl_line = source.attributes["DW_AT_decl_line"].value
                    low = die.attributes["DW_AT_low_pc"].value if "DW_AT_low_pc" in die.attributes else None
                    high = None
                    if low is not None and "DW_AT_high_pc" in die.attributes:
                        h = die.attributes["DW_AT_high_pc"]
                        high = h.value if h.form == "DW_FORM_addr" else low + h.value
                    if low is not None and high is not None:
                        fn.lines.update(r.line for r in rows if low <= r.address < high)
                    elif "DW_AT_inline" in die.attributes:
                        fn.lines.update(range(fn.decl_line + 1, fn.decl_line + 30))
                if fn.params or fn.locals:
                    continue
                # A C++ method's declaration names only `this`: the definition names its parameters.
                holder = die if die.has_children else source
                for child in holder.iter_children() if holder.has_children else []:
                    cname = _name(child)
                    if not cname:
                        continue
                    if child.tag == "DW_TAG_formal_parameter":
                        kind, target = _kind(_type_of(_origin(child)))
                        fn.params.append((cname, kind))
                        if target is not None:
                            for member in target.iter_children():
                                if member.tag == "DW_TAG_member" and _name(member):
                                    mkind, _t = _kind(_type_of(member))
                                    if mkind in ("scalar", "pointer", "char_ptr", "struct_ptr"):
                                        fn.members.append("%s->%s" % (cname, _name(member)))
                    elif child.tag == "DW_TAG_variable":
                        fn.locals.append((cname, _kind(_type_of(_origin(child)))[0]))
                    elif child.tag == "DW_TAG_lexical_block":
                        fn.locals += _block_locals(child)
        for name, fn in functions.items():
            # C++: the symbol of the one definition of that name (overloads: none, the ABI cannot tell them).
            symbol = name if not fn.linkage_names else \
                next(iter(fn.linkage_names)) if len(fn.linkage_names) == 1 and len(fn.identities) == 1 else None
            fn.symbol = symbols.get(symbol)
            fn.exported = symbol in exported
    return functions


# -- sampling ---------------------------------------------------------------------------
def sample(functions, count, seed):
    """``count`` (spec, kind, function name) drawn with ``seed``: every kind, inline-only functions too."""
    rng = random.Random(seed)
    names = sorted(n for n, f in functions.items() if f.copies or f.inlined)
    inline_only = [n for n in names if functions[n].inline_only]
    exported = [n for n in names if functions[n].exported]
    specs, seen = [], set()
    attempts = 0
    while len(specs) < count and attempts < count * 20 and names:
        attempts += 1
        # One draw in five is an inline-only function (the slow and error-prone path), one in
        # four an exported one (the driver programs call them: runtime truth can judge).
        draw = rng.random()
        pool = inline_only if draw < 0.2 else exported if draw < 0.45 else names
        name = rng.choice(pool or names)
        fn = functions[name]
        kind = rng.choice(SPEC_KINDS)
        line = None
        if fn.lines and fn.decl_line is not None:
            line = rng.choice(sorted(fn.lines)) - fn.decl_line
        variables = fn.params + fn.locals
        spec = None
        if kind == "func":
            spec = name
        elif kind == "params":
            spec = name + " $params"
        elif kind == "return" and not fn.inline_only:
            spec = name + "%return $retval"
        elif kind == "line" and line is not None and line > 0:
            spec = "%s:%d" % (name, line)
        elif kind == "line_vars" and line is not None and line > 0:
            spec = "%s:%d $vars" % (name, line)
        elif kind == "line_var" and line is not None and line > 0 and variables:
            spec = "%s:%d %s" % (name, line, rng.choice(variables)[0])
        elif kind == "member" and fn.members:
            spec = "%s %s" % (name, rng.choice(fn.members))
        elif kind == "var" and fn.params:
            spec = "%s %s" % (name, " ".join(p for p, _k in rng.sample(fn.params, min(len(fn.params), 3))))
        elif kind == "string":
            strings = [p for p, k in fn.params if k == "char_ptr"]
            if strings:
                spec = "%s %s:string" % (name, rng.choice(strings))
        if spec is None or spec in seen:
            continue
        seen.add(spec)
        specs.append((spec, kind, name))
    return specs


def entry_sweep(functions, count, seed):
    """``count`` "F $params" specs of exported functions (the driver programs call them) whose
    parameters are all passed in integer registers: what runtime truth can judge."""
    names = sorted(n for n, f in functions.items() if f.exported and f.symbol and f.params
                   and len(f.params) <= 6 and all(k in ("scalar", "pointer", "char_ptr", "struct_ptr")
                                                  for _n, k in f.params))
    rng = random.Random(seed)
    return [(name + " $params", "sweep", name) for name in rng.sample(names, min(count, len(names)))]


# -- resolving ---------------------------------------------------------------------------
def perf_definition(binary, spec):
    """(lines, message, seconds) from perf probe --definition."""
    start = time.perf_counter()
    proc = subprocess.run([PERF, "probe", "-x", binary, "--definition", spec], capture_output=True, text=True, timeout=120, check=False,
                          env=dict(os.environ, HOME=os.environ.get("FLEETTRACE_PERF_HOME", "/tmp")))
    elapsed = time.perf_counter() - start
    lines = [l for l in proc.stdout.splitlines() if re.match(r"^[pr]:", l)]
    message = (proc.stdout + proc.stderr).strip()
    return lines, message, elapsed


def our_definition(resolver_module, binary, spec):
    """(lines, message, seconds, variable notes): a fresh Resolver per spec, as the module does on a
    cache miss."""
    start = time.perf_counter()
    try:
        result = resolver_module.resolve(binary, spec)
        lines, message, notes = result["definitions"], "", result["variables"]
    except Exception as exc:  # noqa: BLE001 - every failure is a result to classify
        lines, message, notes = [], "%s: %s" % (type(exc).__name__, exc), []
    return lines, message, time.perf_counter() - start, notes


_ARG = re.compile(r"^(?P<name>[^=\s]+)=(?P<fetch>\S+?)(?::(?P<type>[a-z]+\d*|string|ustring|b\d+@\d+/\d+))?$")
_GLOBAL_SYM = re.compile(r"@[A-Za-z_]\w*\+\d+")
_GLOBAL_OFF = re.compile(r"@\+0x[0-9a-f]+")


def _split(line):
    words = line.split()
    head, place, args = words[0], words[1], words[2:]
    return head, place.rsplit(":", 1)[1], args


def _message_class(message):
    """A short, stable key for an error message (numbers and names removed)."""
    text = message.split("\n")[0] if message else ""
    for pattern, key in (
            (r"sharing the address", "shared-line"), (r"not found|Failed to find symbol|No such", "not-found"),
            (r"optimized out|Perhaps it has been optimized out", "optimized-out"),
            (r"has no code|no probe-able|no line-table|not probe-able|Probe point .* not found|Failed to find the address",
             "no-code"),
            (r"name a member|is a struct|is a union|is a \w+\[|Unsupported", "aggregate"),
            (r"declared inline but no inlined copy", "inline-no-copy"),
            (r"not visible|Failed to find .* variable|Failed to find the location of", "not-visible"),
            (r"entry_value|entry value", "entry-value"), (r"computed as", "computed"),
            (r"in a register here|not in memory", "register-address"),
            (r"is not in the symbol table", "no-symbol"),
            (r"constant", "constant"), (r"Failed to find scope", "no-scope"),
            (r"Invalid|invalid|Syntax|syntax", "syntax")):
        if re.search(pattern, message or ""):
            return key
    return re.sub(r"0x[0-9a-f]+|\d+|'[^']*'|\S+\.c", "#", text)[:60]


def plt_ranges(binary):
    """File-offset ranges of the PLT sections (perf puts %return probes on these stubs too)."""
    from elftools.elf.elffile import ELFFile
    with open(binary, "rb") as handle:
        return [(s["sh_offset"], s["sh_offset"] + s["sh_size"]) for s in ELFFile(handle).iter_sections()
                if s.name in (".plt", ".plt.sec", ".plt.got")]


def classify(ours, perf, plt=()):
    """Name the difference between two results (lists of lines, error messages).

    Classes where perf is wrong get names starting with "perf-" (see PERF_WRONG in
    tests/integration/test_resolver_libs.py and docs/uprobe.md)."""
    (our_lines, our_msg), (perf_lines, perf_msg) = ours, perf
    if our_lines == perf_lines and our_lines:
        return "same"
    if not our_lines and not perf_lines:
        return "both-refuse"
    if any("\\deade12d" in l for l in perf_lines) and not our_lines:
        return "perf-placeholder-value"     # perf fetches the constant 0xdeade12d where the variable is optimized out
    if not our_lines:
        return "ours-refuses:" + _message_class(our_msg)
    if not perf_lines:
        return "perf-refuses:" + _message_class(perf_msg)
    if [_GLOBAL_SYM.sub("@G", l) for l in perf_lines] == [_GLOBAL_OFF.sub("@G", l) for l in our_lines]:
        return "perf-global-symbol"       # the kernel refuses @sym+0 in uprobes
    o, p = [_split(l) for l in our_lines], [_split(l) for l in perf_lines]
    our_addrs, perf_addrs = [x[1] for x in o], [x[1] for x in p]
    if sorted(set(our_addrs)) != sorted(set(perf_addrs)):
        extra, missing = set(our_addrs) - set(perf_addrs), set(perf_addrs) - set(our_addrs)
        if not extra and all(any(low <= int(a, 16) < high for low, high in plt) for a in missing):
            kept = [l for l, x in zip(perf_lines, p) if x[1] not in missing]
            if kept == our_lines:
                return "perf-plt-stub"
        if not missing:
            return "addresses:ours-extra"
        if not extra:
            return "addresses:ours-missing"
        if len(o) == len(p):
            return "addresses:shifted"
        return "addresses:different"
    if len(our_addrs) != len(perf_addrs):
        return "addresses:duplicates"
    kinds = set()
    if any(len({a.split("=", 1)[0] for a in args}) != len(args) for _h, _a, args in p):
        return "perf-duplicate-names"       # the kernel refuses an event with two arguments of one name
    if [x[1:] for x in o] == [x[1:] for x in p]:
        return "perf-event-names"           # perf --definition repeats a name the kernel would refuse to reuse
    if any("\\deade12d" in a for _h, _a, args in p for a in args):
        return "perf-placeholder-value"
    for (_h, _a, oargs), (_h2, _a2, pargs) in zip(o, p):
        onames = [a.split("=", 1)[0] for a in oargs]
        pnames = [a.split("=", 1)[0] for a in pargs]
        if onames != pnames:
            kinds.add("args:set" if set(onames) != set(pnames) else "args:order")
            continue
        for oa, pa in zip(oargs, pargs):
            if oa == pa:
                continue
            mo, mp = _ARG.match(oa), _ARG.match(pa)
            if not mo or not mp:
                kinds.add("args:unparsed")
            elif _GLOBAL_SYM.search(pa) and _GLOBAL_OFF.search(oa):
                kinds.add("perf-global-symbol")
            elif mo.group("fetch") == mp.group("fetch"):
                kinds.add("args:type")
            else:
                kinds.add("args:fetch")
    return "+".join(sorted(kinds)) or "same"


_COMPUTED = re.compile(r"computed|not one uprobes can fetch|implicit_pointer|DW_OP_entry_value|pieces")
_AGGREGATE = re.compile(r"name a member|cannot be addressed|untyped")


def _callee_variables(result, function):
    """Whether perf's arguments beyond ours are all variables that ``function`` does not own
    (parameters and locals of calls inlined into it, which perf's $params/$vars also list)."""
    if function is None or not result["spec"].split()[1:] or \
            not all(w in ("$params", "$vars") for w in result["spec"].split()[1:]):
        return False
    own = {name for name, _k in function.params + function.locals}
    for ours, perf in zip(result["ours"], result["perf"]):
        our_names = [a.split("=", 1)[0] for a in _split(ours)[2]]
        perf_names = [a.split("=", 1)[0] for a in _split(perf)[2]]
        extra = [n for n in perf_names if n not in our_names]
        if [n for n in perf_names if n in our_names] != our_names or any(n in own for n in extra):
            return False
    return True


def _reference_values(result, function):
    """Whether every argument where we differ is a C++ reference parameter that perf traces as the
    address it holds (``%dx``) and we as the value it refers to (``+0(%dx)``)."""
    if function is None:
        return False
    references = {name for name, kind in function.params if kind == "reference"}
    for ours, perf in zip(result["ours"], result["perf"]):
        for our_arg, perf_arg in zip(_split(ours)[2], _split(perf)[2]):
            if our_arg == perf_arg:
                continue
            name, our_fetch = our_arg.split("=", 1)
            perf_fetch = perf_arg.split("=", 1)[1]
            if name not in references or our_fetch.rsplit(":", 1)[0] != "+0(%s)" % perf_fetch.rsplit(":", 1)[0]:
                return False
    return True


def refine(resolver_module, binary, result, function=None):
    """Where ours leaves out, refuses or fetches otherwise what perf fetches, ask our own notes
    why: a value DWARF computes (perf keeps the first op, or ignores DW_OP_stack_value, and
    reads memory) or an aggregate perf fetches as a number (8 bytes of a struct, array or
    vector) is perf's error (docs/uprobe.md), not a difference.  ``function`` (the catalog's
    entry) tells the variables of inlined calls that perf adds to $params/$vars."""
    verdict = result["verdict"]
    if verdict == "args:set" and _callee_variables(result, function):
        return "perf-callee-variables"
    if verdict == "args:fetch" and _reference_values(result, function):
        return "perf-reference-address"
    if verdict == "addresses:ours-extra":
        ours = [_split(l)[1] for l in result["ours"]]
        perf = [_split(l)[1] for l in result["perf"]]
        if function is not None and function.overloaded and set(perf) <= set(ours):
            return "perf-first-overload"    # perf probes the first function of a name in each unit only
        if ours[:len(perf)] == perf:
            return "perf-missed-copies"     # perf's instance walk stops at a copy without DW_AT_entry_pc
        dropped = {int(a, 16) for a in re.findall(r"Failed to find symbol at (0x[0-9a-f]+)", result["perf_error"])}
        if [a for a in ours if int(a, 16) not in dropped] == perf:
            return "perf-missed-copies"     # perf drops copies it cannot map to a symbol
        return verdict
    if verdict not in ("args:set", "args:fetch") and not verdict.startswith("ours-refuses"):
        return verdict
    if verdict.startswith("ours-refuses") and _COMPUTED.search(result["our_error"]) \
            and all(_COMPUTED.search(part) or "optimized out" in part for part in result["our_error"].split("; ")[1:]):
        return "perf-computed-value"        # refused with the reason; allow_unavailable traces the other addresses
    try:
        resolver = resolver_module.Resolver(binary)
        try:
            notes = resolver.variables_at(result["spec"])
        finally:
            resolver.close()
    except Exception:  # noqa: BLE001 - the difference stands
        return verdict
    words = result["spec"].split()[1:]
    named = [w for w in words if not w.startswith("$")]
    ours_by_address = {}
    for line in result["ours"]:
        _h, address, args = _split(line)
        ours_by_address[int(address, 16)] = dict(a.split("=", 1) for a in args)
    reasons = []
    for line in result["perf"]:
        _h, address, args = _split(line)
        ours = ours_by_address.get(int(address, 16), {})
        for position, arg in enumerate(args):
            name, fetch = arg.split("=", 1)
            if ours.get(name) == fetch:
                continue
            if not re.search(r":(?:[sux]\d+|string|ustring|b\d+@\d+/\d+)$", arg):
                reasons.append("untyped: perf found no basic type (an aggregate), so it names a member")
                continue
            if _GLOBAL_SYM.search(fetch):
                reasons.append("computed: perf's @symbol form is refused by the kernel")
                continue
            # The variable behind the argument: the spec's word at this position, or the name itself.
            word = named[position] if named and position < len(named) else name
            variable = re.match(r"[A-Za-z_]\w*", word.split("=", 1)[-1]).group(0)
            here = [n for n in notes if n["name"] == variable and int(n["address"], 16) == int(address, 16)]
            if any(n["available"] and n["fetcharg"] == arg for n in here):
                continue
            why = [n["reason"] for n in here]
            if not why and named == [] and function is not None \
                    and variable not in {n for n, _k in function.params + function.locals}:
                why = ["callee: a variable of a call inlined here, not of the function ($params/$vars)"]
            reasons += [w or "(available)" for w in why] or ["(no note)"]
    reasons = [r for r in reasons if not r.startswith("callee:")] or reasons
    if reasons and all(r.startswith("callee:") for r in reasons):
        return "perf-callee-variables"
    if reasons and all(_COMPUTED.search(r) for r in reasons):
        return "perf-computed-value"
    if reasons and all(_AGGREGATE.search(r) or _COMPUTED.search(r) for r in reasons):
        return "perf-aggregate-as-number"
    return verdict


def _delta(ours, perf):
    """Notes carry virtual addresses, definitions file offsets: equal for these libraries' code."""
    return 0


def compare(resolver_module, binary, specs, functions=None):
    """Resolve every spec with both; [dict(spec, kind, function, ours, perf, verdict, times)].
    ``functions``: the catalog (refine() uses it to tell the variables of inlined calls)."""
    results, plt = [], plt_ranges(binary)
    for spec, kind, function in specs:
        perf_lines, perf_msg, perf_t = perf_definition(binary, spec)
        our_lines, our_msg, our_t, notes = our_definition(resolver_module, binary, spec)
        results.append({"spec": spec, "kind": kind, "function": function, "ours": our_lines, "our_error": our_msg,
                        "our_variables": notes,
                        "perf": perf_lines, "perf_error": perf_msg, "our_seconds": our_t, "perf_seconds": perf_t,
                        "verdict": classify((our_lines, our_msg), (perf_lines, perf_msg), plt)})
        results[-1]["verdict"] = refine(resolver_module, binary, results[-1], (functions or {}).get(function))
    return results


# -- scopes -----------------------------------------------------------------------------
def _owner_chain(die):
    """``die``'s parent, then its parent's parent ... (pyelftools parses the unit to know them)."""
    parent = die.get_parent()
    while parent is not None:
        yield parent
        parent = parent.get_parent()


def _die_ranges(dwarf, die):
    attrs = die.attributes
    if "DW_AT_low_pc" in attrs and "DW_AT_high_pc" in attrs:
        low, high = attrs["DW_AT_low_pc"].value, attrs["DW_AT_high_pc"]
        return [(low, high.value if high.form == "DW_FORM_addr" else low + high.value)]
    if "DW_AT_ranges" in attrs:
        top = die.cu.get_top_DIE()
        base = top.attributes["DW_AT_low_pc"].value if "DW_AT_low_pc" in top.attributes else 0
        ranges = []
        for entry in dwarf.range_lists().get_range_list_at_offset(attrs["DW_AT_ranges"].value, cu=die.cu):
            if hasattr(entry, "base_address"):
                base = entry.base_address
            elif entry.is_absolute:
                ranges.append((entry.begin_offset, entry.end_offset))
            else:
                ranges.append((base + entry.begin_offset, base + entry.end_offset))
        return ranges
    return []


def _entry_pc(dwarf, die):
    """DW_AT_entry_pc, else DW_AT_low_pc, else the first range's start (gcc's DWARF 4 copies start
    with an empty range at their entry)."""
    for name in ("DW_AT_entry_pc", "DW_AT_low_pc"):
        if name in die.attributes and die.attributes[name].form == "DW_FORM_addr":
            return die.attributes[name].value
    ranges = _die_ranges(dwarf, die)
    return ranges[0][0] if ranges else None


def _base(name):
    """A name without its template arguments (the catalog files C++ templates so)."""
    return name[:name.index("<")] if name and "<" in name and not name.startswith("operator") else name


def scope_audit(binary, results):
    """Variables we traced from a scope other than the probed function's own, judged by plain pyelftools:
    [(spec, variable, why)].

    For every traced variable of a FUNC / FUNC:N spec, the scope DIE it was looked up in must stand
    for the probed function (or be the innermost function at the address when no copy of it holds
    the address, perf's rule for a line past its end; or the function whose code its symbol aliases)
    and hold the address; the variable's DIE must be a child of that scope or of lexical blocks inside
    it, never of an enclosing function or of a nested inlined call."""
    from elftools.elf.elffile import ELFFile
    wrong = []
    with open(binary, "rb") as handle:
        elf = ELFFile(handle)
        dwarf = elf.get_dwarf_info()
        symbols = {}
        for table in elf.iter_sections("SHT_SYMTAB"):
            for sym in table.iter_symbols():
                if sym["st_info"]["type"] == "STT_FUNC":
                    symbols.setdefault(sym["st_value"], set()).add(sym.name)
        cu_starts = sorted((cu.cu_offset, cu) for cu in dwarf.iter_CUs())
        functions_by_cu = {}

        def die_at(offset):
            cu = [c for start, c in cu_starts if start <= offset][-1]
            return dwarf.get_DIE_from_refaddr(offset, cu)

        def holders(cu, address):
            """Function DIEs of the unit whose code holds ``address`` (outermost first)."""
            if cu.cu_offset not in functions_by_cu:
                functions_by_cu[cu.cu_offset] = [
                    (die, _die_ranges(dwarf, die)) for die in cu.iter_DIEs()
                    if die.tag in ("DW_TAG_subprogram", "DW_TAG_inlined_subroutine")]
            return [die for die, ranges in functions_by_cu[cu.cu_offset]
                    if any(low <= address < high for low, high in ranges)]

        for r in results:
            point = r["spec"].split()[0].split("=")[-1]
            if point.startswith(("%", "$")) or "%return" in point or "." in point.split(":")[0]:
                continue                # FILE:LINE scopes by declaration order, not by name
            function = re.split(r"[@:+]", point)[0]
            for note in r.get("our_variables", []):
                if not note["available"] or note["dwarf"]["scope"] is None:
                    continue            # not traced, or a global
                variable, scope = die_at(int(note["dwarf"]["variable"], 16)), die_at(int(note["dwarf"]["scope"], 16))
                address = int(note["address"], 16)
                label = "%s at %s" % (note["name"], note["address"])
                here = holders(scope.cu, address)
                named = [die.offset for die in here if _base(_name(die)) == function]
                entry = scope.attributes.get("DW_AT_low_pc")
                alias = entry is not None and function in symbols.get(entry.value, ())
                if named and _base(_name(scope)) != function and not alias:
                    wrong.append((r["spec"], label, "scope %s is %s, not a copy of %s holding the address" % (
                        note["dwarf"]["scope"], _name(scope), function)))
                    continue
                ranges = _die_ranges(dwarf, scope)
                if ranges and not any(low <= address < high for low, high in ranges) \
                        and address != _entry_pc(dwarf, scope):
                    wrong.append((r["spec"], label, "scope %s does not hold the address" % note["dwarf"]["scope"]))
                    continue
                for owner in _owner_chain(variable):
                    if owner.offset == scope.offset:
                        break
                    if owner.tag != "DW_TAG_lexical_block":
                        wrong.append((r["spec"], label, "its DIE %s belongs to %s %s, not to the scope %s" % (
                            note["dwarf"]["variable"], owner.tag, _name(owner), note["dwarf"]["scope"])))
                        break
                else:
                    wrong.append((r["spec"], label, "its DIE %s is not inside the scope %s" % (
                        note["dwarf"]["variable"], note["dwarf"]["scope"])))
    return wrong


def summary(results):
    """Counts per verdict class, and parity where perf resolved (perf-wrong classes excluded)."""
    counts = collections.Counter(r["verdict"] for r in results)
    perf_resolved = [r for r in results if r["perf"] and not r.get("perf_wrong")
                     and not r["verdict"].startswith("perf-")]
    same = sum(1 for r in perf_resolved if r["verdict"] == "same")
    parity = 100.0 * same / len(perf_resolved) if perf_resolved else 100.0
    return counts, parity, len(perf_resolved)


def main(argv):
    """python -m tests.helpers.libdiff [COUNT] [SEED] (from the repository root): sample every library, print the classes."""
    count = int(argv[1]) if len(argv) > 1 else 60
    seed = int(argv[2]) if len(argv) > 2 else 14
    sys.path.insert(0, os.path.join(REPO, ".cache", "collections"))
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import resolver
    _root, libs = build_libraries()
    for label, path in sorted(libs.items()):
        results = compare(resolver, path, sample(catalog(path), count, "%d:%s" % (seed, label)))
        counts, parity, base = summary(results)
        print("%-10s parity %.1f%% of %d  %s" % (label, parity, base, dict(counts)))
        for r in results:
            if r["verdict"] not in ("same", "both-refuse"):
                print("   %-28s %s\n      ours: %s\n      perf: %s" % (
                    r["verdict"], r["spec"], _short(r["ours"], r["our_error"]), _short(r["perf"], r["perf_error"])))


def _short(lines, error):
    if not lines:
        return error.split("\n")[0][:300]
    shown = [re.sub(r"^\S+ \S+:", "", l)[:160] for l in lines[:4]]
    return " | ".join(shown) + (" (+%d)" % (len(lines) - 4) if len(lines) > 4 else "")


if __name__ == "__main__":
    main(sys.argv)
