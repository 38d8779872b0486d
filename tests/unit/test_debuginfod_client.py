"""debuginfod client: server list, cache place, build-id checks (no network; servers in tests/integration)."""

import os
import subprocess

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import debuginfod
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import debuginfo as dwarf_debuginfo


def test_servers_from_option_or_environment_in_order():
    env = {"DEBUGINFOD_URLS": "https://a.example/  http://b.example:8002 https://a.example"}
    assert debuginfod.server_urls(None, env) == ["https://a.example", "http://b.example:8002"]
    assert debuginfod.server_urls(["http://c.example/"], env) == ["http://c.example"]
    assert debuginfod.server_urls([], {}) == []
    with pytest.raises(debuginfod.DebuginfodError, match="not an http:// or https:// URL"):
        debuginfod.server_urls(["file:///etc"], {})


def test_cache_follows_the_elfutils_client():
    assert debuginfod.cache_dir({"DEBUGINFOD_CACHE_PATH": "/x"}) == "/x"
    assert debuginfod.cache_dir({"XDG_CACHE_HOME": "/c"}) == "/c/debuginfod_client"
    assert debuginfod.default_timeout({"DEBUGINFOD_TIMEOUT": "7"}) == 7
    assert debuginfod.default_timeout({"DEBUGINFOD_TIMEOUT": "no"}) == debuginfod.DEFAULT_TIMEOUT


def test_build_id_must_be_hex_so_it_cannot_leave_the_cache(tmp_path):
    for bad in ("../../etc", "", "zz", None):
        with pytest.raises(debuginfod.DebuginfodError, match="not hex"):
            debuginfod.fetch(bad, ["http://127.0.0.1:9"], cache=str(tmp_path))


def test_no_server_and_no_local_debug_info_says_how_to_fix(tmp_path, cc):
    source = tmp_path / "p.c"
    source.write_text("int main(void) { return 0; }\n")
    binary = str(tmp_path / "p")
    subprocess.run([cc, "-o", binary, str(source)], check=True)
    with pytest.raises(dwarf_debuginfo.DebugInfoError, match="DEBUGINFOD_URLS or the debuginfod_urls option"):
        debuginfod.locate(binary)
    # A cached, verified download is used without asking anyone; a wrong one is not.
    full = str(tmp_path / "full")
    subprocess.run([cc, "-g", "-o", full, str(source)], check=True)
    build_id = dwarf_debuginfo.read_build_id(full)
    os.makedirs(str(tmp_path / "cache" / build_id))
    wrong = str(tmp_path / "cache" / build_id / "debuginfo")
    subprocess.run(["cp", binary, wrong], check=True)
    assert debuginfod.cached(build_id, str(tmp_path / "cache")) is None
    subprocess.run(["objcopy", "--only-keep-debug", full, wrong], check=True)
    assert debuginfod.fetch(build_id, [], cache=str(tmp_path / "cache")) == (wrong, "cache")
