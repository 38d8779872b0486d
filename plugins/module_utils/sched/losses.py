# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where in the window events were lost: merged time intervals, and whether a wait crosses one.

Nothing here imports Ansible (Python 3.8+).
"""


import bisect


class LossIntervals:
    """Sorted, merged ``[since, until]`` intervals (ns) in which events were lost."""

    def __init__(self):
        self.intervals = []
        self._starts = []

    def __bool__(self):
        return bool(self.intervals)

    def add(self, since, until):
        """Events were lost somewhere between ``since`` and ``until`` (None: the window's edge)."""
        since = -1 if since is None else since
        until = float("inf") if until is None else until
        merged = []
        for low, high in sorted(self.intervals + [[since, until]]):
            if merged and low <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], high)
            else:
                merged.append([low, high])
        self.intervals = merged
        self._starts = [low for low, _high in merged]

    def overlap(self, since, until):
        """Whether events may have been lost between ``since`` and ``until``."""
        index = bisect.bisect_left(self._starts, until) - 1
        return index >= 0 and self.intervals[index][1] > since
