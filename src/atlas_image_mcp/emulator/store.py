"""Predictions: the scripts that steer them, their records, and their clock-driven lifecycle.

No background task moves a prediction forward. Its state is computed from the injected clock
each time it is read (the lifecycle of docs/atlas-api.md): ``created`` until ``queue_delay`` has
passed, ``processing`` until ``latency`` has passed, then its terminal state (``completed``,
``failed`` or ``timeout``, depending on the script). A test advances a fake clock instead of sleeping.

Real jobs do not all take the same time: :class:`Durations` draws each prediction's latency from
a distribution (uniform, log-normal, a two-mode mix) with a seeded generator, so a run can be
repeated exactly.
"""

from __future__ import annotations

import logging
import math
import random
import re
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Literal

__all__ = [
    "DEFAULT_REASON",
    "DURATION_KINDS",
    "TIMEOUT_REASON",
    "Durations",
    "EmulatorClock",
    "EmulatedPrediction",
    "PredictionScript",
    "PredictionStore",
    "apply_directives",
    "strip_directives",
]

logger = logging.getLogger(__name__)

Outcome = Literal["complete", "fail", "nsfw", "timeout"]
OUTCOMES: tuple[str, ...] = ("complete", "fail", "nsfw", "timeout")
DEFAULT_REASON = "task processing failed (code: generation_failed)"
TIMEOUT_REASON = "task timed out"
SEED_MAX = 2**31 - 1


class EmulatorClock:
    """The injected clock plus a mapping of its readings to wall-clock ISO-8601 strings."""

    def __init__(self, now: Callable[[], float]) -> None:
        self.now = now
        self._origin = now()
        self._wall_origin = datetime.now(timezone.utc).timestamp()

    def wall(self, reading: float) -> float:
        """Unix time (seconds) of a clock reading."""
        return self._wall_origin + (reading - self._origin)

    def iso(self, reading: float) -> str:
        moment = datetime.fromtimestamp(self.wall(reading), tz=timezone.utc)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


DURATION_KINDS: dict[str, str] = {
    "constant": "constant:SECONDS",
    "uniform": "uniform:LOW,HIGH",
    "lognormal": "lognormal:MEDIAN,SIGMA",
    "two-mode": "two-mode:SHORT,LONG,SHARE_SHORT[,SIGMA]",
}
_TWO_MODE_SIGMA = 0.1


@dataclass(frozen=True)
class Durations:
    """How long each prediction takes: a distribution its latency is drawn from.

    Written as ``kind:args`` (see :data:`DURATION_KINDS`): ``constant:1``, ``uniform:1,8`` (seconds,
    evenly spread), ``lognormal:3,0.5`` (median 3 s, sigma 0.5 of the natural log), ``two-mode:2,20,0.8``
    (80% log-normal around 2 s, the rest around 20 s, each with sigma 0.1 unless a fourth number says
    otherwise). A bare number is ``constant``.
    """

    kind: str
    args: tuple[float, ...]

    def __post_init__(self) -> None:
        counts = {"constant": (1,), "uniform": (2,), "lognormal": (2,), "two-mode": (3, 4)}
        if self.kind not in counts:
            raise ValueError(f"durations must be one of {', '.join(DURATION_KINDS.values())}")
        if len(self.args) not in counts[self.kind]:
            raise ValueError(f"durations {self.kind} is written {DURATION_KINDS[self.kind]}")
        if not all(math.isfinite(a) and a >= 0 for a in self.args):
            raise ValueError("durations take finite numbers >= 0")
        if self.kind == "uniform" and self.args[0] > self.args[1]:
            raise ValueError("durations uniform:LOW,HIGH needs LOW <= HIGH")
        if self.kind == "two-mode" and self.args[2] > 1:
            raise ValueError("durations two-mode: SHARE_SHORT is a fraction between 0 and 1")

    @classmethod
    def parse(cls, text: str) -> Durations:
        kind, _, rest = text.strip().lower().partition(":")
        try:  # only the numbers are parsed here: the checks of __post_init__ speak for themselves
            args = tuple(float(part) for part in rest.split(",")) if rest else (float(kind),)
        except ValueError:
            raise ValueError(
                f"durations: {text!r} is not one of {', '.join(DURATION_KINDS.values())}"
            ) from None
        return cls(kind if rest else "constant", args)

    def draw(self, rng: random.Random) -> float:
        """One prediction's latency in seconds."""
        a = self.args
        if self.kind == "constant":
            return a[0]
        if self.kind == "uniform":
            return rng.uniform(a[0], a[1])
        if self.kind == "lognormal":
            return a[0] * math.exp(a[1] * rng.gauss(0.0, 1.0))
        sigma = a[3] if len(a) > 3 else _TWO_MODE_SIGMA
        median = a[0] if rng.random() < a[2] else a[1]
        return median * math.exp(sigma * rng.gauss(0.0, 1.0))

    def __str__(self) -> str:
        return f"{self.kind}:{','.join(f'{a:g}' for a in self.args)}"


