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
import math
import mimetypes
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timezone
from pathlib import Path
from typing import Any

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
from .models import (
    ModelInfo,
    Prediction,
    Upload,
    envelope_code,
    envelope_data,
    parse_prediction,
)
from .settings import DEFAULT_BASE_URL, normalize_base_url

__all__ = ["AtlasClient", "Download", "PollSchedule"]

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER = 30.0
MODELS_TTL = 300.0
# httpcore 1.0.x rescans every pooled connection and every queued request each time a request
# starts or ends, and closes idle connections as soon as there are more connections in all than
# max_keepalive_connections (encode/httpcore#1035): with 500 calls in flight that bookkeeping was
# most of the HTTP server's CPU (bench/RESULTS.md). So every connection is kept alive, and requests
# queue for one in our own semaphore (_Shared.in_flight), never in httpcore's queue.
DEFAULT_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=64, keepalive_expiry=30.0)
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
    """When to poll a running prediction, learning how long each model takes.

    *Cold* (no prediction of the model has completed in this process yet): every ``first``
    seconds until ``fast_until``, then intervals growing by ``growth`` up to ``max_interval``.
    With the defaults any prediction that ends within its first 5 s is seen within 250 ms (polls
    240 ms apart, on a grid from the start of the wait so slow answers do not stretch it, leaving
    ~10 ms for the submit answer and the poll to travel).

    *Learned*: the schedule keeps the durations of the model's last ``history`` completed
    predictions (Atlas' own ``latency_ms``, else ``completed_at - created_at``, else what the
    polls bracketed). With ``lo`` the fastest of them and ``hi`` the slowest (ignoring the single
    slowest once there are four), a wait polls:

    1. before ``lo``: on a grid of at most ``lo / 2`` and ``max_interval`` (a job faster than
       any recent one is still caught within half of ``lo``);
    2. from ``lo`` to ``hi``: every ``fine = max(min_interval, precision * hi, (hi - lo) /
       window_polls)`` seconds (at most ``first`` while ``hi`` < ``fast_until``), the first poll
       right at ``lo``;
    3. after that (a job slower than the recent ones): every ``(growth - 1) * elapsed`` seconds,
       at least ``fine``, at most ``first`` before ``fast_until`` and ``max_interval`` after.

    So a model that takes ~1 s is polled about twice and seen a few ms after it finishes, and a
    ~30 s one about 6 times, instead of 4 and 30 times on the cold schedule; a prediction that
    ends within 5 s is still seen within 250 ms unless it beats the fastest recent run of its
    model. Timing only depends on the model id (not size or steps) and assumes the wait starts
    right after the submit. Cold intervals get +-``jitter`` (never above ``first`` in the fast
    phase) so that many waits do not poll in lock step; learned ones need none, as each wait's
    grid starts at its own submit. One schedule is shared by a client and its per-key views;
    ``learn=False`` keeps it cold.
    """

    def __init__(
        self,
        *,
        first: float = 0.24,
        fast_until: float = 5.0,
        growth: float = 1.5,
        max_interval: float = 5.0,
        jitter: float = 0.1,
        rng: Callable[[], float] = random.random,
        learn: bool = True,
        history: int = 8,
        precision: float = 0.05,
        window_polls: int = 8,
        min_interval: float = 0.02,
    ) -> None:
        self.first = first
        self.fast_until = fast_until
        self.growth = growth
        self.max_interval = max_interval
        self.jitter = jitter
        self._rng = rng
        self.learn = learn
        self.history = max(1, history)
        self.precision = precision
        self.window_polls = max(1, window_polls)
        self.min_interval = min_interval
        self._durations: dict[str, list[float]] = {}

    def interval(self, elapsed: float, previous: float | None) -> float:
        """The cold schedule: seconds to wait before the next poll."""
        if elapsed < self.fast_until or previous is None:
            # capped at ``first`` so the jitter never stretches the fast phase's promise
            return min(self.first, self._jittered(self.first))
        return self._jittered(min(self.max_interval, max(self.first, previous) * self.growth))

    def _jittered(self, seconds: float) -> float:
        return seconds * (1 + self.jitter * (2 * self._rng() - 1))

    # --- learning ----------------------------------------------------------------------------

    def observe(self, model: str | None, seconds: float) -> None:
        """Record that a prediction of ``model`` took ``seconds`` from submit to completion."""
        if not self.learn or not model or not 0 < seconds < 24 * 3600:
            return
        recent = self._durations.pop(model, [])  # re-inserted last: the dict stays in LRU order
        self._durations[model] = [*recent, max(seconds, self.min_interval)][-self.history :]
        while len(self._durations) > _MAX_MODELS_TRACKED:
            del self._durations[next(iter(self._durations))]

    def expected(self, model: str | None) -> tuple[float, float] | None:
        """(fastest, slowest) recent duration of ``model`` in seconds, or None while cold."""
        recent = sorted(self._durations.get(model or "", ()))
        if not recent:
            return None
        return recent[0], recent[-2] if len(recent) >= 4 else recent[-1]

    def plan(self, model: str | None) -> _PollPlan:
        """The poll timing of one wait for a prediction of ``model`` (None = unknown yet)."""
        window = self.expected(model) if self.learn else None
        if window is None:
            return _PollPlan(self, None)
        lo, hi = window
        fine = max(self.min_interval, self.precision * hi, (hi - lo) / self.window_polls)
        fine = max(1e-3, min(fine, self.first if hi < self.fast_until else self.max_interval))
        return _PollPlan(self, (lo, hi, fine))


