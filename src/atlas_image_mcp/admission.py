"""How much gets in over HTTP, and who holds what: request bodies, sessions and streams, keys.

Pure ASGI layers, used by :func:`atlas_image_mcp.http.create_http_app` behind the access guard
(so only requests with the server token or a plausible per-user key get this far). The rule for
each: a request is classified from the same parse the MCP SDK acts on, state belongs to an
identity the server verified, and nothing a client sends holds a shared resource longer than its
own request.

* :class:`BodyLimits` reads each ``POST`` body itself, within a deadline (a body dripped a byte at
  a time is cut off), and parses it: a message with a key repeated in one object is refused (400),
  since the SDK keeps the last of them and a reader that took the first would see another message.
  The cap comes from the parsed message: ``ATLAS_MCP_MAX_MESSAGE_KB`` for everything but calls of
  the tools in :data:`~atlas_image_mcp.constants.LARGE_BODY_TOOLS`, which may carry the base64
  size of ``ATLAS_MCP_MAX_UPLOAD_MB``. A body longer than the small cap is read only in one of
  :data:`~atlas_image_mcp.constants.LARGE_BODIES_AT_ONCE` slots, one per identity (a key Atlas
  accepted, else the client address); a slot is held only while the body is read, at a minimum
  pace (an identity whose body was cut off for being too slow gets no slot for a minute), and a
  body that finds no slot free is refused at once (503, or 429 for a second one of the same
  identity), never queued with bytes in hand.
* :class:`SessionBook` knows who holds each open session and SSE stream. Streamable-HTTP sessions
  are entered and removed where the SDK makes and ends them
  (:func:`atlas_image_mcp.compat.watch_sessions`): a session is never forgotten while the SDK keeps
  it (a 404 answered to another key for it changes nothing), and the SDK's own idle expiry frees it.
* :class:`SessionLimits` admits a new session (an ``initialize`` without a session id) or SSE
  stream: at most ``ATLAS_MCP_MAX_SESSIONS`` in all (503) and ``ATLAS_MCP_MAX_SESSIONS_PER_KEY`` per
  key (429). A per-user key Atlas has not accepted yet holds one at most; such keys hold
  :data:`~atlas_image_mcp.constants.UNVERIFIED_SESSIONS_PER_ADDRESS` per client address and a
  quarter of the cap in all. Past that the key is checked with Atlas (:class:`KeyChecks`): accepted,
  it has the per-key allowance; refused, the request gets a 400 that says so.

The total protects this process's memory and stays per process. The count per key is this
process's own, unless the book shares it (:meth:`SessionBook.share`) with the other replicas
through an :class:`OwnerSessions` (the store's, :class:`atlas_image_mcp.shared.SessionsInStore`),
which is told of each session admitted, still held (renewed, at most every third of the idle time,
while this process sees requests) and gone.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import anyio
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .constants import (
    BODY_TIMEOUT_SECONDS,
    IPV6_CLIENT_PREFIX,
    KEY_ACCEPTED_SECONDS,
    KEY_CHECK_SECONDS,
    KEY_CHECKS_AT_ONCE,
    KEY_REFUSED_SECONDS,
    KEYS_URL,
    LARGE_BODIES_AT_ONCE,
    LARGE_BODIES_PER_IDENTITY,
    LARGE_BODY_BARRED_SECONDS,
    LARGE_BODY_GRACE_SECONDS,
    LARGE_BODY_MIN_BYTES_PER_SECOND,
    LARGE_BODY_TOOLS,
    MAX_CHECKED_KEYS,
    UNVERIFIED_SESSIONS_PER_ADDRESS,
    UNVERIFIED_SESSIONS_SHARE,
)
from .settings import env_name

__all__ = [
    "BodyLimits",
    "KeyChecks",
    "MessageShape",
    "OwnerSessions",
    "SessionBook",
    "SessionLimits",
    "Verdict",
    "address_group",
    "error_body",
    "json_rpc_answer",
]

logger = logging.getLogger(__name__)

#: scope keys this module and the access guard share: the key's digest, the key, the parsed method,
#: and the :class:`MessageShape` of a posted message
OWNER = "atlas_image_mcp.owner"
KEY = "atlas_image_mcp.key"
METHOD = "atlas_image_mcp.method"
SHAPE = "atlas_image_mcp.shape"
#: where JSON-RPC messages are posted: streamable HTTP, and the messages of a legacy SSE session
_MESSAGE_PATHS = ("/mcp", "/messages")
_SESSION_HEADER = b"mcp-session-id"
_VERSION_HEADER = b"mcp-protocol-version"
_PARSE_ERROR, _INVALID_REQUEST, _INTERNAL_ERROR, _UNAUTHORIZED = -32700, -32600, -32603, -32001


def error_body(code: int, message: str) -> bytes:
    """A JSON-RPC error with no id: the body of an HTTP error answer that MCP clients can parse."""
    return json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}).encode()


async def json_rpc_answer(
    send: Send, status: int, code: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """An HTTP error answer whose body is a JSON-RPC error (what MCP clients can parse)."""
    body = error_body(code, message)
    start_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": start_headers})
    await send({"type": "http.response.body", "body": body})


async def _key_refused(send: Send) -> None:
    # a 400 with no challenge, as every refusal without sign-in: a 401 makes common clients start an
    # OAuth sign-in this server cannot finish, and hides this message (docs/oauth.md)
    await json_rpc_answer(
        send,
        400,
        _UNAUTHORIZED,
        "Atlas refused this key (it does not know it, or it has expired): check the key in the "
        f"X-Atlas-Api-Key header, or make one at {KEYS_URL}.",
    )


# --- who a request comes from -------------------------------------------------------------------


def address_group(host: str) -> str:
    """The client address a peer counts as: an IPv4 address, or the /64 of an IPv6 one (one host
    usually has a whole /64), an IPv4 address inside IPv6 as itself; anything else as it is."""
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return host[:100]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/{IPV6_CLIENT_PREFIX}", strict=False))
    return str(ip)


def client_address(scope: Scope) -> str:
    """The request's client address (as :func:`address_group` counts it): the peer, or the address a
    trusted proxy forwarded (uvicorn puts it in ``scope["client"]`` only for a named proxy)."""
    client = scope.get("client")
    return address_group(str(client[0])) if client else "unknown"


Verdict = Literal["accepted", "refused", "unknown"]
#: Asks Atlas about a key: "accepted", "refused" (it does not know it), or "unknown" (no answer).
KeyCheck = Callable[[str], Awaitable[Verdict]]


class KeyChecks:
    """What Atlas said about each per-user key (by digest): a bounded, expiring memory of checks.

    A key is checked only when it wants more than a key nobody vouched for may hold (a second
    session, a large body). Checks of one key run once at a time; at most
    :data:`~atlas_image_mcp.constants.KEY_CHECKS_AT_ONCE` run in all (more are "unknown" at once),
    each within :data:`~atlas_image_mcp.constants.KEY_CHECK_SECONDS`.
    """

    def __init__(
        self,
        check: KeyCheck | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        size: int = MAX_CHECKED_KEYS,
        at_once: int = KEY_CHECKS_AT_ONCE,
        verified_owners: bool = False,
    ) -> None:
        self._check = check
        #: Every owner is an identity the server verified (a signed-in user): each counts as accepted.
        self._verified_owners = verified_owners
        self._clock = clock
        self._size = size
        self._at_once = at_once
        self._known: OrderedDict[str, tuple[Verdict, float]] = OrderedDict()
        self._running: dict[str, anyio.Event] = {}

    def accepted(self, digest: str | None) -> bool:
        """Whether Atlas accepted this key (recently enough to still be believed)."""
        if self._verified_owners:
            return digest is not None
        return digest is not None and self._remembered(digest) == "accepted"

    def _remembered(self, digest: str) -> Verdict | None:
        entry = self._known.get(digest)
        if entry is None:
            return None
        verdict, until = entry
        if self._clock() >= until:
            del self._known[digest]
            return None
        self._known.move_to_end(digest)
        return verdict

    async def verdict(self, key: str, digest: str) -> Verdict:
        """What Atlas says about ``key`` (whose digest is ``digest``), asking it if nothing is known."""
        if self._verified_owners:
            return "accepted"
        remembered = self._remembered(digest)
        if remembered is not None or self._check is None or not key:
            return remembered or "unknown"
        running = self._running.get(digest)
        if running is not None:
            with anyio.move_on_after(KEY_CHECK_SECONDS):
                await running.wait()
            return self._remembered(digest) or "unknown"
        if len(self._running) >= self._at_once:
            return "unknown"
        done = self._running[digest] = anyio.Event()
        verdict: Verdict = "unknown"
        try:
            with anyio.move_on_after(KEY_CHECK_SECONDS):
                verdict = await self._check(key)
        except Exception as exc:  # a check that breaks decides nothing
            logger.warning("checking a per-user key with Atlas failed: %s", type(exc).__name__)
        finally:
            del self._running[digest]
            done.set()
        if verdict != "unknown":
            seconds = KEY_ACCEPTED_SECONDS if verdict == "accepted" else KEY_REFUSED_SECONDS
            self._known[digest] = (verdict, self._clock() + seconds)
            self._known.move_to_end(digest)
            while len(self._known) > self._size:
                self._known.popitem(last=False)
        logger.info("per-user key %s...: %s by Atlas", digest[:8], verdict)
        return verdict


# --- bodies ---------------------------------------------------------------------------------------


class _Unreadable(Exception):
    """A body that is not one JSON message this server and the SDK would read alike."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Repeated(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            raise _Repeated(name)
        out[name] = value
    return out


