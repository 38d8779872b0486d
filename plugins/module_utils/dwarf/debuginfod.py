# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Debug info by build-id from debuginfod servers, with the standard library only.

The protocol is elfutils' (``GET <server>/buildid/<hex>/debuginfo``), the
servers come from ``DEBUGINFOD_URLS`` (space separated, as for gdb and perf)
or an explicit list, and the downloads land in the client's cache layout
(``$DEBUGINFOD_CACHE_PATH`` or ``~/.cache/debuginfod_client/<build-id>/debuginfo``),
so a file fetched by gdb is reused here and the other way round.  A download
is kept only when its own build-id is the one asked for and it holds
``.debug_info``; it is written to a temporary name and renamed (atomic).

``locate`` is the whole search: the local places of ``debuginfo.find_debuginfo``
first (the binary, /usr/lib/debug by build-id and debuglink, an explicit file),
then the servers.
"""


import os
import re
import socket
import time

from ansible_collections.fleettrace.tracefs.plugins.module_utils import bounded
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import debuginfo as dwarf_debuginfo

URLS_ENV = "DEBUGINFOD_URLS"
CACHE_ENV = "DEBUGINFOD_CACHE_PATH"
TIMEOUT_ENV = "DEBUGINFOD_TIMEOUT"
# elfutils' client waits 90 s for a first byte; a probe run should fail sooner.
DEFAULT_TIMEOUT = 30
# A debug file larger than this is refused (the largest distribution .debug files are a few hundred MB).
MAX_BYTES = 4 << 30
CHUNK = 1 << 20
BUILD_ID = re.compile(r"^[0-9a-f]{2,128}$")
USER_AGENT = "fleettrace-debuginfod/1 (python urllib)"
# Beside the client's files: which server a cached download came from, for the results.
ORIGIN_FILE = ".fleettrace-origin"


class DebuginfodError(dwarf_debuginfo.DebugInfoError):
    """No server gave usable debug info; the message names each server and why."""


def server_urls(option=None, environ=None):
    """Servers to ask, in order: ``option`` (list or string) when given, else ``$DEBUGINFOD_URLS``."""
    environ = os.environ if environ is None else environ
    if option is None or option == []:
        option = environ.get(URLS_ENV, "")
    if isinstance(option, (list, tuple)):
        option = " ".join(str(item) for item in option)
    urls = []
    for url in re.split(r"[\s,]+", option.strip()):
        if not url:
            continue
        if not re.match(r"^https?://[^/\s]+", url):
            raise DebuginfodError("debuginfod server %r is not an http:// or https:// URL (as in DEBUGINFOD_URLS, "
                                  "e.g. https://debuginfod.debian.net)" % url)
        url = url.rstrip("/")
        if url not in urls:
            urls.append(url)
    return urls


def default_timeout(environ=None):
    environ = os.environ if environ is None else environ
    try:
        value = float(environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT
    return value if value > 0 else DEFAULT_TIMEOUT


def cache_dir(environ=None):
    environ = os.environ if environ is None else environ
    if environ.get(CACHE_ENV):
        return environ[CACHE_ENV]
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "debuginfod_client")


def _check_build_id(build_id):
    text = (build_id or "").lower()
    if not BUILD_ID.match(text):
        raise DebuginfodError("build-id %r is not hex: debuginfod needs the binary's GNU build-id" % (build_id,))
    return text


def _usable(path, build_id):
    """None when ``path`` is debug info of ``build_id``, else why not."""
    try:
        headers = dwarf_debuginfo.elf_headers(path)
    except dwarf_debuginfo.DebugInfoError:
        with bounded.open_regular(path, "downloaded file") as handle:
            start = handle.read(24)
        return "it is not an ELF file (it starts with %r: a web page or proxy error?)" % start
    if headers.build_id != build_id:
        return "it has build-id %s, not %s (the server serves another build)" % (headers.build_id, build_id)
    if not headers.has_debug_info:
        return "it has no .debug_info"
    return None


def cached(build_id, cache=None):
    """Path of a verified cached download of ``build_id``, or None."""
    path = os.path.join(cache or cache_dir(), _check_build_id(build_id), "debuginfo")
    if os.path.isfile(path) and _usable(path, build_id.lower()) is None:
        return path
    return None


def _origin(path):
    """The server a cached file came from (our note beside it), else ``cache`` (e.g. fetched by gdb)."""
    try:
        with bounded.open_regular(os.path.join(os.path.dirname(path), ORIGIN_FILE), "origin note", 4096) as handle:
            return handle.read().decode("utf-8", "replace").strip() or "cache"
    except (OSError, ValueError):
        return "cache"


def _download(url, target, timeout):
    """Fetch ``url`` into ``target``; the whole answer must come within ``timeout`` seconds."""
    # Imported here: urllib.request (http.client, email) costs ~15 ms, and most runs never download.
    from urllib.request import Request, build_opener
    deadline = time.time() + timeout
    response = build_opener().open(Request(url, headers={"User-Agent": USER_AGENT}), timeout=timeout)
    try:
        length = response.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > MAX_BYTES:
            raise DebuginfodError("answer of %s bytes is larger than the %d byte limit" % (length, MAX_BYTES))
        total = 0
        with bounded.open_new(target, "download", binary=True) as out:
            while True:
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if total > MAX_BYTES:
                    raise DebuginfodError("answer is larger than the %d byte limit" % MAX_BYTES)
                if time.time() > deadline:
                    raise socket.timeout()
                out.write(chunk)
    finally:
        response.close()


def fetch(build_id, urls, timeout=None, cache=None):
    """``(path, server)`` of the debug info of ``build_id``: from the cache or the first server that has it.

    For a cached file, ``server`` is the one it once came from (``cache`` when unknown).

    Raises ``DebuginfodError`` naming every server and what it answered.  Nothing
    is kept from a server whose answer is not the debug info of ``build_id``.
    """
    build_id = _check_build_id(build_id)
    timeout = timeout or default_timeout()
    cache = cache or cache_dir()
    found = cached(build_id, cache)
    if found:
        return found, _origin(found)
    if not urls:
        raise DebuginfodError("no debuginfod server given: set DEBUGINFOD_URLS or the debuginfod_urls option")
    from urllib.error import HTTPError, URLError
    directory = os.path.join(cache, build_id)
    target = os.path.join(directory, "debuginfo")
    errors = []
    for server in urls:
        url = "%s/buildid/%s/debuginfo" % (server, build_id)
        temp = os.path.join(directory, ".debuginfo.%d.tmp" % os.getpid())
        try:
            if not os.path.isdir(directory):
                os.makedirs(directory)
            _download(url, temp, timeout)
            reason = _usable(temp, build_id)
            if reason is None:
                os.rename(temp, target)   # atomic: a concurrent reader sees the whole file or none
                _note_origin(directory, server)
                return target, server
            errors.append("%s answered, but %s" % (url, reason))
        except HTTPError as exc:
            errors.append("%s: HTTP %s %s" % (url, exc.code, "(the server does not have this build)"
                                              if exc.code == 404 else (exc.reason or "")))
        except socket.timeout:
            errors.append("%s: no complete answer within %s s (server slow or hanging; raise debuginfod_timeout "
                          "or DEBUGINFOD_TIMEOUT)" % (url, timeout))
        except URLError as exc:
            reason = exc.reason
            if isinstance(reason, socket.timeout):
                errors.append("%s: no answer within %s s" % (url, timeout))
            else:
                errors.append("%s: cannot connect (%s)" % (url, getattr(reason, "strerror", None) or reason))
        except DebuginfodError as exc:
            errors.append("%s: %s" % (url, exc))
        except (OSError, bounded.FileRefused) as exc:
            errors.append("%s: cannot write %s: %s" % (url, directory, getattr(exc, "strerror", None) or exc))
        finally:
            if os.path.exists(temp):
                os.unlink(temp)
    raise DebuginfodError("no debuginfod server gave the debug info of build-id %s: %s"
                          % (build_id, "; ".join(errors)))


def _note_origin(directory, server):
    temp = os.path.join(directory, "%s.%d.tmp" % (ORIGIN_FILE, os.getpid()))
    try:
        with bounded.open_new(temp, "origin note") as handle:
            handle.write(server + "\n")
        os.rename(temp, os.path.join(directory, ORIGIN_FILE))
    except (OSError, ValueError):
        pass    # only the results' wording depends on it


def locate(binary, explicit=None, expected_build_id=None, urls=None, timeout=None, cache=None):
    """Where the DWARF of ``binary`` comes from: ``{"info", "path", "source", "server"}``.

    ``info`` is the located ``debuginfo.DebugInfo``, for the resolver to use as it is (searched
    and build-id checked once, here).  ``source`` is ``binary`` (its own .debug_info), ``local``
    (/usr/lib/debug, debuglink), ``file`` (``explicit``) or ``debuginfod``.  ``path`` is the file
    the DWARF was asked from (None: the local search), part of the resolver cache's key.
    """
    headers = None
    try:
        headers = dwarf_debuginfo.binary_headers(binary, expected_build_id)
        info = dwarf_debuginfo.find_debuginfo(binary, explicit=explicit, headers=headers)
    except dwarf_debuginfo.DebugInfoError as exc:
        local_error = exc
    else:
        if explicit:
            return {"info": info, "path": explicit, "source": "file", "server": None}
        same = os.path.realpath(info.debug.path) == os.path.realpath(binary)
        return {"info": info, "path": None, "source": "binary" if same else "local", "server": None,
                "file": info.debug.path}
    if explicit or not urls or not os.path.isfile(binary):
        if not explicit and not urls and os.path.isfile(binary):
            raise dwarf_debuginfo.DebugInfoError("%s; or name a debuginfod server (DEBUGINFOD_URLS or the "
                                                 "debuginfod_urls option)" % local_error)
        raise local_error
    if headers is None:
        raise local_error       # not an ELF file, or a different build: the local error says so
    build_id = headers.build_id
    if not build_id:
        raise dwarf_debuginfo.DebugInfoError("%s; debuginfod cannot help: %s has no GNU build-id (link it with "
                                             "-Wl,--build-id)" % (local_error, binary))
    try:
        path, server = fetch(build_id, urls, timeout=timeout, cache=cache)
    except DebuginfodError as exc:
        raise DebuginfodError("no debug info for %s: not on this host (%s), and %s"
                              % (binary, "; ".join(_short(local_error)), exc))
    info = dwarf_debuginfo.find_debuginfo(binary, explicit=path, headers=headers)
    return {"info": info, "path": path, "source": "debuginfod", "server": server, "file": path}


def _short(error):
    """The 'looked at' part of a local DebugInfoError, without its long how-to-fix advice."""
    text = str(error)
    match = re.search(r"looked at: (.*?)\. To fix:", text)
    return ["looked at " + match.group(1)] if match else [text]
