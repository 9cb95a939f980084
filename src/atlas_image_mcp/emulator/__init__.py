"""A local emulator of the Atlas Cloud API: an ASGI app (Starlette) that answers like the real service.

It is a test double and a demo backend, deliberately independent from the rest of
``atlas_image_mcp`` so that the client is tested against the API's behaviour as documented in
``shared/reference/atlas-api.md``, not against a mirror of itself.

    emu = Emulator(latency=1.0, clock=fake_clock)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=emu.app), base_url="http://atlas.emulator")
    emu.inject(Fault.rate_limited(), path="/api/v1/model/prediction/*")
    emu.script_next(PredictionScript(outcome="fail"))

Out of process: ``python -m atlas_image_mcp.emulator --port 8090`` or :func:`serve`, steered by the
``/_emulator/*`` admin endpoints or by prompt directives such as ``[emulator:fail]``.
"""

from .core import Emulator
from .faults import EmulatedConnectionReset, Fault
from .recording import RecordedRequest
from .server import serve
from .store import EmulatedPrediction, PredictionScript

__all__ = [
    "EmulatedConnectionReset",
    "Emulator",
    "Fault",
    "EmulatedPrediction",
    "PredictionScript",
    "RecordedRequest",
    "serve",
]
