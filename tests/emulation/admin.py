"""Admin endpoints for steering an out-of-process emulator (the benchmark, tests/test_load.py).
No such routes exist on the real Atlas Cloud API, and they need no authentication.

- ``GET  /_emulator/requests?method=&path=`` -> ``{"count": n, "requests": [last 200, no auth headers]}``
- ``POST /_emulator/reset`` -> clears the request log, predictions, uploads, armed faults, scripts
- ``GET  /_emulator/faults`` -> armed faults; ``POST /_emulator/faults`` with
  ``{"fault": "status"|"html"|"rate_limited"|"delay"|"invalid_json"|"envelope_error"|"reset",
  ...arguments of the matching ``Fault`` constructor, "method": "*", "path": "*", "times": 1}``
- ``POST /_emulator/script`` with the fields of :class:`PredictionScript` -> queued for the next submit
- ``GET|POST /_emulator/config`` with ``{"latency": 1.0, "queue_delay": 0.0, "fail_http_status": 500,
  "durations": "uniform:1,8" (or null for the constant latency), "seed": 0}``
- ``GET  /_emulator/predictions`` -> id, model, status, prompt, seed, and the clock readings of its
  submit and completion (``submitted_at``, ``done_at``) of every prediction
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from atlas_image_mcp.emulator import PredictionScript

from .faults import FAULT_KINDS, Fault
from .recording import ADMIN_PREFIX, matching

if TYPE_CHECKING:
    from .harness import Emulator

__all__ = ["admin_app"]

logger = logging.getLogger(__name__)

_REQUESTS_SHOWN = 200
_TARGET_KEYS = ("method", "path", "times")


class AdminError(ValueError):
    """A bad admin request; answered with 400."""


def admin_app(emulator: Emulator) -> Starlette:
    admin = _Admin(emulator)
    return Starlette(
        routes=[
            Route(f"{ADMIN_PREFIX}/requests", admin.requests, methods=["GET"]),
            Route(f"{ADMIN_PREFIX}/reset", admin.reset, methods=["POST"]),
            Route(f"{ADMIN_PREFIX}/faults", admin.faults, methods=["GET", "POST"]),
            Route(f"{ADMIN_PREFIX}/script", admin.script, methods=["POST"]),
            Route(f"{ADMIN_PREFIX}/config", admin.config, methods=["GET", "POST"]),
            Route(f"{ADMIN_PREFIX}/predictions", admin.predictions, methods=["GET"]),
        ]
    )


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        raise AdminError("invalid JSON body") from None
    if not isinstance(body, dict):
        raise AdminError("body must be a JSON object")
    return body


def _bad_request(message: str) -> Response:
    return JSONResponse({"error": message}, status_code=400)


class _Admin:
    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    async def requests(self, request: Request) -> Response:
        method = request.query_params.get("method") or "*"
        path = request.query_params.get("path") or "*"
        found = matching(list(self.emulator.requests), method, path)
        shown = [r.to_public_dict() for r in found[-_REQUESTS_SHOWN:]]
        return JSONResponse({"count": len(found), "requests": shown})

    async def reset(self, request: Request) -> Response:
        self.emulator.reset()
        return JSONResponse({"ok": True})

    async def faults(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                body = await _json_body(request)
                fault, target = _fault_from(body)
                self.emulator.inject(fault, **target)
            except (AdminError, TypeError, ValueError) as exc:
                return _bad_request(str(exc))
        return JSONResponse({"faults": self.emulator.pending_faults()})

    async def script(self, request: Request) -> Response:
        try:
            script = PredictionScript(**await _json_body(request))
        except (AdminError, TypeError, ValueError) as exc:
            return _bad_request(str(exc))
        self.emulator.script_next(script)
        return JSONResponse({"ok": True, "queued": self.emulator.store.pending_scripts()})

    async def config(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                self.emulator.configure(**await _json_body(request))
            except (AdminError, TypeError, ValueError) as exc:
                return _bad_request(str(exc))
        emulator = self.emulator
        durations = None if emulator.durations is None else str(emulator.durations)
        return JSONResponse(
            {
                "latency": emulator.latency,
                "queue_delay": emulator.queue_delay,
                "fail_http_status": emulator.fail_http_status,
                "durations": durations,
                "seed": emulator.seed,
            }
        )

    async def predictions(self, request: Request) -> Response:
        now = self.emulator.clock()
        rows = [
            {
                "id": p.id,
                "model": p.model,
                "status": p.status_at(now),
                "prompt": p.prompt,
                "seed": p.seed,
                # readings of the emulator's clock (time.monotonic out of process), for benchmarks
                "submitted_at": p.submitted_at,
                "done_at": p.done_at,
            }
            for p in self.emulator.store.newest_first()
        ]
        return JSONResponse({"count": len(rows), "predictions": rows})


def _fault_from(body: dict[str, Any]) -> tuple[Fault, dict[str, Any]]:
    """Split an admin fault request into the fault and where it applies."""
    args = dict(body)
    kind = args.pop("fault", None)
    if kind not in FAULT_KINDS:
        raise AdminError(f"fault must be one of {', '.join(FAULT_KINDS)}")
    target = {key: args.pop(key) for key in _TARGET_KEYS if key in args}
    fault = getattr(Fault, kind)(**args)
    return fault, target
