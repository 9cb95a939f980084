"""One scenario, three transports: the SDK's own client over stdio, streamable HTTP and SSE.

stdio is a real subprocess (``python -m atlas_image_mcp --offline``); the two HTTP transports
reach a real uvicorn on 127.0.0.1 serving ``create_http_app`` (one app serves both at once).
"""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from PIL import Image

from atlas_image_mcp.http import create_http_app
from atlas_image_mcp.runtime import Runtime
from atlas_image_mcp.settings import Settings

from .conftest import TOOL_NAMES, text_of
from .http_helpers import TRANSPORTS, child_env, mcp_client, serve_app, stdio_params

pytestmark = pytest.mark.timeout(60)

Connect = Callable[[], AbstractAsyncContextManager[Client]]


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def http_base() -> Iterator[str]:
    """One offline HTTP server (saving off, as over HTTP by default) shared by the HTTP transports."""
    runtime = Runtime.create(Settings(wait_seconds=20), offline=True, remote=True, emulator_latency=0.3)
    with serve_app(create_http_app(runtime)) as base:
        yield base


@pytest.fixture(
    params=[pytest.param(t, marks=pytest.mark.subprocess) if t == "stdio" else t for t in TRANSPORTS]
)
def connect(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Connect, Path | None]:
    """``(transport, connect, output_dir)``: ``async with connect() as client`` over that transport."""
    transport: str = request.param
    if transport == "stdio":
        out = tmp_path / "out"
        params = stdio_params(child_env(tmp_path, ATLAS_MCP_OUTPUT_DIR=str(out)), "--offline")

        @asynccontextmanager
        async def stdio() -> AsyncIterator[Client]:
            async with Client(params, read_timeout_seconds=30) as client:
                yield client

        return transport, stdio, out
    base = request.getfixturevalue("http_base")
    return transport, lambda: mcp_client(base, transport), None


async def test_list_generate_with_progress_get_and_upload_over_every_transport(
    connect: tuple[str, Connect, Path | None],
) -> None:
    transport, open_client, output_dir = connect
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async with open_client() as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert tools == TOOL_NAMES

        generated = await client.call_tool(
            "generate_image",
            {
                "prompt": f"a red fox over {transport}",
                "width": 512,
                "height": 384,
                "return_image": "thumbnail",
            },
            progress_callback=on_progress,
        )
        assert generated.is_error is False, text_of(generated)
        data: dict[str, Any] = generated.structured_content
        assert data["status"] == "completed" and len(data["outputs"]) == 1
        assert (data["outputs"][0]["width"], data["outputs"][0]["height"]) == (512, 384)
        assert [b.type for b in generated.content if b.type == "image"] == ["image"]
        assert progress, f"no progress notification arrived over {transport}"
        assert all("elapsed" in (message or "") for _, _, message in progress)

        pid = data["prediction_id"]
        fetched = await client.call_tool("get_prediction", {"prediction_id": pid, "return_image": "none"})
        assert fetched.is_error is False, text_of(fetched)
        assert fetched.structured_content["prediction_id"] == pid
        assert fetched.structured_content["status"] == "completed"
        assert fetched.structured_content["outputs"][0]["url"] == data["outputs"][0]["url"]

        png = _png()
        uploaded = await client.call_tool(
            "upload_media", {"data": base64.b64encode(png).decode(), "filename": f"{transport}.png"}
        )
        assert uploaded.is_error is False, text_of(uploaded)
        assert uploaded.structured_content["size"] == len(png)
        assert uploaded.structured_content["filename"] == f"{transport}.png"
        assert uploaded.structured_content["download_url"].startswith("http")

    _check_saved(data["outputs"][0]["path"], output_dir)


def _check_saved(saved: str | None, output_dir: Path | None) -> None:
    if output_dir is not None:  # stdio saves by default, into ATLAS_MCP_OUTPUT_DIR
        assert saved is not None and Path(saved).parent == output_dir and Path(saved).is_file()
    else:  # over HTTP saving is off unless ATLAS_MCP_OUTPUT_DIR is set
        assert saved is None
