"""Build-id keyed resolver cache and debug-info search (no tracefs needed)."""

import os
import shutil
import subprocess
import sys

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import cache as dwarf_cache

from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import debuginfo as dwarf_debuginfo

from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import resolver as dwarf_resolver

from tests.helpers import resolver_programs as programs  # noqa: E402


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEETTRACE_RESOLVER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def cached_files(cache):
    """Result files, and the function index (the stored line tables left out)."""
    return [f for directory, _s, files in os.walk(str(cache)) for f in files
            if os.path.basename(directory) != "lines"]


def test_hit_after_miss(cc, build_dir, cache):
    binary = programs.build(cc, build_dir, "demo_O0")
    first = dwarf_cache.cached_resolve(binary, "scale")
    assert first["cached"] is False and len(cached_files(cache)) == 1
    again = dwarf_cache.cached_resolve(binary, "scale")
    assert again["cached"] is True
    assert again["definitions"] == dwarf_resolver.resolve(binary, "scale")["definitions"]
    # Options are part of the key: another group is another entry.
    other = dwarf_cache.cached_resolve(binary, "scale", group="fleettrace_other")
    assert other["cached"] is False and other["group"] == "fleettrace_other"
    # use_cache=False (the module's cache: false) neither reads nor writes it.
    assert dwarf_cache.cached_resolve(binary, "scale v", use_cache=False)["cached"] is False
    assert len(cached_files(cache)) == 2


def test_corrupt_entry_is_ignored_and_build_id_is_checked(cc, build_dir, cache):
    binary = programs.build(cc, build_dir, "demo_O2")
    dwarf_cache.cached_resolve(binary, "compute")
    for directory, _sub, files in os.walk(str(cache)):
        for name in files:
            with open(os.path.join(directory, name), "wb") as handle:
                handle.write(b"garbage")
    assert dwarf_cache.cached_resolve(binary, "compute")["cached"] is False
    with pytest.raises(dwarf_debuginfo.DebugInfoError) as info:
        dwarf_cache.cached_resolve(binary, "compute", build_id="00" * 20)
    assert "different build" in str(info.value)


def test_debuglink_explicit_and_missing_debug_info(cc, build_dir):
    stripped, debug = programs.build_split_debug(cc, build_dir)
    found = dwarf_debuginfo.find_debuginfo(stripped)
    assert found.debug.path == debug and found.build_id == dwarf_debuginfo.read_build_id(debug)
    # A debug file of another build is refused when given explicitly ...
    other = programs.build(cc, build_dir, "demo_O2")
    with pytest.raises(dwarf_debuginfo.DebugInfoError) as info:
        dwarf_debuginfo.find_debuginfo(stripped, explicit=other)
    assert "different builds" in str(info.value)
    # ... and without any debug info the message lists where it looked.
    bare = os.path.join(build_dir, "bare")
    shutil.copy(other, bare)
    subprocess.run(["strip", "--strip-debug", bare], check=True)
    with pytest.raises(dwarf_debuginfo.DebugInfoError) as info:
        dwarf_debuginfo.find_debuginfo(bare)
    message = str(info.value)
    assert "/usr/lib/debug/.build-id/" in message and "no .debug_info" in message and "rebuild it with -g" in message


def test_not_elf_and_relative_paths(tmp_path):
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(dwarf_debuginfo.DebugInfoError) as info:
        dwarf_debuginfo.find_debuginfo(str(script))
    assert "not an ELF file" in str(info.value)
    with pytest.raises(dwarf_debuginfo.DebugInfoError):
        dwarf_debuginfo.find_debuginfo("/nonexistent/binary")


