"""C++ specs, judged at runtime: namespaces, classes and methods (`this->member`, a base class's member),
a reference parameter, overloads and template instantiations.

tests/programs/resolver/cxx_demo.cc prints, at the start of each function, the values it holds; the
probes placed from our specs must trace the same values, hit for hit.  perf 6.1 cannot parse
`ns::Class::method` at all ("There is non-digit char in line number"), reads `this->member` as "not a
data structure", traces a reference's address instead of its value and probes only the first overload
of a name in each compile unit (docs/uprobe.md, "C++").
"""

import os
import subprocess

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import resolver as dwarf_resolver
from ansible_collections.fleettrace.tracefs.plugins.module_utils.probe_definition import ProbeDefinition
from tests.helpers.owned import OwnedRun
from tests.helpers.uprobe_truth import program_records, programs, trace_records

ROUNDS = 3


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("resolver_cxx"))


def traced(tracefs, unique_name, binary, spec, **resolve_args):
    """Resolve ``spec``, install it in a private instance, run the program; (resolution, stdout, records)."""
    group = unique_name("cxx")
    resolution = dwarf_resolver.resolve(binary, spec, group=group, **resolve_args)
    instance = tracefs.instance(group + "_inst")     # named after the group: one run owns both
    added = []
    run = OwnedRun(tracefs, instances=[instance.name], groups=[group])
    try:
        instance.create()
        for line in resolution["definitions"]:
            tracefs.add_uprobe(line)
            event = ProbeDefinition.parse(line).event
            if event not in added:
                added.append(event)
        for event in added:
            instance.event(group, event).set_enabled(True)
        proc = subprocess.run([binary, str(ROUNDS), "bob"], capture_output=True, text=True, check=True, timeout=60)
        text = instance.read("trace")
    finally:
        try:
            for event in added:
                tracefs.remove_uprobe(group, event)
            instance.remove()
        finally:
            run.end()
    return resolution, proc.stdout, trace_records(text)


def printed(stdout, *kinds):
    """The program's records of these kinds, in the order it printed them."""
    return [record for line in stdout.splitlines() if line.split(" ", 1)[0] in kinds
            for record in program_records(line, line.split(" ", 1)[0])]


def assert_same(hits, truth, fields):
    assert len(hits) == len(truth) and hits, (hits, truth)
    for hit, record in zip(hits, truth):
        for traced_name, printed_name in fields.items():
            assert hit[traced_name] == record[printed_name], (traced_name, hit, record)


@pytest.mark.parametrize("opt", ["-O0", "-O2"])
def test_method_members_through_this_a_base_class_and_a_reference(tracefs, unique_name, cxx, build_dir, opt):
    binary = programs.build_cxx(cxx, build_dir, opt)
    spec = "shop::Cart::add qty price this->items this->total this->entries this->owner:string"
    resolution, stdout, hits = traced(tracefs, unique_name, binary, spec)
    assert resolution["events"] == ["shop_Cart_add"]
    notes = {n["name"]: n for n in resolution["variables"]}
    assert notes["price"]["type"] == "const long int", notes["price"]     # the value, not the reference
    assert_same(hits, printed(stdout, "enter_add"), {"qty": "qty", "price": "price", "items": "items",
                                                     "total": "total", "entries": "entries", "owner": "owner"})


@pytest.mark.parametrize("opt", ["-O0", "-O2"])
def test_overloads_all_by_name_one_by_linkage_name(tracefs, unique_name, cxx, build_dir, opt):
    binary = programs.build_cxx(cxx, build_dir, opt)
    resolution, stdout, hits = traced(tracefs, unique_name, binary, "shop::price cents")
    assert len(resolution["definitions"]) == 2, resolution["definitions"]      # perf: the first one only
    assert_same(hits, printed(stdout, "price1", "price2"), {"cents": "cents"})
    resolution, stdout, hits = traced(tracefs, unique_name, binary, "_ZN4shop5priceEii cents count")
    assert resolution["events"] == ["shop_price"] and len(resolution["definitions"]) == 1
    assert_same(hits, printed(stdout, "price2"), {"cents": "cents", "count": "count"})


@pytest.mark.parametrize("opt", ["-O0", "-O2"])
def test_templates_one_instantiation_or_all(tracefs, unique_name, cxx, build_dir, opt):
    binary = programs.build_cxx(cxx, build_dir, opt)
    _resolution, stdout, hits = traced(tracefs, unique_name, binary, "shop::scale<long> value factor")
    truth = [r for r in printed(stdout, "scale") if r["value"] >= 1000]
    assert_same(hits, truth, {"value": "value", "factor": "factor"})
    resolution, stdout, hits = traced(tracefs, unique_name, binary, "shop::scale value factor")
    assert len(resolution["definitions"]) == 2
    assert_same(hits, printed(stdout, "scale"), {"value": "value", "factor": "factor"})


def test_a_qualified_name_that_is_not_there_says_so(cxx, build_dir):
    binary = programs.build_cxx(cxx, build_dir, "-O2")
    with pytest.raises(dwarf_resolver.ResolveError) as info:
        dwarf_resolver.resolve(binary, "other::Cart::add")
    assert "function other::Cart::add not found" in str(info.value)
    with pytest.raises(dwarf_resolver.ResolveError) as info:
        dwarf_resolver.resolve(binary, "shop::Cart::add this->mutex")
    assert "has no member 'mutex'" in str(info.value) and "entries" in str(info.value)   # the base class's too
    with pytest.raises(dwarf_resolver.ResolveError) as info:
        dwarf_resolver.resolve(binary, "shop::Cart::add price->x")
    assert "'->x' needs a pointer" in str(info.value)


def test_cxx_demo_runs(cxx, build_dir):
    """The truth the tests above compare with: the program prints what it holds."""
    binary = programs.build_cxx(cxx, build_dir, "-O2")
    out = subprocess.run([binary, "2"], capture_output=True, text=True, check=True).stdout
    assert [r["qty"] for r in printed(out, "enter_add")] == [1, 2]
    assert os.path.basename(binary) == "cxx_demo-O2"
