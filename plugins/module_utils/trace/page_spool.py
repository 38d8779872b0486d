# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Copy raw ring-buffer pages during a window, decode them after it.

What ``trace-cmd record`` does, in-process: while tracing, each CPU's
``trace_pipe_raw`` is moved page by page into an unlinked temporary file
(``os.splice`` through a pipe where Python has it, so the pages never enter
Python; one ``os.read`` per page otherwise).  Decoding, the expensive part,
runs after the window, so the CPU the host spends *during* the window stays
close to trace-cmd's.  Disk: one 4 KiB page per ~60 scheduler events.

``merged()`` then yields every CPU's decoded events in time order with
memory bounded by a few chunks of pages.
"""


import bisect
import errno
import fcntl
import operator
import os
import struct

from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import ring_buffer

PAGE_SIZE = 4096
# Pipe size for splice: 256 pages per call (fs.pipe-max-size allows 1 MiB by default).
PIPE_BYTES = 1 << 20
F_SETPIPE_SZ = 1031
CHUNK_PAGES = 64          # pages decoded per CPU per merge round
LOSS_SCAN_PAGES = 256     # pages read at a time when looking for loss flags
# Pump again sooner when a CPU buffer fills fast: at a steady rate the busiest one then stays about
# TARGET_FILL full between pumps; never more often than MIN_PAUSE_S (an idle host costs nothing).
TARGET_FILL = 0.25
MIN_PAUSE_S = 0.01
_HAS_SPLICE = hasattr(os, "splice")
_AGAIN = (errno.EAGAIN, errno.EINTR)


def unlinked_file(directory=None):
    """A read-write file with no name (O_TMPFILE) in ``directory`` or the temporary directory.

    What ``tempfile.TemporaryFile`` does on Linux, without importing tempfile (with shutil, random and
    the compression modules it pulls in: a fifth of the audit module's own start-up).
    """
    for candidate in [directory] if directory else _temporary_dirs():
        try:
            return os.fdopen(os.open(candidate, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600), "w+b")
        except (OSError, AttributeError):
            if directory:
                break
    import tempfile   # a file system without O_TMPFILE: a named file, unlinked at once
    return tempfile.TemporaryFile(prefix="fleettrace-pages-", dir=directory)


def _temporary_dirs():
    """Where tempfile.gettempdir() looks first: $TMPDIR, $TEMP, $TMP, then /tmp, /var/tmp."""
    found = [os.environ.get(name) for name in ("TMPDIR", "TEMP", "TMP")]
    return [d for d in found if d] + ["/tmp", "/var/tmp"]


class PageSpool:
    """Per-CPU spool files of one instance's raw pages."""

    def __init__(self, instance_path, cpus, directory=None, use_splice=True, max_bytes=None):
        self.page_size = PAGE_SIZE
        self.max_bytes = max_bytes
        self.bytes = 0
        self.busiest = 0
        self.sources = {}
        self.files = {}
        self.pipes = {}
        self.use_splice = use_splice and _HAS_SPLICE
        try:
            for cpu in cpus:
                path = os.path.join(instance_path, "per_cpu", "cpu%d" % cpu, "trace_pipe_raw")
                self.sources[cpu] = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
                self.files[cpu] = unlinked_file(directory)
                if self.use_splice:
                    read_end, write_end = os.pipe()
                    self.pipes[cpu] = (read_end, write_end)
                    for end in (read_end, write_end):
                        fcntl.fcntl(end, fcntl.F_SETFL, fcntl.fcntl(end, fcntl.F_GETFL) | os.O_NONBLOCK)
                    try:
                        fcntl.fcntl(write_end, F_SETPIPE_SZ, PIPE_BYTES)
                    except OSError:
                        pass  # the default 64 KiB pipe still works, in smaller steps
        except OSError:
            self.close()
            raise

    @property
    def full(self):
        return self.max_bytes is not None and self.bytes >= self.max_bytes

    def pump(self):
        """Move every whole page available now to the spool files; return the bytes moved."""
        moved = busiest = 0
        for cpu in self.sources:
            count = self._splice(cpu) if self.use_splice else self._read(cpu)
            moved += count
            busiest = max(busiest, count)
        self.bytes += moved
        self.busiest = busiest      # what the fullest CPU buffer had gathered since the last pump
        return moved

    def next_pause(self, seconds, buffer_bytes, longest):
        """Seconds until the next pump: the busiest CPU buffer, filling at the rate of the last
        ``seconds``, should then be TARGET_FILL full (``longest`` at most, MIN_PAUSE_S at least)."""
        if self.busiest <= 0 or seconds <= 0:
            return longest
        return min(longest, max(MIN_PAUSE_S, TARGET_FILL * buffer_bytes * seconds / self.busiest))

    def drain(self):
        """After tracing stopped: move everything left, partial pages included."""
        moved = self.pump()
        for cpu in self.sources:
            moved += self._read(cpu)
        self.bytes += moved
        return moved

    def _splice(self, cpu):
        source = self.sources[cpu]
        read_end, write_end = self.pipes[cpu]
        out = self.files[cpu].fileno()
        moved = 0
        while True:
            try:
                count = os.splice(source, write_end, PIPE_BYTES, flags=os.SPLICE_F_NONBLOCK)
            except OSError as exc:
                if exc.errno in _AGAIN:
                    return moved
                raise
            if not count:
                return moved
            while count:
                done = os.splice(read_end, out, count)
                count -= done
                moved += done

    def _read(self, cpu):
        source = self.sources[cpu]
        handle = self.files[cpu]
        moved = 0
        while True:
            try:
                page = os.read(source, self.page_size)
            except OSError as exc:
                if exc.errno in _AGAIN:
                    return moved
                raise
            if not page:
                return moved
            if len(page) < self.page_size:
                page += b"\0" * (self.page_size - len(page))
            handle.write(page)
            moved += len(page)

    def pages(self, cpu, chunk=CHUNK_PAGES):
        """The spooled pages of ``cpu``, oldest first, ``chunk`` pages at a time (lists)."""
        handle = self.files[cpu]
        handle.flush()
        handle.seek(0)
        size = self.page_size
        while True:
            data = handle.read(size * chunk)
            if not data:
                return
            yield [data[i:i + size] for i in range(0, len(data) - size + 1, size)]

    def losses(self, layout):
        """(cpu, since_ts, until_ts, missed) of every page that says events were lost before it.

        ``since_ts`` is the previous page's start (None for the first page):
        the loss lies somewhere between, an interval that is never too short.
        ``missed`` is -1 when the page does not say how many.
        """
        found = []
        unpack_header = layout.header.unpack_from
        size = self.page_size
        for cpu, handle in self.files.items():
            handle.flush()
            handle.seek(0)
            previous = None
            while True:
                data = handle.read(size * LOSS_SCAN_PAGES)   # only the headers are read: no page copies
                if not data:
                    break
                for start in range(0, len(data) - size + 1, size):
                    ts, commit = unpack_header(data, start)
                    if commit & ring_buffer.MISSED_EVENTS:
                        used = commit & ring_buffer.COMMIT_MASK
                        missed = -1
                        if commit & ring_buffer.MISSED_STORED and layout.data_offset + used + 8 <= size:
                            missed = struct.unpack_from("=Q", data, start + layout.data_offset + used)[0]
                        found.append((cpu, previous, ts, missed))
                    previous = ts
        return found

    def merged(self, layout, decoders):
        """Lists of decoded ``(ts, cpu, event_id, fields)``, every CPU merged in time order.

        Each round decodes a chunk of the CPU that is furthest behind; events
        up to the oldest "newest event" among the CPUs with pages left are
        complete (each CPU's pages are in time order) and are handed out.
        """
        streams = {cpu: self.pages(cpu) for cpu in self.files}
        newest = {cpu: -1 for cpu in streams}
        pending = []
        decode_page = ring_buffer.decode_page
        table = ring_buffer.compile_decoders(decoders)
        while streams:
            cpu = min(streams, key=newest.__getitem__)
            chunk = next(streams[cpu], None)
            if chunk is None:
                del streams[cpu]
            else:
                start = len(pending)
                for page in chunk:
                    decode_page(page, layout, table, cpu, pending)
                if len(pending) > start:
                    newest[cpu] = pending[-1][0]
            watermark = min([newest[c] for c in streams] or [0])
            if streams and watermark < 0:
                continue  # a CPU has not shown its first event yet: nothing is complete
            pending.sort(key=_timestamp)
            if not streams:
                break
            # The first event newer than the watermark (events are tuples that start with the
            # time stamp; the CPU number, never infinite, settles a tie with the bound).
            cut = bisect.bisect_right(pending, (watermark, _AFTER_ANY_CPU))
            if cut:
                yield pending[:cut]
                pending = pending[cut:]
        if pending:
            yield pending

    def close_sources(self):
        """Close the trace_pipe_raw files and pipes (the instance can go); keep the spooled pages."""
        for fd in self.sources.values():
            _close(fd)
        for read_end, write_end in self.pipes.values():
            _close(read_end)
            _close(write_end)
        self.sources, self.pipes = {}, {}

    def close(self):
        self.close_sources()
        for handle in self.files.values():
            handle.close()
        self.files = {}


def _close(fd):
    try:
        os.close(fd)
    except OSError:
        pass


_timestamp = operator.itemgetter(0)
_AFTER_ANY_CPU = float("inf")
