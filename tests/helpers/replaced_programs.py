"""Programs whose code is replaced on disk while they run (tests/programs/replaced, the demo daemon).

A package upgrade renames a new file over the old path; the running process
keeps the old inode, now deleted.  ``replace`` does exactly that, with a build
whose offsets differ, so a probe on the path can never fire in the process.
"""

import os
import subprocess
import time

from tests.helpers.paths import REPO

PROGRAMS = os.path.join(REPO, "tests", "programs", "replaced")
DEMO_SOURCE = os.path.join(REPO, "tests", "programs", "demo", "demo_daemon.c")


def build_gap_loop(cc, directory):
    """(gap_main, libgap.so, the upgraded libgap built aside) in ``directory``."""
    directory = str(directory)
    library = os.path.join(directory, "libgap.so")
    upgraded = os.path.join(directory, "libgap.so.upgraded")
    main = os.path.join(directory, "gap_main")
    source = os.path.join(PROGRAMS, "gap_lib.c")
    subprocess.run([cc, "-g", "-O0", "-fPIC", "-shared", "-o", library, source], check=True)
    subprocess.run([cc, "-g", "-O0", "-fPIC", "-shared", "-DUPGRADED", "-o", upgraded, source], check=True)
    subprocess.run([cc, "-g", "-O0", "-o", main, os.path.join(PROGRAMS, "gap_main.c"), "-L", directory, "-lgap",
                    "-Wl,-rpath," + directory], check=True)
    return main, library, upgraded


def build_demo(cc, path, optimize="-O2"):
    subprocess.run([cc, "-g", optimize, "-o", path, DEMO_SOURCE], check=True)
    return path


def replace(path, new_build):
    """Rename ``new_build`` over ``path`` (as dpkg and rpm do): running processes keep the old inode."""
    os.rename(new_build, path)


class GapLoop:
    """gap_main running, its stdout (the gaps it measured: the truth) in a file."""

    def __init__(self, main, out_path, interval_ms=20):
        self.out_path = str(out_path)
        self.out = open(self.out_path, "w")
        self.proc = subprocess.Popen([main, str(interval_ms)], stdout=self.out)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 10
        while "ready" not in self._text():
            assert self.proc.poll() is None and time.monotonic() < deadline, "gap_main did not start"
            time.sleep(0.01)

    def _text(self):
        with open(self.out_path) as handle:
            return handle.read()

    def gaps(self):
        return [int(line.split()[1]) for line in self._text().splitlines() if line.startswith("gap ")]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.out.close()