class _PollPlan:
    """The next poll of one wait, from the schedule's cold rules or its learned window."""

    def __init__(self, schedule: PollSchedule, window: tuple[float, float, float] | None) -> None:
        self.schedule = schedule
        self.window = window
        self.learned = window is not None
        self._previous: float | None = None
        self._due = 0.0  # when (seconds into the wait) the previous cold poll was due

    def next_delay(self, elapsed: float) -> float:
        """Seconds to sleep (from ``elapsed`` seconds after the wait started) before the next poll."""
        s = self.schedule
        if self.window is None:
            # the next poll is due one interval after the previous one was due, not after it
            # returned, so the time a poll takes does not add up over the wait
            self._previous = s.interval(elapsed, self._previous)
            self._due = max(self._due + self._previous, elapsed)
            return self._due - elapsed
        lo, hi, fine = self.window
        if elapsed < lo - s.min_interval / 2:
            # before the fastest recent duration: a coarse grid, then exactly ``lo``
            step = min(s.max_interval, max(s.min_interval, lo / 2))
            target = min(lo, (math.floor(elapsed / step + 1e-9) + 1) * step)
            if lo - target < s.min_interval:
                target = lo
            return max(0.0, target - elapsed)
        if elapsed < hi + fine:
            # in the window: on the grid lo + k * fine
            k = math.floor((elapsed - lo) / fine + 1e-9) + 1
            return max(s.min_interval, lo + k * fine - elapsed)
        # slower than the recent runs: relative steps, within the cold schedule's promise
        ceiling = s.first if elapsed < s.fast_until else s.max_interval
        return min(ceiling, max(fine, (s.growth - 1) * elapsed))


_MAX_MODELS_TRACKED = 64


def _duration_of(prediction: Prediction) -> float | None:
    """How long Atlas says a completed prediction took from submit to completion, in seconds."""
    latency = prediction.raw.get("latency_ms")
    if isinstance(latency, (int, float)) and not isinstance(latency, bool) and latency > 0:
        return float(latency) / 1000
    if prediction.created_at and prediction.completed_at:
        from datetime import datetime  # only on this fallback path

        try:
            created = datetime.fromisoformat(prediction.created_at.replace("Z", "+00:00"))
            completed = datetime.fromisoformat(prediction.completed_at.replace("Z", "+00:00"))
            seconds = (completed - created).total_seconds()
        except (ValueError, TypeError):
            return None
        return seconds if seconds > 0 else None
    return None


