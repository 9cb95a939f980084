"""A local emulator of the Atlas Cloud API: an ASGI app (Starlette) that answers like the real service.

It is the backend of offline mode (``--offline``, ``ATLAS_MCP_OFFLINE=1``), a demo backend on a
port (``atlas-image-mcp emulator``, ``python -m atlas_image_mcp.emulator``) and the tests' stand-in
for Atlas. It is deliberately independent from the rest of ``atlas_image_mcp`` so that the client
is tested against the API's behaviour as written in docs/atlas-api.md, not against a mirror of
itself.

    emu = Emulator(latency=1.0, clock=fake_clock)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=emu.app), base_url="http://atlas.emulator")
    emu.script_next(PredictionScript(outcome="fail"))

A prompt can steer its own job with directives such as ``[emulator:fail]`` (docs/emulator.md).
What only the tests need (a request log, fault injection, admin routes) lives in the tests and
plugs into the emulator's ``middleware`` argument.
"""

from .core import Middleware
from .emulator import Emulator
from .server import serve
from .store import EmulatedPrediction, PredictionScript

__all__ = [
    "Emulator",
    "EmulatedPrediction",
    "Middleware",
    "PredictionScript",
    "serve",
]
