# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The resolver's error family, importable without pyelftools.

The command line and the ``uprobe`` module catch these by type before anything
has loaded pyelftools (a cache hit never does), so they live apart from the
modules that raise them.
"""


from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError


class DwarfError(FleettraceError):
    """Anything the probe resolver cannot do; the message says why and what to try."""


class ResolveError(DwarfError):
    """The spec cannot be resolved; the message says why and what to try."""
