"""Build tests/programs/capture/tick_loop.c, run it, and describe a uprobe on its gap.

The probe resolver (dwarf_*.py) is another part of the collection; capture
tests must not depend on it, so this helper finds the two facts it needs with
pyelftools directly: the address of the line marked ``PROBE_GAP`` and the
frame offset of the local ``gap``.  With -O0 -g and frame pointers the
frame base is the CFA, which is ``%bp + 16`` on x86_64 after the prologue,
so ``gap`` lives at ``(16 + fbreg)(%bp)``.  Tests verify the resulting
values against what the program prints (runtime truth).
"""

import os
import subprocess
import time

from elftools.elf.elffile import ELFFile

SOURCE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "programs", "capture", "tick_loop.c")
MARKER = "/* PROBE_GAP */"


def build(cc, out_dir):
    binary = os.path.join(str(out_dir), "tick_loop")
    subprocess.run([cc, "-O0", "-g", "-fno-omit-frame-pointer", "-o", binary, SOURCE], check=True)
    return binary


def marker_line():
    with open(SOURCE) as handle:
        for number, text in enumerate(handle, 1):
            if MARKER in text:
                return number
    raise AssertionError("no %s marker in %s" % (MARKER, SOURCE))


def _line_address(dwarf, line):
    found = []
    for cu in dwarf.iter_CUs():
        program = dwarf.line_program_for_CU(cu)
        for entry in program.get_entries():
            state = entry.state
            if state is None or state.end_sequence or not state.is_stmt:
                continue
            if state.line == line and os.path.basename(
                    program["file_entry"][state.file - (0 if program.header.version >= 5 else 1)].name.decode()) == "tick_loop.c":
                found.append(state.address)
    if not found:
        raise AssertionError("line %d not in the line table" % line)
    return min(found)


def _gap_fbreg(dwarf):
    for cu in dwarf.iter_CUs():
        for die in cu.iter_DIEs():
            if die.tag == "DW_TAG_variable" and die.attributes.get("DW_AT_name") and \
                    die.attributes["DW_AT_name"].value == b"gap":
                expr = die.attributes["DW_AT_location"].value
                # DW_OP_fbreg (0x91) followed by a SLEB128 offset.
                assert expr[0] == 0x91, "gap is not frame-based: %r" % expr
                value, shift, index = 0, 0, 1
                while True:
                    byte = expr[index]
                    value |= (byte & 0x7F) << shift
                    shift += 7
                    index += 1
                    if not byte & 0x80:
                        break
                if byte & 0x40:
                    value -= 1 << shift
                return value
    raise AssertionError("no variable gap in the debug info")


def _file_offset(elf, vaddr):
    for segment in elf.iter_segments():
        if segment["p_type"] == "PT_LOAD" and segment["p_vaddr"] <= vaddr < segment["p_vaddr"] + segment["p_memsz"]:
            return vaddr - segment["p_vaddr"] + segment["p_offset"]
    raise AssertionError("address 0x%x is in no loadable segment" % vaddr)


def gap_probe(binary, group, event="tick_gap"):
    """The uprobe_events line for ``gap`` (s64) at the PROBE_GAP line."""
    with open(binary, "rb") as handle:
        elf = ELFFile(handle)
        dwarf = elf.get_dwarf_info()
        address = _line_address(dwarf, marker_line())
        bp_offset = 16 + _gap_fbreg(dwarf)
        offset = _file_offset(elf, address)
    return "p:%s/%s %s:0x%x gap=%+d(%%bp):s64" % (group, event, binary, offset, bp_offset)


class TickLoop:
    """tick_loop running with its stdout in a file: the gaps it really measured (the truth).

    ``rtprio``: SCHED_RR priority (like corosync: a busy machine cannot make a tick
    late, only the stall the test makes); ``cpu``: pin it to that CPU.
    """

    def __init__(self, binary, heartbeat, out_path, interval_ms=20, ticks=0, rtprio=None, cpu=None):
        self.binary_path = binary
        self.out_path = str(out_path)
        self.out = open(self.out_path, "w")

        def setup():
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})
            if rtprio:
                os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(rtprio))
        self.proc = subprocess.Popen([binary, heartbeat, str(interval_ms), str(ticks)], stdout=self.out,
                                     preexec_fn=setup)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 10
        while "ready" not in self._text():
            assert self.proc.poll() is None and time.monotonic() < deadline, "tick_loop did not start"
            time.sleep(0.01)
        self.fd = int(self._text().split()[2])

    def _text(self):
        with open(self.out_path) as handle:
            return handle.read()

    def gaps(self):
        return [int(line.split()[1]) for line in self._text().splitlines() if line.startswith("gap ")]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.out.close()
