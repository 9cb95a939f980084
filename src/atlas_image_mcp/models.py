"""Typed views of what the Atlas Cloud API answers, parsed leniently.

Atlas (and the clients built against it) disagree on small things: the envelope ``code`` is
a number or a string, the message is ``msg``, ``message`` or ``error``, outputs are ``outputs``
or ``output``, errors are strings or objects, statuses vary in case. These parsers accept all
of that and keep unknown fields in ``raw``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .constants import MAX_MODEL_ID_CHARS, MAX_PRICE_CHARS, MAX_UPSTREAM_TEXT_CHARS

__all__ = [
    "Balance",
    "DONE_STATUSES",
    "HistoryItem",
    "Money",
    "FAILED_STATUSES",
    "ModelInfo",
    "Prediction",
    "StatusKind",
    "Upload",
    "envelope_code",
    "envelope_data",
    "message_of",
    "parse_balance",
    "parse_history",
    "parse_prediction",
    "parse_usd",
    "status_kind",
]

DONE_STATUSES = frozenset({"completed", "succeeded", "success", "done"})
FAILED_STATUSES = frozenset({"failed", "timeout", "canceled", "cancelled", "error", "expired"})

StatusKind = Literal["running", "done", "failed"]
_MAX_USD = Decimal(1_000_000)  # no single call costs more: anything above is not a price


def status_kind(status: str | None) -> StatusKind:
    """Classify a status case-insensitively. Unknown values count as still running."""
    value = (status or "").strip().lower()
    if value in DONE_STATUSES:
        return "done"
    if value in FAILED_STATUSES:
        return "failed"
    return "running"


# --- envelope --------------------------------------------------------------------------------


def envelope_code(body: Any) -> int | None:
    """The envelope's ``code`` as an int (``200``, ``"200"``), or None when absent or odd."""
    if not isinstance(body, Mapping):
        return None
    code = body.get("code")
    if isinstance(code, bool):
        return None
    if isinstance(code, int):
        return code
    if isinstance(code, str) and code.strip().isdigit():
        return int(code.strip())
    return None


def envelope_data(body: Any) -> Any:
    """``body["data"]`` when the body is an envelope, else the body itself."""
    if isinstance(body, Mapping) and "data" in body:
        return body["data"]
    return body


# --- predictions -----------------------------------------------------------------------------


_MESSAGE_KEYS = ("msg", "message", "error", "detail", "reason")
_HTML_TITLE = re.compile(r"(?is)<title>(.*?)</title>")


def message_of(value: Any) -> str:
    """The human text an Atlas answer or error value carries, or ``""``.

    Reads ``msg`` / ``message`` / ``error`` / ``detail`` / ``reason`` (strings or nested objects,
    ``"success"`` skipped), then the envelope's ``data``; an HTML page (a CDN error) is named by its
    title. This is the one place that knows where Atlas puts its messages.
    """
    if isinstance(value, str):
        text = value.strip()
        if text.lower().startswith(("<!doctype", "<html")) or "<html" in text[:200].lower():
            title = _HTML_TITLE.search(text)
            return f"an HTML error page{': ' + title.group(1).strip() if title else ''}"
        return "" if text.lower() == "success" else text
    if isinstance(value, Mapping):
        for key in _MESSAGE_KEYS:
            text = message_of(value.get(key)) if value.get(key) else ""
            if text:
                return text
        return message_of(value.get("data")) if isinstance(value.get("data"), Mapping) else ""
    return ""


def _error_text(value: Any) -> str:
    """A prediction's ``error`` field as text: a string, or an object's message (else its fields)."""
    if isinstance(value, Mapping):
        return message_of(value) or ", ".join(f"{k}={v}" for k, v in value.items())
    return message_of(value) if isinstance(value, str) else ("" if value is None else str(value))


def _output_urls(data: Mapping[str, Any]) -> list[str]:
    raw = data.get("outputs")
    if raw is None:
        raw = data.get("output")
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else [raw]
    urls: list[str] = []
    for item in items:
        if isinstance(item, str) and item.strip():
            urls.append(item.strip())
        elif isinstance(item, Mapping):
            for key in ("url", "download_url", "image", "output"):
                if isinstance(item.get(key), str) and item[key].strip():
                    urls.append(item[key].strip())
                    break
    return urls


