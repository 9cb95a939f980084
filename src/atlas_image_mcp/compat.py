"""Every private detail of a library this package relies on, each fenced here with its reason.

Nothing else in the package touches a private attribute of the MCP SDK, uvicorn or
sse-starlette. Each function below says why it is needed and what upstream change would let it
go. :data:`TESTED` names the release series these details were checked against;
``tests/test_compat.py`` fails loudly when an installed version leaves them, or when a detail
is no longer there, so an upgrade is re-checked here before it ships.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import secrets
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, cast

from mcp.server.context import ServerMiddleware
from mcp.server.mcpserver import Context, ElicitationResult, MCPServer, Resolve
from mcp.server.mcpserver.resolve import build_resolver_plans, resolve_arguments
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase
from mcp.server.session import ServerSession
from mcp_types import InputRequiredResult
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel

__all__ = [
    "TESTED",
    "answer_in_json",
    "per_request_json_answers",
    "ArgumentsBase",
    "ReusePortListener",
    "reuse_port_socket",
    "run_workers",
    "add_middleware",
    "add_request_handler",
    "ask",
    "connection_state",
    "quiet_session",
    "drain_sse_now",
    "finish_before_every_shutdown",
    "finish_before_shutdown",
    "force_exit_requested",
    "ConnectionGuard",
    "head_timeout_protocol",
    "hold_sse_drain",
    "hide_sse_session_ids",
    "lasting_connection_id",
    "release_sse_drain",
    "stop_listening",
    "untested_versions",
    "watch_sessions",
]

logger = logging.getLogger(__name__)

#: distribution -> the release series (``major.minor``) the details below were checked against.
#: sse-starlette has two: 3.7 on Python >= 3.11, and 3.5 on Python 3.10, where 3.6 and later do not
#: install (they require 3.11); its ``AppStatus`` (the drain switches below) is the same in both.
TESTED: dict[str, tuple[str, ...]] = {"mcp": ("2.3",), "uvicorn": ("0.54",), "sse-starlette": ("3.7", "3.5")}


def untested_versions() -> dict[str, str]:
    """Installed distributions outside their :data:`TESTED` series (name -> installed version)."""
    out = {}
    for name, series in TESTED.items():
        installed = version(name)
        if not any(installed == one or installed.startswith(f"{one}.") for one in series):
            out[name] = installed
    return out


# --- MCP SDK -------------------------------------------------------------------------------------

#: The SDK's base for a tool's argument model (``FuncMetadata.arg_model`` must be one). The tool
#: adapter (:mod:`atlas_image_mcp.tools.adapter`) hands the SDK our own argument models instead of a
#: model the SDK derives from a function signature, so they derive from it; the SDK reads only
#: their fields (to pre-parse arguments sent as JSON text) and never validates through it.
ArgumentsBase = ArgModelBase


async def ask(
    context: Context[Any, Any], question: Callable[[], Awaitable[Any]]
) -> ElicitationResult[Any] | InputRequiredResult:
    """Run ``question`` (a resolver: it returns an answer, or ``Elicit(...)`` to ask the person).

    The SDK's resolver engine is what carries one question across both protocol eras: an
    ``elicitation/create`` request during the call on a handshake-era session, ``input_required``
    with a sealed ``requestState`` on 2026-07-28 (an ``InputRequiredResult`` is returned; the
    client calls again with the answer, and ``question`` runs again to find it). ``MCPServer`` runs
    that engine only for resolvers declared in a tool function's signature; the tool adapter calls
    it explicitly, once, after the call's own checks. Upstream: a public entry point for resolving
    from inside a tool body would let this go.
    """
    wanted = {"answer": (Resolve(question), True)}
    outcome = await resolve_arguments(wanted, build_resolver_plans(wanted, set()), {}, context)
    return outcome if isinstance(outcome, InputRequiredResult) else outcome["answer"]


def add_request_handler(
    server: MCPServer[Any], method: str, params_type: type[BaseModel], handler: Callable[..., Awaitable[Any]]
) -> None:
    """Serve a request method the SDK no longer routes by itself (``logging/setLevel``).

    Why: the 2026-07-28 revision removed ``logging/setLevel`` and ``MCPServer`` stopped serving
    it, but handshake-era clients still send it; an ``Extension`` may not bind a spec method
    (``MethodBinding`` refuses it), so the lowlevel server, reachable only as
    ``MCPServer._lowlevel_server``, is the one place left. Goes away when ``MCPServer`` exposes its
    lowlevel server (or an ``add_request_handler``) publicly, or when no client needs setLevel.
    """
    server._lowlevel_server.add_request_handler(method, params_type, handler)


def add_middleware(server: MCPServer[Any], middleware: ServerMiddleware[Any]) -> None:
    """Wrap every inbound message of ``server`` in ``middleware`` (innermost of the chain so far).

    Why: the 2025-11-25 form of MCP tasks (:mod:`atlas_image_mcp.tasks`) needs three things the
    SDK's public extension API cannot give: ``capabilities.tasks`` in the ``initialize`` result,
    ``execution.taskSupport`` on the tools of ``tools/list``, and a ``tools/call`` answered with
    ``{"task": {...}}`` (an ``Extension`` interceptor's result is sieved through the 2025
    ``CallToolResult`` schema, which drops ``task``). ``Server.middleware`` can: it sees the wire
    result dict that ``call_next`` returns and may change it, and a result it returns without
    calling ``call_next`` is delivered as it is. That list is documented as provisional ("the
    signature may change in a 2.x minor release"), so it is reached only here; these three
    behaviours are what ``tests/test_compat.py`` checks. Goes away when the SDK serves the
    2025-11-25 tasks form itself, or when no client needs it (the 2026-07-28 extension does not).
    """
    server.middleware.append(middleware)


def connection_state(session: Any) -> dict[str, Any]:
    """The per-connection state dict (``{}`` when there is none, e.g. stateless HTTP).

    Why: the SDK's session object lives for one request, so a value set by ``logging/setLevel``
    must be kept on the connection behind it, which only ``session._connection.state`` reaches.
    Goes away when the SDK gives request handlers a public per-connection state.
    """
    connection = getattr(session, "_connection", None)
    state = getattr(connection, "state", None)
    return state if isinstance(state, dict) else {}


_CONNECTION_ID = "atlas_image_mcp.connection_id"


def lasting_connection_id(session: Any) -> str | None:
    """A name this server gave the connection behind ``session``, when that connection lasts.

    It lasts across requests on the handshake path (stdio, a streamable-HTTP session, an SSE
    stream: the SDK builds one ``Connection`` for it, with a back-channel); a stateless request, and
    every 2026-07-28 request, gets a connection of its own, so there is nothing to name (None). The
    name is random, made here, and kept in the connection's state: nothing a client sends (such as
    an ``Mcp-Session-Id`` header) can choose it.

    Why: like :func:`connection_state`, only ``session._connection`` reaches the connection (its
    ``has_standalone_channel`` and ``protocol_version`` are public). Goes away when the SDK gives
    handlers a public, server-made identifier of the connection or session.
    """
    connection = getattr(session, "_connection", None)
    state = getattr(connection, "state", None)
    if (
        not isinstance(state, dict)
        or not getattr(connection, "has_standalone_channel", False)
        or getattr(connection, "protocol_version", None) in MODERN_PROTOCOL_VERSIONS
    ):
        return None
    name = state.get(_CONNECTION_ID)
    if not isinstance(name, str):
        name = state[_CONNECTION_ID] = secrets.token_hex(16)
    return name


def quiet_session(session: ServerSession, on_progress: Callable[[str | None], None]) -> ServerSession:
    """``session`` without its progress and log notifications; progress messages go to ``on_progress``.

    Why: a tool running as an MCP task must not send progress or log notifications (SEP-2663), and
    the SDK has no switch for that. A tool reaches the client only through its context's
    ``request_context.session`` (``Context.report_progress`` calls ``session.report_progress``,
    ``Context.log`` calls ``session.send_log_message``), so the task's run gets this stand-in,
    which answers those calls itself and hands everything else to the real session. It relies on
    that call path, which the SDK does not promise; ``tests/test_compat.py`` checks it. Goes away
    when the SDK can silence a request's notifications (or runs tasks itself).
    """
    return cast(ServerSession, _QuietSession(session, on_progress))


class _QuietSession:
    def __init__(self, inner: ServerSession, on_progress: Callable[[str | None], None]) -> None:
        self._inner = inner
        self._on_progress = on_progress

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def report_progress(
        self, progress: float, total: float | None = None, message: str | None = None
    ) -> None:
        self._on_progress(message)

    async def send_progress_notification(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def send_log_message(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def send_notification(self, notification: Any, related_request_id: Any = None) -> None:
        if getattr(notification, "method", None) in ("notifications/progress", "notifications/message"):
            return
        await self._inner.send_notification(notification, related_request_id)


_JSON_ANSWER: ContextVar[tuple[object, bool] | None] = ContextVar("atlas_image_mcp.json_answer", default=None)


def _answer_task() -> object:
    return asyncio.current_task()


@contextmanager
def answer_in_json() -> Iterator[None]:
    """Within this block (the request's own task), the streamable-HTTP transport answers the request
    being handled with one ``application/json`` body instead of an event stream.

    Only for a request nothing will be streamed for (the caller's rule, :mod:`atlas_image_mcp.answers`):
    the transport then keeps no stream for it, and a server-to-client request or a notification
    related to it could not be delivered (the request's ``can_send_request`` is False, so the tools
    never send one). :func:`per_request_json_answers` must have been called.
    """
    token = _JSON_ANSWER.set((_answer_task(), True))
    try:
        yield
    finally:
        _JSON_ANSWER.reset(token)


def per_request_json_answers() -> None:
    """Let :func:`answer_in_json` choose a JSON answer per request (idempotent).

    Why: the SDK decides between an event stream and a JSON body once per transport
    (``StreamableHTTPServerTransport.is_json_response_enabled``, a plain attribute read while the
    request is handled), and its session manager builds its transports by that class's name in its
    module. An event stream costs about as much server CPU as the rest of a call (sse-starlette's
    response, a writer task and memory streams per request), which a request that streams nothing
    does not need. The transports are made from a subclass whose flag is read per request: the value
    :func:`answer_in_json` set in the request's own task, else the transport's own. Other tasks (the
    session's message router) see the transport's own value. Goes away when the SDK chooses the
    answer's form per request.
    """
    from mcp.server import streamable_http_manager

    vars(streamable_http_manager)["StreamableHTTPServerTransport"] = _json_per_request_transport()


@functools.cache
def _json_per_request_transport() -> type[Any]:
    from mcp.server.streamable_http import StreamableHTTPServerTransport

    class JsonPerRequestTransport(StreamableHTTPServerTransport):
        """The SDK's transport, with its JSON-or-stream flag read per request (see above)."""

        @property
        def is_json_response_enabled(self) -> bool:
            chosen = _JSON_ANSWER.get()
            if chosen is not None and chosen[0] is _answer_task():
                return chosen[1]
            return bool(self.__dict__.get("_json_by_default", False))

        @is_json_response_enabled.setter
        def is_json_response_enabled(self, value: bool) -> None:
            self.__dict__["_json_by_default"] = value

    return JsonPerRequestTransport


class _FromSdkSse(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or not record.pathname.replace("\\", "/").endswith(
            "mcp/server/sse.py"
        )


def hide_sse_session_ids() -> None:
    """Keep the SDK's legacy SSE transport from writing session ids into the log.

    Why: ``mcp.server.sse`` names the session id (a credential: it is all a POST to the session
    needs) in its debug and warning lines, and writes one of them ("Client session disconnected")
    through the root logger. Its logger is raised to ERROR and the root logger drops that module's
    records below ERROR (its errors name no session). Goes away when the SDK stops logging them.
    """
    logging.getLogger("mcp.server.sse").setLevel(logging.ERROR)
    root = logging.getLogger()
    if not any(isinstance(f, _FromSdkSse) for f in root.filters):
        root.addFilter(_FromSdkSse())


# --- uvicorn -------------------------------------------------------------------------------------


class ReusePortListener:
    """A listening socket to be made in a worker process: each worker of :func:`run_workers` gets its
    own, on the same address (``SO_REUSEPORT``), and the kernel spreads new connections over them."""

    def __init__(self, host: str, port: int, backlog: int) -> None:
        self.address = (host, port)
        self.backlog = backlog

    def __reduce__(self) -> tuple[Any, tuple[str, int, int, int]]:
        # Sent to a worker process by pickling: it arrives as a socket that worker bound itself.
        return _worker_socket, (*self.address, self.backlog, os.getpid())


def _worker_socket(host: str, port: int, backlog: int, supervisor: int) -> Any:
    """In a worker: its own listening socket, and its end when the supervisor ends.

    A worker that outlived a killed supervisor would keep its own socket on the port, and a server
    started again there would share its connections with that stale worker (``SO_REUSEPORT`` lets
    it bind beside): so the kernel sends the worker SIGTERM when its parent dies (Linux's
    ``PR_SET_PDEATHSIG``, the one platform this runs on), and a worker whose supervisor is already
    gone stops at once.
    """
    import ctypes
    import signal

    if ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0) != 0:  # 1: PR_SET_PDEATHSIG
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != supervisor:
        os.kill(os.getpid(), signal.SIGTERM)
    return reuse_port_socket(host, port, backlog)


def reuse_port_socket(host: str, port: int, backlog: int = 2048) -> Any:
    """A socket listening on ``host:port`` beside others of this user's processes (``SO_REUSEPORT``)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


def run_workers(config: Any, listener: ReusePortListener) -> None:
    """Run ``config.workers`` worker processes under uvicorn's supervisor (restarts, signals), each
    listening on a socket of its own.

    Why: ``uvicorn.run(workers=N)`` binds one socket in the parent and hands it to every worker; they
    then race for each connection, and one worker took 56-83% of them under load. With
    ``SO_REUSEPORT`` the kernel spreads connections evenly over one listening socket per worker. The
    supervisor (``uvicorn.supervisors.Multiprocess``, not a documented entry point) passes its
    sockets to each worker by pickling, so it is given a :class:`ReusePortListener`, which becomes a
    socket of that worker's own only when it arrives there. Goes away when uvicorn binds per worker.
    """
    from uvicorn.supervisors import Multiprocess

    Multiprocess(config, sockets=[cast(Any, listener)]).run()


def watch_sessions(
    manager: Any,
    *,
    may_open: Callable[[], bool],
    opened: Callable[[str], None],
    closed: Callable[[str], None],
) -> None:
    """Be told where the SDK makes and ends each stateful streamable-HTTP session.

    ``may_open()`` is asked right before a session would be made (False: the SDK answers 503 as at
    its own cap), ``opened(session_id)`` follows each one made, and ``closed(session_id)`` each one
    ended (a DELETE, the idle timeout, a crash, an opening request that failed); it may come twice.

    Why: a guard in front of the transport cannot know for sure which request makes a session (the
    SDK decides from its own parse of the body, and makes one for any request without a session id)
    nor when one ends (a 404 may be answered to another key for a session that lives on), so the
    session count is kept where the SDK itself makes and discards them:
    ``StreamableHTTPSessionManager._admit_session`` (synchronous, under its creation lock) and
    ``_discard_session``, both private. Goes away when the session manager takes a per-owner session
    limit or lifecycle callbacks.
    """
    admit = manager._admit_session
    discard = manager._discard_session

    def admit_session(requestor: Any) -> Any:
        if not may_open():
            return None
        transport = admit(requestor)
        session_id = getattr(transport, "mcp_session_id", None)
        if transport is not None and session_id:
            opened(str(session_id))
        return transport

    async def discard_session(session_id: str, transport: Any) -> None:
        closed(session_id)
        await discard(session_id, transport)

    manager._admit_session = admit_session
    manager._discard_session = discard_session


# --- uvicorn -------------------------------------------------------------------------------------


def finish_before_shutdown(server: Any, wait: Callable[[Any], Awaitable[None]]) -> None:
    """Run ``wait(server)`` when uvicorn begins its shutdown, before it drains connections.

    Why: uvicorn has no hook between "stop accepting" and "close connections"; the only way to let
    calls in flight finish first is to wrap ``Server.shutdown`` (and to read ``server.servers`` /
    ``server.force_exit`` inside ``wait``). Goes away if uvicorn grows a pre-drain hook.
    """
    original = getattr(server, "shutdown", None)
    if original is None:
        logger.warning("uvicorn.Server has no shutdown(): calls in flight are not waited for at exit")
        return

    async def shutdown(sockets: list[Any] | None = None) -> None:
        await wait(server)
        await original(sockets=sockets)

    server.shutdown = shutdown


def finish_before_every_shutdown(wait: Callable[[Any], Awaitable[None]]) -> None:
    """:func:`finish_before_shutdown` for every ``uvicorn.Server`` of this process.

    Why: with ``workers`` uvicorn builds each worker's server itself, out of reach of the app, so
    the only place to hook is the class; a worker process has exactly one server. Goes away with
    :func:`finish_before_shutdown`.
    """
    import uvicorn

    original = uvicorn.Server.shutdown

    async def shutdown(self: Any, sockets: list[Any] | None = None) -> None:
        await wait(self)
        await original(self, sockets=sockets)

    uvicorn.Server.shutdown = shutdown  # type: ignore[method-assign]


def stop_listening(server: Any) -> None:
    """Close uvicorn's listening sockets (no new connections), keeping the open ones."""
    for listener in getattr(server, "servers", []):
        listener.close()


def force_exit_requested(server: Any) -> bool:
    """Whether a second signal asked uvicorn to exit at once."""
    return bool(getattr(server, "force_exit", False))


@dataclass(frozen=True)
class ConnectionGuard:
    """What :func:`head_timeout_protocol` holds each connection to, beyond its head timeout.

    ``address_of(peer_host)`` names the group a peer counts in for ``per_address`` (None: it is not
    counted, such as a trusted reverse proxy). ``too_many`` and ``too_large`` are the whole HTTP
    answers written before closing a connection over its address's limit, or whose request head
    outgrows ``max_head_bytes``.
    """

    first_byte_seconds: float | None = None
    #: how long a refused connection is kept, reading and dropping, after its answer (see below)
    linger_seconds: float = 0.25
    max_head_bytes: int | None = None
    per_address: int | None = None
    address_of: Callable[[str], str | None] = str
    too_many: bytes = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
    too_large: bytes = (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
    )


#: the blank line that ends a request head, as h11 finds it (a bare LF is accepted too)
_HEAD_END = re.compile(rb"\n\r?\n")


def head_timeout_protocol(seconds: float, guard: ConnectionGuard | None = None) -> type[Any]:
    """uvicorn's h11 protocol, closing a connection whose request head is not complete in ``seconds``,
    and holding each connection to ``guard``: closed when it sends nothing at first, refused over its
    address's limit, answered 431 when a request head is too large however it arrives.

    Why: uvicorn times out idle keep-alive connections but not a request head that trickles in (a
    byte every few seconds keeps a connection, and its memory, forever: slowloris), nor a new
    connection that never sends a byte; it counts idle connections against ``limit_concurrency``
    with no bound per client; and h11 caps only a head still incomplete (one that arrives whole in
    one read, up to 64 KB, passes). The subclass reads the protocol's ``conn`` (the h11 state),
    ``loop`` and ``transport`` attributes, and takes a refused connection out of ``connections``
    (the server's set that ``limit_concurrency`` counts) while it lingers: none is documented API.
    Goes away when uvicorn grows a header-read timeout, a per-client connection limit and a total
    head size cap.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    limits = guard or ConnectionGuard()
    open_from: dict[str, int] = {}  # address -> connections open from it (this server's)

    class HeadTimeoutProtocol(H11Protocol):
        _head_timer: Any = None
        _first_byte_timer: Any = None
        _address: str | None = None
        _head = b""
        _shut = False

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            if limits.per_address is not None and not self._counted(transport):
                self._answer_and_close(limits.too_many)
                return
            if limits.first_byte_seconds is not None:
                self._first_byte_timer = self.loop.call_later(limits.first_byte_seconds, self._silent)
            self._watch_head()

        def _counted(self, transport: Any) -> bool:
            """Count this connection against its address; False when the address is at its limit."""
            peer = transport.get_extra_info("peername")
            host = peer[0] if isinstance(peer, (tuple, list)) and peer else None
            address = limits.address_of(str(host)) if host is not None else None
            if address is None:
                return True
            if open_from.get(address, 0) >= (limits.per_address or 0):
                return False
            open_from[address] = open_from.get(address, 0) + 1
            self._address = address
            return True

        def data_received(self, data: bytes) -> None:
            if self._shut:
                return
            self._stop_first_byte()
            if limits.max_head_bytes is not None and not self._head_fits(data):
                self._answer_and_close(limits.too_large)
                return
            super().data_received(data)
            self._watch_head()

        def _head_fits(self, data: bytes) -> bool:
            """Follow the request head being received; False once it is longer than the cap."""
            if self.conn.their_state not in (h11.IDLE, h11.DONE):
                return True  # a body
            cap = limits.max_head_bytes or 0
            seen = self._head + data[: cap + 4]  # what follows a head that fits is its body
            end = _HEAD_END.search(seen)
            if (end.end() if end else len(seen)) > cap:
                return False
            self._head = b"" if end else seen
            return True

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_watching()
            self._stop_first_byte()
            if self._address is not None:
                left = open_from.get(self._address, 1) - 1
                if left > 0:
                    open_from[self._address] = left
                else:
                    open_from.pop(self._address, None)
                self._address = None
            super().connection_lost(exc)

        def _answer_and_close(self, answer: bytes) -> None:
            """Write ``answer`` and end the connection. Closing a socket with unread data in it
            resets the connection, and the client may lose the answer: so the write side is shut
            first, what still arrives is read and dropped, and the socket closes a moment later."""
            self._shut = True
            self._stop_watching()
            self._stop_first_byte()
            if self.transport.is_closing():
                return
            self.transport.write(answer)
            if self.transport.can_write_eof():
                self.transport.write_eof()
                self.loop.call_later(limits.linger_seconds, self.transport.close)
                self.connections.discard(self)  # answered: no longer one of uvicorn's open connections
            else:
                self.transport.close()

        def _silent(self) -> None:
            self._first_byte_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def _stop_first_byte(self) -> None:
            if self._first_byte_timer is not None:
                self._first_byte_timer.cancel()
                self._first_byte_timer = None

        def _watch_head(self) -> None:
            waiting = self.conn.their_state is h11.IDLE and not self.transport.is_closing()
            if not waiting:
                self._stop_watching()
            elif self._head_timer is None:
                self._head_timer = self.loop.call_later(seconds, self._head_late)

        def _stop_watching(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_late(self) -> None:
            self._head_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return HeadTimeoutProtocol


# --- sse-starlette -------------------------------------------------------------------------------


def hold_sse_drain() -> None:
    """Stop sse-starlette from ending every SSE stream the moment uvicorn starts shutting down.

    Why: sse-starlette's ``AppStatus`` ends all streams on the first signal, which would cut the
    answer of a call about to complete; its ``disable_automatic_graceful_drain`` is public but
    ``should_exit`` (the switch that ends the streams) is not. Goes away when sse-starlette lets
    an application decide when to drain.
    """
    from sse_starlette.sse import AppStatus

    AppStatus.disable_automatic_graceful_drain()  # type: ignore[no-untyped-call]  # unannotated upstream


def drain_sse_now() -> None:
    """End the SSE streams that are left (after the calls in flight finished)."""
    from sse_starlette.sse import AppStatus

    AppStatus.should_exit = True


def release_sse_drain() -> None:
    """Put sse-starlette back as it was (for servers started again in the same process, e.g. tests)."""
    from sse_starlette.sse import AppStatus

    AppStatus.enable_automatic_graceful_drain_mode()  # type: ignore[no-untyped-call]  # unannotated upstream
    AppStatus.should_exit = False
