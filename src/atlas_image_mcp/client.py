"""The async Atlas Cloud client.

One ``httpx.AsyncClient`` (pooled connections, proxies from the environment) behind one method,
:meth:`AtlasClient._request`, which is the only place that sends HTTP, wraps transport errors,
retries, unwraps the envelope and maps statuses to :mod:`atlas_image_mcp.errors`.

Retry policy:

* GETs are retried on connection errors, timeouts, 429 (honouring ``Retry-After``), 5xx and
  invalid JSON, with capped exponential backoff and jitter; a 5xx that carries a terminal
  prediction (``data.status: "failed"``) is a final answer and is not retried.
* A generation or upload POST is billed, so it is never retried once it may have reached the
  server: only a connection that failed before anything was sent (connect error or connect/pool
  timeout) is tried again.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import io
import json
import logging
import mimetypes
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import anyio
import httpx

from . import __version__
from .errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    DownloadError,
    InvalidParameterError,
    InvalidResponseError,
    LocalFileError,
    MissingAPIKeyError,
    NotFoundError,
    RateLimitError,
    redact,
    register_secret,
    status_error,
)
from .flux import GenerationRequest, PreparedRequest, prepare_request
from .models import ModelInfo, Prediction, Upload, envelope_code, envelope_data, envelope_message, parse_prediction
from .settings import DEFAULT_BASE_URL, normalize_base_url

__all__ = ["AtlasClient", "Download", "PollSchedule"]

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER = 30.0
MODELS_TTL = 300.0
DEFAULT_LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=64, keepalive_expiry=30.0)
_PREDICTION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,127}$")

Sleep = Callable[[float], Awaitable[None]]
OnUpdate = Callable[[Prediction], Awaitable[None] | None]


@dataclass(frozen=True)
class Download:
    """An output picture fetched from its URL."""

    url: str
    content: bytes
    content_type: str


class PollSchedule:
    """When to poll a running prediction: often at first, then less often.

    FLUX schnell usually finishes in 1-3 s, so the first polls come quickly; longer jobs back off
    geometrically to ``max_interval``. Each interval gets +-``jitter`` so that many waiting calls
    do not poll in lock step.
    """

    def __init__(
        self,
        *,
        first: float = 0.25,
        fast_until: float = 2.0,
        growth: float = 1.5,
        max_interval: float = 5.0,
        jitter: float = 0.1,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.first = first
        self.fast_until = fast_until
        self.growth = growth
        self.max_interval = max_interval
        self.jitter = jitter
        self._rng = rng

    def interval(self, elapsed: float, previous: float | None) -> float:
        if elapsed < self.fast_until or previous is None:
            base = self.first
        else:
            base = min(self.max_interval, max(self.first, previous) * self.growth)
        return base * (1 + self.jitter * (2 * self._rng() - 1))


class _Shared:
    """State shared by a client and its per-key views: the pool and the catalogue cache."""

    def __init__(self, http: httpx.AsyncClient, owns_http: bool) -> None:
        self.http = http
        self.owns_http = owns_http
        self.models: list[ModelInfo] | None = None
        self.models_at = 0.0
        self.models_lock = anyio.Lock()


class AtlasClient:
    """Async client for the Atlas Cloud media API.

    Use it as an async context manager (or call :meth:`aclose`). ``transport`` or ``http_client``
    can be injected: tests pass an ``httpx.MockTransport`` or an ``httpx.ASGITransport`` around the
    emulator. ``sleep`` and ``clock`` are injectable so retry and polling tests take no time.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        upload_timeout: float = 300.0,
        max_retries: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
        sleep: Sleep = anyio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        poll_schedule: PollSchedule | None = None,
        limits: httpx.Limits = DEFAULT_LIMITS,
    ) -> None:
        self._api_key = api_key or None
        register_secret(self._api_key)
        self.base_url = normalize_base_url(base_url)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.upload_timeout = upload_timeout
        self.max_retries = max_retries
        self._sleep = sleep
        self._clock = clock
        self._rng = rng
        self.poll_schedule = poll_schedule or PollSchedule(rng=rng)
        if http_client is None:
            http_client = httpx.AsyncClient(
                transport=transport,
                timeout=httpx.Timeout(timeout, connect=connect_timeout),
                limits=limits,
                headers={"User-Agent": f"atlas-image-mcp/{__version__}", "Accept": "application/json"},
                follow_redirects=True,
                trust_env=True,
            )
            self._shared = _Shared(http_client, owns_http=True)
        else:
            self._shared = _Shared(http_client, owns_http=False)

    def __repr__(self) -> str:
        key = "set" if self._api_key else "missing"
        return f"AtlasClient(base_url={self.base_url!r}, api_key={key})"

    @property
    def has_api_key(self) -> bool:
        return self._api_key is not None

    def with_api_key(self, api_key: str | None) -> AtlasClient:
        """A view of this client that authenticates with another key but shares the connection pool."""
        view = object.__new__(AtlasClient)
        view.__dict__.update(self.__dict__)
        view._api_key = api_key or None
        register_secret(view._api_key)
        return view

    async def __aenter__(self) -> AtlasClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._shared.owns_http:
            await self._shared.http.aclose()

    # --- public API ----------------------------------------------------------------------

    async def submit_image(self, request: GenerationRequest | PreparedRequest) -> Prediction:
        """``POST /model/generateImage`` with a flat body. Never retried once it may have been sent."""
        prepared = request if isinstance(request, PreparedRequest) else prepare_request(request)
        body = await self._request("POST", "/model/generateImage", json=prepared.body, what="The generation request")
        prediction = parse_prediction(body)
        if prediction is None:
            raise InvalidResponseError(
                "Atlas accepted the generation request but its answer had no prediction id, so its "
                f"progress cannot be followed. Answer: {str(body)[:300]}. Do not resubmit blindly: the "
                "job may be running and billed; check the Atlas console history first."
            )
        return prediction

    async def get_prediction(self, prediction_id: str, *, deadline: float | None = None) -> Prediction:
        """``GET /model/prediction/{id}``. A failed prediction is returned, not raised."""
        pid = self._check_prediction_id(prediction_id)
        body = await self._request(
            "GET",
            f"/model/prediction/{pid}",
            what=f"Looking up prediction {pid}",
            terminal_ok=True,
            deadline=deadline,
        )
        prediction = parse_prediction(body, fallback_id=pid)
        if prediction is None:
            raise InvalidResponseError(f"Atlas answered the lookup of prediction {pid} without a prediction.")
        return prediction

    async def wait(
        self,
        prediction_id: str,
        timeout: float,
        on_update: OnUpdate | None = None,
        *,
        not_found_grace: float = 10.0,
        first: Prediction | None = None,
    ) -> Prediction:
        """Poll until the prediction is terminal or ``timeout`` seconds pass; return the last state.

        ``on_update`` is called with every state seen (including ``first``, a state already known,
        such as the submit answer). A 404 within ``not_found_grace`` seconds of the start counts as
        "not visible yet" (Atlas can lag right after a submit). Cancel the calling task to stop.
        """
        start = self._clock()
        deadline = start + timeout
        current = first
        if current is not None:
            await _call(on_update, current)
            if current.is_terminal:
                return current
        interval: float | None = None
        while True:
            elapsed = self._clock() - start
            interval = self.poll_schedule.interval(elapsed, interval)
            remaining = deadline - self._clock()
            if current is not None and remaining <= 0:
                return current
            await self._sleep(max(0.0, min(interval, remaining)))
            try:
                current = await self.get_prediction(prediction_id, deadline=deadline)
            except NotFoundError:
                if self._clock() - start > not_found_grace or self._clock() >= deadline:
                    raise
                continue
            await _call(on_update, current)
            if current.is_terminal or self._clock() >= deadline:
                return current

    async def upload_media(
        self,
        source: str | Path | bytes,
        filename: str | None = None,
        *,
        max_bytes: int | None = None,
    ) -> Upload:
        """``POST /model/uploadMedia`` (multipart part ``file``). Files are streamed, not read whole."""
        name, size, opener = _upload_source(source, filename, max_bytes)
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        with opener() as stream:

            def files() -> dict[str, Any]:
                stream.seek(0)
                return {"file": (name, stream, content_type)}

            body = await self._request(
                "POST",
                "/model/uploadMedia",
                files=files,
                timeout=self.upload_timeout,
                what=f"Uploading {name}",
            )
        data = envelope_data(body)
        url = None
        if isinstance(data, dict):
            url = data.get("download_url") or data.get("url") or data.get("file_url")
        if not url and isinstance(body, dict):
            url = body.get("url")
        if not isinstance(url, str) or not url:
            raise InvalidResponseError(f"Atlas accepted the upload of {name} but returned no download_url.")
        return Upload(
            download_url=url,
            filename=str((data or {}).get("filename") or name),
            size=int((data or {}).get("size") or size),
            content_type=content_type,
            type=(data or {}).get("type") if isinstance((data or {}).get("type"), str) else None,
        )

    async def list_models(self, *, refresh: bool = False) -> list[ModelInfo]:
        """The catalogue's image models (``display_console: false`` dropped), cached for five minutes."""
        shared = self._shared
        async with shared.models_lock:
            fresh = shared.models is not None and self._clock() - shared.models_at < MODELS_TTL
            if fresh and not refresh:
                return list(shared.models or [])
            body = await self._request("GET", "/models", auth=False, what="Reading the model catalogue")
            entries = envelope_data(body)
            if not isinstance(entries, list):
                raise InvalidResponseError("The Atlas model catalogue did not contain a list of models.")
            models = [
                info
                for entry in entries
                if isinstance(entry, dict)
                and entry.get("display_console", True) is not False
                and str(entry.get("type", "")).lower() == "image"
                and (info := ModelInfo.from_entry(entry)) is not None
            ]
            shared.models, shared.models_at = models, self._clock()
            return list(models)

    async def download(self, url: str, max_bytes: int) -> Download:
        """Fetch an output picture (no API key is ever sent to it), refusing more than ``max_bytes``."""
        if url.startswith("data:"):
            return _decode_data_uri(url, max_bytes)
        if not url.startswith(("http://", "https://")):
            raise DownloadError(f"Output {url[:100]!r} is not an http(s) URL.", url=url)
        attempt = 0
        while True:
            try:
                return await self._download_once(url, max_bytes)
            except (APIConnectionError, DownloadError) as err:
                retryable = isinstance(err, APIConnectionError) or getattr(err, "retryable", False)
                if not retryable or attempt >= self.max_retries:
                    raise _as_download_error(err, url) from err
                attempt += 1
                await self._sleep(self._backoff(attempt))

    # --- internals -----------------------------------------------------------------------

    async def _download_once(self, url: str, max_bytes: int) -> Download:
        try:
            async with self._shared.http.stream("GET", url, headers={"Accept": "image/*,*/*"}) as response:
                if response.status_code >= 400:
                    err = DownloadError(
                        f"The output picture could not be downloaded (HTTP {response.status_code}); its "
                        "URL may have expired. Call get_prediction to read the current URLs.",
                        url=url,
                    )
                    err.retryable = response.status_code >= 500 or response.status_code == 429  # type: ignore[attr-defined]
                    raise err
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
            raise APITimeoutError(f"Downloading the output picture timed out ({type(exc).__name__}).") from exc
        except httpx.TransportError as exc:
            raise APIConnectionError(f"Downloading the output picture failed: {type(exc).__name__}.") from exc

    def _check_prediction_id(self, prediction_id: str) -> str:
        pid = (prediction_id or "").strip()
        if not _PREDICTION_ID.match(pid):
            raise InvalidParameterError(
                "prediction_id",
                f"{pid[:80]!r} is not a prediction id; use the prediction_id returned by generate_image "
                "(32 hexadecimal characters).",
            )
        return pid

    def _auth_headers(self) -> dict[str, str]:
        if not self._api_key:
            raise MissingAPIKeyError()
        return {"Authorization": f"Bearer {self._api_key}"}

    def _backoff(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, MAX_RETRY_AFTER)
        delay = min(MAX_RETRY_DELAY, INITIAL_RETRY_DELAY * 2 ** (attempt - 1))
        return delay * (0.75 + 0.25 * self._rng())

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        files: Callable[[], dict[str, Any]] | None = None,
        auth: bool = True,
        timeout: float | None = None,
        terminal_ok: bool = False,
        deadline: float | None = None,
        what: str = "The request",
    ) -> Any:
        """Send one API call with the retry policy above; return the decoded JSON body."""
        url = f"{self.base_url}{API_PREFIX}{path}"
        headers = self._auth_headers() if auth else {}
        billable = method != "GET"
        attempt = 0
        while True:
            try:
                return await self._send_once(
                    method, url, headers=headers, json=json, files=files, timeout=timeout,
                    terminal_ok=terminal_ok, what=what,
                )  # fmt: skip
            except (APIConnectionError, APIStatusError, InvalidResponseError) as err:
                delay = self._retry_delay(err, attempt, billable=billable)
                if delay is None or (deadline is not None and self._clock() + delay >= deadline):
                    raise
                attempt += 1
                logger.info("retrying %s %s in %.2fs after: %s", method, path, delay, err.message[:200])
                await self._sleep(delay)

    def _retry_delay(self, err: Exception, attempt: int, *, billable: bool) -> float | None:
        """Seconds to wait before retrying after ``err``, or None when it must not be retried."""
        if attempt >= self.max_retries:
            return None
        if billable:
            # Only when nothing reached the server: a second POST would be billed twice.
            if isinstance(err, APIConnectionError) and not err.sent:
                return self._backoff(attempt + 1)
            return None
        if isinstance(err, RateLimitError):
            return self._backoff(attempt + 1, err.retry_after)
        if isinstance(err, APIStatusError):
            return self._backoff(attempt + 1) if err.status_code >= 500 else None
        return self._backoff(attempt + 1)

    async def _send_once(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        json: Any,
        files: Callable[[], dict[str, Any]] | None,
        timeout: float | None,
        terminal_ok: bool,
        what: str,
    ) -> Any:
        request_timeout = httpx.Timeout(timeout or self.timeout, connect=self.connect_timeout)
        try:
            response = await self._shared.http.request(
                method, url, headers=headers, json=json, files=files() if files else None, timeout=request_timeout
            )
        except httpx.TimeoutException as exc:
            sent = not isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout))
            raise APITimeoutError(
                f"{what} timed out ({type(exc).__name__}) talking to {self.base_url}. "
                + ("It may still have reached Atlas. " if sent and method != "GET" else "")
                + "Check the network, then try again.",
                method=method, url=url, sent=sent,
            ) from exc  # fmt: skip
        except httpx.TransportError as exc:
            sent = not isinstance(exc, httpx.ConnectError)
            raise APIConnectionError(
                f"{what} could not reach {self.base_url} ({type(exc).__name__}: {redact(exc)[:200]}). "
                "Check the network connection or proxy settings (HTTPS_PROXY), then try again.",
                method=method, url=url, sent=sent,
            ) from exc  # fmt: skip
        return self._decode(response, what=what, terminal_ok=terminal_ok)

    def _decode(self, response: httpx.Response, *, what: str, terminal_ok: bool) -> Any:
        method, url = response.request.method, str(response.request.url)
        try:
            body: Any = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if terminal_ok and body is not None:
            prediction = parse_prediction(body, fallback_message=envelope_message(body))
            if prediction is not None and prediction.is_terminal:
                return body  # a failed prediction answered as HTTP 500 is a final answer
        if response.status_code >= 400:
            raise status_error(
                response.status_code,
                body if body is not None else response.text,
                method=method,
                url=url,
                retry_after=_retry_after(response),
                what=what,
            )
        if body is None:
            raise InvalidResponseError(
                f"{what} got an answer from Atlas that is not valid JSON (HTTP {response.status_code}, "
                f"{response.headers.get('content-type', 'no content type')}). Try again in a moment."
            )
        code = envelope_code(body)
        if code is not None and code not in (0, 200):
            raise status_error(code, body, method=method, url=url, what=what)
        return body


