# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The largest few of a stream: worst waits, longest D-state intervals.

Nothing here imports Ansible (Python 3.8+).
"""


import heapq


class Largest:
    """The ``count`` largest records seen, by size; equal sizes keep the order they came in.

    ``floor``: once full, a record must be larger than this to enter (-1 before), so a caller
    can skip building a record that would not be kept.
    """

    __slots__ = ("count", "heap", "floor", "_seq")

    def __init__(self, count):
        self.count = count
        self.heap = []        # min-heap of (size, seq, record)
        self.floor = -1
        self._seq = 0

    def __len__(self):
        return len(self.heap)

    def __bool__(self):
        return bool(self.heap)

    def keep(self, size, record):
        heap = self.heap
        if len(heap) < self.count or size > heap[0][0]:
            self._seq += 1
            if len(heap) < self.count:
                heapq.heappush(heap, (size, self._seq, record))
            else:
                heapq.heapreplace(heap, (size, self._seq, record))
            if len(heap) >= self.count:
                self.floor = heap[0][0]

    def records(self):
        """The kept records, largest first (first come first among equals)."""
        return [item[2] for item in sorted(self.heap, key=lambda item: (-item[0], item[1]))]
