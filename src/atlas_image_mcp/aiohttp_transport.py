"""The engine under the Atlas client's ``httpx.AsyncClient``: aiohttp's connection pool and parser.

The client keeps httpx's interface (requests, responses, timeouts, streaming; tests inject
``httpx.MockTransport`` or an ``httpx.ASGITransport`` around the emulator), but on a real network
each request goes through :class:`AiohttpTransport`: under load httpx's own transport spent more
CPU per request than the whole MCP call around it (its pool rescans every connection each time a
request starts or ends, and the HTTP/1.1 parser is pure Python), while aiohttp reuses connections
from a pool that does not, and parses with a C parser (bench/RESULTS.md).

What matters for money is kept exact: an error before any byte of the request could leave is
an ``httpx.ConnectError``/``httpx.ConnectTimeout`` (nothing was sent), anything later is a
read-side error (it may have been sent), and no request is ever sent twice or redirected here.
Proxies are the ones httpx would take from the environment (``HTTPS_PROXY``, ``HTTP_PROXY``,
``ALL_PROXY``, ``NO_PROXY``; read by :func:`atlas_image_mcp.settings.proxy_environment`), and TLS
uses httpx's own default context.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:  # imported on the first request: a stdio server that never calls Atlas does not pay
    import aiohttp

__all__ = ["AiohttpTransport"]

_CHUNK = 64 * 1024


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport that sends over one aiohttp session (created on first use, in its loop)."""

    def __init__(
        self, *, max_connections: int, keepalive_expiry: float, proxies: Mapping[str, str] | None = None
    ) -> None:
        """``proxies``: scheme (``http``, ``https``, ``all``) -> proxy URL, and ``no``: hosts that bypass."""
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None
        self._ssl: ssl.SSLContext | None = None
        self._proxies = dict(proxies or {})

    def _open(self) -> aiohttp.ClientSession:
        import aiohttp

        connector = aiohttp.TCPConnector(
            limit=self._max_connections, limit_per_host=0, keepalive_timeout=self._keepalive_expiry
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,  # httpx decodes, by the response's Content-Encoding
            trust_env=False,  # proxies as given; no .netrc credentials on any request
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=None),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        import aiohttp

        session = self._session or self._open()
        limits = request.extensions.get("timeout", {})
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in request.headers.raw
            if name.lower() != b"transfer-encoding"
        ]
        body: Any = None
        if "content-length" in request.headers or "transfer-encoding" in request.headers:
            try:
                body = request.content  # JSON and other bodies made in memory
            except httpx.RequestNotRead:
                body = _body(request)  # uploads stream from the file
        url = str(request.url)
        try:
            answer = await session.request(
                request.method,
                url,
                headers=headers,
                data=body,
                allow_redirects=False,
                proxy=self._proxy_for(request.url),
                ssl=self._tls() if request.url.scheme == "https" else True,
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=limits.get("connect"), sock_read=limits.get("read")
                ),
            )
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or "connect timeout", request=request) from exc
        except aiohttp.ClientConnectorError as exc:  # DNS, refused, TLS or proxy: nothing was sent
            raise httpx.ConnectError(str(exc), request=request) from exc
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _read_side(exc, request) from exc
        return httpx.Response(
            answer.status,
            headers=[(bytes(k), bytes(v)) for k, v in answer.raw_headers],
            stream=_AnswerStream(answer, request),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (answer.reason or "").encode()},
        )

    def _tls(self) -> ssl.SSLContext:
        """httpx's default TLS context (its CA bundle), made on the first https request."""
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        return self._ssl

    def _proxy_for(self, url: httpx.URL) -> str | None:
        proxy = self._proxies.get(url.scheme) or self._proxies.get("all")
        if not proxy or _bypassed(url.host, self._proxies.get("no", "")):
            return None
        return proxy

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


class _AnswerStream(httpx.AsyncByteStream):
    """The body of an aiohttp answer as httpx reads it; closing it early drops the connection."""

    def __init__(self, answer: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._answer = answer
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        import aiohttp

        try:
            async for chunk in self._answer.content.iter_chunked(_CHUNK):
                yield chunk
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _read_side(exc, self._request) from exc

    async def aclose(self) -> None:
        if self._answer.content.at_eof():
            self._answer.release()  # read to the end: the connection goes back to the pool
        else:
            self._answer.close()


async def _body(request: httpx.Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream:  # type: ignore[union-attr]  # an httpx request body streams
        yield chunk


def _read_side(exc: BaseException, request: httpx.Request) -> httpx.TransportError:
    """An error once the request may have left: the answer was lost, late or garbled."""
    import aiohttp

    message = str(exc) or type(exc).__name__
    if isinstance(exc, (aiohttp.ServerTimeoutError, asyncio.TimeoutError)):
        return httpx.ReadTimeout(message, request=request)
    if isinstance(exc, (aiohttp.ClientResponseError, aiohttp.ClientPayloadError)):
        return httpx.RemoteProtocolError(message, request=request)
    if isinstance(exc, (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError)):
        return httpx.UnsupportedProtocol(message, request=request)
    return httpx.ReadError(message, request=request)


@lru_cache(maxsize=256)
def _bypassed(host: str, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` names ``host``: ``*``, the host itself, or a domain it is in."""
    host = host.lower().strip("[]")
    for entry in no_proxy.lower().split(","):
        name = entry.strip().split("://")[-1].strip("[]").lstrip(".")
        if name and ":" in name and not host.count(":"):  # host:port (not an IPv6 address)
            name = name.rsplit(":", 1)[0]
        if name == "*" or (name and (host == name or host.endswith("." + name))):
            return True
    return False
