"""DWARF location expressions -> fetch args, including the ones perf gets wrong or gives up on."""

import collections

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import location as dwarf_location
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.location import LocationError, OptimizedOut

Op = collections.namedtuple("Op", "op_name args")


def op(name, *args):
    return Op(name, list(args))


def cfa_rsp_plus_8(_address):
    return dwarf_location.add(("reg", "sp"), 8)


def fetch(ops, delta=0):
    value = dwarf_location.translate(ops, cfa_rsp_plus_8, 0x1000)
    return dwarf_location.render(dwarf_location.check_fetchable(value, "v"), delta)


@pytest.mark.parametrize("ops, expected", [
    ([op("DW_OP_reg5")], "%di"),
    ([op("DW_OP_reg12")], "%r12"),
    ([op("DW_OP_breg6", -20)], "-20(%bp)"),
    ([op("DW_OP_fbreg", -28)], "-20(%sp)"),                       # CFA = sp + 8
    ([op("DW_OP_addr", 0x4030)], "@+0x3030"),                     # file-offset relative
    ([op("DW_OP_lit4"), op("DW_OP_stack_value")], "\\4"),
    ([op("DW_OP_const2u", 300), op("DW_OP_stack_value")], "\\300"),
    ([op("DW_OP_breg3", 0), op("DW_OP_stack_value")], "%bx"),
    ([op("DW_OP_fbreg", 8), op("DW_OP_deref")], "+0(+16(%sp))"),
])
def test_translations(ops, expected):
    assert fetch(ops, delta=0x1000) == expected


def test_computed_pointer_folds_into_member_access():
    # gcc -O2: o = *(CFA+8) - 56; o->in at offset 8 is *(*(CFA+8) - 48).
    value = dwarf_location.translate([op("DW_OP_fbreg", 8), op("DW_OP_deref"), op("DW_OP_const1u", 56),
                                      op("DW_OP_minus"), op("DW_OP_stack_value")], cfa_rsp_plus_8, 0)
    with pytest.raises(LocationError) as info:
        dwarf_location.check_fetchable(value, "o")
    assert "computed as +16(%sp) - 56" in str(info.value)
    member = dwarf_location.deref(dwarf_location.add(value, 8))
    assert dwarf_location.render(member, 0) == "-48(+16(%sp))"


@pytest.mark.parametrize("ops, words", [
    ([op("DW_OP_entry_value", [0x55]), op("DW_OP_stack_value")], "function entry"),
    ([op("DW_OP_reg0"), op("DW_OP_piece", 8), op("DW_OP_reg1"), op("DW_OP_piece", 8)], "pieces"),
    ([op("DW_OP_reg17")], "xmm0"),
    ([op("DW_OP_breg5", 0), op("DW_OP_breg4", 0), op("DW_OP_plus"), op("DW_OP_stack_value")], "sum of two"),
    ([op("DW_OP_breg5", -1), op("DW_OP_stack_value")], "computed as %di - 1"),
    ([op("DW_OP_GNU_implicit_pointer", 0, 0)], "optimized away"),
])
def test_refusals_say_why(ops, words):
    with pytest.raises(LocationError) as info:
        fetch(ops)
    assert words in str(info.value)


def test_empty_location_is_optimized_out():
    with pytest.raises(OptimizedOut):
        dwarf_location.translate([], cfa_rsp_plus_8, 0)
