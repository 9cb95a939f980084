"""The async Atlas Cloud client.

One ``httpx.AsyncClient`` (pooled connections, proxies from the environment; a hosted server puts
:mod:`atlas_image_mcp.aiohttp_transport` underneath) behind one method,
:meth:`AtlasClient._request`, which is the only place that sends API calls, wraps transport
errors, applies the :class:`~atlas_image_mcp.retry.RetryPolicy`, unwraps the envelope and maps
statuses to :mod:`atlas_image_mcp.errors`. Polling is timed by
:class:`~atlas_image_mcp.polling.PollSchedule`; output pictures are fetched by
:class:`~atlas_image_mcp.fetch.Fetcher`; files to upload are checked by :mod:`atlas_image_mcp.media`.
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import anyio
import httpx

from . import __version__
from . import constants as C
from .aiohttp_transport import AiohttpTransport
from .engines import Answer, Engine, HttpxEngine, Outgoing, SendFailed
from .errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    InvalidParameterError,
    InvalidResponseError,
    MissingAPIKeyError,
    NotFoundError,
    status_error,
)
from .fetch import Budget, Download, Fetcher, GuardedTransport, Resolver, remove_download, system_resolver
from .media import upload_source
from .models import (
    Balance,
    HistoryItem,
    ModelInfo,
    Prediction,
    Upload,
    envelope_code,
    envelope_data,
    parse_balance,
    parse_history,
    parse_prediction,
)
from .polling import PollSchedule, duration_of
from .prepared import PreparedRequest
from .redact import forget_secret, redact, register_secret
from .retry import RetryPolicy, retry_after_seconds
from .settings import Settings, env_name, normalize_base_url

__all__ = ["ApiRequest", "AtlasClient", "ClientHooks", "ClientOptions"]

logger = logging.getLogger(__name__)

# Connections to Atlas (kept alive for KEEPALIVE_SECONDS) and requests in flight at once: requests
# queue for one in our own semaphore (_Shared.in_flight), never in the transport's pool.
DEFAULT_LIMITS = httpx.Limits(
    max_connections=C.MAX_CONNECTIONS,
    max_keepalive_connections=C.MAX_CONNECTIONS,
    keepalive_expiry=C.KEEPALIVE_SECONDS,
)
_PREDICTION_ID = re.compile(C.PREDICTION_ID_PATTERN)
_DEFAULT_HEADERS = {"User-Agent": f"atlas-image-mcp/{__version__}", "Accept": "application/json"}

Sleep = Callable[[float], Awaitable[None]]
OnUpdate = Callable[[Prediction], Awaitable[None] | None]


@dataclass(frozen=True)
class ClientOptions:
    """How a client talks to Atlas; shared unchanged by a client and its per-key views."""

    base_url: str = C.DEFAULT_BASE_URL
    timeout: float = C.DEFAULT_TIMEOUT
    connect_timeout: float = C.DEFAULT_CONNECT_TIMEOUT
    upload_timeout: float = C.DEFAULT_UPLOAD_TIMEOUT
    max_retries: int = C.DEFAULT_MAX_RETRIES
    max_download_mb: float = C.DEFAULT_MAX_DOWNLOAD_MB
    download_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", normalize_base_url(self.base_url))
        object.__setattr__(self, "download_hosts", tuple(self.download_hosts))

    @classmethod
    def from_settings(cls, settings: Settings) -> ClientOptions:
        """The options ``settings`` declare (the runtime builds them once and passes them whole)."""
        return cls(**{f: getattr(settings, f) for f in cls.__dataclass_fields__})

    @property
    def max_answer_bytes(self) -> int:
        """Largest API answer read: room for one inline (base64) picture of the download cap, plus 1 MB."""
        return int(self.max_download_mb * C.MB * 4 / 3) + C.MB


@dataclass(frozen=True)
class ClientHooks:
    """What tests replace in a client: sleeping, the clock, randomness, name resolution."""

    sleep: Sleep = anyio.sleep
    clock: Callable[[], float] = time.monotonic
    rng: Callable[[], float] = random.random
    #: resolves the hosts of output pictures for the download guard
    resolver: Resolver = system_resolver
    #: the polling schedule (what it learned per model); a new one per client when not given
    poll_schedule: PollSchedule | None = None


@dataclass(frozen=True)
class ApiRequest:
    """One Atlas API call, as :meth:`AtlasClient._request` sends it."""

    method: str
    path: str
    #: How messages name it ("The generation request").
    what: str = "The request"
    json: Any = None
    #: The multipart files, made anew for each attempt (the streams are rewound).
    files: Callable[[], dict[str, Any]] | None = None
    auth: bool = True
    #: Seconds for one attempt (default: the client's timeout).
    timeout: float | None = None
    #: An error status whose body carries a terminal prediction is a final answer, not an error.
    terminal_ok: bool = False
    #: The prediction asked about, for bodies whose ``data`` has no id.
    prediction_id: str | None = None
    #: The API the path is under: the media API ``/api/v1``, or the billing API.
    prefix: str = C.API_PREFIX

    @property
    def billable(self) -> bool:
        return self.method != "GET"


@dataclass
class _Shared:
    """State shared by a client and its per-key views: the pool, the pacing and the catalogue cache."""

    http: httpx.AsyncClient
    #: what sends each API request (straight over aiohttp on a hosted server, else through ``http``)
    engine: Engine
    owns_http: bool
    options: ClientOptions
    retry: RetryPolicy
    fetcher: Fetcher
    poll_schedule: PollSchedule
    sleep: Sleep
    clock: Callable[[], float]
    # requests wait here for one of the pool's connections (see DEFAULT_LIMITS)
    in_flight: anyio.Semaphore
    models: list[ModelInfo] | None = None
    models_at: float = 0.0
    models_lock: anyio.Lock = field(default_factory=anyio.Lock)


class AtlasClient:
    """Async client for the Atlas Cloud media API.

    Use it as an async context manager (or call :meth:`aclose`). ``transport`` can be injected:
    tests pass an ``httpx.MockTransport`` or an ``httpx.ASGITransport`` around the emulator;
    ``hooks`` replace sleeping, the clock and randomness so that retry and polling tests take no
    time. The key is registered for redaction only when a request is sent with it.
    """

    def __init__(
        self,
        options: ClientOptions | None = None,
        *,
        api_key: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        hooks: ClientHooks | None = None,
        limits: httpx.Limits = DEFAULT_LIMITS,
    ) -> None:
        self._api_key = api_key or None
        self._shared = _shared_state(options or ClientOptions(), transport, hooks or ClientHooks(), limits)

    @classmethod
    def _view(cls, shared: _Shared, api_key: str | None) -> AtlasClient:
        """A client that shares ``shared`` (the pool, the pacing, the caches) with another key."""
        view = cls.__new__(cls)
        view._api_key = api_key or None
        view._shared = shared
        return view

    def __repr__(self) -> str:
        key = "set" if self._api_key else "missing"
        return f"AtlasClient(base_url={self.base_url!r}, api_key={key})"

    @property
    def base_url(self) -> str:
        return self._shared.options.base_url

    @property
    def options(self) -> ClientOptions:
        return self._shared.options

    @property
    def has_api_key(self) -> bool:
        return self._api_key is not None

    @property
    def poll_schedule(self) -> PollSchedule:
        """The polling schedule shared by this client and its per-key views (what it learned per model)."""
        return self._shared.poll_schedule

    def with_api_key(self, api_key: str | None) -> AtlasClient:
        """A view of this client that authenticates with another key but shares the connection pool."""
        return AtlasClient._view(self._shared, api_key)

    async def __aenter__(self) -> AtlasClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._shared.owns_http:
            await self._shared.fetcher.aclose()
            await self._shared.http.aclose()

    # --- public API ------------------------------------------------------------------------

    async def submit_image(self, prepared: PreparedRequest, *, deadline: float | None = None) -> Prediction:
        """``POST /model/generateImage`` with the prepared body. Never retried once it may have been sent.

        ``deadline`` (on the client's clock): the request is given up at that moment at the latest.
        """
        body = await self._request(
            ApiRequest("POST", "/model/generateImage", "The generation request", json=prepared.wire_body()),
            deadline=deadline,
        )
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
            ApiRequest(
                "GET",
                f"/model/prediction/{pid}",
                f"Looking up prediction {pid}",
                terminal_ok=True,
                prediction_id=pid,
            ),
            deadline=deadline,
        )
        prediction = parse_prediction(body, fallback_id=pid)
        if prediction is None:
            raise InvalidResponseError(f"Atlas answered the lookup of prediction {pid} without a prediction.")
        return prediction

    async def wait(
        self,
        prediction_id: str,
        max_wait: float,
        on_update: OnUpdate | None = None,
        *,
        not_found_grace: float = C.NOT_FOUND_GRACE,
        first: Prediction | None = None,
        deadline: float | None = None,
    ) -> Prediction:
        """Poll until the prediction is terminal or ``max_wait`` seconds pass; return the last state.

        ``deadline`` (on the client's clock, at or after the end of the wait): no poll, and no
        retry of one, runs past it; without it, one request timeout after the end of the wait.

        ``on_update`` is called with every state seen (including ``first``, a state already known,
        such as the submit answer). A 404 within ``not_found_grace`` seconds of the start counts as
        "not visible yet" (Atlas can lag right after a submit). Cancel the calling task to stop.

        Polls follow :class:`PollSchedule`: at most 0.3 s apart for the first 10 s, then at most
        10% of the time waited, placed by what the model's recent predictions took (the wait is
        assumed to start right after the submit); it learns from every completion seen here.
        """
        start = self._shared.clock()
        wait_end = start + max_wait
        # a poll sent at the end of the wait still gets its own time, within the caller's deadline
        hard = wait_end + self.options.timeout if deadline is None else max(wait_end, deadline)
        current = first
        if current is not None:
            await _call(on_update, current)
            if current.is_terminal:
                return current
        schedule = self._shared.poll_schedule
        model = current.model if current is not None else None
        plan = schedule.plan(model)
        last_running = 0.0  # elapsed time of the last poll that saw the job still running
        while True:
            elapsed = self._shared.clock() - start
            interval = plan.next_delay(elapsed)
            remaining = wait_end - self._shared.clock()
            if current is not None and remaining <= 0:
                return current
            await self._shared.sleep(max(0.0, min(interval, remaining)))
            try:
                current = await self.get_prediction(prediction_id, deadline=hard)
            except NotFoundError:
                if self._shared.clock() - start > not_found_grace or self._shared.clock() >= wait_end:
                    raise
                continue
            if model is None and current.model:  # learned the model only now: time by it from here
                model = current.model
                if not plan.learned and (known := schedule.plan(model)).learned:
                    plan = known
                    plan.skip(self._shared.clock() - start)
            await _call(on_update, current)
            if current.kind == "done":
                seen = self._shared.clock() - start
                schedule.observe(model, duration_of(current) or (last_running + seen) / 2)
            elif not current.is_terminal:
                last_running = self._shared.clock() - start
            if current.is_terminal or self._shared.clock() >= wait_end:
                return current

    async def upload_media(
        self,
        source: str | Path | bytes,
        filename: str | None = None,
        *,
        max_bytes: int | None = None,
    ) -> Upload:
        """``POST /model/uploadMedia`` (multipart part ``file``). Files are streamed, not read whole."""
        source_ = upload_source(source, filename, max_bytes)
        name = source_.name
        with source_.open() as stream:

            def files() -> dict[str, Any]:
                stream.seek(0)
                return {"file": (name, stream, source_.content_type)}

            body = await self._request(
                ApiRequest(
                    "POST",
                    "/model/uploadMedia",
                    f"Uploading {name}",
                    files=files,
                    timeout=self.options.upload_timeout,
                )
            )
        data = envelope_data(body)
        info: dict[str, Any] = data if isinstance(data, dict) else {}
        url = info.get("download_url") or info.get("url") or info.get("file_url")
        if not url and isinstance(body, dict):
            url = body.get("url")
        if not isinstance(url, str) or not url:
            raise InvalidResponseError(f"Atlas accepted the upload of {name} but returned no download_url.")
        kind = info.get("type")
        return Upload(
            download_url=url,
            filename=str(info.get("filename") or name),
            size=int(info.get("size") or source_.size),
            content_type=source_.content_type,
            type=kind if isinstance(kind, str) else None,
        )

    async def list_models(self, *, refresh: bool = False) -> list[ModelInfo]:
        """The catalogue's image models (``display_console: false`` dropped), cached for five minutes."""
        shared = self._shared
        async with shared.models_lock:
            fresh = shared.models is not None and shared.clock() - shared.models_at < C.MODELS_TTL
            if fresh and not refresh:
                return list(shared.models or [])
            body = await self._request(
                ApiRequest("GET", "/models", "Reading the model catalogue", auth=False)
            )
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
            shared.models, shared.models_at = models, shared.clock()
            return list(models)

    async def model_schema(self, url: str) -> dict[str, Any]:
        """A model's schema document (the catalogue's ``schema`` URL; public, fetched without the key).

        Fetched like a picture (the same address checks, caps and deadline), at most
        :data:`~atlas_image_mcp.constants.MAX_SCHEMA_BYTES`.
        """
        folder = Path(await anyio.to_thread.run_sync(tempfile.mkdtemp))
        try:
            download = await self._shared.fetcher.download(
                url, folder=folder, max_bytes=C.MAX_SCHEMA_BYTES, accept="application/json"
            )
            content = await anyio.Path(download.path).read_bytes()
            await remove_download(download.path)
        finally:
            await anyio.to_thread.run_sync(lambda: shutil.rmtree(folder, ignore_errors=True))
        try:
            document = json.loads(content)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidResponseError(f"The schema at {url[:200]} is not JSON.") from exc
        if not isinstance(document, dict):
            raise InvalidResponseError(f"The schema at {url[:200]} is not a JSON object.")
        return document

    async def get_balance(self) -> Balance:
        """``GET /public/v1/balance``: the account's credit (a billing API answer, not enveloped)."""
        body = await self._request(
            ApiRequest("GET", "/balance", "Reading the account balance", prefix=C.BILLING_PREFIX)
        )
        balance = parse_balance(body)
        if balance is None:
            raise InvalidResponseError(
                "Atlas answered the balance request without any amount this server can read. Check the "
                f"balance in the Atlas console instead: {C.BILLING_URL}"
            )
        return balance

    async def request_body_of(self, prediction_id: str) -> dict[str, Any] | None:
        """The body a prediction was submitted with, from Atlas' history (None when it is not there).

        ``GET /model/history?sessionID=<id>``: ``items[].requestBody`` is a JSON string.
        """
        pid = self._check_prediction_id(prediction_id)
        body = await self._request(
            ApiRequest(
                "GET", f"/model/history?sessionID={pid}&no=1&size=1", f"Looking up the request of {pid}"
            )
        )
        data = envelope_data(body)
        items = data.get("items") if isinstance(data, dict) else None
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict) or str(item.get("ID") or item.get("id") or "") != pid:
                continue
            raw = item.get("requestBody")
            try:
                request = json.loads(raw) if isinstance(raw, str) else raw
            except ValueError:
                return None
            return request if isinstance(request, dict) else None
        return None

    async def history(
        self, model: str, *, page: int = 1, size: int = 50
    ) -> tuple[list[HistoryItem], int | None]:
        """One page (from 1) of the account's jobs of ``model``, newest first, and how many there are.

        ``GET /model/history?model=<id>&no=<page>&size=<size>`` (at most 50 a page).
        """
        query = urlencode({"model": model, "no": max(1, page), "size": min(max(1, size), 50)})
        body = await self._request(
            ApiRequest("GET", f"/model/history?{query}", f"Reading the history of {model}")
        )
        return parse_history(body)

    async def reachable(self, url: str) -> bool:
        """Whether an output URL still answers (it expires after a while at Atlas)."""
        return await self._shared.fetcher.reachable(url)

    async def download(
        self, url: str, *, folder: Path, max_bytes: int, budget: Budget | None = None
    ) -> Download:
        """Fetch an output picture into a new file in ``folder`` (no API key is ever sent to it).

        At most ``max_bytes``, and within ``budget`` (the call's bytes and deadline) when given;
        where it may be fetched from is decided by :class:`~atlas_image_mcp.fetch.Fetcher`.
        """
        return await self._shared.fetcher.download(url, folder=folder, max_bytes=max_bytes, budget=budget)

    def deadline_in(self, seconds: float) -> float:
        """The moment ``seconds`` from now on this client's clock (for ``deadline=`` arguments)."""
        return self._shared.clock() + seconds

    # --- internals -------------------------------------------------------------------------

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

    async def _request(self, request: ApiRequest, *, deadline: float | None = None) -> Any:
        """Send one API call with the retry policy above; return the decoded JSON body.

        ``deadline`` (on the client's clock): no attempt runs, and no retry waits, past it.
        """
        url = f"{self.base_url}{request.prefix}{request.path}"
        headers = self._auth_headers() if request.auth else {}
        attempt = 0
        while True:
            seconds = request.timeout or self.options.timeout
            if deadline is not None:
                seconds = min(seconds, deadline - self._shared.clock())
            try:
                answer = await self._send_once(request, url, headers, seconds)
            except (APIConnectionError, APIStatusError, InvalidResponseError) as err:
                if isinstance(err, AuthenticationError) and err.status_code == 401:
                    forget_secret(self._api_key)  # a key Atlas does not know is nobody's secret
                delay = self._shared.retry.delay(err, attempt, billable=request.billable)
                if delay is None or (deadline is not None and self._shared.clock() + delay >= deadline):
                    if (
                        request.billable
                        and request.path.startswith("/model/generate")
                        and _may_have_started(err)
                    ):
                        err.extend_message(MAY_HAVE_STARTED)
                    raise
                attempt += 1
                logger.info(
                    "retrying %s %s in %.2fs after: %s",
                    request.method,
                    request.path,
                    delay,
                    err.message[:200],
                )
                await self._shared.sleep(delay)
            else:
                if request.auth:  # Atlas accepted the key: kept out of every message from now on
                    register_secret(self._api_key)
                return answer

    async def _send_once(self, request: ApiRequest, url: str, headers: dict[str, str], seconds: float) -> Any:
        """One attempt, bounded as a whole by ``seconds`` (connecting, sending and the whole answer)."""
        options = self.options
        method, what = request.method, request.what
        outgoing = Outgoing(
            method,
            url,
            {**_DEFAULT_HEADERS, **headers},
            json=request.json,
            files=request.files,
            connect=min(options.connect_timeout, max(seconds, 0.001)),
            seconds=max(seconds, 0.001),
        )
        answer: Answer | None = None
        with anyio.move_on_after(max(seconds, 0.0)) as scope:
            try:
                async with self._shared.in_flight:
                    read = partial(_read_capped, limit=options.max_answer_bytes, what=what)
                    answer = await self._shared.engine.exchange(outgoing, read)
            except SendFailed as exc:
                if exc.timeout:
                    raise self._timeout_error(method, url, what, exc.kind, sent=exc.sent) from exc
                detail = f"{exc.kind}: {exc.detail[:200]}"
                raise APIConnectionError(
                    (
                        f"{what} lost its connection to {self.base_url} before the whole answer arrived "
                        f"({detail})."
                        if exc.sent
                        else f"{what} could not reach {self.base_url} ({detail})."
                    )
                    + ("" if exc.sent and method != "GET" else
                       " Check the network connection or proxy settings (HTTPS_PROXY), then try again."),
                    method=method, url=url, sent=exc.sent,
                ) from exc  # fmt: skip
        if scope.cancelled_caught or answer is None:
            why = f"no whole answer within {seconds:.1f} s"
            raise self._timeout_error(method, url, what, why, sent=True)
        return self._decode(answer, request, method, url)

    def _timeout_error(self, method: str, url: str, what: str, why: str, *, sent: bool) -> APITimeoutError:
        # A billable request that may have been sent gets MAY_HAVE_STARTED appended by _request.
        return APITimeoutError(
            f"{what} timed out ({why}) talking to {self.base_url}."
            + ("" if sent and method != "GET" else " Check the network, then try again."),
            method=method, url=url, sent=sent,
        )  # fmt: skip

    def _decode(self, answer: Answer, request: ApiRequest, method: str, url: str) -> Any:
        what, content, status = request.what, answer.content, answer.status
        try:
            body: Any = json.loads(content) if content else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if 300 <= status < 400:
            target = urlsplit(answer.headers.get("location", "")).hostname or "elsewhere"
            raise APIStatusError(
                f"{what} was answered with a redirect (HTTP {status}, to {target[:100]}) "
                "instead of an answer. API calls never follow redirects, so nothing was sent again. "
                f"Check {env_name('base_url')}: it must be the API origin itself.",
                status_code=status, method=method, url=url,
            )  # fmt: skip
        code = envelope_code(body)
        failed = status >= 400 or (code is not None and code not in (0, 200))
        if request.terminal_ok and failed and body is not None:
            # Only an error answer needs this look (a success body is returned as is anyway):
            # a failed prediction answered as HTTP 500 is a final answer, not a fault to retry.
            prediction = parse_prediction(body, fallback_id=request.prediction_id)
            if prediction is not None and prediction.is_terminal:
                return body
        if status >= 400:
            raise status_error(
                status,
                body if body is not None else content[:2000].decode("utf-8", "replace"),
                method=method,
                url=url,
                retry_after=retry_after_seconds(answer.headers),
                what=what,
                billable=method != "GET",
            )
        if body is None:
            raise InvalidResponseError(
                f"{what} got an answer from Atlas that is not valid JSON (HTTP {status}, "
                f"{answer.headers.get('content-type', 'no content type')}). Try again in a moment."
            )
        if code is not None and code not in (0, 200):
            raise status_error(code, body, method=method, url=url, what=what, billable=method != "GET")
        return body


