"""dwarf/loader.py opens DWARF without importing what a resolution rarely needs, and loses nothing.

Each check runs in a fresh interpreter: this test process has pyelftools imported already.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import resolver_programs as programs

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CC = shutil.which("gcc") or shutil.which("cc")
DEFERRED = ["pprint", "pdb", "elftools.dwarf.lineprogram", "elftools.dwarf.callframe", "elftools.dwarf.aranges",
            "elftools.dwarf.namelut", "elftools.dwarf.typeunit"]

OPEN_THEN_USE = r"""
import json, sys
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import loader
from ansible_collections.fleettrace.tracefs.plugins.module_utils.elf.reader import ElfHeaders
info = loader.open_dwarf(ElfHeaders(sys.argv[1]), lambda path: open(path, "rb"))
deferred = json.loads(sys.argv[2])
loaded_at_open = [name for name in deferred if type(sys.modules.get(name)).__name__ == "module"]
unit = next(info.iter_CUs())
program = info.line_program_for_CU(unit)          # pyelftools loads the real module on this call
rows = [entry.state.line for entry in program.get_entries() if entry.state is not None]
print(json.dumps({"loaded_at_open": loaded_at_open, "rows": len(rows), "max_line": max(rows),
                  "line_program_class": type(program).__module__ + "." + type(program).__name__}))
"""


@pytest.mark.skipif(CC is None, reason="no C compiler")
def test_open_dwarf_defers_line_programs_and_call_frames_until_used(tmp_path):
    binary = programs.build(CC, str(tmp_path), "demo_O2")
    paths = [os.path.join(REPO, ".cache", "collections")] + [p for p in sys.path if p.endswith("site-packages")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    proc = subprocess.run([sys.executable, "-c", OPEN_THEN_USE, binary, json.dumps(DEFERRED)], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found["loaded_at_open"] == []
    # the deferred class is the real one once used, and reads the whole program
    assert found["line_program_class"] == "elftools.dwarf.lineprogram.LineProgram"
    assert found["max_line"] >= programs.marker_line("report")
    assert found["rows"] > 10
