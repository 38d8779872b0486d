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

# The drivers' sources, in tests/programs/libdiff/
SOURCES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "programs", "libdiff")
ABI_REGISTERS = ("%di", "%si", "%dx", "%cx", "%r8", "%r9")
INTEGER_KINDS = ("scalar", "pointer", "char_ptr", "struct_ptr")
# Per library: the driver's source and the header directories (under the cache's src/, or a
# build's own directory for generated headers).
DRIVERS = {"zlib": ("drive_zlib.c", ["src/zlib"]), "lz4": ("drive_lz4.c", ["src/lz4/lib"]),
           "xz": ("drive_xz.c", ["src/xz/src/liblzma/api"]), "zstd": ("drive_zstd.c", ["src/zstd/lib"]),
           "snappy": ("drive_snappy.cc", ["src/snappy", "{build}/build"]),
           "leveldb": ("drive_leveldb.cc", ["src/leveldb/include"])}
SONAMES = {"zlib": "libz.so", "lz4": "liblz4.so", "xz": "liblzma.so", "zstd": "libzstd.so",
           "snappy": "libsnappy.so", "leveldb": "libleveldb.so"}
_HIT = re.compile(r"^\s*\S+-(?P<pid>\d+)\s+\[\d+\].*?\s(?P<event>[\w]+): \(0x[0-9a-f]+\)(?P<args>.*)$")
_KV = re.compile(r"(\w+)=(\S+)")
DRIVER_TIMEOUT = 60
# How long the probes of one judge_many may live (the driver, then reading and removing them).
RUN_SECONDS = 4 * DRIVER_TIMEOUT


def build_driver(cc, root, label, directory):
    """Compile the library's driver against one built variant; return the executable path.
    ``cc`` is the C compiler; C++ drivers use the C++ compiler next to it (g++ for gcc)."""
    lib, _variant = label.split("-", 1)
    out = os.path.join(directory, "drive_" + label)
    if not os.path.exists(out):
        source, includes = DRIVERS[lib]
        compiler = cc
        if source.endswith(".cc"):
            compiler = os.path.join(os.path.dirname(cc), os.path.basename(cc).replace("gcc", "g++").replace("cc", "c++"))
        variant_dir = os.path.join(root, label)
        flags = []
        for include in includes:
            flags += ["-I", os.path.join(root, include.format(build=label))]
        subprocess.run([compiler, "-O1", "-w", "-o", out, os.path.join(SOURCES, source)] + flags +
                       ["-L", variant_dir, "-l:" + SONAMES[lib], "-Wl,-rpath," + variant_dir], check=True)
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
    """One spec: see judge_many."""
    return judge_many(fs, token, binary, driver, [(result, function)], index)[0]


def _lines_for(binary, j, result, function, group):
    """The truth line and ours/perf's lines (inside the symbol's range) for item ``j``."""
    low, size = function.symbol
    params = [name for name, _k in function.params]
    fetch = " ".join("%s=%s:u64" % (n, r) for n, r in zip(params, ABI_REGISTERS))
    lines = ["p:%s/t%d %s:0x%x %s" % (group, j, binary, _offset(binary, low), fetch)]
    kinds = {}
    for who in ("ours", "perf"):
        for i, line in enumerate(result[who]):
            words = line.split()
            vaddr = low + int(words[1].rsplit(":", 1)[1], 16) - _offset(binary, low)
            if not low <= vaddr < low + max(size, 1) or any(w.startswith("$") or "@" in w for w in words[2:]):
                continue
            args = [w for w in words[2:] if "=" in w and w.split("=", 1)[0] in params]
            if args:
                kinds.update(((who, w.split("=", 1)[0]), w.rsplit(":", 1)[-1]) for w in args)
                lines.append("%s:%s/%s%d_%d %s" % (words[0][0], group, who[0], j, i, " ".join([words[1]] + args)))
    return lines, kinds