def parse_message(body: bytes | bytearray) -> Any:
    """The JSON in ``body``: UTF-8, every key once per object (else :class:`_Unreadable`)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _Unreadable(_PARSE_ERROR, "Parse error: the body is not UTF-8 text.") from None
    try:
        return json.loads(text, object_pairs_hook=_no_repeats)
    except _Repeated as exc:
        name = json.dumps(exc.name[:40])
        raise _Unreadable(
            _INVALID_REQUEST,
            f"Invalid request: the key {name} appears twice in one object; send each key once.",
        ) from None
    except RecursionError:
        raise _Unreadable(_PARSE_ERROR, "Parse error: the JSON is nested too deeply.") from None
    except ValueError as exc:
        raise _Unreadable(_PARSE_ERROR, f"Parse error: the body is not JSON ({str(exc)[:200]}).") from None


@dataclass(frozen=True)
class MessageShape:
    """What the layers after :class:`BodyLimits` need of a posted message (the message itself, an
    upload's data as large as the body, is dropped at once)."""

    method: str | None
    #: the tool a ``tools/call`` names
    tool: str | None
    #: a request (it has an id), not a notification or a response
    request: bool
    #: it carries a progress token (its answer may stream progress)
    progress: bool
    #: an ``initialize`` whose client declares form elicitation (it can be asked questions)
    elicits: bool


def _classify(body: bytes | bytearray) -> tuple[MessageShape, bool]:
    """The message's shape, and whether it is a call that may carry a large body."""
    message = parse_message(body)
    return _shape(message), _is_large_tool_call(message)


def _shape(message: Any) -> MessageShape:
    if not isinstance(message, dict):
        return MessageShape(None, None, False, False, False)
    params = message.get("params")
    params = params if isinstance(params, dict) else {}
    meta = params.get("_meta")
    tool = params.get("name")
    capabilities = params.get("capabilities")
    elicitation = capabilities.get("elicitation") if isinstance(capabilities, dict) else None
    return MessageShape(
        method=_method(message),
        tool=tool if isinstance(tool, str) else None,
        request="id" in message and _method(message) is not None,
        progress=isinstance(meta, dict) and meta.get("progressToken") is not None,
        # an empty object declares form elicitation; only {"url": {}} leaves it out
        elicits=isinstance(elicitation, dict) and (not elicitation or "form" in elicitation),
    )


def _method(message: Any) -> str | None:
    method = message.get("method") if isinstance(message, dict) else None
    return method if isinstance(method, str) else None


def _is_large_tool_call(message: Any) -> bool:
    params = message.get("params") if isinstance(message, dict) else None
    name = params.get("name") if isinstance(params, dict) else None
    return _method(message) == "tools/call" and isinstance(name, str) and name in LARGE_BODY_TOOLS


class BodyLimits:
    """Reads, parses and caps every POST body before the MCP transports see it (module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        small: int,
        large: int,
        large_timeout: float,
        small_timeout: float = BODY_TIMEOUT_SECONDS,
        keys: KeyChecks | None = None,
    ) -> None:
        self.app = app
        self.small = small
        self.large = large
        self.small_timeout = small_timeout
        self.large_timeout = large_timeout
        self.keys = keys
        self._reading: dict[str, int] = {}  # identity -> large bodies it is sending now
        self._barred: OrderedDict[str, float] = OrderedDict()  # identity -> no large body until then

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not scope["path"].startswith(_MESSAGE_PATHS)
        ):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.large:
            await self._refuse(send, self.large)
            return
        body = bytearray()
        more = True
        if declared is None or declared <= self.small:
            with anyio.move_on_after(self.small_timeout) as small_read:
                more = await _read_into(body, receive, self.small)
            if small_read.cancelled_caught:
                await self._too_slow(send)
                return
        if more:  # longer than the small cap: the rest is read in a slot, or not at all
            if not await self._read_large(scope, receive, send, body):
                return
        try:
            shape, large_call = _classify(body)
        except _Unreadable as bad:
            await json_rpc_answer(send, 400, bad.code, bad.message)
            return
        if len(body) > self.small and not large_call:
            await self._refuse(send, self.small)
            return
        await self._forward(scope, receive, send, body, shape)

    async def _read_large(self, scope: Scope, receive: Receive, send: Send, body: bytearray) -> bool:
        """Read the rest of a large body in a slot of its identity; False once it was answered."""
        if sum(self._reading.values()) >= LARGE_BODIES_AT_ONCE:
            await self._busy(send)
            return False
        identity = await self._identity(scope, send)
        if identity is None:
            return False
        if sum(self._reading.values()) >= LARGE_BODIES_AT_ONCE:  # taken while the key was checked
            await self._busy(send)
            return False
        if self._is_barred(identity):
            await json_rpc_answer(
                send,
                429,
                _INVALID_REQUEST,
                "Your last large request body arrived too slowly and was cut off: wait a minute before "
                "sending another.",
                [(b"retry-after", str(int(LARGE_BODY_BARRED_SECONDS)).encode())],
            )
            return False
        if self._reading.get(identity, 0) >= LARGE_BODIES_PER_IDENTITY:
            await json_rpc_answer(
                send,
                429,
                _INVALID_REQUEST,
                "You are already sending a large request body (an upload) to this server: wait for it "
                "to finish before sending another.",
                [(b"retry-after", b"5")],
            )
            return False
        self._reading[identity] = self._reading.get(identity, 0) + 1
        try:
            read = await _read_paced(body, receive, self.large, self.large_timeout)
        finally:
            self._reading[identity] -= 1
            if not self._reading[identity]:
                del self._reading[identity]
        if read in ("late", "dropped"):
            self._bar(identity)
        if read == "late":
            await self._too_slow(send)
            return False
        if len(body) > self.large:
            await self._refuse(send, self.large)
            return False
        return True

    def _bar(self, identity: str) -> None:
        self._barred[identity] = anyio.current_time() + LARGE_BODY_BARRED_SECONDS
        self._barred.move_to_end(identity)
        while len(self._barred) > MAX_CHECKED_KEYS:
            self._barred.popitem(last=False)

    def _is_barred(self, identity: str) -> bool:
        until = self._barred.get(identity)
        if until is not None and anyio.current_time() >= until:
            del self._barred[identity]
            return False
        return until is not None

    async def _identity(self, scope: Scope, send: Send) -> str | None:
        """Whose slot a large body takes: a key Atlas accepted, else the client address; None when
        Atlas refused the key (answered here)."""
        owner = scope.get(OWNER)
        if owner is not None and self.keys is not None:
            if self.keys.accepted(owner):
                return f"key:{owner}"
            verdict = await self.keys.verdict(str(scope.get(KEY, "")), owner)
            if verdict == "refused":
                await _key_refused(send)
                return None
            if verdict == "accepted":
                return f"key:{owner}"
        return f"address:{client_address(scope)}"

    async def _forward(
        self, scope: Scope, receive: Receive, send: Send, body: bytearray, shape: MessageShape
    ) -> None:
        scope = dict(scope, **{METHOD: shape.method, SHAPE: shape})
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send, limit: int) -> None:
        what = env_name("max_message_kb") if limit == self.small else env_name("max_upload_mb")
        await json_rpc_answer(
            send, 413, _INVALID_REQUEST, f"Request body too large: at most {limit // 1024} KB ({what})."
        )

    @staticmethod
    async def _busy(send: Send) -> None:
        await json_rpc_answer(
            send,
            503,
            _INTERNAL_ERROR,
            "The server is reading as many large request bodies (uploads) as it can at once: try again "
            "in a few seconds.",
            [(b"retry-after", b"5")],
        )

    @staticmethod
    async def _too_slow(send: Send) -> None:
        await json_rpc_answer(send, 408, _INVALID_REQUEST, "Request body not received in time.")


async def _read_into(body: bytearray, receive: Receive, limit: int) -> bool:
    """Append the request's body to ``body`` until it is complete or longer than ``limit``.

    Returns whether more of it is still to come.
    """
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return False  # the client went away
        body += message.get("body", b"")
        more = bool(message.get("more_body", False))
        if not more or len(body) > limit:
            return more


_Read = Literal["whole", "late", "gone", "dropped"]


async def _read_paced(body: bytearray, receive: Receive, limit: int, seconds: float) -> _Read:
    """Append the rest of the body to ``body`` (up to just past ``limit``) within ``seconds``, at
    :data:`~atlas_image_mcp.constants.LARGE_BODY_MIN_BYTES_PER_SECOND` on average once
    :data:`~atlas_image_mcp.constants.LARGE_BODY_GRACE_SECONDS` have passed.

    "whole" (or past ``limit``), "late" (too slow: cut off), "gone" (the client left) or "dropped"
    (it left after sending slower than that pace, grace or not: a drip that reconnects).
    """
    start = anyio.current_time()
    first = len(body)
    end = start + seconds
    while True:
        pace = start + LARGE_BODY_GRACE_SECONDS + (len(body) - first) / LARGE_BODY_MIN_BYTES_PER_SECOND
        wait = min(end, pace) - anyio.current_time()
        if wait <= 0:
            return "late"
        with anyio.move_on_after(wait) as timer:
            message = await receive()
        if timer.cancelled_caught:
            return "late"
        if message["type"] != "http.request":
            spent = anyio.current_time() - start
            return "dropped" if len(body) - first < spent * LARGE_BODY_MIN_BYTES_PER_SECOND else "gone"
        body += message.get("body", b"")
        if not message.get("more_body", False) or len(body) > limit:
            return "whole"


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length" and value.isdigit():
            return int(value)
    return None


# --- sessions -----------------------------------------------------------------------------------


class OwnerSessions(Protocol):
    """How many sessions each owner (a key) holds open across the replicas that share it."""

    async def admit(self, owner: str, token: str, *, limit: int, here: int) -> int | None:
        """Admit session ``token`` of ``owner`` (None), or refuse it: the sessions it holds.
        ``here``: those it holds in this process."""
        ...

    async def renew(self, tokens: Sequence[str]) -> None:
        """These admitted sessions are still open here."""
        ...

    async def leave(self, tokens: Sequence[str]) -> None:
        """These admitted sessions are gone."""
        ...


@dataclass
class _Holder:
    """Who holds an open session or stream: the key's digest (None without per-user keys) and address."""

    owner: str | None
    address: str
    #: its name in the shared owner count (:class:`OwnerSessions`); "" when it is not shared
    token: str = ""


@dataclass
class _Opening:
    """A request that may open a streamable-HTTP session (it carries no session id)."""

    holder: _Holder
    #: the place held for it while it runs, once :class:`SessionLimits` admitted it (else None)
    place: str | None = None


#: the request on whose behalf the SDK may be opening a session right now (same task, same context)
_OPENING: ContextVar[_Opening | None] = ContextVar("atlas_image_mcp_opening", default=None)

_Blocked = Literal["full", "per_key", "unverified"]


class SessionBook:
    """Who holds each open session and SSE stream, and what a newcomer may still open."""

    def __init__(self, *, max_sessions: int, per_key: int, keys: KeyChecks) -> None:
        self.max_sessions = max_sessions
        self.per_key = per_key
        self.keys = keys
        self.unverified_cap = max(1, int(max_sessions * UNVERIFIED_SESSIONS_SHARE))
        self._held: dict[str, _Holder] = {}  # session id, or a place held for a stream or an opening
        self.owners: OwnerSessions | None = None
        self._renew_every = 0.0
        self._renewed = time.monotonic()
        self._leaving: set[asyncio.Task[None]] = set()

    def share(self, owners: OwnerSessions, *, renew_every: float) -> None:
        """Count the sessions per key with the other replicas through ``owners``."""
        self.owners, self._renew_every = owners, renew_every

    def held_by(self, owner: str) -> int:
        return sum(1 for other in self._held.values() if other.owner == owner)

    async def admit_shared(self, holder: _Holder) -> bool:
        """Whether the replicas together let ``holder`` open one more (always, when not shared)."""
        if self.owners is None or holder.owner is None:
            return True
        token = uuid.uuid4().hex
        here = self.held_by(holder.owner)
        if await self.owners.admit(holder.owner, token, limit=self.per_key, here=here) is not None:
            return False
        holder.token = token
        return True

    async def renew(self) -> None:
        """Tell the shared count which sessions are still open here (at most every ``renew_every``)."""
        now = time.monotonic()
        if self.owners is None or now - self._renewed < self._renew_every:
            return
        self._renewed = now
        await self.owners.renew([holder.token for holder in self._held.values() if holder.token])

    def _shared_token(self, holder: _Holder | None) -> str | None:
        """The name in the shared count of a place that has just ended (None: nothing to tell it)."""
        if holder is None or not holder.token or self.owners is None:
            return None
        if any(other is holder for other in self._held.values()):
            return None  # the same holder still holds a place (its opening became a session)
        return holder.token

    def _gone(self, holder: _Holder | None) -> None:
        """A shared session ended: tell the shared count (soon; this may run where nothing is awaited)."""
        token = self._shared_token(holder)
        if token is None or self.owners is None:
            return
        task = asyncio.get_running_loop().create_task(self.owners.leave([token]))
        self._leaving.add(task)
        task.add_done_callback(self._leaving.discard)

    def blocked(self, holder: _Holder, *, verified: bool) -> _Blocked | None:
        """Why ``holder`` may not open one more (None: it may)."""
        if len(self._held) >= self.max_sessions:
            return "full"
        owner = holder.owner
        if owner is None:
            return None
        mine = unverified = unverified_here = 0
        for other in self._held.values():
            mine += other.owner == owner
            if other.owner is not None and not self.keys.accepted(other.owner):
                unverified += 1
                unverified_here += other.address == holder.address
        if verified:
            return "per_key" if mine >= self.per_key else None
        if mine or unverified_here >= UNVERIFIED_SESSIONS_PER_ADDRESS or unverified >= self.unverified_cap:
            return "unverified"
        return None

    def hold(self, place: str, holder: _Holder) -> None:
        self._held[place] = holder

    def release(self, place: str) -> None:
        self._gone(self._held.pop(place, None))

    # --- called where the SDK makes and ends sessions (compat.watch_sessions) ---

    def may_open(self) -> bool:
        """Whether the SDK may make a session for the request being served (admitted already, or
        within the limits as they stand)."""
        opening = _OPENING.get()
        if opening is None:
            return self.blocked(_Holder(None, "unknown"), verified=True) is None
        if opening.place is not None:
            return True
        holder = opening.holder
        return self.blocked(holder, verified=self.keys.accepted(holder.owner)) is None

    def opened(self, session_id: str) -> None:
        opening = _OPENING.get()
        if opening is not None and opening.place is not None:
            self._held.pop(opening.place, None)
            opening.place = None
        self._held[session_id] = opening.holder if opening is not None else _Holder(None, "unknown")

    def closed(self, session_id: str) -> None:
        self._gone(self._held.pop(session_id, None))

    async def close(self, session_id: str) -> None:
        """A DELETE ended the session: its place is free here and, once this returns, on the other
        replicas too (so the answer to the DELETE goes out only when a new session may take it)."""
        token = self._shared_token(self._held.pop(session_id, None))
        if token is not None and self.owners is not None:
            await self.owners.leave([token])


class SessionLimits:
    """Admits new sessions and SSE streams (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, book: SessionBook, stateless: bool = False) -> None:
        self.app = app
        self.book = book
        self.stateless = stateless

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        holder = _Holder(scope.get(OWNER), client_address(scope))
        await self.book.renew()
        if path == "/sse" and method == "GET":
            await self._stream(scope, receive, send, holder)
            return
        if path.startswith("/mcp") and not self.stateless:
            session_id = _header(scope, _SESSION_HEADER)
            if session_id is None:
                await self._opening(scope, receive, send, holder)
                return
            if method == "DELETE":
                await self._closing(scope, receive, send, session_id)
                return
        await self.app(scope, receive, send)

    async def _closing(self, scope: Scope, receive: Receive, send: Send, session_id: str) -> None:
        """A DELETE the SDK answers 2xx has ended the session already (it answers only the key that
        opened it so): its place is free before the answer goes out, here and on every replica, not
        only once the SDK has discarded it."""

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start" and 200 <= message["status"] < 300:
                await self.book.close(session_id)
            await send(message)

        await self.app(scope, receive, watch)

    async def _admit(self, scope: Scope, send: Send, holder: _Holder) -> bool:
        keys = self.book.keys
        why = self.book.blocked(holder, verified=keys.accepted(holder.owner))
        if why == "unverified" and holder.owner is not None:
            verdict = await keys.verdict(str(scope.get(KEY, "")), holder.owner)
            if verdict == "refused":
                await _key_refused(send)
                return False
            why = self.book.blocked(holder, verified=verdict == "accepted")
        if why is None and not await self.book.admit_shared(holder):
            why = "per_key"  # at its limit on the replicas together
        if why is None:
            return True
        if why == "full":
            await json_rpc_answer(
                send,
                503,
                _INTERNAL_ERROR,
                f"Too many open sessions on this server ({env_name('max_sessions')}); try again later.",
                [(b"retry-after", b"30")],
            )
        elif why == "per_key":
            await json_rpc_answer(
                send,
                429,
                _INVALID_REQUEST,
                f"This key already has {self.book.per_key} open sessions or streams "
                f"({env_name('max_sessions_per_key')}): close one (DELETE /mcp with its Mcp-Session-Id) "
                "or let an idle one expire.",
                [(b"retry-after", b"30")],
            )
        else:
            await json_rpc_answer(
                send,
                429,
                _INVALID_REQUEST,
                "Atlas has not confirmed this key yet (it could not be asked just now), and until it does "
                "the key may hold one session or stream, and one address only a few: close the other "
                "one, or try again in a minute.",
                [(b"retry-after", b"30")],
            )
        return False

    async def _opening(self, scope: Scope, receive: Receive, send: Send, holder: _Holder) -> None:
        """A request without a session id: an ``initialize`` is admitted here first, with a place held
        while it runs (so a burst cannot overshoot); the session the SDK makes for it takes that place."""
        opening = _Opening(holder)
        if scope["method"] == "POST" and scope.get(METHOD) == "initialize" and handshake_era(scope):
            if not await self._admit(scope, send, holder):
                return
            opening.place = f"opening:{id(opening)}"
            self.book.hold(opening.place, holder)
        token = _OPENING.set(opening)
        try:
            await self.app(scope, receive, send)
        finally:
            _OPENING.reset(token)
            if opening.place is not None:
                self.book.release(opening.place)

    async def _stream(self, scope: Scope, receive: Receive, send: Send, holder: _Holder) -> None:
        """A legacy SSE session lives exactly as long as its ``GET /sse`` stream."""
        if not await self._admit(scope, send, holder):
            return
        place = f"sse:{id(scope)}"
        self.book.hold(place, holder)
        try:
            await self.app(scope, receive, send)
        finally:
            self.book.release(place)


def handshake_era(scope: Scope) -> bool:
    """Whether the SDK serves this request with sessions (no protocol version header, or a version of
    the initialize-handshake era; a later version is served without any)."""
    version = _header(scope, _VERSION_HEADER)
    return version is None or version in HANDSHAKE_PROTOCOL_VERSIONS


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None
