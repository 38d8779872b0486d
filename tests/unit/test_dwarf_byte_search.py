"""The byte index (dwarf/byte_search.py) against plain walks: same units, same inlined copies."""

import struct

from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import functions
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import byte_search
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import resolver as dwarf_resolver

from tests.helpers import resolver_programs as programs  # noqa: E402


def _unit(body):
    return struct.pack("<I", len(body)) + body


def test_unit_starts_and_names_by_strp_and_inline_string():
    strings = b"xlist_resize\0other\0"
    # unit 0 refers to "list_resize" through the tail of "xlist_resize" (offset 1); unit 1 names it
    # inline (DW_FORM_string); unit 2 refers to "other" only.
    units = [_unit(b"\x05\x00" + struct.pack("<I", 1)), _unit(b"\x05\x00list_resize\0"),
             _unit(b"\x05\x00" + struct.pack("<I", 13))]
    info = b"".join(units)
    starts = byte_search.unit_starts(info)
    assert starts == [0, len(units[0]), len(units[0]) + len(units[1])]
    assert byte_search.units_naming(info, strings, "list_resize", starts) == starts[:2]
    assert byte_search.units_naming(info, strings, "other", starts) == [starts[2]]
    assert byte_search.units_naming(info, strings, "absent", starts) == []
    assert byte_search.unit_starts(struct.pack("<I", 0xffffffff) + b"\0" * 12) is None     # DWARF 64


def test_holders_are_the_top_level_dies_around_each_reference():
    data = b"\0" * 10 + struct.pack("<I", 0x42) + b"\0" * 10 + struct.pack("<I", 0x42)
    # top-level DIEs at unit offsets 4 and 20 (section offsets 104, 120); hits at 10 and 24
    assert byte_search.holders(data, 100, 0x42, [104, 120]) == [104, 120]
    assert byte_search.holders(data, 100, 0x43, [104, 120]) == []


def test_index_finds_what_a_walk_finds(cc, tmp_path):
    """Every inline-only function of demo -O2: same units and same copies as a full pyelftools walk."""
    binary = programs.build(cc, str(tmp_path), "demo_O2")
    resolver = dwarf_resolver.Resolver(binary)
    try:
        ctx = resolver.context
        checked = 0
        for cu in ctx.dwarf.iter_CUs():
            for die in cu.iter_DIEs():
                if die.tag != "DW_TAG_subprogram" or "DW_AT_inline" not in die.attributes:
                    continue
                name = die.attributes["DW_AT_name"].value.decode()
                assert cu.cu_offset in functions.units_naming(ctx, name)
                walked = []
                for other in cu.iter_DIEs():
                    origin = other.attributes.get("DW_AT_abstract_origin")
                    if other.tag == "DW_TAG_inlined_subroutine" and origin is not None \
                            and origin.value + cu.cu_offset == die.offset:
                        pc = ctx.entry_pc(other)
                        if pc is not None and pc not in walked:
                            walked.append(pc)
                assert [pc for pc, _die in functions.inlined_copies(ctx, cu, die)] == walked, name
                checked += 1
        assert checked, "demo -O2 has no inline-only function any more"
    finally:
        resolver.close()
