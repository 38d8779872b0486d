"""Runtime truth: install resolved probes on the real tracefs, run the program, compare.

The test programs print the values they hold at the probed line; the traced
values must be equal.  This decides the cases where perf is wrong.  Probes
and instances carry the run token and are removed in ``finally``.
"""

import os
import re
import shutil
import subprocess

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import resolver as dwarf_resolver
from ansible_collections.fleettrace.tracefs.plugins.module_utils.probe_definition import ProbeDefinition
from tests.helpers.owned import OwnedRun
from tests.helpers.uprobe_truth import LIB_REPORT, REPORT, assert_matches, program_records, programs, trace_records


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("resolver_runtime"))


def trace_run(tracefs, unique_name, binary, spec, argv, definitions=None, **resolve_args):
    """Resolve, install in a private instance, run ``argv``; return (resolution, stdout, trace records)."""
    group = unique_name("grp")
    resolution = dwarf_resolver.resolve(binary, spec, group=group, **resolve_args)
    lines = definitions(group) if definitions else resolution["definitions"]
    inst = tracefs.instance(group + "_inst")     # named after the group: one run owns both
    added = []
    run = OwnedRun(tracefs, instances=[inst.name], groups=[group])
    try:
        inst.create()
        for line in lines:
            tracefs.add_uprobe(line)
            event = ProbeDefinition.parse(line).event
            if event not in added:
                added.append(event)
        for event in added:
            inst.event(group, event).set_enabled(True)
        proc = subprocess.run(argv, capture_output=True, text=True,
                              check=True, timeout=60)
        text = inst.read("trace")
    finally:
        try:
            for event in added:
                tracefs.remove_uprobe(group, event)
            inst.remove()
        finally:
            run.end()
    return resolution, proc.stdout, trace_records(text)


COMPUTE_FIELDS = {"k": "k", "total": "total", "z": "z2", "y": "y", "tag": "tag", "name": "name",
                  "label_string": "label", "gcount": "gcount"}


def test_O0_frame_base_locals_members_strings_and_globals(tracefs, unique_name, cc, build_dir):
    binary = programs.build(cc, build_dir, "demo_O0")
    spec = "compute:%d total k o->in->z[2] o->in->y o->tag o->name:string label:string gcount" % REPORT
    resolution, stdout, traced = trace_run(tracefs, unique_name, binary, spec, [binary, "3", "lbl0"])
    assert "total=-8(%bp):s64" in resolution["definitions"][0]          # DW_OP_fbreg through the CFA
    assert re.search(r"gcount=@\+0x[0-9a-f]+:s64", resolution["definitions"][0])
    assert len(traced) == 3 * len(resolution["definitions"])           # every address of the line fires
    assert_matches(traced, program_records(stdout, "compute"), "k", COMPUTE_FIELDS)


def test_O2_registers_and_a_pointer_perf_gets_wrong(tracefs, unique_name, cc, build_dir):
    binary = programs.build(cc, build_dir, "demo_O2")
    spec = "compute:%d total k label:string o->in->z[2] o->name:string gcount" % REPORT
    resolution, stdout, traced = trace_run(tracefs, unique_name, binary, spec, [binary, "2", "lbl2"])
    notes = {n["name"]: n for n in resolution["variables"]}
    assert notes["total"]["location"].startswith("register ")
    assert notes["k"]["location"] == "register %si"
    fields = {k: v for k, v in COMPUTE_FIELDS.items() if k not in ("y", "tag")}
    assert_matches(traced, program_records(stdout, "compute"), "k", fields)
    perf = shutil.which("perf")
    if perf is None:
        return
    # perf's line for the same member: it drops the '- 56' of `o` and reads other memory.
    out = subprocess.run([perf, "probe", "-x", binary, "--definition", "compute:%d k o->in->z[2]" % REPORT],
                         stdout=subprocess.PIPE, text=True, check=True).stdout.strip().splitlines()

    def perf_lines(group):
        return [re.sub(r"^p:[^/]+/", "p:%s/" % group, line) for line in out]
    _r, stdout, traced = trace_run(tracefs, unique_name, binary, "compute:%d k" % REPORT, [binary, "2"],
                                   definitions=perf_lines)
    truth = {p["k"]: p for p in program_records(stdout, "compute")}
    assert traced and all(r.get("z") != truth[r["k"]]["z2"] for r in traced), traced


