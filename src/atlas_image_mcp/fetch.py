"""Fetching output pictures: the one place that downloads what Atlas points to.

No API key is ever sent with a download. Each download is capped at ``max_bytes`` (checked on
the declared length and again while streaming) and retried under the shared
:class:`~atlas_image_mcp.retry.RetryPolicy`. ``data:`` outputs are decoded, not fetched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import httpx

from .errors import APIConnectionError, APITimeoutError, AtlasError, DownloadError
from .media import DataError, decode_data
from .retry import RetryPolicy

__all__ = ["Download", "Fetcher"]

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Download:
    """An output picture fetched from its URL (or decoded from its ``data:`` URI)."""

    url: str
    content: bytes
    content_type: str


class Fetcher:
    """Downloads output pictures through ``http`` (shared or its own), never with credentials."""

    def __init__(
        self, http: httpx.AsyncClient, *, retry: RetryPolicy, sleep: Sleep, limiter: anyio.Semaphore
    ) -> None:
        self._http = http
        self._retry = retry
        self._sleep = sleep
        self._limiter = limiter

    async def download(self, url: str, max_bytes: int) -> Download:
        """The picture at ``url``, refusing more than ``max_bytes``; retried like any read."""
        if url.startswith("data:"):
            try:
                decoded = decode_data(url, max_bytes=max_bytes, require_base64=False)
            except DataError as err:
                raise DownloadError(f"An output sent inline {err}.", url="data:") from err
            return Download(url="data:", content=decoded.content, content_type=decoded.content_type or "")
        if not url.startswith(("http://", "https://")):
            raise DownloadError(f"Output {url[:100]!r} is not an http(s) URL.", url=url)
        attempt = 0
        while True:
            try:
                return await self._download_once(url, max_bytes)
            except (APIConnectionError, DownloadError) as err:
                delay = self._retry.delay(err, attempt, billable=False)
                if delay is None:
                    raise _as_download_error(err, url) from err
                attempt += 1
                await self._sleep(delay)

    async def reachable(self, url: str) -> bool:
        """Whether ``url`` still answers with content (one small ranged GET; no retry, no body kept)."""
        if not url.startswith(("http://", "https://")):
            return False
        try:
            async with (
                self._limiter,
                self._http.stream(
                    "GET", url, headers={"Accept": "image/*,*/*", "Range": "bytes=0-0"}
                ) as response,
            ):
                return response.status_code < 400
        except httpx.HTTPError:
            return False

    async def _download_once(self, url: str, max_bytes: int) -> Download:
        try:
            async with (
                self._limiter,
                self._http.stream("GET", url, headers={"Accept": "image/*,*/*"}) as response,
            ):
                if response.status_code >= 400:
                    raise DownloadError(
                        f"The output picture could not be downloaded (HTTP {response.status_code}); its "
                        "URL may have expired. Call get_prediction to read the current URLs.",
                        url=url,
                        retryable=response.status_code >= 500 or response.status_code == 429,
                    )
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise _too_big(url, max_bytes)
                chunks: list[bytes] = []
                total = 0
                async for chunk in response.aiter_bytes():
                    total += len(chunk)
                    if total > max_bytes:
                        raise _too_big(url, max_bytes)
                    chunks.append(chunk)
                content_type = response.headers.get("content-type", "").split(";")[0].strip()
                return Download(url=url, content=b"".join(chunks), content_type=content_type)
        except httpx.TimeoutException as exc:
            raise APITimeoutError(
                f"Downloading the output picture timed out ({type(exc).__name__})."
            ) from exc
        except httpx.TransportError as exc:
            raise APIConnectionError(f"Downloading the output picture failed: {type(exc).__name__}.") from exc


def _too_big(url: str, max_bytes: int) -> DownloadError:
    return DownloadError(
        f"The output picture is larger than the {max_bytes // (1024 * 1024)} MB download limit "
        "(ATLAS_MCP_MAX_DOWNLOAD_MB); open its URL directly instead.",
        url=url,
    )


def _as_download_error(err: AtlasError, url: str) -> DownloadError:
    if isinstance(err, DownloadError):
        return err
    return DownloadError(
        f"The output picture could not be downloaded: {err.message} "
        "The URL in the result still works for a while; call get_prediction to try again.",
        url=url,
    )