async def _read_capped(declared: str | None, chunks: AsyncIterator[bytes], *, limit: int, what: str) -> bytes:
    """A whole answer body, refusing more than ``limit`` bytes (declared or streamed).

    An answer refused for its size still names the prediction when its first bytes do.
    """
    too_long = declared is not None and declared.isdigit() and int(declared) > limit
    stop = _OPENING if too_long else limit  # refused on its length: read only the opening
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > stop:
            break
    if too_long or len(body) > limit:
        raise _answer_too_big(what, limit, bytes(body[:_OPENING]))
    return bytes(body)


_OPENING = 64 * 1024
_ID_IN_OPENING = re.compile(rb'"id"\s*:\s*"([A-Za-z0-9_\-]{1,128})"')


def _answer_too_big(what: str, limit: int, opening: bytes) -> InvalidResponseError:
    found = _ID_IN_OPENING.search(opening)
    pid = found.group(1).decode() if found else None
    named = f" for prediction {pid}" if pid else ""
    return InvalidResponseError(
        f"{what} got an answer from Atlas{named} larger than {limit / C.MB:.0f} MB (room for one inline "
        f"picture of {env_name('max_download_mb')}), so it was not read. "
        + (f"The job exists and may be billed: open prediction {pid} in the Atlas console." if pid else ""),
        retryable=False,
        prediction_id=pid,
    )


