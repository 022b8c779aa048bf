"""The byte ranges already fetched of one remote file, kept so small reads are not requests.

Segments never overlap (a range stored over cached bytes keeps only its new parts);
the oldest go first once :data:`CACHE_BYTES` is passed. Thread-safe: the shard
headers and a zip's local headers are fetched concurrently into one cache.
"""

from __future__ import annotations

import bisect
import collections
import threading

CACHE_BYTES = 64 << 20


class RangeCache:
    """Fetched segments of a file by start offset (see the module docstring)."""

    def __init__(self, limit: int = CACHE_BYTES) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._starts: list[int] = []
        self._segments: dict[int, bytes] = {}
        self._order: collections.deque[int] = collections.deque()
        self._cached = 0

    def gaps(self, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of [start, end) no cached segment holds."""
        gaps = []
        with self._lock:
            i = max(0, bisect.bisect_right(self._starts, start) - 1)
            cursor = start
            while cursor < end and i < len(self._starts):
                s = self._starts[i]
                e = s + len(self._segments[s])
                if e <= cursor:
                    i += 1
                    continue
                if s > cursor:
                    gaps.append((cursor, min(s, end)))
                cursor = max(cursor, e)
                i += 1
            if cursor < end:
                gaps.append((cursor, end))
        return gaps

    def copy_into(self, view: memoryview, offset: int) -> None:
        """Copy the cached bytes of [offset, offset+len(view)) into ``view`` (gaps left as they are)."""
        end = offset + len(view)
        with self._lock:
            i = max(0, bisect.bisect_right(self._starts, offset) - 1)
            while i < len(self._starts) and self._starts[i] < end:
                s = self._starts[i]
                data = self._segments[s]
                a, b = max(s, offset), min(s + len(data), end)
                if a < b:
                    view[a - offset : b - offset] = data[a - s : b - s]
                i += 1

    def store(self, start: int, data: bytes) -> None:
        for a, b in self.gaps(start, start + len(data)):
            with self._lock:
                if a in self._segments:
                    continue
                bisect.insort(self._starts, a)
                self._segments[a] = data[a - start : b - start]
                self._order.append(a)
                self._cached += b - a
                while self._cached > self.limit and len(self._order) > 1:
                    old = self._order.popleft()
                    self._cached -= len(self._segments.pop(old))
                    self._starts.remove(old)

    def clear(self) -> None:
        with self._lock:
            self._starts, self._segments, self._order, self._cached = [], {}, collections.deque(), 0
