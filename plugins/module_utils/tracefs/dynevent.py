# -*- coding: utf-8 -*-
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Dynamic events: one line of ``uprobe_events`` as an object.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.error_log import TracefsError

_UPROBE_LINE = re.compile(r"^(?P<type>[pr])\d*:(?P<group>[^/\s]+)/(?P<event>\S+)\s+(?P<place>\S+)(?:\s+(?P<args>.*))?$")


class UprobeDefinition:
    """One line of uprobe_events: ``p:GROUP/EVENT /path:0xOFF ARGS``."""

    def __init__(self, kind, group, event, place, args):
        self.kind = kind
        self.group = group
        self.event = event
        self.place = place
        self.args = args

    @classmethod
    def parse(cls, line):
        match = _UPROBE_LINE.match(line.strip())
        if not match:
            raise TracefsError("cannot parse uprobe definition %r" % line)
        args = (match.group("args") or "").split()
        return cls(match.group("type"), match.group("group"), match.group("event"), match.group("place"), args)

    def line(self):
        return " ".join(["%s:%s/%s" % (self.kind, self.group, self.event), self.place] + self.args)

    def __eq__(self, other):
        return isinstance(other, UprobeDefinition) and self.line() == other.line()

    def __repr__(self):
        return "UprobeDefinition(%r)" % self.line()
