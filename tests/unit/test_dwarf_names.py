"""C and C++ function names: how a spec names a function and how it matches the DWARF's names."""

import shutil

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import names
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import probe_spec
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import resolver as dwarf_resolver

from tests.helpers import resolver_programs as programs  # noqa: E402


@pytest.mark.parametrize("text, parts", [
    ("inflate", ["inflate"]),
    ("leveldb::DBImpl::Get", ["leveldb", "DBImpl", "Get"]),
    ("ns::Cache<a::b, c>::Get", ["ns", "Cache<a::b, c>", "Get"]),
    ("Slice::operator<", ["Slice", "operator<"]),
])
def test_split_keeps_template_arguments_and_operators_whole(text, parts):
    assert names.split(text) == parts


@pytest.mark.parametrize("spec, qualifier, name, matches", [
    ("Get", "leveldb::DBImpl", "Get", True),                 # a plain name: every function of that name
    ("DBImpl::Get", "leveldb::DBImpl", "Get", True),         # the last components, in any namespace
    ("leveldb::DBImpl::Get", "leveldb::DBImpl", "Get", True),
    ("other::DBImpl::Get", "leveldb::DBImpl", "Get", False),
    ("DBImpl::Get", "leveldb::Version", "Get", False),
    ("scale", "shop", "scale<int>", True),                   # a template without arguments: all of them
    ("shop::scale<long>", "shop", "scale<long int>", True),  # gcc spells base types in full
    ("shop::scale<long>", "shop", "scale<int>", False),
    ("Cache::Get", "ns::Cache<int>", "Get", True),
    ("Cache<int>::Get", "ns::Cache<long int>", "Get", False),
    ("inflate", "", "inflate", True),
    ("inflate", "", "inflateEnd", False),
])
def test_qualified_names_match_the_last_components(spec, qualifier, name, matches):
    assert names.FunctionName(spec).matches(qualifier, name) is matches


def test_a_linkage_name_matches_only_that_overload():
    wanted = names.FunctionName("_ZN4shop5priceEii")
    assert wanted.mangled and wanted.matches("shop", "price", "_ZN4shop5priceEii")
    assert not wanted.matches("shop", "price", "_ZN4shop5priceEi")


@pytest.mark.parametrize("function, event", [
    ("inflateInit2_", "inflateInit2_"), ("_tr_stored_block", "_tr_stored_block"),
    ("shop::Cart::add", "shop_Cart_add"), ("shop::scale<long>", "shop_scale"), ("~Cart", "Cart_dtor"),
])
def test_event_names_are_c_identifiers(function, event):
    assert names.event_base(function) == event


@pytest.mark.parametrize("text, function, line", [
    ("leveldb::DBImpl::Get:5", "leveldb::DBImpl::Get", 5),
    ("leveldb\\:\\:DBImpl\\:\\:Get", "leveldb::DBImpl::Get", None),      # perf's escaped form
    ("shop::scale<long>", "shop::scale<long>", None),
])
def test_specs_with_cxx_names(text, function, line):
    point = probe_spec.parse(text).point
    assert (point.function, point.relative_line, point.source) == (function, line, None)


def test_index_files_methods_under_their_name_with_their_class(tmp_path, monkeypatch):
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    monkeypatch.setenv("FLEETTRACE_DWARF_INDEX", str(tmp_path / "index"))
    binary = programs.build_cxx(cxx, str(tmp_path), "-O2")
    resolver = dwarf_resolver.Resolver(binary)
    try:
        index = resolver.context.function_index
        assert {qualifier for _c, _o, _i, qualifier in index.qualified("add")} == {"shop::Cart"}
        assert {qualifier for _c, _o, _i, qualifier in index.qualified("scale")} == {"shop"}
        assert len(index.qualified("price")) == 2       # the two overloads
    finally:
        resolver.close()
