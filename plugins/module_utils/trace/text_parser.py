# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parse the text of tracefs ``trace`` / ``trace_pipe`` into event records.

One record per event line, as a plain dict (JSON-ready, cheap to build)::

    {"timestamp": 604.762541, "ts_ns": 604762541000, "cpu": 1, "pid": 11067,
     "comm": "tick_loop", "flags": "d..2.", "event": "sched_switch",
     "fields": {"prev_pid": 11067, "prev_state": "D", ...},
     "kernel_stack": ["percpu_rwsem_wait", ...]}      # when a stacktrace fired

``<stack trace>`` and ``<user stack trace>`` blocks are attached to the event
they belong to: the last event of the same task on the same CPU (the kernel
writes them right after that event into the same per-CPU buffer, though the
merged ``trace`` output may interleave other CPUs between them).  Nothing is
dropped silently: lines that are not understood are kept in ``unparsed``,
and ``CPU:N [LOST M EVENTS]`` markers and the ``entries-in-buffer/
entries-written`` header are reported.
"""


import re
import sys
from collections import deque

# Field names, comms, flags and event names repeat in every record: one shared
# string object each instead of one per record (about a third less memory).
_intern = sys.intern

# "comm-pid (tgid) [cpu] flags timestamp: body"; comm may hold '-' and spaces,
# so the pid is the last "-digits" before the CPU column.  The tgid column
# (option record-tgid) and the flags column (option irq-info) are optional.
_EVENT_LINE = re.compile(
    r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+(?:\(\s*(?P<tgid>[\d-]+)\)\s+)?\[(?P<cpu>\d+)\]\s+"
    r"(?:(?P<flags>\S+)\s+)??(?P<ts>\d+(?:\.\d+)?):\s(?P<body>.*)$")
_HEADER_ENTRIES = re.compile(r"entries-in-buffer/entries-written:\s*(\d+)/(\d+)\s+#P:(\d+)")
_LOST = re.compile(r"^CPU:(\d+) \[LOST (\d+) EVENTS\]")
_BUFFER_STARTED = re.compile(r"^#+ CPU (\d+) buffer started #+")
_NAMED_BODY = re.compile(r"^(?P<name>[A-Za-z_][\w.-]*): ?(?P<rest>.*)$")
_SYSCALL_ENTER = re.compile(r"^sys_(?P<name>\w+)\((?P<args>.*)\)$")
_SYSCALL_EXIT = re.compile(r"^sys_(?P<name>\w+) -> (?P<ret>\S+)$")
_RAW_ENTER = re.compile(r"^NR (?P<nr>-?\d+) \((?P<args>[^)]*)\)")
_RAW_EXIT = re.compile(r"^NR (?P<nr>-?\d+) = (?P<ret>-?\d+)")
_PROBE_IP = re.compile(r"^\((?P<ip>0x[0-9a-fA-F]+)(?: <- (?P<caller>0x[0-9a-fA-F]+))?\)\s*")
_USER_FRAME = re.compile(r"^<?([0-9a-fA-F]+)>?$")

STACK_MARKER = "<stack trace>"
USER_STACK_MARKER = "<user stack trace>"


def typed_value(text, name=""):
    """'123' -> 123, '0x1f' -> 31, '"str"' -> 'str'; comms and states stay text."""
    # str methods instead of regexes: this runs for every field of every event.
    if not text or "comm" in name:
        return text
    try:
        if text.isdigit() or (text[0] == "-" and text[1:].isdigit()):
            return int(text)
        if text.startswith("0x"):
            return int(text, 16)
    except ValueError:  # unicode digits, "0xzz"
        return text
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return text[1:-1]
    return text


def parse_fields(text):
    """'prev_comm=a b prev_pid=1 prev_state=D ==> next_pid=0' -> typed dict.

    A token without '=' continues the previous value (comms may hold spaces);
    sched_switch's '==>' separator is skipped.
    """
    fields = {}
    key = None
    for token in text.split():
        name, sep, value = token.partition("=")
        if sep and name and (name[0].isalpha() or name[0] == "_"):
            key = _intern(name)
            fields[key] = value
        elif key is not None and token != "==>":
            fields[key] += " " + token
    for key, value in fields.items():
        if value.isdigit() and "comm" not in key:
            fields[key] = int(value)
        else:
            fields[key] = typed_value(value, key)
    return fields


def _syscall_args(text):
    """'fd: 0xa, buf: 0x7ff, count: 7' -> {'fd': 10, 'buf': ..., 'count': 7}."""
    fields = {}
    for part in text.split(", "):
        name, sep, value = part.partition(": ")
        if sep:
            fields[name.strip()] = typed_value(value.strip(), name)
    return fields


def timestamp_ns(text):
    """'604.762541' -> 604762541000 exactly (no float rounding)."""
    seconds, _dot, fraction = text.partition(".")
    return int(seconds) * 1000000000 + int((fraction + "000000000")[:9])


def parse_body(body):
    """The part after 'timestamp: ' -> (event, fields, extra) for one event."""
    match = _NAMED_BODY.match(body)
    if match:
        name, rest = match.group("name"), match.group("rest")
        extra = None
        if name == "sys_enter" or name == "sys_exit":
            raw = (_RAW_ENTER if name == "sys_enter" else _RAW_EXIT).match(rest)
            if raw:
                if name == "sys_enter":
                    args = [int(a, 16) for a in raw.group("args").split(", ") if a]
                    return name, {"id": int(raw.group("nr")), "args": args}, None
                return name, {"id": int(raw.group("nr")), "ret": int(raw.group("ret"))}, None
        probe = _PROBE_IP.match(rest)
        if probe:
            extra = {"probe_ip": int(probe.group("ip"), 16)}
            if probe.group("caller"):
                extra["probe_caller"] = int(probe.group("caller"), 16)
            rest = rest[probe.end():]
        return name, parse_fields(rest), extra
    match = _SYSCALL_ENTER.match(body)
    if match:
        return "sys_enter_" + match.group("name"), _syscall_args(match.group("args")), None
    match = _SYSCALL_EXIT.match(body)
    if match:
        return "sys_exit_" + match.group("name"), {"ret": typed_value(match.group("ret"))}, None
    return None, {}, None


class TraceParser:
    """Incremental parser: ``feed(line)`` for each line, then ``result()``.

    Works for the whole ``trace`` file and for ``trace_pipe`` streamed in
    pieces (keeps the state needed to attach stacks across ``feed`` calls).

    ``on_event(record)``: called once per record, in trace order, when the
    record is complete: a later record of the same CPU exists (no stack can
    attach to it any more), or ``lookahead`` records are waiting behind it (a
    CPU that went quiet), or ``close()`` was called.  A stack that would still
    have belonged to a record released by the lookahead becomes a record of
    its own, as any stack whose event is gone.  With ``keep_events=False``
    and ``on_event``, memory stays bounded by ``lookahead`` records.
    """

    def __init__(self, keep_events=True, on_event=None, lookahead=1024):
        self.keep_events = keep_events
        self.on_event = on_event
        self.lookahead = lookahead
        self._pending = deque()        # records not yet handed to on_event, in trace order
        self.events = []
        self.event_count = 0
        self.entries_in_buffer = None
        self.entries_written = None
        self.cpus = None
        self.lost_events = []          # [{"cpu": N, "count": M}]
        self.buffer_started = []       # CPUs whose oldest events were overwritten
        self.unparsed = []
        self._last_by_cpu = {}
        self._stack_target = None      # (record, key) the " => " lines go to

    def feed_text(self, text):
        for line in text.splitlines():
            self.feed(line)

    def feed(self, line):
        if not line:
            return
        first = line[0]
        if first == "#":
            self._header(line)
            return
        if line.startswith(" => "):
            self._stack_frame(line[4:].strip())
            return
        match = _EVENT_LINE.match(line)
        if match is None:
            self._stack_target = None
            lost = _LOST.match(line)
            if lost:
                self.lost_events.append({"cpu": int(lost.group(1)), "count": int(lost.group(2))})
            elif line.strip():
                self.unparsed.append(line)
            return
        comm, pid, tgid, cpu, flags, ts, body = match.groups()
        cpu = int(cpu)
        pid = int(pid)
        if body == STACK_MARKER or body == USER_STACK_MARKER:
            self._start_stack(comm, pid, cpu, flags, ts, "kernel_stack" if body == STACK_MARKER else "user_stack")
            return
        self._stack_target = None
        event, fields, extra = parse_body(body)
        record = {
            "timestamp": float(ts),
            "ts_ns": timestamp_ns(ts),
            "cpu": cpu,
            "pid": pid,
            "comm": _intern(comm.strip()),
            "flags": _intern(flags) if flags else "",
            "event": _intern(event) if event is not None else "",
            "fields": fields,
        }
        if tgid and tgid.isdigit():
            record["tgid"] = int(tgid)
        if extra:
            record.update(extra)
        if event is None:
            record["text"] = body
        self._add(record)

    def _add(self, record):
        self.event_count += 1
        self._last_by_cpu[record["cpu"]] = record
        if self.keep_events:
            self.events.append(record)
        if self.on_event is not None:
            self._pending.append(record)
            self._release()

    def _release(self):
        pending = self._pending
        while pending:
            head = pending[0]
            if self._last_by_cpu.get(head["cpu"]) is head:
                if len(pending) <= self.lookahead:
                    return
                del self._last_by_cpu[head["cpu"]]  # a stack for it now becomes a record of its own
            self.on_event(pending.popleft())

    def close(self):
        """Hand the records still waiting to ``on_event`` (end of the text)."""
        self._stack_target = None
        while self._pending:
            self.on_event(self._pending.popleft())

    def _header(self, line):
        started = _BUFFER_STARTED.match(line)
        if started:
            self.buffer_started.append(int(started.group(1)))
            return
        match = _HEADER_ENTRIES.search(line)
        if match:
            self.entries_in_buffer = int(match.group(1))
            self.entries_written = int(match.group(2))
            self.cpus = int(match.group(3))

    def _start_stack(self, comm, pid, cpu, flags, ts, key):
        owner = self._last_by_cpu.get(cpu)
        if owner is None or owner["pid"] != pid or key in owner:
            # Its event is not in the buffer (overwritten, or filtered out):
            # keep the stack as a record of its own rather than drop it.
            owner = {"timestamp": float(ts), "ts_ns": timestamp_ns(ts), "cpu": cpu, "pid": pid,
                     "comm": comm.strip(), "flags": flags or "", "event": key, "fields": {}}
            self._add(owner)
        owner[key] = []
        self._stack_target = owner[key]

    def _stack_frame(self, frame):
        if self._stack_target is None:
            self.unparsed.append(" => " + frame)
            return
        self._stack_target.append(frame)

    def result(self):
        lost = sum(item["count"] for item in self.lost_events)
        overwritten = 0
        if self.entries_written is not None and self.entries_in_buffer is not None:
            overwritten = max(0, self.entries_written - self.entries_in_buffer)
        return {
            "events": self.events,
            "event_count": self.event_count,
            "entries_in_buffer": self.entries_in_buffer,
            "entries_written": self.entries_written,
            "cpus": self.cpus,
            "lost_events": lost + overwritten,
            "lost_markers": self.lost_events,
            "buffer_started": self.buffer_started,
            "unparsed": self.unparsed,
        }


def parse_trace(text, keep_events=True):
    """Parse a whole ``trace`` text; see ``TraceParser.result`` for the keys."""
    parser = TraceParser(keep_events=keep_events)
    parser.feed_text(text)
    return parser.result()


def user_stack_addresses(record):
    """Addresses (ints) of a record's ``<user stack trace>`` frames."""
    addresses = []
    for frame in record.get("user_stack", []):
        if isinstance(frame, dict):
            addresses.append(frame["address"])
            continue
        match = _USER_FRAME.match(frame.strip())
        if match:
            addresses.append(int(match.group(1), 16))
    return addresses