@dataclass(frozen=True)
class PredictionScript:
    """How the next submitted prediction behaves (queued with ``Emulator.script_next``).

    ``price``: ``"default"`` reports the catalogue price, ``None`` never reports a price, any
    other string is reported as given.
    """

    outcome: Outcome = "complete"
    reason: str = DEFAULT_REASON
    error_as_object: bool = False
    latency: float | None = None
    fail_http_status: int | None = None
    not_found_for: float = 0.0
    price: str | None = "default"

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {self.outcome!r}")
        if self.latency is not None and self.latency < 0:
            raise ValueError("latency must be >= 0")
        if self.not_found_for < 0:
            raise ValueError("not_found_for must be >= 0")
        if self.fail_http_status is not None and not 100 <= self.fail_http_status <= 599:
            raise ValueError("fail_http_status must be an HTTP status code")


_DIRECTIVE_RE = re.compile(r"\[emulator:([a-z_]+)(?:=([^\]]*))?\]", re.IGNORECASE)


def strip_directives(prompt: str) -> str:
    """The prompt without its ``[emulator:...]`` directives (what the picture shows)."""
    return " ".join(_DIRECTIVE_RE.sub(" ", prompt).split())


def apply_directives(script: PredictionScript, prompt: str) -> PredictionScript:
    """Overlay the prompt's directives on ``script``.

    Understood: ``[emulator:fail]``, ``[emulator:nsfw]``, ``[emulator:timeout]``,
    ``[emulator:complete]``, ``[emulator:latency=2.5]``, ``[emulator:not_found_for=1]``,
    ``[emulator:fail_http_status=200]`` and ``[emulator:no_price]``. Anything else is logged and
    ignored.
    """
    for match in _DIRECTIVE_RE.finditer(prompt):
        name, value = match.group(1).lower(), match.group(2)
        try:
            script = _apply_directive(script, name, value)
        except ValueError:
            logger.warning("ignoring bad emulator directive %r", match.group(0))
    return script


def _apply_directive(script: PredictionScript, name: str, value: str | None) -> PredictionScript:
    if name in OUTCOMES and value is None:
        return replace(script, outcome=name)  # type: ignore[arg-type]
    if name == "latency" and value is not None:
        return replace(script, latency=float(value))
    if name == "not_found_for" and value is not None:
        return replace(script, not_found_for=float(value))
    if name == "fail_http_status" and value is not None:
        return replace(script, fail_http_status=int(value))
    if name == "no_price" and value is None:
        return replace(script, price=None)
    raise ValueError(name)


@dataclass
class EmulatedPrediction:
    """One submitted prediction. Clock readings, not durations, mark its milestones."""

    id: str
    model: str
    prompt: str
    params: dict[str, Any]
    seed: int
    width: int
    height: int
    num_images: int
    base64_output: bool
    outcome: Outcome
    reason: str
    error_as_object: bool
    fail_http_status: int
    price: str | None
    submitted_at: float
    started_at: float  # leaves "created"
    done_at: float  # reaches its terminal state
    visible_at: float  # polls answer 404 before this
    kind: str  # how outputs are drawn: the model's kind in the shared table
    sources: tuple[str, ...]  # input pictures (URLs) of an edit or a variation
    mask: str | None
    output_format: str  # how its outputs are encoded ("jpeg" or "png")
    charge: str = "0"  # what the account pays once it completes (reported as ``price`` or not)

    @property
    def display_prompt(self) -> str:
        return strip_directives(self.prompt)

    def is_visible(self, now: float) -> bool:
        return now >= self.visible_at

    def status_at(self, now: float) -> str:
        if now < self.started_at:
            return "created"
        if now < self.done_at:
            return "processing"
        return {"fail": "failed", "timeout": "timeout"}.get(self.outcome, "completed")

    def is_failure(self, now: float) -> bool:
        return self.status_at(now) in ("failed", "timeout")

    def has_outputs(self, now: float) -> bool:
        return self.status_at(now) == "completed" and self.outcome != "nsfw"

    def finish_by(self, now: float) -> None:
        """Bring every milestone forward to ``now`` at the latest (used by sync mode)."""
        self.started_at = min(self.started_at, now)
        self.done_at = min(self.done_at, now)
        self.visible_at = min(self.visible_at, now)

    def error_value(self) -> str | dict[str, str]:
        if not self.error_as_object:
            return self.reason
        code = "task_timeout" if self.outcome == "timeout" else "generation_failed"
        return {"message": self.reason, "code": code}