# --- helpers ----------------------------------------------------------------------------------


async def _call(callback: OnUpdate | None, prediction: Prediction) -> None:
    if callback is None:
        return
    result = callback(prediction)
    if result is not None:
        await result


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parsed = email.utils.parsedate_to_datetime(value) if value else None
    if parsed is None:
        return None
    return max(0.0, parsed.timestamp() - time.time())


def _too_big(url: str, max_bytes: int) -> DownloadError:
    return DownloadError(
        f"The output picture is larger than the {max_bytes // (1024 * 1024)} MB download limit "
        "(ATLAS_MCP_MAX_DOWNLOAD_MB); open its URL directly instead.",
        url=url,
    )


def _as_download_error(err: Exception, url: str) -> DownloadError:
    if isinstance(err, DownloadError):
        return err
    return DownloadError(
        f"The output picture could not be downloaded: {getattr(err, 'message', err)} "
        "The URL in the result still works for a while; call get_prediction to try again.",
        url=url,
    )


def _decode_data_uri(uri: str, max_bytes: int) -> Download:
    header, _, payload = uri.partition(",")
    content_type = header[5:].split(";")[0] or "application/octet-stream"
    if len(payload) * 3 // 4 > max_bytes:
        raise _too_big("data URI", max_bytes)
    try:
        content = base64.b64decode(payload, validate=False) if ";base64" in header else payload.encode()
    except (binascii.Error, ValueError) as exc:
        raise DownloadError("An output was a data URI that is not valid base64.") from exc
    return Download(url="data:", content=content, content_type=content_type)


