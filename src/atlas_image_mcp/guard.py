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
            started = self._started.setdefault(self.bucket(api_key), deque())
            while started and now - started[0] >= WINDOW_SECONDS:
                started.popleft()
            if len(started) + count > self.limit:
                retry_after = WINDOW_SECONDS - (now - started[0]) if started else WINDOW_SECONDS
                raise SpendLimitError(self.limit, retry_after)
            started.extend([now] * count)

    def release(self, api_key: str | None, count: int) -> None:
        """Give back a reservation whose POST was never sent (e.g. refused before the network)."""
        with self._lock:
            started = self._started.get(self.bucket(api_key))
            for _ in range(min(count, len(started or ()))):
                started.pop()  # type: ignore[union-attr]