@dataclass(frozen=True)
class Timing:
    """The emulator-wide defaults a script falls back to."""

    latency: float
    queue_delay: float
    fail_http_status: int
    durations: Durations | None = None


class PredictionStore:
    """All predictions, keyed by id, plus the FIFO queue of scripts for the next submits.

    ``seed`` seeds the generator that :class:`Durations` draws from; :meth:`reseed` starts its
    sequence again (a reset does, so a benchmark run is repeatable).
    """

    def __init__(self, now: Callable[[], float], seed: int = 0) -> None:
        self._now = now
        self._rng = random.Random()
        self._durations_rng = random.Random(seed)
        self._scripts: deque[PredictionScript] = deque()
        self._lock = threading.Lock()
        self.predictions: dict[str, EmulatedPrediction] = {}

    def queue_script(self, script: PredictionScript) -> None:
        self._scripts.append(script)

    def pending_scripts(self) -> int:
        return len(self._scripts)

    def reseed(self, seed: int) -> None:
        with self._lock:
            self._durations_rng.seed(seed)

    def _next_script(self) -> PredictionScript:
        try:
            return self._scripts.popleft()
        except IndexError:
            return PredictionScript()

    def create(
        self,
        *,
        model: str,
        prompt: str,
        params: dict[str, Any],
        seed: int | None,
        size: tuple[int, int],
        num_images: int,
        base64_output: bool,
        catalogue_price: str,
        timing: Timing,
        kind: str,
        sources: tuple[str, ...],
        mask: str | None,
        output_format: str,
    ) -> EmulatedPrediction:
        """Record a new prediction, consuming the next queued script (then prompt directives)."""
        script = apply_directives(self._next_script(), prompt)
        now = self._now()
        latency = timing.latency if script.latency is None else script.latency
        if script.latency is None and timing.durations is not None:
            with self._lock:
                latency = timing.durations.draw(self._durations_rng)
        reason = script.reason
        if script.outcome == "timeout" and reason == DEFAULT_REASON:
            reason = TIMEOUT_REASON
        prediction = EmulatedPrediction(
            id=uuid.uuid4().hex,
            model=model,
            prompt=prompt,
            params=params,
            seed=self._rng.randint(0, SEED_MAX) if seed is None else seed,
            width=size[0],
            height=size[1],
            num_images=num_images,
            base64_output=base64_output,
            outcome=script.outcome,
            reason=reason,
            error_as_object=script.error_as_object,
            fail_http_status=script.fail_http_status or timing.fail_http_status,
            price=catalogue_price if script.price == "default" else script.price,
            charge=catalogue_price,
            submitted_at=now,
            started_at=now + min(timing.queue_delay, latency),
            done_at=now + latency,
            visible_at=now + script.not_found_for,
            kind=kind,
            sources=sources,
            mask=mask,
            output_format=output_format,
        )
        with self._lock:
            self.predictions[prediction.id] = prediction
        logger.info(
            "prediction %s (%s) submitted: outcome=%s latency=%.2fs",
            prediction.id,
            model,
            script.outcome,
            latency,
        )
        return prediction

    def get(self, prediction_id: str) -> EmulatedPrediction | None:
        return self.predictions.get(prediction_id)

    def newest_first(self) -> list[EmulatedPrediction]:
        with self._lock:
            return list(reversed(self.predictions.values()))

    def clear(self) -> None:
        with self._lock:
            self.predictions.clear()
        self._scripts.clear()
