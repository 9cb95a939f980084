"""A trivial replica for the balancer's own test (tests/test_balancer.py), run by uvicorn.

``GET /healthz``; ``GET /whoami`` (its name, from ``REPLICA``); ``GET /events?n=N`` (an event
stream of N events); ``POST /mcp``: like a 2025-era MCP server, the first request (no
``Mcp-Session-Id``) gets a new session id in that header, and a request naming a session this
replica did not make gets 404.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

NAME = os.environ.get("REPLICA", "r?")
SESSIONS: set[str] = set()


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def whoami(request: Request) -> Response:
    return JSONResponse({"replica": NAME})


async def events(request: Request) -> Response:
    count = min(int(request.query_params.get("n", "3")), 100)

    async def stream() -> AsyncIterator[bytes]:
        for i in range(count):
            yield f"event: tick\ndata: {NAME} {i}\n\n".encode()

    return StreamingResponse(stream(), media_type="text/event-stream")


async def mcp(request: Request) -> Response:
    await request.body()
    session = request.headers.get("mcp-session-id")
    if session is None:
        session = f"{NAME}-{uuid.uuid4().hex}"
        SESSIONS.add(session)
        return JSONResponse({"replica": NAME}, headers={"mcp-session-id": session})
    if session not in SESSIONS:
        return JSONResponse({"error": "unknown session", "replica": NAME}, status_code=404)
    return JSONResponse({"replica": NAME})


app = Starlette(
    routes=[
        Route("/healthz", healthz),
        Route("/whoami", whoami),
        Route("/events", events),
        Route("/mcp", mcp, methods=["POST"]),
    ]
)
