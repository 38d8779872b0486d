"""Runtime truth for the library differential suite: which fetch args read what the program held.

For a spec at a function's entry (``FUNC``, ``FUNC $params``, ``FUNC a b``) of a function
with an ELF symbol whose parameters are all passed in integer registers, the truth is the
x86-64 ABI: at the symbol's first instruction parameter i is in %di, %si, %dx, %cx, %r8,
%r9.  A probe there is installed next to our lines and perf's lines (a private group and
instance named with the run token), a driver program calls the library with known
arguments, and every hit of ours/perf's probes is compared with the truth hit of the same
call (same thread, the latest entry before it).  A probe placed before the -O0 prologue
stored the argument, or a variable taken from the wrong scope, reads something else.
"""

import os
import re
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
ABI_REGISTERS = ("%di", "%si", "%dx", "%cx", "%r8", "%r9")
INTEGER_KINDS = ("scalar", "pointer", "char_ptr", "struct_ptr")
HEADERS = {"zlib": "zlib", "lz4": "lz4/lib", "xz": "xz/src/liblzma/api"}
_HIT = re.compile(r"^\s*\S+-(?P<pid>\d+)\s+\[\d+\].*?\s(?P<event>[\w]+): \(0x[0-9a-f]+\)(?P<args>.*)$")
_KV = re.compile(r"(\w+)=(\S+)")


def build_driver(cc, root, label, directory):
    """Compile drive_<lib>.c against one built variant; return the executable path."""
    lib, _variant = label.split("-", 1)
    out = os.path.join(directory, "drive_" + label)
    if not os.path.exists(out):
        so = {"zlib": "libz.so", "lz4": "liblz4.so", "xz": "liblzma.so"}[lib]
        variant_dir = os.path.join(root, label)
        subprocess.run([cc, "-O1", "-w", "-o", out, os.path.join(HERE, "drive_%s.c" % lib),
                        "-I", os.path.join(root, "src", HEADERS[lib]), "-L", variant_dir, "-l:" + so,
                        "-Wl,-rpath," + variant_dir], check=True)
    return out


def applicable(result, function):
    """Can the ABI judge this spec?  (entry spec, symbol, integer-class params only)."""
    spec = result["spec"]
    if function is None or function.symbol is None or ":" in spec.split()[0] or "%" in spec.split()[0]:
        return False
    if not function.params or len(function.params) > len(ABI_REGISTERS):
        return False
    return all(kind in INTEGER_KINDS for _n, kind in function.params)


def _offset(binary, vaddr):
    from elftools.elf.elffile import ELFFile
    with open(binary, "rb") as handle:
        for segment in ELFFile(handle).iter_segments():
            if segment["p_type"] == "PT_LOAD" and segment["p_vaddr"] <= vaddr < segment["p_vaddr"] + segment["p_filesz"]:
                return vaddr - segment["p_vaddr"] + segment["p_offset"]
    raise ValueError("0x%x is in no PT_LOAD segment of %s" % (vaddr, binary))


def _mask(value, kind):
    bits = int(re.sub(r"\D", "", kind) or 64) if kind and kind[0] in "sux" else 64
    return value & ((1 << bits) - 1)


def _number(text):
    try:
        return int(text, 0)
    except ValueError:
        return None


def judge(fs, token, binary, driver, result, function, index):
    """Install truth + ours + perf at once, run the driver; return a verdict dict.

    verdict: ours/perf each 'right', 'wrong' (some hit read another value than the ABI
    truth), 'not-hit' or 'none' (no definition).  Only lines inside the function's symbol
    range are installed: the truth probe sees calls of the out-of-line copy only.
    """
    group = "ft_%s_rt%d" % (token, index)
    instance = fs.instance("ft_%s_rt%d" % (token, index))
    low, size = function.symbol
    params = [name for name, _k in function.params]
    truth = "p:%s/truth %s:0x%x %s" % (group, binary, _offset(binary, low),
                                        " ".join("%s=%s:u64" % (n, r) for n, r in zip(params, ABI_REGISTERS)))
    lines, kinds = [truth], {}
    for who in ("ours", "perf"):
        for i, line in enumerate(result[who]):
            words = line.split()
            address = int(words[1].rsplit(":", 1)[1], 16)
            vaddr = low + address - _offset(binary, low)
            if not low <= vaddr < low + max(size, 1) or any(w.startswith("$") or "@" in w for w in words[2:]):
                continue
            args = [w for w in words[2:] if "=" in w and w.split("=", 1)[0] in params]
            if not args:
                continue
            for w in args:
                kinds[(who, w.split("=", 1)[0])] = w.rsplit(":", 1)[-1]
            lines.append("%s:%s/%s%d %s" % (words[0][0], group, who, i, " ".join([words[1]] + args)))
    added, refused = [], set()
    verdict = {"ours": "none", "perf": "none", "hits": 0, "detail": [], "wrong_args": {"ours": [], "perf": []}}
    try:
        for line in lines:
            event = line.split()[0].split(":", 1)[1].split("/", 1)[1]
            try:
                fs.add_uprobe(line)
            except Exception as exc:  # noqa: BLE001 - the kernel's refusal is the verdict
                if event == "truth":
                    raise
                refused.add("ours" if event.startswith("ours") else "perf")
                verdict["detail"].append("kernel refused %s: %s" % (event, str(exc).split(";")[0]))
                continue
            added.append(event)
        instance.create()
        # uprobe consumers run newest first: enabling the truth probe last makes it fire
        # first when ours or perf's probe sits on the same address.
        for event in reversed(added):
            instance.event(group, event).set_enabled(True)
        subprocess.run([driver], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=False)
        for event in added:
            instance.event(group, event).set_enabled(False)
        text = instance.read("trace")
    finally:
        for event in added:
            try:
                fs.remove_uprobe(group, event)
            except Exception:  # noqa: BLE001 - remove the rest even if one fails
                pass
        instance.remove()
    last_truth, seen = {}, {"ours": [0, 0], "perf": [0, 0]}
    for row in text.splitlines():
        match = _HIT.match(row)
        if not match:
            continue
        values = dict(_KV.findall(match.group("args")))
        event, pid = match.group("event"), match.group("pid")
        if event == "truth":
            last_truth[pid] = values
            continue
        who = "ours" if event.startswith("ours") else "perf"
        expected = last_truth.get(pid)
        if expected is None:
            continue
        verdict["hits"] += 1
        for name, text_value in values.items():
            got, want = _number(text_value), _number(expected.get(name, ""))
            if got is None or want is None:
                continue
            kind = kinds.get((who, name), "u64")
            if _mask(got, kind) == _mask(want, kind):
                seen[who][0] += 1
            else:
                seen[who][1] += 1
                if name not in verdict["wrong_args"][who]:
                    verdict["wrong_args"][who].append(name)
                if len(verdict["detail"]) < 6:
                    verdict["detail"].append("%s %s=%s, truth %s" % (who, name, text_value, expected.get(name)))
    for who in ("ours", "perf"):
        defined = any(l.split()[0].split("/", 1)[1].startswith(who) for l in lines[1:])
        if not defined:
            continue
        if who in refused:
            verdict[who] = "kernel-refused"
            continue
        right, wrong = seen[who]
        verdict[who] = "wrong" if wrong else ("right" if right else "not-hit")
    return verdict
