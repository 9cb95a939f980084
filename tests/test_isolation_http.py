"""No client can lock out or starve another, hosted: sessions, large bodies, connections, heads.

Each server is the real HTTP app under uvicorn on loopback (in a thread). Requests are made with the
SDK's MCP client where a client would be used, and with raw HTTP or raw sockets where the point is
what an attacker sends (a repeated key in a message, a body dripped into a slot, idle connections).
An attacker's sockets come from 127.0.0.2 where the test needs a second client address (Linux
routes all of 127.0.0.0/8 to the loopback interface).
"""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from atlas_image_mcp.constants import HEAD_TIMEOUT_SECONDS, KEEP_ALIVE_SECONDS, MAX_HEADER_BYTES
from atlas_image_mcp.http import create_http_app, uvicorn_limits
from atlas_image_mcp.runtime import Runtime
from atlas_image_mcp.settings import Settings

from .conftest import EMULATOR_URL, FAST_POLLS, atlas_client, text_of
from .emulation import Emulator
from .hostile import Hostile, Send, json_answer
from .http_helpers import INITIALIZE, MCP_HEADERS, mcp_client, serve_app
from .loadgen import serve_in_thread
from .pictures import noise_png

pytestmark = pytest.mark.timeout(90)

KEY_A = "sk_live_alice_0123456789abcdef"
KEY_B = "sk_live_bob_fedcba9876543210ab"
KEY_C = "sk_live_carol_555555555555555"
UPLOAD = "/api/v1/model/uploadMedia"
BALANCE = "/public/v1/balance"
ATTACKER = "127.0.0.2"  # a second loopback address: another client, as the server sees it
DOCS = Path(__file__).resolve().parents[1] / "docs"


# --- servers -------------------------------------------------------------------------------------


def emulated(emulator: Emulator, **changes: Any) -> Any:
    """The HTTP app with per-user keys in front of ``emulator`` (which knows only its ``api_keys``)."""
    api = atlas_client(
        transport=httpx.ASGITransport(app=emulator.app), base_url=EMULATOR_URL, poll_schedule=FAST_POLLS
    )
    settings = Settings(**{"wait_seconds": 5, "user_keys": True, **changes})
    return create_http_app(Runtime.create(settings, client=api, remote=True))


def balance_answer() -> Any:
    money = {"value": "10.000000", "currency": "usd"}
    return json_answer({"object": "balance", "scope": "self", "available": money, "cash": money})


@pytest.fixture
def hostile() -> Hostile:
    service = Hostile()
    service.route(BALANCE, balance_answer())  # Atlas knows every key here
    return service


@pytest.fixture
def atlas(hostile: Hostile) -> Iterator[str]:
    with serve_in_thread(hostile.app, graceful=0.5) as base:
        yield base


def hosted(atlas: str, **changes: Any) -> Any:
    """The HTTP app (per-user keys unless told otherwise) in front of the hostile Atlas at ``atlas``."""
    settings = Settings(**{"base_url": atlas, "wait_seconds": 5, "user_keys": True, **changes})
    api = atlas_client(base_url=atlas, poll_schedule=FAST_POLLS)
    return create_http_app(Runtime.create(settings, client=api, remote=True))


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def initialize(http: httpx.Client, base: str, key: str, body: Any = None) -> httpx.Response:
    headers = {**MCP_HEADERS, "x-atlas-api-key": key}
    if isinstance(body, (str, bytes)):
        return http.post(f"{base}/mcp", headers=headers, content=body)
    return http.post(f"{base}/mcp", headers=headers, json=INITIALIZE if body is None else body)


def in_session(opened: httpx.Response, key: str) -> dict[str, str]:
    return {
        **MCP_HEADERS,
        "x-atlas-api-key": key,
        "mcp-session-id": opened.headers["mcp-session-id"],
        "mcp-protocol-version": "2025-06-18",
    }