def _upload_source(
    source: str | Path | bytes, filename: str | None, max_bytes: int | None
) -> tuple[str, int, Callable[[], Any]]:
    """Name, size and an opener for the bytes to upload; checks the file before anything is sent."""
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
        name = _safe_filename(filename or "upload.bin")
        if not data:
            raise LocalFileError("The data to upload is empty.")
        if max_bytes is not None and len(data) > max_bytes:
            raise LocalFileError(_size_message(len(data), max_bytes))
        return name, len(data), lambda: _closing(io.BytesIO(data))
    path = Path(source)
    if not path.exists():
        raise LocalFileError(f"No file at {str(path)!r}. Give the absolute path of an existing file.", path=str(path))
    if path.is_dir():
        raise LocalFileError(f"{str(path)!r} is a directory, not a file. Give the path of one file.", path=str(path))
    if not path.is_file():
        raise LocalFileError(f"{str(path)!r} is not a regular file (device, pipe or socket).", path=str(path))
    size = path.stat().st_size
    if size == 0:
        raise LocalFileError(f"{str(path)!r} is empty; there is nothing to upload.", path=str(path))
    if max_bytes is not None and size > max_bytes:
        raise LocalFileError(_size_message(size, max_bytes), path=str(path))
    name = _safe_filename(filename or path.name)
    return name, size, lambda: path.open("rb")


class _closing:
    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream

    def __enter__(self) -> IO[bytes]:
        return self.stream

    def __exit__(self, *exc: object) -> None:
        self.stream.close()


def _size_message(size: int, max_bytes: int) -> str:
    return (
        f"The file is {size / 1024 / 1024:.1f} MB, over the {max_bytes / 1024 / 1024:.0f} MB upload limit "
        "(ATLAS_MCP_MAX_UPLOAD_MB). Use a smaller file."
    )


def _safe_filename(name: str) -> str:
    """The last path component, without control characters; keeps the extension."""
    base = re.split(r"[\\/]", name.strip())[-1]
    base = "".join(c for c in base if c.isprintable() and c not in '<>:"|?*').strip(" .")
    return base[:200] or "upload.bin"
