# -*- coding: utf-8 -*-
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kernel's tracefs, as plain Python objects: one import for all of them.

The objects live in files named like libtracefs's: ``fs`` (the mount,
``Tracefs``), ``instance`` (``Instance``), ``event`` (``Event``, triggers),
``dynevent`` (uprobe_events lines) and ``error_log`` (``TracefsError``).
Nothing here imports Ansible, so the core runs and tests on its own (Python 3.8+).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.dynevent import UprobeDefinition  # noqa: F401
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.error_log import TracefsError  # noqa: F401
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.event import (  # noqa: F401
    Event, normalize_trigger, trigger_key)
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.fs import (  # noqa: F401
    OWNED_PREFIX, TRACEFS_PATHS, Tracefs, find_tracefs)
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.instance import Instance  # noqa: F401

__all__ = ["Event", "Instance", "OWNED_PREFIX", "TRACEFS_PATHS", "Tracefs", "TracefsError", "UprobeDefinition",
           "find_tracefs", "normalize_trigger", "trigger_key"]