class _Shared:
    """State shared by a client and its per-key views: the pool and the catalogue cache."""

    def __init__(self, http: httpx.AsyncClient, owns_http: bool, max_in_flight: int | None = None) -> None:
        self.http = http
        self.owns_http = owns_http
        # requests wait here for one of the pool's connections (see DEFAULT_LIMITS)
        self.in_flight = anyio.Semaphore(max_in_flight or DEFAULT_LIMITS.max_connections or 32)
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
            self._shared = _Shared(http_client, owns_http=True, max_in_flight=limits.max_connections)
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
                f"progress cannot be followed. Answer: {redact(str(body))[:300]}. Do not resubmit blindly: "
                "the job may be running and billed; check the Atlas console history first."
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
            prediction_id=pid,
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

        Polls follow :class:`PollSchedule`, which times them by what the model's recent
        predictions took (the wait is assumed to start right after the submit) and learns from
        every completion seen here.
        """
        start = self._clock()
        deadline = start + timeout
        current = first
        if current is not None:
            await _call(on_update, current)
            if current.is_terminal:
                return current
        schedule = self.poll_schedule
        model = current.model if current is not None else None
        plan = schedule.plan(model)
        last_running = 0.0  # elapsed time of the last poll that saw the job still running
        while True:
            elapsed = self._clock() - start
            interval = plan.next_delay(elapsed)
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
            if model is None and current.model:  # learned the model only now: time by it from here
                model = current.model
                if not plan.learned and (known := schedule.plan(model)).learned:
                    plan = known
            await _call(on_update, current)
            if current.kind == "done":
                seen = self._clock() - start
                schedule.observe(model, _duration_of(current) or (last_running + seen) / 2)
            elif not current.is_terminal:
                last_running = self._clock() - start
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
            async with self._shared.in_flight, self._shared.http.stream(
                "GET", url, headers={"Accept": "image/*,*/*"}
            ) as response:
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
        prediction_id: str | None = None,
        deadline: float | None = None,
        what: str = "The request",
    ) -> Any:
        """Send one API call with the retry policy above; return the decoded JSON body.

        ``terminal_ok``: an error status whose body carries a terminal prediction (``prediction_id``
        is the id asked for, for bodies whose ``data`` has none) is a final answer, not an error.
        """
        url = f"{self.base_url}{API_PREFIX}{path}"
        headers = self._auth_headers() if auth else {}
        billable = method != "GET"
        attempt = 0
        while True:
            try:
                return await self._send_once(
                    method, url, headers=headers, json=json, files=files, timeout=timeout,
                    terminal_ok=terminal_ok, prediction_id=prediction_id, what=what,
                )  # fmt: skip
            except (APIConnectionError, APIStatusError, InvalidResponseError) as err:
                delay = self._retry_delay(err, attempt, billable=billable)
                if delay is None or (deadline is not None and self._clock() + delay >= deadline):
                    if billable and path.startswith("/model/generate") and _may_have_started(err):
                        err.extend_message(MAY_HAVE_STARTED)
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
        prediction_id: str | None = None,
    ) -> Any:
        request_timeout = httpx.Timeout(timeout or self.timeout, connect=self.connect_timeout)
        try:
            async with self._shared.in_flight:
                response = await self._shared.http.request(
                    method, url, headers=headers, json=json, files=files() if files else None, timeout=request_timeout
                )
        except httpx.TimeoutException as exc:
            sent = not isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout))
            # A billable request that may have been sent gets MAY_HAVE_STARTED appended by _request.
            raise APITimeoutError(
                f"{what} timed out ({type(exc).__name__}) talking to {self.base_url}. "
                + ("" if sent and method != "GET" else "Check the network, then try again."),
                method=method, url=url, sent=sent,
            ) from exc  # fmt: skip
        except httpx.TransportError as exc:
            sent = not isinstance(exc, httpx.ConnectError)
            detail = f"{type(exc).__name__}: {redact(exc)[:200]}"
            raise APIConnectionError(
                (
                    f"{what} lost its connection to {self.base_url} before the whole answer arrived "
                    f"({detail})."
                    if sent
                    else f"{what} could not reach {self.base_url} ({detail})."
                )
                + ("" if sent and method != "GET" else
                   " Check the network connection or proxy settings (HTTPS_PROXY), then try again."),
                method=method, url=url, sent=sent,
            ) from exc  # fmt: skip
        return self._decode(response, what=what, terminal_ok=terminal_ok, prediction_id=prediction_id)

    def _decode(
        self, response: httpx.Response, *, what: str, terminal_ok: bool, prediction_id: str | None = None
    ) -> Any:
        method, url = response.request.method, str(response.request.url)
        try:
            body: Any = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        code = envelope_code(body)
        failed = response.status_code >= 400 or (code is not None and code not in (0, 200))
        if terminal_ok and failed and body is not None:
            # Only an error answer needs this look (a success body is returned as is anyway):
            # a failed prediction answered as HTTP 500 is a final answer, not a fault to retry.
            prediction = parse_prediction(body, fallback_id=prediction_id)
            if prediction is not None and prediction.is_terminal:
                return body
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
        if code is not None and code not in (0, 200):
            raise status_error(code, body, method=method, url=url, what=what)
        return body


# --- helpers ----------------------------------------------------------------------------------

MAY_HAVE_STARTED = (
    "The request may still have reached Atlas and started a job, which would be billed: look for it "
    "in the history of the Atlas console before generating again."
)


def _may_have_started(err: Exception) -> bool:
    """Whether a failed billable POST may have been accepted anyway (no answer, or a 5xx/garbled one).

    A 4xx answer (refused, rate limited, no credit) means nothing was started; a connection that
    failed before sending means nothing arrived.
    """
    if isinstance(err, APIConnectionError):
        return err.sent
    if isinstance(err, APIStatusError):
        return err.status_code >= 500
    return isinstance(err, InvalidResponseError)


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
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None  # neither seconds nor an HTTP date: fall back to the usual backoff
    if parsed is None:
        return None
    if parsed.tzinfo is None:  # an HTTP date is GMT; a naive one cannot be compared to time.time()
        parsed = parsed.replace(tzinfo=timezone.utc)
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
        return name, len(data), lambda: io.BytesIO(data)  # closes itself on leaving a with block
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
