"""The :class:`Emulator`: configuration and state of one fake Atlas Cloud API, plus its ASGI app."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from decimal import Decimal

from starlette.types import ASGIApp

from .media import MediaStore
from .served_models import MODELS, CatalogueModel, price_for, slug
from .store import Durations, EmulatedPrediction, EmulatorClock, PredictionScript, PredictionStore, Timing
from .validation import Submission

__all__ = ["EmulatorCore", "Middleware"]

logger = logging.getLogger(__name__)

_BEARER = "bearer "

#: Wraps the emulator's ASGI app: called once with it, returns the app that answers every request.
Middleware = Callable[[ASGIApp], ASGIApp]


class EmulatorCore:
    """The state and rules of the stand-in for the Atlas Cloud API (as docs/atlas-api.md describes it);
    :class:`~atlas_image_mcp.emulator.emulator.Emulator` serves them as an ASGI app.

    ``api_keys``: ``None`` accepts any non-empty Bearer token, otherwise only these.
    ``latency``: seconds from submit until a prediction is terminal; ``queue_delay`` (<= latency):
    seconds it stays ``created`` before ``processing``. ``durations`` (a :class:`Durations` or its
    text, such as ``"uniform:1,8"``): draw each prediction's latency from that distribution instead,
    with a generator seeded by ``seed`` (and seeded again on :meth:`reset`). ``fail_http_status``:
    HTTP status of a failed prediction's poll answer (500 like the real API, or 200). ``clock``: time
    source that drives every prediction's progress (tests pass a fake clock and advance it).
    ``models``: the catalogue it serves (default
    :data:`MODELS`: every row of the shared model table plus a few other shapes); a test passes its
    own to play a live catalogue that differs from the built-in table. ``balance``: the
    account's credit in USD before any job; every completed prediction takes its catalogue price
    off it (``GET /public/v1/balance``).
    """

    def __init__(
        self,
        api_keys: Iterable[str] | None = None,
        latency: float = 1.0,
        queue_delay: float = 0.0,
        fail_http_status: int = 500,
        clock: Callable[[], float] = time.monotonic,
        models: Iterable[CatalogueModel] | None = None,
        durations: Durations | str | None = None,
        seed: int = 0,
        balance: str = "10",
    ) -> None:
        _check_timing(latency, queue_delay, fail_http_status)
        self.api_keys: frozenset[str] | None = None if api_keys is None else frozenset(api_keys)
        self.latency = float(latency)
        self.queue_delay = float(queue_delay)
        self.fail_http_status = fail_http_status
        self.durations = _durations(durations)
        self.seed = int(seed)
        self.clock = clock
        self.models: tuple[CatalogueModel, ...] = tuple(MODELS if models is None else models)
        self._models_by_id = {m.id: m for m in self.models}
        self._models_by_slug = {slug(m.id): m for m in self.models}
        self.starting_balance = Decimal(balance)
        self.timeline = EmulatorClock(clock)
        self.store = PredictionStore(clock, self.seed)
        self.media = MediaStore()

    # -- steering, in process ------------------------------------------------------------------

    @property
    def predictions(self) -> dict[str, EmulatedPrediction]:
        return self.store.predictions

    def script_next(self, script: PredictionScript) -> None:
        """Queue ``script`` for the next submitted prediction (FIFO)."""
        self.store.queue_script(script)

    def reset(self) -> None:
        """Forget predictions, uploads and queued scripts (keeps config).

        Durations drawn from a distribution start their seeded sequence again.
        """
        self.store.clear()
        self.store.reseed(self.seed)
        self.media.clear()

    def configure(
        self,
        latency: float | None = None,
        queue_delay: float | None = None,
        fail_http_status: int | None = None,
        durations: Durations | str | None = "",
        seed: int | None = None,
    ) -> None:
        """Change the defaults for predictions submitted from now on.

        ``durations``: a distribution (or its text) to draw latencies from, ``None`` to go back to
        the constant ``latency``, ``""`` (the default) to keep the current one. A new ``seed``
        starts the draws again.
        """
        new_latency = self.latency if latency is None else float(latency)
        new_queue = self.queue_delay if queue_delay is None else float(queue_delay)
        new_status = self.fail_http_status if fail_http_status is None else int(fail_http_status)
        _check_timing(new_latency, new_queue, new_status)
        new_durations = self.durations if durations == "" else _durations(durations)
        self.latency, self.queue_delay, self.fail_http_status = new_latency, new_queue, new_status
        self.durations = new_durations
        if seed is not None:
            self.seed = int(seed)
            self.store.reseed(self.seed)
        logger.info(
            "config: latency=%s queue_delay=%.2fs fail_http_status=%d seed=%d",
            self.durations or f"{self.latency:.2f}s",
            self.queue_delay,
            self.fail_http_status,
            self.seed,
        )

    def balance(self) -> Decimal:
        """The credit left: the starting balance less the charge of every prediction completed by now."""
        moment = self.clock()
        spent = sum(
            (Decimal(p.charge) for p in self.store.newest_first() if p.status_at(moment) == "completed"),
            Decimal(0),
        )
        return self.starting_balance - spent

    # -- used by the app ------------------------------------------------------------------------

    def find_model(self, model_id: object) -> CatalogueModel | None:
        return self._models_by_id.get(model_id) if isinstance(model_id, str) else None

    def find_model_by_slug(self, name: str) -> CatalogueModel | None:
        return self._models_by_slug.get(name)

    def is_authorized(self, authorization: str | None) -> bool:
        if not authorization or not authorization.lower().startswith(_BEARER):
            return False
        token = authorization[len(_BEARER) :].strip()
        return bool(token) and (self.api_keys is None or token in self.api_keys)

    def create_prediction(
        self, spec: CatalogueModel, submission: Submission, size: tuple[int, int]
    ) -> EmulatedPrediction:
        """Record a submitted prediction; ``size`` is its output size (an edit's follows its input)."""
        return self.store.create(
            model=spec.id,
            prompt=submission.prompt,
            params=submission.params,
            seed=submission.seed,
            size=size,
            num_images=submission.num_images,
            base64_output=submission.base64_output,
            catalogue_price=price_for(spec, submission.num_images),
            timing=Timing(self.latency, self.queue_delay, self.fail_http_status, durations=self.durations),
            kind=spec.kind,
            sources=submission.images,
            mask=submission.mask,
            output_format=submission.output_format,
        )


def _durations(value: Durations | str | None) -> Durations | None:
    if value is None or isinstance(value, Durations):
        return value
    if not isinstance(value, str):
        raise ValueError("durations must be text such as 'uniform:1,8', or null")
    return Durations.parse(value)


def _check_timing(latency: float, queue_delay: float, fail_http_status: int) -> None:
    if latency < 0:
        raise ValueError("latency must be >= 0")
    if not 0 <= queue_delay <= latency:
        raise ValueError("queue_delay must be between 0 and latency")
    if not 100 <= fail_http_status <= 599:
        raise ValueError("fail_http_status must be an HTTP status code")
