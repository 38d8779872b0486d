"""plugin_utils/payload_cache.py: module payloads kept between runs, under a name that changes with the code."""

import os
import time

from ansible import constants as C

from ansible_collections.fleettrace.tracefs.plugins.plugin_utils import payload_cache


def _plugins(tmp_path):
    for sub in ("modules", "module_utils/pkg"):
        (tmp_path / sub).mkdir(parents=True)
    (tmp_path / "modules" / "m.py").write_text("import os\n")
    (tmp_path / "module_utils" / "pkg" / "u.py").write_text("X = 1\n")
    return tmp_path


def test_key_changes_with_any_module_or_module_utils_file(tmp_path, monkeypatch):
    monkeypatch.setattr(payload_cache, "PLUGINS", str(_plugins(tmp_path)))
    first = payload_cache.code_key()
    assert payload_cache.code_key() == first
    util = tmp_path / "module_utils" / "pkg" / "u.py"
    util.write_text("X = 2\n")                          # same size, new mtime
    os.utime(util, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    second = payload_cache.code_key()
    assert second != first
    (tmp_path / "modules" / "n.py").write_text("")      # a new module
    assert payload_cache.code_key() not in (first, second)
    (tmp_path / "modules" / "notes.txt").write_text("not code")
    assert payload_cache.code_key() == payload_cache.code_key()


def test_kept_points_ansible_cache_beside_the_run_and_restores_it(tmp_path, monkeypatch):
    monkeypatch.setattr(payload_cache, "PLUGINS", str(_plugins(tmp_path / "plugins")))
    run_tmp = tmp_path / "local" / "ansible-local-123abc"
    run_tmp.mkdir(parents=True)
    monkeypatch.setattr(C, "DEFAULT_LOCAL_TMP", str(run_tmp), raising=False)
    base = tmp_path / "local" / payload_cache.CACHE_NAME
    old = base / "0123456789abcdef"
    old.mkdir(parents=True)
    os.utime(old, (time.time() - 2 * payload_cache.UNUSED_FOR,) * 2)
    recent = base / "fedcba9876543210"
    recent.mkdir()
    with payload_cache.kept():
        inside = C.DEFAULT_LOCAL_TMP
    assert inside == str(base / payload_cache.code_key())
    assert C.DEFAULT_LOCAL_TMP == str(run_tmp)
    assert os.path.isdir(inside) and recent.is_dir() and not old.exists()


def test_kept_leaves_ansible_alone_when_the_cache_cannot_be_made(tmp_path, monkeypatch):
    monkeypatch.setattr(payload_cache, "PLUGINS", str(_plugins(tmp_path / "plugins")))
    blocker = tmp_path / "file"
    blocker.write_text("")
    run_tmp = str(blocker / "ansible-local-1")          # its parent is a file: nothing can be made there
    monkeypatch.setattr(C, "DEFAULT_LOCAL_TMP", run_tmp, raising=False)
    with payload_cache.kept():
        assert C.DEFAULT_LOCAL_TMP == run_tmp
    assert C.DEFAULT_LOCAL_TMP == run_tmp