# --- helpers ----------------------------------------------------------------------------------


def _shared_state(
    options: ClientOptions,
    transport: httpx.AsyncBaseTransport | None,
    hooks: ClientHooks,
    limits: httpx.Limits,
) -> _Shared:
    """A new client's pool, pacing and caches (its per-key views share them)."""
    timeout = httpx.Timeout(options.timeout, connect=options.connect_timeout)
    http = httpx.AsyncClient(
        transport=transport,
        timeout=timeout,
        limits=limits,
        headers=_DEFAULT_HEADERS,
        # a redirect is never followed: a POST must not be sent twice, nor anywhere else
        follow_redirects=False,
        trust_env=True,
    )
    retry = RetryPolicy(max_retries=options.max_retries, rng=hooks.rng)
    in_flight = anyio.Semaphore(limits.max_connections or C.MAX_CONNECTIONS)
    fetcher = Fetcher(
        http,
        api_host=httpx.URL(options.base_url).host,
        guard=GuardedTransport(resolver=hooks.resolver, allowed_hosts=options.download_hosts),
        timeout=timeout,
        retry=retry,
        limiter=in_flight,
        sleep=hooks.sleep,
        clock=hooks.clock,
    )
    return _Shared(
        http=http,
        engine=transport if isinstance(transport, AiohttpTransport) else HttpxEngine(http),
        owns_http=True,
        options=options,
        retry=retry,
        fetcher=fetcher,
        poll_schedule=hooks.poll_schedule or PollSchedule(),
        sleep=hooks.sleep,
        clock=hooks.clock,
        in_flight=in_flight,
    )


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
    return isinstance(err, InvalidResponseError) and err.prediction_id is None  # else it says so itself


async def _call(callback: OnUpdate | None, prediction: Prediction) -> None:
    if callback is None:
        return
    result = callback(prediction)
    if result is not None:
        await result
