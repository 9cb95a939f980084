"""A hosted server's client on a real network: AtlasClient over :class:`AiohttpTransport`.

The emulator runs under uvicorn on a loopback port. What matters for money is checked on the
wire: an error before the request could leave says nothing was sent, one after it says the job
may have started, and a POST is never sent twice. Proxies are taken from the environment as
httpx takes them: the emulator itself stands in for the proxy (it answers absolute-form targets).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest

from atlas_image_mcp.aiohttp_transport import AiohttpTransport
from atlas_image_mcp.client import MAY_HAVE_STARTED, AtlasClient
from atlas_image_mcp.errors import APIConnectionError, APITimeoutError
from atlas_image_mcp.fetch import remove_download
from atlas_image_mcp.http import create_http_app
from atlas_image_mcp.params import GenerationRequest
from atlas_image_mcp.runtime import Runtime
from atlas_image_mcp.settings import Settings, proxy_environment
from atlas_image_mcp.wire import prepare_request

from .conftest import FAST_POLLS, TEST_KEY, atlas_client
from .emulation import Emulator, Fault
from .http_helpers import mcp_client, serve_app
from .loadgen import LOAD_ARGUMENTS, serve_in_thread

GENERATE = "/api/v1/model/generateImage"
BOUND = 20.0


@pytest.fixture
def served(emulator: Emulator) -> Iterator[str]:
    with serve_in_thread(emulator.app, graceful=0.3, lifespan="off") as url:
        yield url


def aiohttp_transport() -> AiohttpTransport:
    return AiohttpTransport(max_connections=8, keepalive_expiry=5.0, proxies=proxy_environment())


def client(url: str, **kw: object) -> AtlasClient:
    options: dict = {"timeout": 2.0, "connect_timeout": 2.0, "poll_schedule": FAST_POLLS, **kw}
    return atlas_client(api_key=TEST_KEY, base_url=url, transport=aiohttp_transport(), **options)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens there once the socket is closed


async def test_a_whole_generation_over_the_network(emulator: Emulator, served: str, tmp_path: Path) -> None:
    with anyio.fail_after(BOUND):
        async with client(served) as api:
            first = await api.submit_image(
                prepare_request(GenerationRequest(prompt="a fox", width=256, height=256))
            )
            done = await api.wait(first.id, 10, first=first)
            picture = await api.download(done.outputs[0], folder=tmp_path, max_bytes=10_000_000)
            content = picture.path.read_bytes()
            upload = await api.upload_media(picture.path)
            await remove_download(picture.path)  # a download is the caller's to remove
    assert done.status == "completed" and picture.content_type == "image/jpeg"
    assert upload.download_url.startswith(served)
    (post,) = [r for r in emulator.requests if r.method == "POST" and r.path == GENERATE]
    assert post.json is not None and post.json["prompt"] == "a fox"
    assert post.headers["user-agent"].startswith("atlas-image-mcp/")
    uploaded = [r for r in emulator.requests if r.path.endswith("uploadMedia")]
    assert len(uploaded) == 1 and content in uploaded[0].body  # the file streamed whole


async def test_nothing_listening_is_an_error_that_says_nothing_was_sent() -> None:
    with anyio.fail_after(BOUND):
        async with client(f"http://127.0.0.1:{closed_port()}", max_retries=0) as api:
            with pytest.raises(APIConnectionError) as info:
                await api.submit_image(prepare_request(GenerationRequest(prompt="a fox")))
    assert info.value.sent is False
    assert MAY_HAVE_STARTED not in info.value.message and "could not reach" in info.value.message


async def test_a_connection_dropped_after_the_post_says_it_may_have_started_and_is_not_resent(
    emulator: Emulator, served: str
) -> None:
    emulator.inject(Fault.reset(), method="POST", path=GENERATE)
    with anyio.fail_after(BOUND):
        async with client(served) as api:
            with pytest.raises(APIConnectionError) as info:
                await api.submit_image(prepare_request(GenerationRequest(prompt="a fox")))
    assert info.value.sent is True and MAY_HAVE_STARTED in info.value.message
    assert emulator.count("POST", GENERATE) == 1


@pytest.mark.slow  # a real 0.3 s read timeout
async def test_an_answer_that_never_comes_is_a_read_timeout_and_the_post_is_not_resent(
    emulator: Emulator, served: str
) -> None:
    emulator.inject(Fault.delay(3), method="POST", path=GENERATE)
    with anyio.fail_after(BOUND):
        async with client(served, timeout=0.3) as api:
            with pytest.raises(APITimeoutError) as info:
                await api.submit_image(prepare_request(GenerationRequest(prompt="a fox")))
    assert info.value.sent is True and MAY_HAVE_STARTED in info.value.message
    assert emulator.count("POST", GENERATE) == 1


@contextlib.asynccontextmanager
async def forward_proxy(upstream: str) -> AsyncIterator[tuple[str, list[str]]]:
    """A minimal HTTP forward proxy on loopback that sends everything to ``upstream``; yields its
    URL and the request targets it was asked for (absolute-form, as clients talk to proxies)."""
    host, port = upstream.split("//")[1].split(":")
    targets: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        method, target, version = head.split(b"\r\n", 1)[0].decode().split(" ")
        targets.append(target)
        path = "/" + target.split("//", 1)[1].split("/", 1)[1]
        rest = head.split(b"\r\n", 1)[1]
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        up_writer.write(f"{method} {path} {version}\r\n".encode() + rest)
        await up_writer.drain()
        answer_head = await up_reader.readuntil(b"\r\n\r\n")
        length = int(
            next(
                line.split(b":")[1]
                for line in answer_head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
        )
        writer.write(answer_head + await up_reader.readexactly(length))
        await writer.drain()
        for w in (writer, up_writer):
            w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", targets


async def test_proxies_come_from_the_environment_and_no_proxy_bypasses_them(
    emulator: Emulator, served: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert proxy_environment({"HTTP_PROXY": served, "no_proxy": "skipped.test"}) == {
        "http": served,
        "no": "skipped.test",
    }
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    with anyio.fail_after(BOUND):
        async with forward_proxy(served) as (proxy, targets):
            monkeypatch.setenv("HTTP_PROXY", proxy)
            monkeypatch.setenv("NO_PROXY", "127.0.0.1")
            async with client("http://atlas.test") as api:
                models = await api.list_models()
            async with client(f"http://127.0.0.1:{closed_port()}", max_retries=0) as direct:
                with pytest.raises(APIConnectionError):  # straight to a closed port, not through the proxy
                    await direct.list_models()
    assert models and targets == ["http://atlas.test/api/v1/models"]  # through the proxy
    (seen,) = [r for r in emulator.requests if r.path == "/api/v1/models"]
    assert seen.headers["host"] == "atlas.test"


async def test_a_hosted_server_calls_atlas_through_aiohttp_end_to_end(
    emulator: Emulator, served: str
) -> None:
    settings = Settings(api_key=TEST_KEY, base_url=served, wait_seconds=20)
    runtime = Runtime.create(settings, remote=True)
    with serve_app(create_http_app(runtime)) as base:
        with anyio.fail_after(BOUND):
            async with mcp_client(base, "streamable-http") as session:
                result = await session.call_tool("generate_image", dict(LOAD_ARGUMENTS))
    assert not result.is_error and (result.structured_content or {})["status"] == "completed"
    (post,) = [r for r in emulator.requests if r.method == "POST" and r.path == GENERATE]
    assert post.headers["user-agent"].startswith("atlas-image-mcp/")
