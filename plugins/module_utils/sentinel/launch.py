# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Start and stop a sentinel's watcher.

A module's code lives in a temporary directory (or zip) that Ansible deletes
when the module returns, so the watcher gets its own copy: every loaded
module of this collection's ``module_utils``, read through its loader (a zip
member or a file alike), written under the spool's root-only ``code/``
directory next to a small entry script.  The watcher is then a new
``python3 -I`` process of the module's own interpreter, in a session of its
own, holding none of the module's descriptors (Ansible waits for EOF on them):
``python3 -I .../sentinel_entry.py fleettrace-sentinel LABEL ROOT``.

Where systemd is PID 1 it runs as a transient unit instead
(``systemd-run --unit fleettrace-sentinel-LABEL -p RuntimeMaxSec=...``): the
deadline then also holds if both the watcher and its reaper were killed.
"""


import os
import shutil
import subprocess
import sys
import time

from ansible_collections.fleettrace.tracefs.plugins.module_utils.sentinel import watcher  # noqa: F401 - copied
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sentinel.spool import CODE, write_atomically

PACKAGE = "ansible_collections.fleettrace.tracefs.plugins.module_utils"
ENTRY = "sentinel_entry.py"
ENTRY_TEXT = '''# fleettrace sentinel watcher (written by the sentinel module; see docs/sentinel.md)
import sys
sys.path.insert(0, %r)
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sentinel import watcher
sys.exit(watcher.main(sys.argv[1:]))
'''
START_TIMEOUT_S = 30.0


def code_files(modules=None):
    """{relative path: source bytes} of every loaded module of this collection's module_utils."""
    modules = sys.modules if modules is None else modules
    files = {}
    for name, module in sorted(modules.items()):
        if not (name == PACKAGE or name.startswith(PACKAGE + ".")) or module is None:
            continue
        path, loader = getattr(module, "__file__", None), getattr(module, "__loader__", None)
        if not path or loader is None or not hasattr(loader, "get_data"):
            continue    # a namespace package: its directory is enough
        relative = name.replace(".", "/") + ("/__init__.py" if hasattr(module, "__path__") else ".py")
        files[relative] = loader.get_data(path)
    return files


def install_code(spool):
    """Write the watcher's code under ``spool/code`` (a fresh directory, swapped in); return its path."""
    final = spool.path(CODE)
    fresh = final + ".new.%d" % os.getpid()
    shutil.rmtree(fresh, ignore_errors=True)
    os.makedirs(fresh, 0o700)
    for relative, data in code_files().items():
        target = os.path.join(fresh, relative)
        if not os.path.isdir(os.path.dirname(target)):
            os.makedirs(os.path.dirname(target), 0o700)
        write_atomically(target, data)
    write_atomically(os.path.join(fresh, ENTRY), (ENTRY_TEXT % final).encode("utf-8"))
    old = final + ".old.%d" % os.getpid()
    if os.path.exists(final):
        os.rename(final, old)
    os.rename(fresh, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def command(code_dir, label, root, python=None):
    return [python or sys.executable, "-I", os.path.join(code_dir, ENTRY), watcher.ARGV_MARK, label, root]


def systemd_unit(systemd_dir="/run/systemd/system"):
    """The path of ``systemd-run`` where systemd is PID 1 (``systemd_dir`` exists), else None."""
    if os.path.isdir(systemd_dir) and shutil.which("systemd-run"):
        return shutil.which("systemd-run")
    return None


def unit_command(runner, label, runtime_max_s, argv):
    """``systemd-run`` starting ``argv`` as the transient unit of the sentinel ``label``."""
    return [runner, "--unit", "fleettrace-sentinel-%s" % label, "--collect", "--quiet", "--no-block",
            "--property", "RuntimeMaxSec=%d" % int(runtime_max_s), "--property", "KillMode=process", "--"] + argv


def start(spool, label, root, runtime_max_s, python=None, runner=None):
    """Start the watcher detached; return (how, Popen or None) -- its pid is in the state it writes.

    ``runner``: ``systemd-run`` to use (default: ``systemd_unit()``, found where systemd is PID 1).
    """
    argv = command(spool.path(CODE), label, root, python)
    errors = open(spool.path("watcher.err"), "ab")
    try:
        runner = runner if runner is not None else systemd_unit()
        if runner:
            subprocess.run(unit_command(runner, label, runtime_max_s, argv), stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=errors, check=True, timeout=60)
            return "systemd unit fleettrace-sentinel-%s" % label, None
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors,
                                close_fds=True, start_new_session=True, cwd="/",
                                env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LANG": "C"})
        return "detached process", proc
    finally:
        errors.close()


def wait_started(spool, proc, timeout=START_TIMEOUT_S):
    """Wait (bounded) until the watcher says it armed, or failed; return its state."""
    waited = time.monotonic() + timeout
    while time.monotonic() < waited:
        state = spool.state()
        if state.get("status") not in (None, "starting"):
            return state
        if proc is not None and proc.poll() is not None:
            state = spool.state()
            if state.get("status") in (None, "starting"):
                why = "the watcher exited with %s before arming: %s" % (proc.returncode, stderr_tail(spool))
                state = dict(state, status="failed", ended={"why": "failed", "message": why})
            return state
        time.sleep(0.05)
    return dict(spool.state(), status="failed", ended={"why": "failed", "message": "the watcher did not arm within "
                                                       "%.0f s: %s" % (timeout, stderr_tail(spool))})


def stderr_tail(spool, limit=2000):
    try:
        with open(spool.path("watcher.err"), "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - limit))
            return handle.read().decode("utf-8", "replace").strip() or "(no output)"
    except OSError:
        return "(no output)"