def test_build_id_directory(cc, build_dir):
    """/usr/lib/debug/.build-id/xx/rest.debug, as debuginfod and -dbgsym packages install it."""
    if os.geteuid() != 0:
        pytest.skip("writing under /usr/lib/debug needs root")
    stripped, debug = programs.build_split_debug(cc, build_dir, "demo_O0_dw4")
    lonely = os.path.join(build_dir, "lonely")
    # Without the debuglink only the build-id can find the debug file.
    subprocess.run(["objcopy", "--remove-section=.gnu_debuglink", stripped, lonely], check=True)
    build_id = dwarf_debuginfo.read_build_id(lonely)
    target = os.path.join("/usr/lib/debug/.build-id", build_id[:2], build_id[2:] + ".debug")
    created = []
    directory = os.path.dirname(target)
    while not os.path.isdir(directory):
        created.append(directory)
        directory = os.path.dirname(directory)
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy(debug, target)
        found = dwarf_debuginfo.find_debuginfo(lonely)
        assert found.debug.path == target
        result = dwarf_resolver.resolve(lonely, "scale v")
        assert result["debuginfo"] == target and result["build_id"] == build_id
        assert "v=-20(%bp):s32" in result["definitions"][0]       # CFI from the binary, DWARF from the file
    finally:
        if os.path.exists(target):
            os.unlink(target)
        for path in created:
            os.rmdir(path)


def test_the_function_index_is_written_by_the_first_resolution_that_needs_it(cc, build_dir, cache):
    """A cache, not a change to what is traced: check mode writes it too (issue 24: a fresh host in
    check mode paid the index build on every run)."""
    binary = programs.build(cc, build_dir, "demo_O2")
    dwarf_cache.cached_resolve(binary, "compute")       # in the symbol table: no index needed
    assert "functions.idx" not in cached_files(cache)
    # clamp_add is inline-only: resolving it needs the function index (dwarf/function_index.py).
    first = dwarf_cache.cached_resolve(binary, "clamp_add", use_cache=False)
    assert first["cached"] is False and "functions.idx" in cached_files(cache)
    second = dwarf_cache.cached_resolve(binary, "clamp_add $params")
    assert [line.split()[1] for line in second["definitions"]] == [line.split()[1] for line in first["definitions"]]


def test_code_stamp_same_on_disk_and_in_ansiballz_zip(tmp_path):
    """The module runs from a zip holding only what it imports: same stamp as the files on disk,
    so results resolved by the command line serve the module; a changed source changes it."""
    import zipfile
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(dwarf_cache.__file__))))
    top = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(root))))  # holds ansible_collections/

    def make_zip(path, change=None):
        with zipfile.ZipFile(path, "w") as out:
            for sub in ("dwarf", "elf"):
                directory = os.path.join(root, "module_utils", sub)
                for name in sorted(os.listdir(directory)):
                    if name.endswith(".py") and name != "cli.py":
                        data = open(os.path.join(directory, name), "rb").read()
                        if change == name:
                            data += b"\n# changed\n"
                        out.writestr(os.path.relpath(os.path.join(directory, name), top), data)
            for name in os.listdir(os.path.join(root, "module_utils")):  # what every part may import
                if name.endswith(".py") and name != "__init__.py":
                    path = os.path.join(root, "module_utils", name)
                    out.writestr(os.path.relpath(path, top), open(path, "rb").read())
            for package in ("", "fleettrace", "fleettrace/tracefs", "fleettrace/tracefs/plugins",
                            "fleettrace/tracefs/plugins/module_utils"):
                out.writestr(os.path.join("ansible_collections", package, "__init__.py"), b"")

    def stamp_from(path):
        code = ("import sys; sys.path.insert(0, %r); from ansible_collections.fleettrace.tracefs.plugins."
                "module_utils.dwarf import cache; assert '.zip' in cache.__file__; print(cache._code_stamp())" % path)
        return subprocess.run([sys.executable, "-S", "-c", code], stdout=subprocess.PIPE, check=True,
                              text=True).stdout.strip()

    make_zip(str(tmp_path / "same.zip"))
    make_zip(str(tmp_path / "changed.zip"), change="scopes.py")
    assert stamp_from(str(tmp_path / "same.zip")) == dwarf_cache._code_stamp()
    assert stamp_from(str(tmp_path / "changed.zip")) != dwarf_cache._code_stamp()
