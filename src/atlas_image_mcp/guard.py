"""Spend guard: at most N images started per rolling hour, per process or per API key."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable

from .errors import SpendLimitError

__all__ = ["SpendGuard"]

WINDOW_SECONDS = 3600.0
_SWEEP_AT = 256  # buckets kept before idle ones are swept


class SpendGuard:
    """Counts images started in the last hour under a key (a hash of the API key, never the key).

    ``reserve`` is called before a generation POST: past the limit it raises
    :class:`SpendLimitError` and nothing is sent. With ``limit=None`` it never refuses.
    """

    def __init__(self, limit: int | None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._started: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def bucket(api_key: str | None) -> str:
        return hashlib.sha256((api_key or "").encode()).hexdigest()[:16]

    def reserve(self, api_key: str | None, count: int) -> None:
        if self.limit is None:
            return
        now = self._clock()
        with self._lock:
            self._sweep(now)
            started = self._started.setdefault(self.bucket(api_key), deque())
            while started and now - started[0] >= WINDOW_SECONDS:
                started.popleft()
            if len(started) + count > self.limit:
                # When this many images can start again: once enough of the oldest ones leave the window.
                must_leave = len(started) + count - self.limit
                if must_leave > len(started):
                    retry_after = WINDOW_SECONDS
                else:
                    retry_after = max(0.0, WINDOW_SECONDS - (now - started[must_leave - 1]))
                raise SpendLimitError(self.limit, retry_after, requested=count, used=len(started))
            started.extend([now] * count)

    def used(self, api_key: str | None) -> int:
        """Images started under this key in the last hour."""
        now = self._clock()
        with self._lock:
            return sum(1 for t in self._started.get(self.bucket(api_key), ()) if now - t < WINDOW_SECONDS)

    def buckets(self) -> tuple[str, ...]:
        """The keys' buckets currently tracked (hashes, never a key)."""
        with self._lock:
            return tuple(self._started)

    def _sweep(self, now: float) -> None:
        """Forget keys with nothing in the window (hosted servers see many per-user keys)."""
        if len(self._started) < _SWEEP_AT:
            return
        idle = [b for b, times in self._started.items() if not times or now - times[-1] >= WINDOW_SECONDS]
        for bucket in idle:
            del self._started[bucket]

    def release(self, api_key: str | None, count: int) -> None:
        """Give back a reservation whose POST was never sent (e.g. refused before the network)."""
        with self._lock:
            started = self._started.get(self.bucket(api_key))
            for _ in range(min(count, len(started) if started is not None else 0)):
                started.pop()  # type: ignore[union-attr]
