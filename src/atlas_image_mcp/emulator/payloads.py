"""JSON shapes of the emulator's answers: the Atlas envelope and the prediction ``data`` object.

Success: HTTP 200 ``{"code": 200, "message": "", "data": ...}`` (``code`` is always the number
200). Errors: ``{"code": <status>, "msg": ..., "data": null}``. A failed or timed out prediction
is answered with its ``fail_http_status`` (500 by default, like the real API) and ``{"code": <that
status>, "message": "Generation failed: <reason>", "data": {..., "status": "failed"}}``; when that
status is 200 the envelope ``code`` is 200 as well, so only ``data.status`` tells the failure (the
shape that ComfyUI, n8n and the skills expect). docs/atlas-api.md describes every shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse

from .store import EmulatedPrediction, EmulatorClock

__all__ = [
    "envelope",
    "error_response",
    "ok_response",
    "prediction_data",
    "prediction_response",
    "submit_data",
]


def envelope(data: Any, message: str = "") -> dict[str, Any]:
    return {"code": 200, "message": message, "data": data}


def ok_response(data: Any, message: str = "") -> JSONResponse:
    return JSONResponse(envelope(data, message))


def error_response(status: int, msg: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"code": status, "msg": msg, "data": None}, status_code=status, headers=headers)


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _base_data(
    prediction: EmulatedPrediction, base: str, clock: EmulatorClock, status: str
) -> dict[str, Any]:
    return {
        "id": prediction.id,
        "model": prediction.model,
        "status": status,
        "outputs": None,
        "urls": {"get": f"{base}/api/v1/model/prediction/{prediction.id}"},
        "created_at": clock.iso(prediction.submitted_at),
        "seed": prediction.seed,
    }


def submit_data(prediction: EmulatedPrediction, base: str, clock: EmulatorClock) -> dict[str, Any]:
    """``data`` of the submit answer: always ``created``, no outputs yet."""
    return _base_data(prediction, base, clock, "created")


def prediction_data(
    prediction: EmulatedPrediction, *, now: float, base: str, clock: EmulatorClock, outputs: list[str] | None
) -> dict[str, Any]:
    """``data`` of a poll answer at clock reading ``now``.

    ``outputs`` are the output URLs / data URIs, used only once the prediction has completed.
    """
    status = prediction.status_at(now)
    data = _base_data(prediction, base, clock, status)
    data["error"] = ""
    if status == "completed":
        data.update(_completed_fields(prediction, clock, outputs or []))
    elif status in ("failed", "timeout"):
        data.update(
            error=prediction.error_value(),
            completed_at=clock.iso(prediction.done_at),
            executionTime=0,
            timings={"inference": 0},
        )
    return data


def _completed_fields(
    prediction: EmulatedPrediction, clock: EmulatorClock, outputs: list[str]
) -> dict[str, Any]:
    nsfw = prediction.outcome == "nsfw"
    inference = _ms(prediction.done_at - prediction.started_at)
    fields: dict[str, Any] = {
        "outputs": [] if nsfw else outputs,
        "has_nsfw_contents": [nsfw] * prediction.num_images,
        "completed_at": clock.iso(prediction.done_at),
        "executionTime": inference,
        "timings": {"inference": inference},
        "latency_ms": _ms(prediction.done_at - prediction.submitted_at),
    }
    if prediction.price is not None:
        fields["price"] = prediction.price
    return fields


def prediction_response(prediction: EmulatedPrediction, data: dict[str, Any], now: float) -> JSONResponse:
    """The poll answer: 200 envelope while running or completed, ``fail_http_status`` if failed."""
    if not prediction.is_failure(now):
        return ok_response(data)
    status = prediction.fail_http_status
    body = {"code": status, "message": f"Generation failed: {prediction.reason}", "data": data}
    return JSONResponse(body, status_code=status)