def parse_usd(value: object) -> Decimal | None:
    """An amount of USD from outside (Atlas' ``price``): a finite, non-negative, sane number, or None."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    text = str(value).strip()
    if not text or len(text) > MAX_PRICE_CHARS:
        return None
    try:
        amount = Decimal(text)
    except (InvalidOperation, ValueError):
        return None
    return amount if amount.is_finite() and 0 <= amount <= _MAX_USD else None


def _price(value: Any) -> str | None:
    """A price as Atlas wrote it when it is a sane amount of USD (see :func:`parse_usd`), else None.

    Anything else (``-5``, ``NaN``, ``abc``, an absurd amount) is not shown as a price: it is unknown.
    """
    if isinstance(value, Mapping):
        return _price(value.get("value") or value.get("amount"))
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    text = f"{value:g}" if isinstance(value, float) else str(value).strip()
    return text if parse_usd(text) is not None else None


def _nsfw(value: Any) -> list[bool]:
    if isinstance(value, list):
        return [bool(v) for v in value]
    if isinstance(value, bool):
        return [value]
    return []


class Prediction(BaseModel):
    """One prediction (a generation job) as Atlas reports it."""

    model_config = ConfigDict(frozen=True)

    id: str
    status: str = "created"
    model: str | None = None
    outputs: list[str] = Field(default_factory=list)
    error: str = ""
    has_nsfw_contents: list[bool] = Field(default_factory=list)
    price: str | None = None
    created_at: str | None = None
    completed_at: str | None = None
    raw: dict[str, Any] = Field(default_factory=dict, repr=False)

    @property
    def kind(self) -> StatusKind:
        return status_kind(self.status)

    @property
    def is_terminal(self) -> bool:
        return self.kind != "running"

    @property
    def blocked_by_safety_checker(self) -> bool:
        return not self.outputs and any(self.has_nsfw_contents)


def parse_prediction(body: Any, *, fallback_id: str | None = None) -> Prediction | None:
    """Build a Prediction from an envelope or a bare data object; None when it holds no prediction.

    The envelope's message fills ``error`` for a failed prediction whose own ``error`` is empty,
    as Atlas answers ``{"code": 500, "message": "Generation failed: ...", "data": {...}}``.
    """
    data = envelope_data(body)
    if isinstance(data, Mapping) and isinstance(data.get("data"), Mapping) and "status" not in data:
        data = data["data"]
    if not isinstance(data, Mapping):
        return None
    pid = data.get("id") or data.get("prediction_id") or data.get("predictionId")
    if not pid and isinstance(body, Mapping):
        pid = body.get("id")
    pid = pid or fallback_id
    if not pid or not isinstance(pid, (str, int)):
        return None
    status = str(data.get("status") or "created").strip().lower()[:40]
    model = data.get("model")
    error = _error_text(data.get("error"))[:MAX_UPSTREAM_TEXT_CHARS]
    outputs = _output_urls(data)
    if status_kind(status) == "failed" and not error:
        error = (
            message_of({k: v for k, v in body.items() if k != "data"}) if isinstance(body, Mapping) else ""
        )[:MAX_UPSTREAM_TEXT_CHARS]
    return Prediction(
        id=str(pid),
        status=status,
        model=model if isinstance(model, str) and 0 < len(model) <= MAX_MODEL_ID_CHARS else None,
        outputs=outputs,
        error=error,
        has_nsfw_contents=_nsfw(data.get("has_nsfw_contents")),
        price=_price(data.get("price")),
        created_at=data.get("created_at") if isinstance(data.get("created_at"), str) else None,
        completed_at=data.get("completed_at") if isinstance(data.get("completed_at"), str) else None,
        raw=dict(data),
    )


# --- uploads and the catalogue ---------------------------------------------------------------


class Upload(BaseModel):
    """A file uploaded with ``uploadMedia``: a temporary URL meant as a generation input."""

    model_config = ConfigDict(frozen=True)

    download_url: str
    filename: str
    size: int
    content_type: str
    type: str | None = None


class ModelInfo(BaseModel):
    """One entry of the ``/api/v1/models`` catalogue."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    type: str
    description: str = ""
    price: str | None = None
    price_unit: str | None = None
    categories: list[str] = Field(default_factory=list)
    organization: str | None = None
    schema_url: str | None = None

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> ModelInfo | None:
        model_id = entry.get("model")
        if not isinstance(model_id, str) or not model_id:
            return None
        price = entry.get("price")
        actual = price.get("actual") if isinstance(price, Mapping) else None
        if not isinstance(actual, Mapping):
            actual = {}
        return cls(
            id=model_id,
            name=str(entry.get("displayName") or model_id),
            type=str(entry.get("type") or ""),
            description=str(entry.get("profile") or ""),
            price=_price(actual.get("base_price")),
            price_unit=actual.get("unit") if isinstance(actual.get("unit"), str) else None,
            categories=[str(c) for c in entry.get("categories") or [] if isinstance(c, str)],
            organization=entry.get("organization") if isinstance(entry.get("organization"), str) else None,
            schema_url=_http_url(entry.get("schema")),
        )


