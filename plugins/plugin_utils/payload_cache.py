# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The modules' AnsiballZ payloads, kept on the controller from one run to the next.

For a module's first task in a run, Ansible builds its payload: it parses the
module and every module_utils file it may import (an ``ast`` parse of each, to
find the next ones) and zips them.  It keeps the result for that run only, in
the run's own local temporary directory.  The ``uprobe`` module may import the
whole resolver (about 50 files, 450 KB of source): rebuilding the same bytes
cost ~165 ms CPU per run, more than the module run on the node beyond a no-op
module (issue 24).

``kept()`` points Ansible's payload cache, while one task's module is built, at a
directory beside the run's temporary directory (under ``ANSIBLE_LOCAL_TEMP``) named
by what the payloads are made of: the ansible-core version and install, and the
path, size and modification time of every file of this collection's
``plugins/modules`` and ``plugins/module_utils``.  A changed file gives a new
name, so a payload is never older than the code.  Ansible's own locking and
atomic writes keep concurrent runs apart.  Directories not used for a day are
removed.  If anything here fails, Ansible builds the payload as it always does.
"""


import contextlib
import os
import shutil
import time
import zlib

from ansible import constants as C
from ansible import release

PLUGINS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE_NAME = "fleettrace-ansiballz"
# Directories of other code versions untouched this long are removed.
UNUSED_FOR = 24 * 3600


def code_key():
    """A name for the current code: ansible-core and this collection's module sources, by stat."""
    parts = [release.__version__, os.path.dirname(os.path.abspath(release.__file__))]
    for sub in ("modules", "module_utils"):
        for root, dirs, files in os.walk(os.path.join(PLUGINS, sub)):
            dirs.sort()
            for name in sorted(files):
                if name.endswith(".py"):
                    path = os.path.join(root, name)
                    stat = os.stat(path)
                    parts.append("%s:%d:%d" % (path, stat.st_size, stat.st_mtime_ns))
    text = "\n".join(parts).encode("utf-8", "surrogateescape")
    return "%08x%08x" % (zlib.crc32(text), zlib.adler32(text))


def _prune(base, keep, now):
    for name in os.listdir(base):
        path = os.path.join(base, name)
        if name != keep and now - os.stat(path).st_mtime > UNUSED_FOR:
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def kept():
    """While the block builds a module (``ActionBase._configure_module``), Ansible's payload cache lasts."""
    run_tmp = getattr(C, "DEFAULT_LOCAL_TMP", None)
    place = None
    if run_tmp:
        try:
            base = os.path.join(os.path.dirname(run_tmp), CACHE_NAME)
            key = code_key()
            place = os.path.join(base, key)
            if not os.path.isdir(place):
                os.makedirs(place, mode=0o700, exist_ok=True)
                _prune(base, key, time.time())
            else:
                os.utime(place)     # in use: not pruned
        except OSError:
            place = None
    if place is None:
        yield
        return
    C.DEFAULT_LOCAL_TMP = place
    try:
        yield
    finally:
        C.DEFAULT_LOCAL_TMP = run_tmp