def judge_many(fs, token, binary, driver, items, index=0):
    """Install truth + ours + perf for every (result, function) at once, run the driver once;
    return one verdict dict per item.

    verdict: ours/perf each 'right', 'wrong' (some hit read another value than the ABI
    truth of the same call), 'not-hit', 'kernel-refused' or 'none' (no definition to
    judge).  Only lines inside the function's symbol range are installed: the truth
    probe sees calls of the out-of-line copy only.
    """
    group = "fleettrace_%s_rt%d" % (token, index)
    instance = fs.instance(group)
    plans = [_lines_for(binary, j, result, function, group) for j, (result, function) in enumerate(items)]
    verdicts = [{"ours": "none", "perf": "none", "hits": 0, "detail": [], "wrong_args": {"ours": [], "perf": []},
                 "refused": set(), "seen": {"ours": [0, 0], "perf": [0, 0]}} for _item in items]
    added = []
    # Recorded before anything is created: a killed test or benchmark leaves no probe behind.
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs import lifecycle
    run = lifecycle.own(fs, group, RUN_SECONDS, instances=[group], groups=[group], what="runtime truth")
    try:
        for j, (lines, _kinds) in enumerate(plans):
            for line in lines:
                event = line.split()[0].split("/", 1)[1]
                try:
                    fs.add_uprobe(line)
                except Exception as exc:  # noqa: BLE001 - the kernel's refusal is the verdict
                    if event.startswith("t"):
                        raise
                    verdicts[j]["refused"].add("ours" if event.startswith("o") else "perf")
                    verdicts[j]["detail"].append("kernel refused %s: %s" % (event, str(exc).split(";", 1)[0]))
                    continue
                added.append(event)
        instance.create()
        # uprobe consumers run newest first: enabling the truth probes last makes them fire
        # first when ours or perf's probe sits on the same address.
        for event in sorted(added, key=lambda e: e.startswith("t")):
            instance.event(group, event).set_enabled(True)
        subprocess.run([driver], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=DRIVER_TIMEOUT,
                       check=False)
        for event in added:
            instance.event(group, event).set_enabled(False)
        text = instance.read("trace")
    finally:
        for event in added:
            try:
                fs.remove_uprobe(group, event)
            except Exception:  # noqa: BLE001 - remove the rest even if one fails
                pass
        try:
            instance.remove()
        finally:
            errors = lifecycle.finish(fs, group, run.nonce)[1]
        if errors:
            raise RuntimeError("could not remove %s: %s" % (group, "; ".join(errors)))
    last_truth, first = {}, set()
    for row in text.splitlines():
        match = _HIT.match(row)
        if not match:
            continue
        values = dict(_KV.findall(match.group("args")))
        event, pid = match.group("event"), match.group("pid")
        j = int(re.match(r"[top](\d+)", event).group(1))
        if event.startswith("t"):
            last_truth[(pid, j)] = values
            first.difference_update([key for key in first if key[:2] == (pid, j)])
            continue
        who = "ours" if event.startswith("o") else "perf"
        expected, verdict, kinds = last_truth.get((pid, j)), verdicts[j], plans[j][1]
        # Only the first hit of a probe after the call's entry: a probe on a loop head fires again
        # after the loop changed the parameter (do { ... } while (--amount)).
        if expected is None or (pid, j, event) in first:
            continue
        first.add((pid, j, event))
        verdict["hits"] += 1
        for name, text_value in values.items():
            got, want = _number(text_value), _number(expected.get(name, ""))
            if got is None or want is None:
                continue
            if _mask(got, kinds.get((who, name), "u64")) == _mask(want, kinds.get((who, name), "u64")):
                verdict["seen"][who][0] += 1
                continue
            verdict["seen"][who][1] += 1
            if name not in verdict["wrong_args"][who]:
                verdict["wrong_args"][who].append(name)
            if len(verdict["detail"]) < 6:
                verdict["detail"].append("%s %s=%s, truth %s" % (who, name, text_value, expected.get(name)))
    for (lines, _kinds), verdict in zip(plans, verdicts):
        for who in ("ours", "perf"):
            if not any(l.split()[0].split("/", 1)[1].startswith(who[0]) for l in lines[1:]):
                continue
            right, wrong = verdict["seen"][who]
            verdict[who] = "kernel-refused" if who in verdict["refused"] else \
                "wrong" if wrong else ("right" if right else "not-hit")
        del verdict["seen"], verdict["refused"]
    return verdicts
