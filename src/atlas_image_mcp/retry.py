"""The one retry policy: which failures are tried again, and after how long.

* A read (poll, catalogue, download) is retried on connection errors, timeouts, 429 (honouring
  ``Retry-After`` up to :data:`~atlas_image_mcp.constants.MAX_RETRY_AFTER`), 5xx, invalid JSON
  and downloads marked ``retryable``, with capped exponential backoff and jitter.
* A generation or upload POST is billed, so it is retried only when nothing reached the server
  (a connection that failed before sending, ``APIConnectionError.sent`` false).

Used by :class:`atlas_image_mcp.client.AtlasClient` for API calls and by
:class:`atlas_image_mcp.fetch.Fetcher` for downloads.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Mapping
from datetime import timezone

from .constants import INITIAL_RETRY_DELAY, MAX_RETRY_AFTER, MAX_RETRY_DELAY, RETRY_AFTER_CEILING
from .errors import APIConnectionError, APIStatusError, DownloadError, InvalidResponseError, RateLimitError

__all__ = ["RetryPolicy", "retry_after_seconds"]


class RetryPolicy:
    """Decides whether (and when) a failed request is sent again."""

    def __init__(self, *, max_retries: int, rng: Callable[[], float] = random.random) -> None:
        self.max_retries = max_retries
        self._rng = rng

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds before try number ``attempt + 1``: ``Retry-After`` when given (capped), else backoff."""
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, MAX_RETRY_AFTER)
        delay = min(MAX_RETRY_DELAY, INITIAL_RETRY_DELAY * 2.0 ** (attempt - 1))
        return delay * (0.75 + 0.25 * self._rng())

    def delay(self, err: Exception, attempt: int, *, billable: bool) -> float | None:
        """Seconds to wait before retrying after ``err`` (``attempt`` retries done), or None: do not."""
        if attempt >= self.max_retries:
            return None
        if billable:
            # Only when nothing reached the server: a second POST would be billed twice.
            if isinstance(err, APIConnectionError) and not err.sent:
                return self.backoff(attempt + 1)
            return None
        if isinstance(err, RateLimitError):
            return self.backoff(attempt + 1, err.retry_after)
        if isinstance(err, APIStatusError):
            return self.backoff(attempt + 1) if err.status_code >= 500 else None
        if isinstance(err, (DownloadError, InvalidResponseError)):
            return self.backoff(attempt + 1) if err.retryable else None
        if isinstance(err, APIConnectionError):
            return self.backoff(attempt + 1)
        return None


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """An answer's ``Retry-After`` header (``headers``: names in lower case) in seconds, from seconds
    or an HTTP date; or None. Never more than :data:`RETRY_AFTER_CEILING`: a larger value is not
    believed."""
    seconds = _retry_after(headers.get("retry-after"))
    return None if seconds is None else min(seconds, RETRY_AFTER_CEILING)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN is no answer
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None  # neither seconds nor an HTTP date: fall back to the usual backoff
    if parsed.tzinfo is None:  # an HTTP date is GMT; a naive one cannot be compared to time.time()
        parsed = parsed.replace(tzinfo=timezone.utc)
    return max(0.0, parsed.timestamp() - time.time())
