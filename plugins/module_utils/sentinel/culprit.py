# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The culprit call measured for hours: the talk's histogram of slow keepalives, taken by the watcher.

Once a capture names a blocking call on an fd (``ioctl`` on fd 26,
``WDIOC_KEEPALIVE``), the watcher records that call of the target in a third
instance, filtered in the kernel exactly as ``syscall_latency`` does
(``latency.prepare``, same pairing), and reads its ``trace_pipe`` in batches
(the ring buffer holds the events in between), until its bound: a time, a
sample count, or the target's exit.  ``summary`` is what ``collected`` shows.
"""


import os
import time

from ansible_collections.fleettrace.tracefs.plugins.module_utils import bounded
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import latency, per_cpu
from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace.text_parser import TraceParser

BUFFER_KB = 1024
# Samples listed one by one in the spool (the histogram and percentiles hold all of them).
LISTED = 2000


class CulpritLatency:
    """One call of one task on one fd, recorded from ``start`` until ``ended``."""

    def __init__(self, fs, name, pid, call, fd, cmd=None, seconds=3600.0, max_samples=0, capture_id=None):
        self.fs, self.name, self.pid = fs, name, pid
        self.seconds, self.max_samples = seconds, max_samples
        self.pairing = latency.Pairing(call, fd, cmd, max_samples or None, pid=pid, max_listed=LISTED)
        # No stack traces in this instance: each record is complete as it is read (no lookahead that would
        # hold records back until a quiet CPU logs again).
        self.parser = TraceParser(keep_events=False, on_event=self.pairing.add, lookahead=0)
        self.capture_id = capture_id
        self.instance, self.info, self.fd = None, {}, None
        self.started = self.ended = None
        self.stats_before, self.stats_after = {}, None
        self.why_ended = None
        self._pending = ""

    def start(self):
        self.instance, plan, self.info = latency.prepare(self.fs, self.name, self.pid, self.pairing.call,
                                                         self.pairing.fd, self.pairing.cmd, BUFFER_KB)
        plan.apply()
        self.stats_before = per_cpu.all_stats(self.instance.path())
        self.fd = os.open(self.instance.path("trace_pipe"), os.O_RDONLY | os.O_NONBLOCK)
        self.instance.set_tracing_on(True)
        self.started = time.time()
        self._until = time.monotonic() + self.seconds

    @property
    def measuring(self):
        return self.fd is not None

    def due(self):
        """Whether the bound is reached (time or samples)."""
        return time.monotonic() >= self._until or self.pairing.done()

    def seconds_left(self):
        return max(0.0, self._until - time.monotonic())

    def drain(self):
        """Read what the buffer holds now (non-blocking) into the pairing."""
        if self.fd is None:
            return
        bounded.read_available(self.fd, self._feed)

    def _feed(self, text):
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        for line in lines:
            self.parser.feed(line)

    def stop(self, why):
        """Stop recording, read the rest, remove the instance (all of it, also on errors)."""
        if self.fd is None:
            return
        try:
            if self.instance.exists():
                self.instance.set_tracing_on(False)
            self.drain()
        finally:
            os.close(self.fd)
            self.fd = None
            self.ended = time.time()
            self.why_ended = why
            if self._pending:
                self.parser.feed(self._pending)
                self._pending = ""
            if self.instance.exists():
                self.stats_after = per_cpu.all_stats(self.instance.path())
                self.instance.remove()

    def lost(self):
        """Events the kernel lost before we read them (the buffer filled between two batches)."""
        after = self.stats_after
        if self.fd is not None and self.instance.exists():
            after = per_cpu.all_stats(self.instance.path())
        lost = per_cpu.lost_between(self.stats_before, after or {})
        return sum(c["overrun"] + c["dropped"] for c in lost.values())

    def summary(self):
        """The measurement so far, in the ``syscall_latency`` shape, plus since/until and why it ended."""
        end = self.ended or time.time()
        result = latency.summarize(self.pairing, self.info, round(end - (self.started or end), 3), self.lost(),
                                   self.why_ended or "measuring")
        result.update({"since": self.started, "until": self.ended, "measuring": self.fd is not None,
                       "bound_seconds": self.seconds, "bound_samples": self.max_samples or None,
                       "capture_id": self.capture_id, "samples_listed_max": LISTED})
        return result
