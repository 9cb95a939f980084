"""A hosted server's way to Atlas: aiohttp's connection pool and C parser, under two interfaces.

* As the Atlas client's API engine (:meth:`AiohttpTransport.exchange`, see
  :mod:`atlas_image_mcp.engines`): each API request goes straight to aiohttp, with no httpx
  request or response objects in between.
* As the transport under the client's ``httpx.AsyncClient``, for what still speaks httpx (the
  downloads of output pictures from the API's own host): :meth:`AiohttpTransport.handle_async_request`.

Under load httpx's own transport spent more CPU per request than the whole MCP call around it (its
pool rescans every connection each time a request starts or ends, and the HTTP/1.1 parser is pure
Python), while aiohttp reuses connections from a pool that does not, and parses with a C parser;
httpx's URL and header models then cost three times what aiohttp itself does (docs/benchmark.md).

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
from urllib.parse import urlsplit

import httpx

from .engines import Answer, Outgoing, Reader, SendFailed, json_body

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
                proxy=self._proxy_for(request.url.scheme, request.url.host),
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

    async def exchange(self, outgoing: Outgoing, read: Reader) -> Answer:
        """Send one API request straight over aiohttp and read its whole answer (an engine, see
        :mod:`atlas_image_mcp.engines`). Failures are named as httpx names them."""
        import aiohttp

        session = self._session or self._open()
        headers = dict(outgoing.headers)
        data: Any = None
        if outgoing.files is not None:
            form = aiohttp.FormData()
            for field, (filename, stream, content_type) in outgoing.files().items():
                form.add_field(field, stream, filename=filename, content_type=content_type)
            data = form()  # the multipart body; its type is set here (the session adds none)
            headers["Content-Type"] = data.content_type
        elif outgoing.json is not None:
            data = json_body(outgoing.json)
            headers["Content-Type"] = "application/json"
        scheme = outgoing.url.partition("://")[0]
        proxy = self._proxy_for(scheme, urlsplit(outgoing.url).hostname or "") if self._proxies else None
        try:
            async with session.request(
                outgoing.method,
                outgoing.url,
                headers=headers,
                data=data,
                allow_redirects=False,
                proxy=proxy,
                ssl=self._tls() if scheme == "https" else True,
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=outgoing.connect, sock_read=outgoing.seconds
                ),
            ) as answer:
                try:
                    content = await read(
                        answer.headers.get("Content-Length"), answer.content.iter_chunked(_CHUNK)
                    )
                finally:
                    if not answer.content.at_eof():
                        answer.close()  # not read to the end: the connection is not reused
                return Answer(answer.status, {k.lower(): v for k, v in answer.headers.items()}, content)
        except aiohttp.ConnectionTimeoutError as exc:
            raise SendFailed(
                "ConnectTimeout", str(exc) or "connect timeout", sent=False, timeout=True
            ) from exc
        except aiohttp.ClientConnectorError as exc:  # DNS, refused, TLS or proxy: nothing was sent
            raise SendFailed("ConnectError", str(exc), sent=False, timeout=False) from exc
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            kind = type(_read_side(exc, None)).__name__
            raise SendFailed(
                kind, str(exc) or type(exc).__name__, sent=True, timeout=kind == "ReadTimeout"
            ) from exc

    def _tls(self) -> ssl.SSLContext:
        """httpx's default TLS context (its CA bundle), made on the first https request."""
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        return self._ssl

    def _proxy_for(self, scheme: str, host: str) -> str | None:
        proxy = self._proxies.get(scheme) or self._proxies.get("all")
        if not proxy or _bypassed(host, self._proxies.get("no", "")):
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


def _read_side(exc: BaseException, request: httpx.Request | None) -> httpx.TransportError:
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
