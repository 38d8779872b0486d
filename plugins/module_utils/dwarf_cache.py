# -*- coding: utf-8 -*-
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Resolution results cached by build-id, so a repeat needs no DWARF parsing.

The key holds the build-id (the content of the binary), its path (part of
the definition line), the spec and every option, and the resolver version.
Reading the build-id takes only ``struct``; pyelftools is imported only on a
miss.  ``write=False`` (check mode) reads the cache but never writes it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import tempfile

from ansible_collections.fleettrace.tracefs.plugins.module_utils import dwarf_debuginfo

CACHE_VERSION = 1


def cache_dir():
    base = os.environ.get("FLEETTRACE_RESOLVER_CACHE")
    if base:
        return base
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fleettrace", "resolver")


def _key(binary, build_id, spec, options):
    material = json.dumps([CACHE_VERSION, build_id, os.path.abspath(binary), spec, sorted(options.items())])
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def _path(build_id, key):
    return os.path.join(cache_dir(), build_id, key[:32] + ".json")


def load(binary, build_id, spec, options):
    if not build_id:
        return None
    try:
        with open(_path(build_id, _key(binary, build_id, spec, options)), "r") as handle:
            return json.load(handle)
    except (IOError, OSError, ValueError):
        return None


def store(binary, build_id, spec, options, result):
    if not build_id:
        return
    path = _path(build_id, _key(binary, build_id, spec, options))
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(handle, "w") as out:
            json.dump(result, out)
        os.rename(temp, path)   # atomic: concurrent runs never see half a file
    except (IOError, OSError):
        pass                    # a cache that cannot be written only costs time


def cached_resolve(binary, spec, group=None, event=None, debuginfo=None, build_id=None, force=False,
                   allow_unavailable=False, use_cache=True, write=True):
    """``dwarf_resolver.resolve`` with the build-id keyed cache in front."""
    binary = os.path.abspath(binary)
    options = {"group": group, "event": event, "debuginfo": debuginfo, "force": force,
               "allow_unavailable": allow_unavailable}
    actual = None
    if use_cache and os.path.isfile(binary):
        actual = dwarf_debuginfo.read_build_id(binary)
        if build_id and actual and actual != build_id.lower():
            raise dwarf_debuginfo.DebugInfoError(
                "build-id of %s is %s, not the expected %s: this is a different build; resolve the probe "
                "again for this binary" % (binary, actual, build_id))
        if debuginfo is None or os.path.isfile(debuginfo):
            found = load(binary, actual, spec, options)
            if found is not None:
                found["cached"] = True
                return found
    from ansible_collections.fleettrace.tracefs.plugins.module_utils import dwarf_resolver
    result = dwarf_resolver.resolve(binary, spec, group=group, event=event, debuginfo=debuginfo,
                                    build_id=build_id, force=force, allow_unavailable=allow_unavailable)
    result["cached"] = False
    if use_cache and write:
        store(binary, result["build_id"], spec, options, result)
    return result