def test_dwarf4_non_pie_global_and_registers(tracefs, unique_name, cc, build_dir):
    binary = programs.build(cc, build_dir, "demo_O2_nopie_dw4")
    spec = "compute:%d total k gcount label:string" % REPORT
    resolution, stdout, traced = trace_run(tracefs, unique_name, binary, spec, [binary, "2", "np"])
    assert re.search(r":0x1[0-9a-f]{3} ", resolution["definitions"][0])  # file offset, not 0x401xxx
    fields = {"k": "k", "total": "total", "gcount": "gcount", "label_string": "label"}
    assert_matches(traced, program_records(stdout, "compute"), "k", fields)


@pytest.mark.parametrize("dwarf", ["-gdwarf-4", "-gdwarf-5"])   # 5: DW_AT_data_bit_offset, which perf cannot read
def test_shared_library_bitfields_and_arrays(tracefs, unique_name, cc, build_dir, dwarf):
    directory = os.path.join(build_dir, "O0" + dwarf)
    os.makedirs(directory, exist_ok=True)
    lib, exe = programs.build_shared(cc, directory, opt="-O0", dwarf=dwarf)
    spec = "lib_step:%d amount before c->hits c->flag c->level c->label:string lib_total" % LIB_REPORT
    resolution, stdout, traced = trace_run(tracefs, unique_name, lib, spec, [exe, "3"])
    # perf would write b3@29/32 (big-endian bit order): the kernel would read other bits.
    assert "flag=+40(-24(%bp)):b3@0/32" in resolution["definitions"][0]
    fields = {"amount": "amount", "before": "before", "hits": "hits", "flag": "flag", "level": "level",
              "label": "label", "lib_total": "total"}
    assert_matches(traced, program_records(stdout, "lib_step"), "amount", fields)


def test_shared_library_O2(tracefs, unique_name, cc, build_dir):
    lib, exe = programs.build_shared(cc, build_dir)
    spec = "lib_step:%d amount before c->hits c->label:string" % (LIB_REPORT - 1)
    _resolution, stdout, traced = trace_run(tracefs, unique_name, lib, spec, [exe, "2"])
    printed = program_records(stdout, "lib_step")
    by_amount = {p["amount"]: p for p in printed}
    for record in traced:
        truth = by_amount[record["amount"]]
        # One line before the report: hits is already incremented, before is set.
        assert (record["before"], record["hits"], record["label"]) == (truth["before"], truth["hits"], truth["label"])
    assert traced


def test_separate_debug_file_takes_cfi_from_the_binary(tracefs, unique_name, cc, build_dir):
    stripped, debug = programs.build_split_debug(cc, build_dir)
    spec = "compute:%d total k o->name:string" % REPORT
    resolution, stdout, traced = trace_run(tracefs, unique_name, stripped, spec, [stripped, "2"])
    assert resolution["debuginfo"] == debug
    assert "total=-8(%bp):s64" in resolution["definitions"][0]
    assert_matches(traced, program_records(stdout, "compute"), "k", {"k": "k", "total": "total", "name": "name"})


def test_inline_only_function_fires_in_every_copy(tracefs, unique_name, cc, build_dir):
    binary = programs.build(cc, build_dir, "demo_O2")
    resolution, stdout, traced = trace_run(tracefs, unique_name, binary, "clamp_add", [binary, "3"])
    assert len(resolution["definitions"]) == 2                         # two inlined copies in main
    assert len(traced) == len(program_records(stdout, "clamp")) == 4    # 3 rounds + the final call


def test_global_defined_in_another_compile_unit(tracefs, unique_name, cc, build_dir):
    binary = programs.build_extern(cc, build_dir)
    resolution, stdout, traced = trace_run(tracefs, unique_name, binary, "report_shared round shared_counter",
                                           [binary])
    # The declaring CU has no location: the address comes from the symbol table.
    assert re.search(r"shared_counter=@\+0x[0-9a-f]+:s64", resolution["definitions"][0])
    assert_matches(traced, program_records(stdout, "shared"), "round", {"round": "round", "shared_counter": "counter"})