def message_of(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/json"), response.text
    return str(response.json()["error"]["message"])


PING = {"jsonrpc": "2.0", "id": 2, "method": "ping"}


# --- 1. sessions: counted where they are made, never forgotten while alive -----------------------


def test_a_message_with_a_repeated_key_is_refused_and_opens_no_session(http: httpx.Client) -> None:
    """The SDK keeps the last of two "method" keys; a guard that read the first one let this
    ``initialize`` through as a ``ping``, uncounted. A repeated key is refused outright."""
    with serve_app(emulated(Emulator(api_keys=[KEY_A]), max_sessions_per_key=1)) as base:
        params = json.dumps(INITIALIZE["params"])
        sneaky = f'{{"jsonrpc":"2.0","id":1,"method":"ping","params":{params},"method":"initialize"}}'
        refused = initialize(http, base, KEY_A, sneaky)
        assert refused.status_code == 400 and "mcp-session-id" not in refused.headers
        assert '"method"' in message_of(refused) and "once" in message_of(refused)
        assert initialize(http, base, KEY_A).status_code == 200
        assert initialize(http, base, KEY_A).status_code == 429


def test_a_session_is_counted_whatever_the_message_mentions_first(http: httpx.Client) -> None:
    """No repeated key, but a "method" inside ``params`` comes first in the text: the session the
    SDK opens for this ``initialize`` is counted all the same."""
    with serve_app(emulated(Emulator(api_keys=[KEY_A]), max_sessions_per_key=1)) as base:
        decoy = {"jsonrpc": "2.0", "id": 1, "params": {"method": "ping", **INITIALIZE["params"]}}
        opened = initialize(http, base, KEY_A, {**decoy, "method": "initialize"})
        assert opened.status_code == 200 and opened.headers.get("mcp-session-id")
        over = initialize(http, base, KEY_A)
        assert over.status_code == 429 and "ATLAS_MCP_MAX_SESSIONS_PER_KEY" in message_of(over)


def test_a_live_session_stays_counted_when_another_key_is_told_it_does_not_exist(
    http: httpx.Client,
) -> None:
    emulator = Emulator(api_keys=[KEY_A, KEY_B, KEY_C])
    with serve_app(emulated(emulator, max_sessions=2, max_sessions_per_key=1)) as base:
        alice, bob = initialize(http, base, KEY_A), initialize(http, base, KEY_B)
        assert alice.status_code == 200 and bob.status_code == 200
        stolen = {**in_session(alice, KEY_A), "x-atlas-api-key": KEY_B}
        assert http.post(f"{base}/mcp", headers=stolen, json=PING).status_code == 404
        assert http.delete(f"{base}/mcp", headers=stolen).status_code == 404
        # Alice's session is alive: it still counts, for the server's cap and for her
        assert initialize(http, base, KEY_C).status_code == 503
        assert http.delete(f"{base}/mcp", headers=in_session(bob, KEY_B)).status_code in (200, 204)
        assert initialize(http, base, KEY_A).status_code == 429
        assert http.post(f"{base}/mcp", headers=in_session(alice, KEY_A), json=PING).status_code == 200


def test_made_up_keys_cannot_fill_the_session_cap(http: httpx.Client) -> None:
    """Ten invented keys asking for three sessions each (and SSE streams): a key Atlas does not know
    holds one session at most, so the real user still gets all the sessions a key may have."""
    emulator = Emulator(api_keys=[KEY_A])
    made_up = [f"sk_made_up_{n:02d}_0123456789abcdef" for n in range(10)]
    with serve_app(emulated(emulator, max_sessions=8, max_sessions_per_key=3)) as base:
        answers = {key: [initialize(http, base, key) for _ in range(3)] for key in made_up}
        with http.stream("GET", f"{base}/sse", headers={"x-atlas-api-key": made_up[-1]}) as stream:
            assert stream.status_code in (400, 429, 503)
        for key, tries in answers.items():
            assert sum(a.status_code == 200 for a in tries) <= 1, key
        refused = [a for tries in answers.values() for a in tries if a.status_code == 400]
        assert refused and all("Atlas refused this key" in message_of(a) for a in refused)
        assert all(KEY_A not in message_of(a) and made_up[0] not in message_of(a) for a in refused)
        real = [initialize(http, base, KEY_A).status_code for _ in range(4)]
    assert real == [200, 200, 200, 429]
    # what the server asked Atlas: each key once at most, whatever it was asked
    checked = [r.headers.get("authorization") for r in emulator.requests if r.path == BALANCE]
    assert len(checked) == len(set(checked))


# --- 6. large bodies: the cap from the parsed message, slots held only while reading --------------


def test_a_body_that_only_mentions_an_upload_gets_the_small_cap(atlas: str, http: httpx.Client) -> None:
    with serve_app(hosted(atlas, max_message_kb=64)) as base:
        session = in_session(initialize(http, base, KEY_A), KEY_A)
        padding = "x" * 200_000
        # the first "name" in the text is upload_media, but the tool called is list_models
        decoy = {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                 "params": {"_meta": {"name": "upload_media"}, "name": "list_models",
                            "arguments": {"query": padding}}}  # fmt: skip
        big = http.post(f"{base}/mcp", headers=session, json=decoy)
        assert big.status_code == 413 and "ATLAS_MCP_MAX_MESSAGE_KB" in message_of(big)
        twice = (
            '{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"upload_media",'
            f'"arguments":{{"data":"{padding}"}},"name":"list_models"}}}}'
        )
        repeated = http.post(f"{base}/mcp", headers=session, content=twice)
        assert repeated.status_code == 400 and '"name"' in message_of(repeated)


class Gate:
    """An answer that waits (in the hostile server) until the test opens the gate, then plays ``then``."""

    def __init__(self, then: Any) -> None:
        self.then = then
        self.open = threading.Event()

    async def play(self, send: Send) -> None:
        await anyio.to_thread.run_sync(self.open.wait, 30)
        await self.then.play(send)


LARGE = {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
         "params": {"name": "upload_media", "arguments": {"data": "A" * 200_000}}}  # fmt: skip


@contextmanager
def dripping_upload(
    base: str, key: str, size: int = 400_000, source: str = "127.0.0.1", sent: int | None = None
) -> Iterator[socket.socket]:
    """An upload_media call whose body stops arriving after ``sent`` bytes (a third of it by default)
    until the block ends."""
    host, port = _host_port(base)
    body = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
         "params": {"name": "upload_media", "arguments": {"data": "A" * size, "filename": "x.png"}}}
    ).encode()  # fmt: skip
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: application/json, text/event-stream\r\nX-Atlas-Api-Key: {key}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, port), timeout=10, source_address=(source, 0)) as sock:
        sock.sendall(head + body[: len(body) // 3 if sent is None else sent])
        yield sock


def _unanswered(sock: socket.socket) -> bool:
    """True while the server has sent nothing back on ``sock`` (it is still waiting for the body)."""
    sock.setblocking(False)
    try:
        return not sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(10)


@contextmanager
def slot_held(base: str, key: str, source: str = "127.0.0.1", sent: int | None = None) -> Iterator[None]:
    """A dripped upload of ``key`` that holds a large-body slot: one whose key is then refused a
    second large body (429, or 503 when it took the last slot) while the dripped one is still being
    waited for. A dripped body that came in after the probe, and was refused itself, is sent again
    (a bounded number of times)."""
    headers = {**MCP_HEADERS, "x-atlas-api-key": key}
    for _attempt in range(20):
        with dripping_upload(base, key, source=source, sent=sent) as sock:
            probe = httpx.post(f"{base}/mcp", headers=headers, json=LARGE, timeout=10)
            if probe.status_code in (429, 503) and _unanswered(sock):  # 503: this one took the last slot
                yield
                return
    raise AssertionError(f"a dripped body never held a slot of its own (the probe got {probe.status_code})")


def upload_call(picture: bytes, name: str) -> dict[str, Any]:
    return {"data": base64.b64encode(picture).decode(), "filename": name}


def wait_until(condition: Any, bound: float = 20.0) -> bool:
    """Poll ``condition`` until it holds (True) or ``bound`` seconds pass (False)."""
    deadline = time.monotonic() + bound
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


async def test_a_large_body_holds_a_slot_only_while_it_is_read(hostile: Hostile, atlas: str) -> None:
    """Slot one: a dripped body. Slot two: Alice's upload, read whole, now waiting at Atlas. Carol's
    upload is read at once all the same, since Alice's call no longer holds a slot."""
    picture = noise_png(300, 300)
    gate = Gate(json_answer({"code": 200, "data": {"download_url": f"{atlas}/m/1"}}))
    hostile.route(UPLOAD, gate)
    with serve_app(hosted(atlas, max_message_kb=64, upload_timeout=60)) as base:
        async with (
            mcp_client(base, "streamable-http", {"X-Atlas-Api-Key": KEY_A}) as alice,
            mcp_client(base, "streamable-http", {"X-Atlas-Api-Key": KEY_C}) as carol,
            anyio.create_task_group() as tg,
        ):
            results: list[Any] = []

            async def upload(client: Any, name: str) -> None:
                results.append(await client.call_tool("upload_media", upload_call(picture, name)))

            with ExitStack() as bob:
                await anyio.to_thread.run_sync(lambda: bob.enter_context(slot_held(base, KEY_B)))
                tg.start_soon(upload, alice, "alice.png")
                assert await anyio.to_thread.run_sync(
                    lambda: wait_until(lambda: hostile.count("POST", UPLOAD) == 1)
                )
                tg.start_soon(upload, carol, "carol.png")
                reached = await anyio.to_thread.run_sync(
                    lambda: wait_until(lambda: hostile.count("POST", UPLOAD) == 2)
                )
                gate.open.set()
            assert reached, "Carol's upload waited for a slot that Alice's running call still held"
    assert [r.is_error for r in results] == [False, False], [text_of(r) for r in results]


def test_busy_slots_refuse_at_once_and_one_identity_holds_one(atlas: str, http: httpx.Client) -> None:
    """While Alice drips a large body, her second one is refused (one slot per identity, checked in
    :func:`slot_held`); while Bob drips one too, both slots are busy and Carol is told at once to
    try again: fifty of hers are refused, none kept waiting with its bytes."""
    with serve_app(hosted(atlas, max_message_kb=64, upload_timeout=60)) as base:
        carol = in_session(initialize(http, base, KEY_C), KEY_C)
        with slot_held(base, KEY_A):
            again = http.post(f"{base}/mcp", headers={**MCP_HEADERS, "x-atlas-api-key": KEY_A}, json=LARGE)
            assert again.status_code == 429 and "large" in message_of(again)
            with slot_held(base, KEY_B, source=ATTACKER):
                answers = [http.post(f"{base}/mcp", headers=carol, json=LARGE) for _ in range(50)]
        assert {a.status_code for a in answers} == {503}
        assert "try again" in message_of(answers[0]) and answers[0].headers.get("retry-after")
        # the drippers are gone: their slots are free as soon as the server has seen them go
        assert wait_until(lambda: http.post(f"{base}/mcp", headers=carol, json=LARGE).status_code == 200)


def test_a_dripped_body_that_is_dropped_bars_its_identity_from_large_bodies(
    atlas: str, http: httpx.Client
) -> None:
    """Dripping a body into a slot, leaving, and dripping again would keep a slot busy for ever:
    an identity whose large body went away far below the minimum pace waits a minute for the next."""
    with serve_app(hosted(atlas, max_message_kb=64)) as base:
        with slot_held(base, KEY_A, sent=10):
            pass  # ten bytes of body, then the connection is closed
        alice = {**MCP_HEADERS, "x-atlas-api-key": KEY_A}

        def barred() -> bool:
            answer = http.post(f"{base}/mcp", headers=alice, json=LARGE)
            return answer.status_code == 429 and "too slowly" in message_of(answer)

        assert wait_until(barred)
        bob = in_session(initialize(http, base, KEY_B), KEY_B)
        assert http.post(f"{base}/mcp", headers=bob, json=LARGE).status_code == 200  # others are not


# --- 7. connections: per client address, and silent ones closed soon ----------------------------


def _host_port(base: str) -> tuple[str, int]:
    host, port = base.removeprefix("http://").split(":")
    return host, int(port)


def _get(host: str, port: int, source: str = "127.0.0.1", head: bytes | None = None) -> bytes:
    """One raw ``GET /healthz``; the bytes answered before the server closed or went quiet."""
    request = head or f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
    with socket.create_connection((host, port), timeout=10, source_address=(source, 0)) as sock:
        sock.sendall(request)
        return _read_all(sock)


def _read_all(sock: socket.socket) -> bytes:
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return answer


def test_idle_connections_from_one_address_cannot_lock_everyone_out(atlas: str) -> None:
    """Three hundred connections that never send a byte, from one address, against a server whose
    connection limit is 276 (ten sessions): another client is still served."""
    settings = Settings(user_keys=True, max_sessions=10)
    with serve_in_thread(hosted(atlas, max_sessions=10), graceful=0.5, **uvicorn_limits(settings)) as base:
        host, port = _host_port(base)
        with ExitStack() as idle:
            for _ in range(300):
                sock = idle.enter_context(
                    socket.create_connection((host, port), source_address=(ATTACKER, 0))
                )
                sock.settimeout(10)
            served = _get(host, port)
        assert served.startswith(b"HTTP/1.1 200"), served[:200]


def test_connections_are_capped_per_client_address(atlas: str) -> None:
    settings = Settings(user_keys=True, max_connections_per_address=4)
    with serve_in_thread(hosted(atlas), graceful=0.5, **uvicorn_limits(settings)) as base:
        host, port = _host_port(base)
        keep_alive = f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
        with ExitStack() as held:
            for _ in range(4):  # four connections kept alive after an answer
                sock = held.enter_context(
                    socket.create_connection((host, port), source_address=(ATTACKER, 0))
                )
                sock.settimeout(10)
                sock.sendall(keep_alive)
                assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            fifth = _get(host, port, source=ATTACKER)
            assert fifth.startswith(b"HTTP/1.1 503") and b"retry-after" in fifth.lower(), fifth[:200]
            assert _get(host, port).startswith(b"HTTP/1.1 200")  # another address is served
        assert wait_until(lambda: _get(host, port, source=ATTACKER).startswith(b"HTTP/1.1 200"), 10)


def test_a_named_proxy_is_not_held_to_the_per_address_limit(atlas: str) -> None:
    """Behind a reverse proxy every connection comes from the proxy: the one named in
    ATLAS_MCP_TRUSTED_PROXIES may hold more than one address may (it limits per client itself)."""
    settings = Settings(user_keys=True, max_connections_per_address=1, trusted_proxies=(ATTACKER,))
    with serve_in_thread(hosted(atlas), graceful=0.5, **uvicorn_limits(settings)) as base:
        host, port = _host_port(base)
        keep_alive = f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
        with ExitStack() as held:
            for _ in range(3):
                sock = held.enter_context(
                    socket.create_connection((host, port), source_address=(ATTACKER, 0))
                )
                sock.settimeout(10)
                sock.sendall(keep_alive)
                assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            assert _get(host, port).startswith(b"HTTP/1.1 200")  # one from 127.0.0.1 is fine too
            sock = held.enter_context(socket.create_connection((host, port)))
            sock.settimeout(10)
            sock.sendall(keep_alive)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            assert _get(host, port).startswith(b"HTTP/1.1 503")  # but not a second one


@pytest.mark.slow  # waits for the server to close a silent connection (a couple of seconds)
def test_a_connection_that_sends_nothing_is_closed_long_before_the_head_timeout(atlas: str) -> None:
    with serve_in_thread(hosted(atlas), graceful=0.5, **uvicorn_limits(Settings(user_keys=True))) as base:
        host, port = _host_port(base)
        with socket.create_connection((host, port), source_address=(ATTACKER, 0)) as silent:
            silent.settimeout(HEAD_TIMEOUT_SECONDS / 2)
            assert silent.recv(1024) == b""  # closed by the server, well before a slow head would be


def test_forwarded_for_is_believed_only_from_a_named_proxy(http: httpx.Client) -> None:
    """Made-up keys from "many addresses" named in X-Forwarded-For: without a trusted proxy the header
    is ignored (they all come from 127.0.0.1, which holds few unverified sessions); with 127.0.0.1
    named as the proxy, each forwarded address is a client of its own."""
    made_up = [f"sk_made_up_{n:02d}_0123456789abcdef" for n in range(8)]

    def opened(settings: Settings) -> int:
        emulator = Emulator(api_keys=[KEY_A])
        app = emulated(emulator, **settings.model_dump(include={"trusted_proxies", "max_sessions"}))
        with serve_in_thread(app, graceful=0.5, **uvicorn_limits(settings)) as base:
            return sum(
                http.post(
                    f"{base}/mcp",
                    headers={**MCP_HEADERS, "x-atlas-api-key": key, "x-forwarded-for": f"198.51.100.{n}"},
                    json=INITIALIZE,
                ).status_code
                == 200
                for n, key in enumerate(made_up)
            )

    assert opened(Settings(max_sessions=100)) < len(made_up)
    assert opened(Settings(max_sessions=100, trusted_proxies=("127.0.0.1",))) == len(made_up)


# --- low: heads and keep-alive as documented -----------------------------------------------------


def test_request_heads_are_capped_as_documented_however_they_arrive(atlas: str) -> None:
    with serve_in_thread(hosted(atlas), graceful=0.5, **uvicorn_limits(Settings(user_keys=True))) as base:
        host, port = _host_port(base)

        def head(size: int) -> bytes:
            start = f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\nX-Pad: ".encode()
            return start + b"a" * (size - len(start) - 4) + b"\r\n\r\n"

        assert _get(host, port, head=head(MAX_HEADER_BYTES - 1024)).startswith(b"HTTP/1.1 200")
        for size in (MAX_HEADER_BYTES + 1024, 60 * 1024):  # each sent in one piece
            refused = _get(host, port, head=head(size))
            assert refused.startswith(b"HTTP/1.1 431"), (size, refused[:100])
    text = (DOCS / "hosting.md").read_text(encoding="utf-8")
    assert f"fit in {MAX_HEADER_BYTES // 1024} KB" in text


@pytest.mark.slow  # waits out the real keep-alive time
def test_an_idle_keep_alive_connection_closes_after_the_documented_time(atlas: str) -> None:
    with serve_in_thread(hosted(atlas), graceful=0.5, **uvicorn_limits(Settings(user_keys=True))) as base:
        host, port = _host_port(base)
        with socket.create_connection((host, port)) as sock:
            sock.settimeout(KEEP_ALIVE_SECONDS + 10)
            sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            answer = _read_all(sock)  # the answer, then the server's close once the connection idles
        assert re.match(rb"HTTP/1.1 200", answer) and answer.endswith(b"}")
    text = (DOCS / "hosting.md").read_text(encoding="utf-8")
    assert f"closed after {KEEP_ALIVE_SECONDS:g} s" in text