def _http_url(value: Any) -> str | None:
    """``value`` when it is an http(s) URL of sane length, else None."""
    if isinstance(value, str) and value.startswith(("https://", "http://")) and len(value) <= 2048:
        return value
    return None


# --- the account balance ---------------------------------------------------------------------

_AMOUNT = re.compile(r"^-?[0-9]{1,12}(\.[0-9]{1,12})?$")
_CURRENCY = re.compile(r"^[A-Za-z]{3}$")
_BALANCE_FIELDS = ("available", "cash", "bonus", "subscription_bonus", "frozen")


class Money(BaseModel):
    """An amount as Atlas' billing API writes it: a decimal string and a currency code."""

    model_config = ConfigDict(frozen=True)

    value: str = Field(description="Decimal amount, e.g. 9.964000.")
    currency: str = Field(description="Currency code, e.g. usd.")


class Balance(BaseModel):
    """``GET /public/v1/balance`` (not enveloped): what the account can spend."""

    model_config = ConfigDict(frozen=True)

    available: Money | None = Field(default=None, description="What can be spent now.")
    cash: Money | None = Field(default=None, description="Paid credit.")
    bonus: Money | None = Field(default=None, description="Bonus credit.")
    subscription_bonus: Money | None = Field(default=None, description="Credit from a subscription.")
    frozen: Money | None = Field(default=None, description="Held for jobs in progress.")


def _money(value: Any) -> Money | None:
    """A ``{value, currency}`` object of sane shape, or None (anything else is not trusted)."""
    if not isinstance(value, Mapping):
        return None
    amount, currency = value.get("value"), value.get("currency")
    if isinstance(amount, (int, float)) and not isinstance(amount, bool):
        amount = f"{amount:f}" if isinstance(amount, float) else str(amount)
    if not (isinstance(amount, str) and _AMOUNT.match(amount.strip())):
        return None
    if not (isinstance(currency, str) and _CURRENCY.match(currency.strip())):
        return None
    return Money(value=amount.strip(), currency=currency.strip().lower())


def parse_balance(body: Any) -> Balance | None:
    """The balance in ``body``, or None when it has none of the amounts."""
    if not isinstance(body, Mapping):
        return None
    amounts = {name: _money(body.get(name)) for name in _BALANCE_FIELDS}
    if not any(amounts.values()):
        return None
    return Balance(**amounts)


# --- the account's history ---------------------------------------------------------------------

_MAX_HISTORY_BODY_CHARS = 256 * 1024  # a request body longer than this is not one this server sent


@dataclass(frozen=True)
class HistoryItem:
    """One job of ``GET /model/history``: its prediction, when it was created, and what was sent."""

    prediction: Prediction
    #: Unix seconds (None when not given or not a number).
    created_at: float | None
    #: The request body it was submitted with (None when absent or not a JSON object).
    request_body: dict[str, Any] | None


def parse_history(body: Any) -> tuple[list[HistoryItem], int | None]:
    """The items of a history page and the total Atlas reports (None when not given); odd items
    (no id, a body that is not JSON) are kept as far as they can be read, never raised."""
    data = envelope_data(body)
    items = data.get("items") if isinstance(data, Mapping) else None
    total = data.get("total") if isinstance(data, Mapping) else None
    found: list[HistoryItem] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, Mapping):
            continue
        pid = str(item.get("ID") or item.get("id") or "")[:MAX_MODEL_ID_CHARS]
        result = item.get("result")
        prediction = parse_prediction(result, fallback_id=pid) if isinstance(result, Mapping) else None
        if prediction is None:
            if not pid:
                continue
            prediction = Prediction(id=pid, status=str(item.get("status") or "created")[:32])
        created = item.get("createdAt")
        raw = item.get("requestBody")
        request: Any = None
        if isinstance(raw, str) and len(raw) <= _MAX_HISTORY_BODY_CHARS:
            try:
                request = json.loads(raw)
            except ValueError:
                request = None
        elif isinstance(raw, Mapping):
            request = dict(raw)
        found.append(
            HistoryItem(
                prediction=prediction,
                created_at=float(created)
                if isinstance(created, (int, float)) and not isinstance(created, bool)
                else None,
                request_body=request if isinstance(request, dict) else None,
            )
        )
    count = total if isinstance(total, int) and not isinstance(total, bool) and total >= 0 else None
    return found, count
