# -*- coding: utf-8 -*-
# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Latency samples with exact percentiles and bounded memory (``LatencySeries``).

Nothing here imports Ansible (Python 3.8+).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import heapq
from array import array

# Log-linear bins: 2**SUB_BITS bins per power of two, exact below 2**(SUB_BITS+1) ns.
SUB_BITS = 7
MAX_RELATIVE_ERROR = 1.0 / (1 << (SUB_BITS + 1))  # bin half-width / lower bound

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
        counts = collections.Counter()
        for value in values_ns:
            counts[(value // 1000).bit_length()] += 1
    if not counts:
        return []
    buckets = []
    for k in range(0, max(counts) + 1):
        low = 0 if k == 0 else 1 << (k - 1)
        buckets.append({"low_us": low, "high_us": 1 << k if k else 1, "count": counts.get(k, 0)})
    return buckets


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

    __slots__ = ("count", "total", "max", "min", "samples", "exact_cap", "tail_cap", "tail",
                 "fine", "log2")

    def __init__(self, exact_cap=100000, tail_cap=10000):
        self.count = 0
        self.total = 0
        self.max = 0
        self.min = None
        self.samples = array("q")
        self.exact_cap = exact_cap
        self.tail_cap = tail_cap
        self.tail = None
        self.fine = None
        self.log2 = None

    def add(self, value):
        self.count += 1
        self.total += value
        if value > self.max:
            self.max = value
        if self.min is None or value < self.min:
            self.min = value
        samples = self.samples
        if samples is not None:
            samples.append(value)
            if len(samples) > self.exact_cap:
                self._fold()
            return
        key = _fine_bin(value)
        self.fine[key] = self.fine.get(key, 0) + 1
        k = (value // 1000).bit_length()
        self.log2[k] = self.log2.get(k, 0) + 1
        tail = self.tail
        if len(tail) < self.tail_cap:
            heapq.heappush(tail, value)
        elif value > tail[0]:
            heapq.heapreplace(tail, value)

    def _fold(self):
        fine = {}
        log2 = {}
        for value in self.samples:
            key = _fine_bin(value)
            fine[key] = fine.get(key, 0) + 1
            k = (value // 1000).bit_length()
            log2[k] = log2.get(k, 0) + 1
        self.fine = fine
        self.log2 = log2
        self.tail = heapq.nlargest(self.tail_cap, self.samples)
        heapq.heapify(self.tail)
        self.samples = None

    def percentile(self, percent):
        """(value_ns, exact) of the nearest-rank percentile, or (None, True)."""
        if not self.count:
            return None, True
        rank = _nearest_rank(self.count, percent)
        if self.samples is not None:
            return sorted(self.samples)[rank - 1], True
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
        result = {"count": self.count}
        if not self.count:
            for name, _percent in PERCENTILES:
                result["%s_%s" % (name, unit)] = None
            result.update({"mean_%s" % unit: None, "min_%s" % unit: None, "max_%s" % unit: None,
                           "exact": True, "histogram_log2_us": []})
            return result
        ordered = sorted(self.samples) if self.samples is not None else None
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
