# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where the resolver keeps what it derives from DWARF, by build-id: its results (dwarf/cache.py),
function indexes (dwarf/function_index.py) and decoded line tables (dwarf/line_table.py).

Its own module, below all three, so that none of them imports another only to learn a path."""


import os


def cache_dir():
    """``FLEETTRACE_RESOLVER_CACHE``, else ``~/.cache/fleettrace/resolver`` (``XDG_CACHE_HOME`` first)."""
    base = os.environ.get("FLEETTRACE_RESOLVER_CACHE")
    if base:
        return base
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fleettrace", "resolver")


def index_dir():
    """``FLEETTRACE_DWARF_INDEX``, else ``index/`` in the resolver's result cache."""
    base = os.environ.get("FLEETTRACE_DWARF_INDEX")
    if base:
        return base
    return os.path.join(cache_dir(), "index")
