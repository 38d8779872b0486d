# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kernel's tracefs, as plain Python objects: one import for all of them.

The objects live in files named like libtracefs's: ``fs`` (the mount,
``Tracefs``), ``instance`` (``Instance``), ``event`` (``Event``, triggers),
and ``error_log`` (``TracefsError``); ``Tracefs`` reads and writes uprobe_events
as ``probe_definition.ProbeDefinition`` records (the one parser and formatter of the line).
Nothing here imports Ansible, so the core runs and tests on its own (Python 3.8+).
"""


from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.error_log import TracefsError  # noqa: F401
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.event import (  # noqa: F401
    Event, normalize_trigger, trigger_key)
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.fs import (  # noqa: F401
    OWNED_PREFIX, TRACEFS_PATHS, Tracefs, find_tracefs)
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.instance import Instance  # noqa: F401

__all__ = ["Event", "Instance", "OWNED_PREFIX", "TRACEFS_PATHS", "Tracefs", "TracefsError", "find_tracefs",
           "normalize_trigger", "trigger_key"]
