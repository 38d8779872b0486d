# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Resolution results cached by build-id, so a repeat needs no DWARF parsing.

The key holds the build-id (the content of the binary), its path (part of
the definition line), the spec and every option, and the resolver version.
A hit needs only ``struct``, ``zlib`` and ``marshal`` (all built in): no
pyelftools, no json/re/hashlib imports, so a repeat costs little more than
starting Python.  The file stores the full key and is used only when it
matches, so a checksum collision cannot return a wrong result.
Check mode reads and writes it like any run (a cache, not a change to what is traced).
"""


import marshal
import os
import sys
import zlib

from ansible_collections.fleettrace.tracefs.plugins.module_utils import bounded
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.cache_dirs import cache_dir
from ansible_collections.fleettrace.tracefs.plugins.module_utils.elf import reader as elf_reader
from ansible_collections.fleettrace.tracefs.plugins.module_utils.probe_definition import ProbeDefinition

CACHE_VERSION = 3
# A cache entry is one resolution (a few lines and their variables); anything bigger is not ours.
CACHE_ENTRY_MAX = 16 << 20


_STAMP = []        # computed once per process
# Not part of the resolver, and not in the module's AnsiballZ zip (it holds only what uprobe.py
# imports): left out so that the command line and the module compute the same stamp.  A file
# missing on one side only costs sharing results, never a stale one.
_NOT_RESOLVER = ("cli.py", "__init__.py")
# The record the resolver builds its lines with, on the ground floor beside dwarf/.
RECORD_SOURCES = ("probe_definition.py",)


def _sources(directory, only=None):
    """{name: bytes} of the .py files of a package directory (or just the files ``only`` names),
    on disk or inside a zip (AnsiballZ)."""
    try:
        names = [name for name in os.listdir(directory) if name.endswith(".py") and name not in _NOT_RESOLVER]
        read = None
    except OSError:
        # Inside the AnsiballZ payload zip: list and read it through its zipimport loader.
        import pkgutil
        loader = __loader__  # noqa: F821 - every imported module has one
        names = [module + ".py" for _finder, module, is_package in pkgutil.iter_modules([directory])
                 if not is_package and module + ".py" not in _NOT_RESOLVER]
        read = loader.get_data
    if only is not None:
        names = [name for name in names if name in only]
    found = {}
    for name in names:
        path = os.path.join(directory, name)
        try:
            if read is None:
                with open(path, "rb") as handle:
                    found[name] = handle.read()
            else:
                found[name] = read(path)
        except OSError:
            found[name] = b""
    return found


def _code_stamp():
    """Checksum of the resolver's sources (dwarf/ and the ELF reader in elf/): a changed resolver
    never reads old results, and the command line and the module (run from its AnsiballZ zip,
    where files have no useful mtimes) share results for the same code."""
    if not _STAMP:
        here = os.path.dirname(os.path.abspath(__file__))
        crc = 0
        count = 0
        for directory, only in ((here, None), (os.path.join(os.path.dirname(here), "elf"), None),
                                (os.path.dirname(here), RECORD_SOURCES)):
            sources = _sources(directory, only)
            for name in sorted(sources):
                crc = zlib.crc32(name.encode("utf-8") + b"\0" + sources[name], crc)
                count += 1
        _STAMP.append("%d:%08x" % (count, crc & 0xffffffff))
    return _STAMP[0]


def _key(binary, build_id, spec, options):
    # marshal's format depends on the Python version: part of the key.
    return repr((CACHE_VERSION, _code_stamp(), sys.version_info[:2], build_id, os.path.abspath(binary), spec,
                 sorted(options.items())))


def _path(build_id, key):
    return os.path.join(cache_dir(), build_id, "%08x.bin" % (zlib.crc32(key.encode("utf-8")) & 0xffffffff))


def load(binary, build_id, spec, options):
    if not build_id:
        return None
    key = _key(binary, build_id, spec, options)
    try:
        with bounded.open_regular(_path(build_id, key), "resolver cache entry", CACHE_ENTRY_MAX) as handle:
            stored_key, result = marshal.load(handle)
    except (OSError, ValueError, EOFError, TypeError, bounded.FileRefused):
        return None
    if stored_key != key:
        return None
    result["records"] = [ProbeDefinition.parse(line) for line in result["definitions"]]
    return result


def store(binary, build_id, spec, options, result):
    """Keep ``result`` as plain data: its lines, not its ``records``."""
    if not build_id:
        return
    result = dict(result)
    result.pop("records", None)
    key = _key(binary, build_id, spec, options)
    path = _path(build_id, key)
    temp = "%s.%d.tmp" % (path, os.getpid())
    try:
        if not os.path.isdir(os.path.dirname(path)):
            os.makedirs(os.path.dirname(path))
        with bounded.open_new(temp, "cache file", binary=True) as out:
            marshal.dump((key, result), out)
        os.rename(temp, path)   # atomic: concurrent runs never see half a file
    except (OSError, ValueError):
        try:
            os.unlink(temp)
        except OSError:
            pass                # a cache that cannot be written only costs time


def _debuginfo_error(message):
    # dwarf.debuginfo is imported only here: a cache hit needs just the ELF reader.
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import debuginfo as dwarf_debuginfo
    return dwarf_debuginfo.DebugInfoError(message)


def cached_resolve(binary, spec, group=None, event=None, debuginfo=None, build_id=None, force=False,
                   allow_unavailable=False, use_cache=True, on_miss=None, info=None):
    """``dwarf_resolver.resolve`` with the build-id keyed cache in front.

    Check mode uses it as any run does: the caches are files under the user's cache directory,
    not a change to the system being traced, and a controller that resolves in check mode for
    its nodes (docs/uprobe.md) should pay for a resolution once per build-id, not on every play.

    ``on_miss`` (no arguments) is called before resolving, when the cache has no answer.
    ``info``: the ``debuginfo.DebugInfo`` already located for ``binary`` (``debuginfo`` is then the
    path it was located as, or None for the local search, which keys the cache): neither the
    search nor the build-id check is done again.
    """
    binary = os.path.abspath(binary)
    options = {"group": group, "event": event, "debuginfo": debuginfo, "force": force,
               "allow_unavailable": allow_unavailable}
    if use_cache and os.path.isfile(binary):
        if info is not None:
            actual = info.build_id
        else:
            try:
                actual = elf_reader.read_build_id(binary)
            except elf_reader.ElfError as exc:
                raise _debuginfo_error(str(exc))
        if build_id and actual and actual != build_id.lower():
            raise _debuginfo_error(
                "build-id of %s is %s, not the expected %s: this is a different build; resolve the probe "
                "again for this binary" % (binary, actual, build_id))
        if debuginfo is None or os.path.isfile(debuginfo):
            found = load(binary, actual, spec, options)
            if found is not None:
                found["cached"] = True
                return found
    if on_miss is not None:
        on_miss()
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import resolver as dwarf_resolver
    result = dwarf_resolver.resolve(binary, spec, group=group, event=event, debuginfo=debuginfo,
                                    build_id=build_id, force=force, allow_unavailable=allow_unavailable, info=info)
    result["cached"] = False
    if use_cache:
        store(binary, result["build_id"], spec, options, result)
    return result
