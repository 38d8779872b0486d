# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a capture's parsed records go (``EventSink``), and user stacks symbolized on the way.

The sink keeps the last ``max_events`` records, writes every record to the JSON file and feeds
the stall finder, one record at a time, so memory does not grow with the buffer size.
No Ansible imports.
"""


import json
import re
from collections import deque

from ansible_collections.fleettrace.tracefs.plugins.module_utils import bounded, mapped_code, procfs
from ansible_collections.fleettrace.tracefs.plugins.module_utils.elf import symbols as elf_symbols
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace.text_parser import user_stack_addresses


class EventSink:
    """Where a capture's records go, one at a time, in trace order (``TraceParser(on_event=sink.add)``).

    - keeps the last ``max_events`` records (``None``: all of them) for the result;
    - with ``json_path``, writes every record to that file as it arrives
      (``finish_json(result)`` then adds the other result keys);
    - with ``symbolize``, symbolizes user stacks (before a record is written);
    - feeds ``stall_finder`` (``correlate.StallFinder``) every record.
    ``seen`` counts every record, kept or not.
    """

    def __init__(self, max_events=None, json_path=None, symbolize=False, stall_finder=None,
                 pid_alive=procfs.process_alive):
        self.kept = deque(maxlen=max_events)
        self.seen = 0
        self.symbolize = symbolize
        self.stall_finder = stall_finder
        self.pid_alive = pid_alive
        self.gone = set()
        self._elf_cache = {}
        self._json = None
        if json_path:
            self._json = bounded.open_output(json_path, "json_path")
            self._json.write('{"events": [')

    # Records older than this (ns) are kept but not explained: another CPU's events of that time were
    # overwritten (``per_cpu.complete_since_ns``), so an off-CPU interval there may lack its end.
    complete_since_ns = None

    def add(self, record):
        self.seen += 1
        if self.stall_finder is not None and (self.complete_since_ns is None
                                              or record["ts_ns"] >= self.complete_since_ns):
            self.stall_finder.feed(record)
        if self._json is not None:
            if self.symbolize:
                self._symbolize([record])
            self._json.write("\n" if self.seen == 1 else ",\n")
            self._json.write(json.dumps(record, sort_keys=True))
        self.kept.append(record)

    def _symbolize(self, records):
        symbolize_user_stacks(records, pid_alive=self.pid_alive, elf_cache=self._elf_cache, gone=self.gone)

    def events(self):
        """The kept records (the last ``max_events``), symbolized when asked."""
        records = list(self.kept)
        if self.symbolize and self._json is None:
            self._symbolize(records)
        return records

    def finish_json(self, result):
        """Close the JSON file: the events written so far, then every other key of ``result``."""
        handle, self._json = self._json, None
        if handle is None:
            return
        try:
            handle.write("\n]")
            for key in sorted(result):
                if key != "events":
                    handle.write(",\n%s: %s" % (json.dumps(key), json.dumps(result[key], indent=1, sort_keys=True)))
            handle.write("}\n")
        finally:
            handle.close()

    def close(self):
        """Close the JSON file without finishing it (on errors)."""
        if self._json is not None:
            self._json.close()
            self._json = None


_OBJECT_FRAME = re.compile(r"^(?P<path>/.*)\[\+0x(?P<offset>[0-9a-fA-F]+)\]$")


def _bare(address):
    return {"address": "0x%x" % address, "object": None, "symbol": None}


def symbolize_user_stacks(events, pid_alive=procfs.process_alive, elf_cache=None, gone=None):
    """Turn ``user_stack`` frames into {'address', 'object', 'offset', 'symbol'} dicts.

    Bare addresses need the process's maps, so they are symbolized only while
    it lives; 'path[+0xoff]' frames (option sym-userobj) are symbolized from
    the file alone.  Frames of neither form keep their text.  Returns the pids
    that were gone (their address frames stay bare).  ``elf_cache`` and
    ``gone`` may be shared between calls (records symbolized one at a time).
    """
    elf_cache = {} if elf_cache is None else elf_cache
    gone = set() if gone is None else gone
    for record in events:
        if "user_stack" not in record:
            continue
        pid = record.get("tgid", record["pid"])
        frames = []
        addresses = []  # (index in frames, address) to resolve through the maps
        for text in record["user_stack"]:
            if isinstance(text, dict):
                frames.append(text)
                continue
            address = user_stack_addresses({"user_stack": [text]})
            if address:
                addresses.append((len(frames), address[0]))
                frames.append(_bare(address[0]))
                continue
            match = _OBJECT_FRAME.match(text.strip())
            if match:
                offset = int(match.group("offset"), 16)
                frames.append({"address": None, "object": match.group("path"), "offset": "0x%x" % offset,
                               "symbol": elf_symbols.file_symbol(match.group("path"), offset, elf_cache)})
            else:
                frames.append({"address": None, "object": None, "symbol": None, "text": text.strip()})
        if addresses and pid not in gone and pid_alive(pid):
            try:
                resolved = mapped_code.symbolize(pid, [a for _i, a in addresses], elf_cache)
                for (index, _address), frame in zip(addresses, resolved):
                    frames[index] = frame
            except procfs.ProcessGone:
                gone.add(pid)
        elif addresses:
            gone.add(pid)
        record["user_stack"] = frames
    return sorted(gone)
