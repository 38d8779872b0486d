# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The search for the debug info of a binary.

ELF facts come from ``elf.reader``, which uses only ``struct`` so that a cached resolution can
be answered without importing pyelftools.  The search follows what
distributions and gdb do: the binary itself, ``/usr/lib/debug/<path>.debug``,
``/usr/lib/debug/.build-id/xx/rest.debug``, ``.gnu_debuglink``; an explicit
path wins over all of them.
"""


import os

from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.errors import DwarfError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.elf.reader import ElfError, ElfHeaders  # noqa: F401

DEBUG_ROOT = "/usr/lib/debug"


class DebugInfoError(ElfError, DwarfError):
    """No usable ELF or debug info; the message says where we looked."""


def elf_headers(path):
    """``ElfHeaders`` of ``path``; raises DebugInfoError (what callers of the debug-info search catch)."""
    try:
        return ElfHeaders(path)
    except DebugInfoError:
        raise
    except ElfError as exc:
        raise DebugInfoError(str(exc))


def read_build_id(path):
    return elf_headers(path).build_id


def candidate_paths(binary, headers):
    """Where a distribution puts the debug info of ``binary``, in search order."""
    real = os.path.realpath(binary)
    found = [real]
    if real.endswith(" (deleted)"):
        # /proc/PID/map_files/...: the mapped file of a process, replaced on disk since; its debug
        # info is looked up by its old name (and its build-id), the code read through the link.
        real = real[:-len(" (deleted)")]
        found = [binary]
    directory, name = os.path.split(real)
    for path in (real, os.path.abspath(binary)):
        found.append(DEBUG_ROOT + path + ".debug")
        found.append(DEBUG_ROOT + path)
    found.append(os.path.join(directory, ".debug", name))
    build_id = headers.build_id
    if build_id and len(build_id) > 2:
        found.append(os.path.join(DEBUG_ROOT, ".build-id", build_id[:2], build_id[2:] + ".debug"))
    link = headers.debuglink
    if link:
        found += [os.path.join(directory, link), os.path.join(directory, ".debug", link),
                  DEBUG_ROOT + os.path.join(directory, link)]
    unique = []
    for path in found:
        if path not in unique:
            unique.append(path)
    return unique


class DebugInfo:
    """Where the DWARF of a binary lives.

    ``binary``: ELF headers of the probed file; ``debug``: ELF headers of the
    file holding .debug_info (may be the binary); ``cfi``: headers of the file
    whose .eh_frame/.debug_frame is used (the binary when the debug file's
    .eh_frame is NOBITS, as objcopy --only-keep-debug leaves it).
    """

    def __init__(self, binary, debug, looked_at):
        self.binary = binary
        self.debug = debug
        self.looked_at = looked_at

    @property
    def build_id(self):
        return self.binary.build_id


def package_hint(binary):
    """Which package usually provides the debug info, for error messages."""
    real = os.path.realpath(binary)
    if real.startswith("/usr/") or real.startswith("/lib"):
        return ("install the matching debug symbols, e.g. on Debian 'apt-get install <package>-dbgsym' "
                "from the debian-debug archive (find <package> with 'dpkg -S %s'), or set 'debuginfo' to "
                "a file with DWARF for build-id" % real)
    return "rebuild it with -g, or set 'debuginfo' to a file with its DWARF (objcopy --only-keep-debug)"


def binary_headers(binary, expected_build_id=None):
    """The ELF headers of the file to probe, its build-id checked against ``expected_build_id`` (once)."""
    if not os.path.exists(binary):
        raise DebugInfoError("binary %s does not exist: give the absolute path of the program or library "
                             "to probe" % binary)
    if not os.path.isabs(binary):
        raise DebugInfoError("binary %r must be an absolute path (uprobe_events needs one)" % binary)
    headers = elf_headers(binary)
    if expected_build_id and headers.build_id != expected_build_id.lower():
        raise DebugInfoError("build-id of %s is %s, not the expected %s: this is a different build; "
                             "resolve the probe again for this binary" % (binary, headers.build_id, expected_build_id))
    return headers


def find_debuginfo(binary, explicit=None, expected_build_id=None, headers=None):
    """Return ``DebugInfo`` for ``binary`` or raise ``DebugInfoError``.

    ``headers``: the binary's, from ``binary_headers`` (then neither read nor checked again)."""
    if headers is None:
        headers = binary_headers(binary, expected_build_id)
    build_id = headers.build_id
    candidates = [explicit] if explicit else candidate_paths(binary, headers)
    looked_at = []
    for path in candidates:
        if not os.path.isfile(path):
            looked_at.append("%s (%s)" % (path, "not a regular file" if os.path.exists(path) else "missing"))
            continue
        try:
            debug = headers if os.path.realpath(path) == os.path.realpath(binary) else elf_headers(path)
        except DebugInfoError as exc:
            looked_at.append("%s (%s)" % (path, exc))
            continue
        if not debug.has_debug_info:
            looked_at.append("%s (no .debug_info)" % path)
            continue
        if debug is not headers and build_id and debug.build_id and debug.build_id != build_id:
            looked_at.append("%s (build-id %s, binary has %s)" % (path, debug.build_id, build_id))
            if explicit:
                raise DebugInfoError("debuginfo %s has build-id %s but %s has %s: they are from different "
                                     "builds" % (path, debug.build_id, binary, build_id))
            continue
        return DebugInfo(headers, debug, looked_at + [path])
    raise DebugInfoError("no debug info for %s (build-id %s); looked at: %s. To fix: %s"
                         % (binary, build_id or "none", "; ".join(looked_at), package_hint(binary)))
