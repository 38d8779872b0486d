# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Latency samples with exact percentiles and bounded memory (``LatencySeries``).

Nothing here imports Ansible (Python 3.8+).
"""


import bisect
from array import array

# Log-linear bins: 2**SUB_BITS bins per power of two, exact below 2**(SUB_BITS+1) ns.
SUB_BITS = 7
MAX_RELATIVE_ERROR = 1.0 / (1 << (SUB_BITS + 1))  # bin half-width / lower bound

# Samples added between two bulk folds (bounded memory, see LatencySeries.flush).
FLUSH_AT = 4096

PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99_9", 99.9))


def _fine_bin(value):
    """Log-linear bin key of a non-negative integer (ns)."""
    if value < (1 << (SUB_BITS + 1)):
        return value
    shift = value.bit_length() - (SUB_BITS + 1)
    return ((shift + 1) << (SUB_BITS + 1)) | (value >> shift)


def _fine_bin_middle(key):
    """Representative value (bin middle) of a log-linear bin key."""
    if key < (1 << (SUB_BITS + 1)):
        return key
    shift = (key >> (SUB_BITS + 1)) - 1
    top = key & ((1 << (SUB_BITS + 1)) - 1)
    return (top << shift) + ((1 << shift) >> 1)


def _nearest_rank(count, percent):
    """1-based rank of the nearest-rank percentile of ``count`` samples."""
    # Integer arithmetic in tenths of a percent: 1000 * 99.9 must not become 999.0000001.
    tenths = int(round(percent * 10))
    rank = -(-count * tenths // 1000)
    return min(max(rank, 1), count)


def log2_histogram_us(values_ns=None, counts=None):
    """bcc-style log2 buckets of microseconds: [{low_us, high_us, count}].

    Bucket k holds values whose microsecond count has bit length k:
    0 -> [0,1) us, 1 -> [1,2), 2 -> [2,4), ...
    """
    if counts is None:
        counts = _log2_counts(sorted(values_ns))
    if not counts:
        return []
    buckets = []
    for k in range(0, max(counts) + 1):
        low = 0 if k == 0 else 1 << (k - 1)
        buckets.append({"low_us": low, "high_us": 1 << k if k else 1, "count": counts.get(k, 0)})
    return buckets


def _log2_counts(ordered):
    """{bucket: count} of sorted ns values: a bisect per bucket, not a step per value."""
    counts = {}
    index, end = 0, len(ordered)
    while index < end:
        k = (ordered[index] // 1000).bit_length()
        stop = bisect.bisect_left(ordered, (1 << k) * 1000 if k else 1000, index)
        counts[k] = counts.get(k, 0) + stop - index
        index = stop
    return counts


class LatencySeries:
    """Latency samples (ns) of one population, with bounded memory.

    Exact percentiles without unbounded memory: every sample is kept
    (8 bytes each, ``array('q')``) until ``exact_cap`` samples; past that the
    samples are folded into a log-linear histogram (``2**SUB_BITS`` bins per
    power of two, so any value read back from it is within
    ``MAX_RELATIVE_ERROR`` = 0.39 % of the truth) while the ``tail_cap``
    largest samples are still kept exactly in a heap.  A percentile is exact
    when its rank falls into the kept tail (p99.9 of up to 1000 * tail_cap
    samples, p99 of up to 100 * tail_cap) and otherwise carries the bounded
    error, flagged in ``exact``.  max, min, count and mean are always exact.
    """

    __slots__ = ("_count", "_total", "_max", "_min", "_samples", "exact_cap", "tail_cap", "tail",
                 "fine", "log2", "pending")

    def __init__(self, exact_cap=100000, tail_cap=10000):
        self._count = 0
        self._total = 0
        self._max = 0
        self._min = None
        self._samples = array("q")
        self.exact_cap = exact_cap
        self.tail_cap = tail_cap
        self.tail = None
        self.fine = None
        self.log2 = None
        # New samples wait here and are folded in bulk (``flush``): one list
        # append per sample on the hot path; at most FLUSH_AT of them.
        self.pending = []

    def add(self, value):
        pending = self.pending
        pending.append(value)
        if len(pending) >= FLUSH_AT:
            self.flush()

    @property
    def samples(self):
        """Every sample while below ``exact_cap`` (``array('q')``, batches sorted), else None."""
        self.flush()
        return self._samples

    @property
    def count(self):
        self.flush()
        return self._count

    @property
    def total(self):
        self.flush()
        return self._total

    @property
    def max(self):
        self.flush()
        return self._max

    @property
    def min(self):
        self.flush()
        return self._min

    def flush(self):
        """Fold the pending samples in: one sort, then one step per histogram bin, not per sample."""
        if not self.pending:
            return
        values = sorted(self.pending)
        del self.pending[:]   # in place: callers may hold ``pending.append``
        self.add_sorted(values)

    def add_sorted(self, values):
        """Fold in a list of samples the caller has sorted already (the result does not depend on
        how samples are split into batches: bins and the kept tail are the same either way)."""
        if not values:
            return
        self._count += len(values)
        self._total += sum(values)
        if values[-1] > self._max:
            self._max = values[-1]
        if self._min is None or values[0] < self._min:
            self._min = values[0]
        if self._samples is not None:
            self._samples.fromlist(values)   # a list: 2.5x faster than extend()
            if len(self._samples) > self.exact_cap:
                ordered = self._samples.tolist()
                ordered.sort()
                self._fold(ordered)
            return
        self._bin(values)
        tail = self.tail
        cap = self.tail_cap
        if cap:
            if len(tail) >= cap:
                values = values[bisect.bisect_right(values, tail[0]):]  # only these can enter
            if values:
                # Two sorted runs: Python's sort merges them in linear time (in C, where a heap
                # insertion per sample cost a Python loop iteration each).
                tail.extend(values)
                tail.sort()
                del tail[:-cap]

    def _bin(self, ordered):
        """Count sorted samples into the fine and log2 bins, a bisect per non-empty bin."""
        fine = self.fine
        log2 = self.log2
        small = 1 << (SUB_BITS + 1)
        index, end = 0, len(ordered)
        while index < end:
            value = ordered[index]
            if value < small:
                key, upper = value, value + 1
            else:
                shift = value.bit_length() - (SUB_BITS + 1)
                top = value >> shift
                key = ((shift + 1) << (SUB_BITS + 1)) | top
                upper = (top + 1) << shift
            stop = bisect.bisect_left(ordered, upper, index)
            fine[key] = fine.get(key, 0) + stop - index
            index = stop
        for k, count in _log2_counts(ordered).items():
            log2[k] = log2.get(k, 0) + count

    def _fold(self, ordered):
        self.fine = {}
        self.log2 = {}
        self._bin(ordered)
        self.tail = ordered[-self.tail_cap:] if self.tail_cap else []   # kept sorted, smallest first
        self._samples = None

    def percentile(self, percent):
        """(value_ns, exact) of the nearest-rank percentile, or (None, True)."""
        self.flush()
        if not self.count:
            return None, True
        rank = _nearest_rank(self.count, percent)
        if self._samples is not None:
            return sorted(self._samples)[rank - 1], True
        from_top = self.count - rank  # 0 = the largest sample
        if from_top < len(self.tail):
            return sorted(self.tail, reverse=True)[from_top], True
        seen = 0
        for key in sorted(self.fine):
            seen += self.fine[key]
            if seen >= rank:
                return _fine_bin_middle(key), False
        return self.max, True

    def summary(self, unit="us"):
        """Plain dict for JSON: count, mean, min, max, percentiles, log2 histogram."""
        divisor = 1000.0 if unit == "us" else 1000000.0
        self.flush()
        result = {"count": self.count}
        if not self.count:
            for name, _percent in PERCENTILES:
                result["%s_%s" % (name, unit)] = None
            result.update({"mean_%s" % unit: None, "min_%s" % unit: None, "max_%s" % unit: None,
                           "exact": True, "histogram_log2_us": []})
            return result
        ordered = sorted(self._samples) if self._samples is not None else None
        exact_all = True
        for name, percent in PERCENTILES:
            if ordered is not None:
                value, exact = ordered[_nearest_rank(self.count, percent) - 1], True
            else:
                value, exact = self.percentile(percent)
            exact_all = exact_all and exact
            result["%s_%s" % (name, unit)] = round(value / divisor, 3)
        result["mean_%s" % unit] = round(self.total / self.count / divisor, 3)
        result["min_%s" % unit] = round(self.min / divisor, 3)
        result["max_%s" % unit] = round(self.max / divisor, 3)
        result["exact"] = exact_all
        if not exact_all:
            result["max_relative_error"] = MAX_RELATIVE_ERROR
        if ordered is not None:
            result["histogram_log2_us"] = log2_histogram_us(values_ns=ordered)
        else:
            result["histogram_log2_us"] = log2_histogram_us(counts=self.log2)
        return result
