"""LTO (-flto, as Debian builds many packages): zlib built with Debian's optimize=+lto flags.

gcc's LTO debug info names each function in the early debug info of its source file (one unit per
file, no code) and describes the code in the units the link-time compilation made (`<artificial>`),
whose DIEs refer back through DW_FORM_ref_addr.  A function's copies are therefore in another unit
than the DIE that names it: they are found (perf finds none for an inline-only function).  The
differential suite (test_resolver_libs.py, zlib-O2lto) compares the rest with perf and judges the
entries at runtime.
"""

import os
import subprocess

import pytest

from tests.helpers import libdiff  # noqa: E402
from tests.helpers import libtruth  # noqa: E402

from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import functions  # noqa: E402
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import probe_spec  # noqa: E402
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import resolver as dwarf_resolver  # noqa: E402
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import points  # noqa: E402
from ansible_collections.fleettrace.tracefs.plugins.module_utils.probe_definition import ProbeDefinition  # noqa: E402
from tests.helpers.owned import OwnedRun  # noqa: E402


@pytest.fixture(scope="module")
def lto():
    if os.geteuid() != 0 and not os.path.exists("/var/cache/fleettrace/libs-1/.complete-lto"):
        pytest.skip("building the libraries needs root the first time (apt-get source)")
    root, libraries = libdiff.build_libraries()
    return root, libraries["zlib-O2lto"]


def test_the_dies_naming_functions_have_no_code_their_copies_are_elsewhere(lto):
    """The shape this test file is about, so that a compiler that stops making it is noticed."""
    _root, binary = lto
    resolver = dwarf_resolver.Resolver(binary)
    try:
        found = functions.find_function(resolver.context, "bi_flush")
        assert found and all(not resolver.context.die_ranges(die) for _cu, die in found)
        for cu, die in found:
            copies = functions.instances(resolver.context, cu, die)
            assert copies and all(copy.cu.cu_offset != cu.cu_offset for _pc, copy in copies)
    finally:
        resolver.close()


def test_inline_only_copies_in_other_units_are_probed_and_run(lto, tracefs, unique_name, cc, tmp_path):
    root, binary = lto
    group = unique_name("lto")
    resolution = dwarf_resolver.resolve(binary, "bi_flush s->bi_valid", group=group)
    assert len(resolution["definitions"]) >= 2, resolution["definitions"]     # perf: "not found"
    resolver = dwarf_resolver.Resolver(binary)
    try:
        spec = probe_spec.parse("bi_flush")
        for _address, cu, _event, scope in points.addresses(resolver.context, spec.point, spec, False):
            assert scope.tag == "DW_TAG_inlined_subroutine" and scope.cu.cu_offset == cu.cu_offset
            assert scope.get_DIE_from_attribute("DW_AT_abstract_origin").cu.cu_offset != cu.cu_offset
    finally:
        resolver.close()
    driver = libtruth.build_driver(cc, root, "zlib-O2lto", str(tmp_path))
    instance = tracefs.instance(group + "_inst")     # named after the group: one run owns both
    events = []
    run = OwnedRun(tracefs, instances=[instance.name], groups=[group])
    try:
        instance.create()
        for line in resolution["definitions"]:
            tracefs.add_uprobe(line)
            event = ProbeDefinition.parse(line).event
            if event not in events:
                events.append(event)
        for event in events:
            instance.event(group, event).set_enabled(True)
        subprocess.run([driver], stdout=subprocess.DEVNULL, check=True, timeout=60)
        text = instance.read("trace")
    finally:
        try:
            for event in events:
                tracefs.remove_uprobe(group, event)
            instance.remove()
        finally:
            run.end()
    hits = [line for line in text.splitlines() if " bi_flush" in line and "bi_valid=" in line]
    assert hits, "no copy of bi_flush fired while the driver deflated"
    # bi_valid counts the bits pending in bi_buf: 0..16 whenever bi_flush runs.
    assert all(0 <= int(line.rsplit("bi_valid=", 1)[1].split()[0], 0) <= 16 for line in hits), hits[:5]


@pytest.mark.parametrize("spec", ["deflatePending:6", "deflatePending strm pending", "gzputc:41 c"])
def test_lines_and_entries_same_as_perf(lto, spec):
    """perf finds these through the code units' DIEs; so do we, with the declaration's file taken from
    the early unit that holds DW_AT_decl_file."""
    _root, binary = lto
    perf, message, _seconds = libdiff.perf_definition(binary, spec)
    assert perf, message
    assert dwarf_resolver.resolve(binary, spec)["definitions"] == perf
