"""Downloads: the one place that fetches what Atlas points to, and the trust boundary for it.

Where from:

* an output on the host of ``ATLASCLOUD_BASE_URL`` is fetched through the API client's own
  connection (the emulator, a self-hosted gateway: the operator chose that host);
* one on a host named in ``ATLAS_MCP_DOWNLOAD_HOSTS`` is fetched wherever that name resolves;
* any other only from public addresses, checked on the address actually connected to (the name
  is resolved here and the connection made to the checked address, so DNS tricks cannot bypass
  it): loopback, private, link-local, shared, multicast, reserved and unspecified ranges are
  refused, IPv4 inside IPv6 (mapped, NAT64, 6to4, Teredo) included. Proxies from the environment
  are not used for these (the address connected to must be the one checked).

Redirects are followed by hand, at most :data:`~atlas_image_mcp.constants.MAX_REDIRECTS`, each hop
routed and checked again. No credentials are ever sent. Each download is capped in bytes (the
declared length and the stream), counts against the call's :class:`Budget` (bytes and a
deadline), has one total deadline (not per read, so a body dripped a byte a second is cut off),
and is streamed to a file, never held whole in memory. ``data:`` outputs are decoded to a file in
pieces. Retries follow the shared :class:`~atlas_image_mcp.retry.RetryPolicy`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ipaddress
import os
import socket
import tempfile
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpcore
import httpx

from .constants import MAX_REDIRECTS, MAX_URL_CHARS, MB
from .errors import APIConnectionError, APITimeoutError, AtlasError, DownloadError
from .retry import RetryPolicy
from .settings import env_name
from .storage import partial_files, save_error

__all__ = [
    "AddressRefused",
    "Budget",
    "Download",
    "Fetcher",
    "GuardedTransport",
    "Resolver",
    "refusal",
    "remove_download",
    "system_resolver",
]

Sleep = Callable[[float], Awaitable[None]]
#: ``(host, port) -> IP addresses``; injectable so tests can play DNS tricks without DNS.
Resolver = Callable[[str, int], Awaitable[list[str]]]

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


# --- which addresses may be fetched from --------------------------------------------------------


def refusal(ip: str) -> str | None:
    """Why a download may not connect to ``ip`` (e.g. "a loopback address"), or None when it may."""
    try:
        addr: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    candidates = [addr]
    if isinstance(addr, ipaddress.IPv6Address):
        embedded = addr.ipv4_mapped or addr.sixtofour or (addr.teredo[1] if addr.teredo else None)
        if embedded is None and addr in _NAT64:
            embedded = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
        if embedded is not None:
            candidates.append(embedded)
    for candidate in candidates:
        for kind, hit in (
            ("an unspecified", candidate.is_unspecified),
            ("a loopback", candidate.is_loopback),
            ("a link-local", candidate.is_link_local),
            ("a multicast", candidate.is_multicast),
            ("a private", candidate.is_private),
            ("a reserved", candidate.is_reserved),
            ("a non-public", not candidate.is_global),
        ):
            if hit:
                return f"{kind} address"
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to (IP literals resolve to themselves)."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class AddressRefused(Exception):
    """A download would have connected to an address it may not reach."""

    def __init__(self, host: str, reason: str) -> None:
        self.host = host
        self.reason = reason
        super().__init__(f"{host} resolves to {reason}")


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves each host itself, refuses non-public addresses, and connects to the checked address.

    TLS still verifies the certificate against the host name (httpcore passes it to ``start_tls``).
    """

    def __init__(self, resolver: Resolver, allowed_hosts: Iterable[str]) -> None:
        self._resolver = resolver
        self._allowed = frozenset(h.strip().lower().strip("[]") for h in allowed_hosts if h.strip())
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if host.lower().strip("[]") in self._allowed:
            return await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        try:
            with anyio.fail_after(timeout) if timeout else contextlib.nullcontext():
                addresses = await self._resolver(host, port)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        if not addresses:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        for ip in addresses:
            reason = refusal(ip)
            if reason is not None:
                raise AddressRefused(host, reason)
        last: Exception | None = None
        for ip in addresses:
            try:
                return await self._inner.connect_tcp(ip, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("downloads never use a unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


_MAPPED: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


def _mapped(exc: Exception) -> Exception:
    for source, target in _MAPPED:
        if isinstance(exc, source):
            return target(str(exc))
    return exc


class _Body(httpx.AsyncByteStream):
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for part in self._stream:
                yield part
        except Exception as exc:
            raise _mapped(exc) from exc

    async def aclose(self) -> None:
        await self._stream.aclose()


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport whose connections go only where :class:`_GuardedBackend` allows."""

    def __init__(
        self,
        *,
        resolver: Resolver = system_resolver,
        allowed_hosts: Iterable[str] = (),
        max_connections: int = 16,
    ) -> None:
        self._backend = _GuardedBackend(resolver, allowed_hosts)
        self._max_connections = max_connections
        # Made at the first request: its TLS context costs ~40 ms, which a server whose outputs all
        # come from the API host (the emulator, a gateway) would pay at every start for nothing.
        self._pool: httpcore.AsyncConnectionPool | None = None

    def _connections(self) -> httpcore.AsyncConnectionPool:
        if self._pool is None:
            self._pool = httpcore.AsyncConnectionPool(
                ssl_context=httpx.create_ssl_context(),
                max_connections=self._max_connections,
                max_keepalive_connections=self._max_connections,
                keepalive_expiry=30.0,
                network_backend=self._backend,
            )
        return self._pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        try:
            answer = await self._connections().handle_async_request(core)
        except Exception as exc:
            mapped = _mapped(exc)
            if mapped is exc:
                raise
            raise mapped from exc
        return httpx.Response(
            status_code=answer.status,
            headers=answer.headers,
            stream=_Body(answer.stream),
            extensions=answer.extensions,
        )

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()


# --- one call's allowance -----------------------------------------------------------------------


@dataclass
class Budget:
    """What one tool call may still spend on downloads: bytes, and time until ``deadline``.

    ``deadline`` is on the clock of the :class:`Fetcher` (``time.monotonic`` unless injected).
    """

    bytes_left: int
    deadline: float = field(default=float("inf"))

    def take(self, count: int) -> bool:
        """Spend ``count`` bytes; False (and nothing spent) when that would go over."""
        if count > self.bytes_left:
            return False
        self.bytes_left -= count
        return True


@dataclass(frozen=True)
class Download:
    """An output fetched to a file (or decoded from its ``data:`` URI); the caller removes the file."""

    url: str
    path: Path
    size: int
    content_type: str


# --- the fetcher --------------------------------------------------------------------------------


class Fetcher:
    """Downloads output pictures to files, routed and checked as the module docstring says."""

    def __init__(
        self,
        api_http: httpx.AsyncClient,
        *,
        api_host: str,
        guard: GuardedTransport,
        timeout: httpx.Timeout,
        retry: RetryPolicy,
        limiter: anyio.Semaphore,
        sleep: Sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``api_http`` fetches outputs on ``api_host``; ``guard`` (address checks) every other one."""
        self._api_http = api_http
        self._api_host = api_host.lower()
        self._retry = retry
        self._sleep = sleep
        self._limiter = limiter
        self._timeout = float(timeout.read or 0.0)
        self._clock = clock
        self._guarded = httpx.AsyncClient(
            transport=guard,
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,  # an environment proxy would connect on our behalf, unchecked
        )

    async def aclose(self) -> None:
        await self._guarded.aclose()

    async def download(
        self,
        url: str,
        *,
        folder: Path,
        max_bytes: int,
        budget: Budget | None = None,
        accept: str = "image/*",
    ) -> Download:
        """Fetch ``url`` into a new file in ``folder``, refusing more than ``max_bytes``."""
        budget = budget or Budget(bytes_left=max_bytes)
        if url.startswith("data:"):
            return await self._decode_inline(url, folder, max_bytes, budget)
        if not url.startswith(("http://", "https://")) or len(url) > MAX_URL_CHARS:
            raise DownloadError("The output is not an http(s) URL or a data: URI.", url="")
        path = await anyio.to_thread.run_sync(_new_file, folder)
        try:
            content_type, size = await self._download_retrying(url, path, max_bytes, budget, accept)
        except BaseException:
            await anyio.to_thread.run_sync(_remove, path)
            raise
        return Download(url=url, path=path, size=size, content_type=content_type)

    async def _download_retrying(
        self, url: str, path: Path, max_bytes: int, budget: Budget, accept: str
    ) -> tuple[str, int]:
        """The content type and the size of what was saved (each attempt rewrites the file)."""
        attempt = 0
        while True:
            try:
                return await self._download_once(url, path, max_bytes, budget, accept)
            except (APIConnectionError, DownloadError) as err:
                delay = self._retry.delay(err, attempt, billable=False)
                if delay is None or self._clock() + delay >= budget.deadline:
                    raise _as_download_error(err, url) from err
                attempt += 1
                await self._sleep(delay)

    async def _download_once(
        self, url: str, path: Path, max_bytes: int, budget: Budget, accept: str
    ) -> tuple[str, int]:
        seconds = min(self._timeout, budget.deadline - self._clock())
        if seconds <= 0:
            raise DownloadError(_OUT_OF_TIME, url=url)
        with anyio.move_on_after(seconds) as scope:
            try:
                async with self._limiter:
                    return await self._follow(url, path, max_bytes, budget, accept)
            except httpx.TimeoutException as exc:
                raise APITimeoutError(f"Downloading the picture timed out ({type(exc).__name__}).") from exc
            except httpx.TransportError as exc:
                raise APIConnectionError(f"Downloading the picture failed: {type(exc).__name__}.") from exc
            except httpx.InvalidURL as exc:
                raise DownloadError(f"The picture's URL cannot be used ({exc}).", url=url) from exc
            except AddressRefused as exc:
                raise DownloadError(
                    f"The picture was not downloaded: its host {exc.host[:100]} is {exc.reason}, which "
                    "this server does not fetch from. If it is your own picture server, add the host to "
                    f"{env_name('download_hosts')}.",
                    url=url,
                ) from exc
        assert scope.cancelled_caught
        raise APITimeoutError(
            f"Downloading the picture did not finish within {seconds:.0f} s ({env_name('timeout')}, or the "
            "time left for this call)."
        )

    async def reachable(self, url: str) -> bool:
        """Whether ``url`` still answers with content: one small ranged GET per hop, through the same
        address checks as a download (no retry, nothing kept)."""
        if not url.startswith(("http://", "https://")) or len(url) > MAX_URL_CHARS:
            return False
        with anyio.move_on_after(self._timeout):
            try:
                async with (
                    self._limiter,
                    self._final_response(url, {"Accept": "image/*", "Range": "bytes=0-0"}) as response,
                ):
                    return response.status_code < 300
            except (httpx.HTTPError, AddressRefused, DownloadError):
                return False
        return False

    def _client_for(self, url: httpx.URL) -> httpx.AsyncClient:
        """The API client's connection for the API host, the guarded one for every other."""
        return self._api_http if url.host.lower() == self._api_host else self._guarded

    @asynccontextmanager
    async def _final_response(self, url: str, headers: dict[str, str]) -> AsyncIterator[httpx.Response]:
        """The first answer to a GET of ``url`` that is not a redirect. Redirects are followed by hand,
        at most MAX_REDIRECTS, only to http(s), each hop through :meth:`_client_for` (so its checks)."""
        current = httpx.URL(url)
        for _hop in range(MAX_REDIRECTS + 1):
            async with self._client_for(current).stream(
                "GET", current, headers=headers, follow_redirects=False
            ) as response:
                if not response.is_redirect:
                    yield response
                    return
                current = current.join(response.headers["location"])
                if current.scheme not in ("http", "https"):
                    raise DownloadError("The picture's URL redirects to one that is not http(s).", url=url)
        raise DownloadError(f"The picture's URL was redirected more than {MAX_REDIRECTS} times.", url=url)

    async def _follow(
        self, url: str, path: Path, max_bytes: int, budget: Budget, accept: str
    ) -> tuple[str, int]:
        async with self._final_response(url, {"Accept": accept}) as response:
            if response.status_code >= 300:
                raise DownloadError(
                    f"The picture could not be downloaded (HTTP {response.status_code}); its URL may "
                    "have expired. Call get_prediction to read the current URLs.",
                    url=url,
                    retryable=response.status_code >= 500 or response.status_code == 429,
                )
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise _too_big(url, max_bytes)
            size = await self._save_body(response, path, max_bytes, budget, url)
            return str(response.headers.get("content-type", "")).split(";")[0].strip(), size

    async def _save_body(
        self, response: httpx.Response, path: Path, max_bytes: int, budget: Budget, url: str
    ) -> int:
        """Write the body to ``path``; the number of bytes written."""
        total = 0
        async with await anyio.open_file(path, "wb") as sink:
            async for chunk in response.aiter_bytes():
                total += len(chunk)
                if total > max_bytes:
                    raise _too_big(url, max_bytes)
                if not budget.take(len(chunk)):
                    raise DownloadError(_CALL_CAP, url=url)
                await sink.write(chunk)
        return total

    async def _decode_inline(self, uri: str, folder: Path, max_bytes: int, budget: Budget) -> Download:
        header, sep, payload = uri.partition(",")
        content_type = header[5:].split(";")[0].strip()
        encoded = ";base64" in header
        if not sep:
            raise DownloadError("The output is a data: URI without data.", url="data:")
        size = len(payload) * 3 // 4 if encoded else len(payload)
        if size > max_bytes:
            raise _too_big("data:", max_bytes)
        if not budget.take(size):
            raise DownloadError(_CALL_CAP, url="data:")
        path = await anyio.to_thread.run_sync(_new_file, folder)
        try:
            written = await anyio.to_thread.run_sync(_write_inline, path, payload, encoded)
        except BaseException as exc:
            await anyio.to_thread.run_sync(_remove, path)
            if isinstance(exc, (binascii.Error, ValueError)):
                raise DownloadError(
                    "The output is a data: URI that is not valid base64.", url="data:"
                ) from None
            raise
        return Download(url="data:", path=path, size=written, content_type=content_type)


_OUT_OF_TIME = "The picture was not downloaded: the time for this call ran out."
_CALL_CAP = (
    "The picture was not downloaded: this call's download limit "
    f"({env_name('max_call_download_mb')}) is used up. Open its URL directly instead."
)


def _new_file(folder: Path) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".download-", suffix=".part", dir=folder)
    except OSError as exc:
        raise save_error(folder, exc) from exc
    os.close(fd)
    partial_files.add(name)
    return Path(name)


def _remove(path: Path) -> None:
    partial_files.discard(str(path))
    try:
        path.unlink()
    except FileNotFoundError:
        pass


async def remove_download(path: Path) -> None:
    """Delete a downloaded file that is not kept."""
    await anyio.to_thread.run_sync(_remove, path)


def _write_inline(path: Path, payload: str, encoded: bool) -> int:
    """Decode ``payload`` into ``path`` a megabyte at a time (no second copy of a big picture); the
    number of bytes written."""
    with path.open("wb") as sink:
        if not encoded:
            return sink.write(urllib.parse.unquote_to_bytes(payload))
        written = 0
        carry = ""
        step = 1024 * 1024
        for start in range(0, len(payload), step):
            piece = carry + "".join(payload[start : start + step].split())
            usable = len(piece) - len(piece) % 4
            written += sink.write(base64.b64decode(piece[:usable], validate=True))
            carry = piece[usable:]
        if carry:
            written += sink.write(base64.b64decode(carry + "=" * (-len(carry) % 4), validate=True))
        return written


def _too_big(url: str, max_bytes: int) -> DownloadError:
    return DownloadError(
        f"The picture is larger than the {max_bytes / MB:g} MB download limit "
        f"({env_name('max_download_mb')}); open its URL directly instead.",
        url=url,
    )


def _as_download_error(err: AtlasError, url: str) -> DownloadError:
    if isinstance(err, DownloadError):
        return err
    return DownloadError(
        f"The picture could not be downloaded: {err.message} The URL in the result still works for a while; "
        "call get_prediction to try again.",
        url=url,
    )
