"""When to poll a running prediction: :class:`PollSchedule` and the per-wait plan it hands out.

Pure timing logic (no I/O): tests drive it with a fake clock.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import datetime

from .models import Prediction

__all__ = ["PollSchedule", "duration_of"]

_MAX_MODELS_TRACKED = 64


class PollSchedule:
    """When to poll a running prediction, learning how long each model takes.

    *Cold* (no prediction of the model has completed in this process yet): every ``first``
    seconds until ``fast_until``, then intervals growing by ``growth`` up to ``max_interval``.
    With the defaults any prediction that ends within its first 5 s is seen within 250 ms (polls
    240 ms apart, on a grid from the start of the wait so slow answers do not stretch it, leaving
    ~10 ms for the submit answer and the poll to travel).

    *Learned*: the schedule keeps the durations of the model's last ``history`` completed
    predictions (Atlas' own ``latency_ms``, else ``completed_at - created_at``, else what the
    polls bracketed). With ``lo`` the fastest of them and ``hi`` the slowest (ignoring the single
    slowest once there are four), a wait polls:

    1. before ``lo``: on a grid of at most ``lo / 2`` and ``max_interval`` (a job faster than
       any recent one is still caught within half of ``lo``);
    2. from ``lo`` to ``hi``: every ``fine = max(min_interval, precision * hi, (hi - lo) /
       window_polls)`` seconds (at most ``first`` while ``hi`` < ``fast_until``), the first poll
       right at ``lo``;
    3. after that (a job slower than the recent ones): every ``(growth - 1) * elapsed`` seconds,
       at least ``fine``, at most ``first`` before ``fast_until`` and ``max_interval`` after.

    So a model that takes ~1 s is polled about twice and seen a few ms after it finishes, and a
    ~30 s one about 6 times, instead of 4 and 30 times on the cold schedule; a prediction that
    ends within 5 s is still seen within 250 ms unless it beats the fastest recent run of its
    model. Timing only depends on the model id (not size or steps) and assumes the wait starts
    right after the submit. Cold intervals get +-``jitter`` (never above ``first`` in the fast
    phase) so that many waits do not poll in lock step; learned ones need none, as each wait's
    grid starts at its own submit. One schedule is shared by a client and its per-key views;
    ``learn=False`` keeps it cold.
    """

    def __init__(
        self,
        *,
        first: float = 0.24,
        fast_until: float = 5.0,
        growth: float = 1.5,
        max_interval: float = 5.0,
        jitter: float = 0.1,
        rng: Callable[[], float] = random.random,
        learn: bool = True,
        history: int = 8,
        precision: float = 0.05,
        window_polls: int = 8,
        min_interval: float = 0.02,
    ) -> None:
        self.first = first
        self.fast_until = fast_until
        self.growth = growth
        self.max_interval = max_interval
        self.jitter = jitter
        self._rng = rng
        self.learn = learn
        self.history = max(1, history)
        self.precision = precision
        self.window_polls = max(1, window_polls)
        self.min_interval = min_interval
        self._durations: dict[str, list[float]] = {}

    def interval(self, elapsed: float, previous: float | None) -> float:
        """The cold schedule: seconds to wait before the next poll."""
        if elapsed < self.fast_until or previous is None:
            # capped at ``first`` so the jitter never stretches the fast phase's promise
            return min(self.first, self._jittered(self.first))
        return self._jittered(min(self.max_interval, max(self.first, previous) * self.growth))

    def _jittered(self, seconds: float) -> float:
        return seconds * (1 + self.jitter * (2 * self._rng() - 1))

    # --- learning ----------------------------------------------------------------------------

    def observe(self, model: str | None, seconds: float) -> None:
        """Record that a prediction of ``model`` took ``seconds`` from submit to completion."""
        if not self.learn or not model or not 0 < seconds < 24 * 3600:
            return
        recent = self._durations.pop(model, [])  # re-inserted last: the dict stays in LRU order
        self._durations[model] = [*recent, max(seconds, self.min_interval)][-self.history :]
        while len(self._durations) > _MAX_MODELS_TRACKED:
            del self._durations[next(iter(self._durations))]

    def expected(self, model: str | None) -> tuple[float, float] | None:
        """(fastest, slowest) recent duration of ``model`` in seconds, or None while cold."""
        recent = sorted(self._durations.get(model or "", ()))
        if not recent:
            return None
        return recent[0], recent[-2] if len(recent) >= 4 else recent[-1]

    def plan(self, model: str | None) -> _PollPlan:
        """The poll timing of one wait for a prediction of ``model`` (None = unknown yet)."""
        window = self.expected(model) if self.learn else None
        if window is None:
            return _PollPlan(self, None)
        lo, hi = window
        fine = max(self.min_interval, self.precision * hi, (hi - lo) / self.window_polls)
        fine = max(1e-3, min(fine, self.first if hi < self.fast_until else self.max_interval))
        return _PollPlan(self, (lo, hi, fine))


class _PollPlan:
    """The next poll of one wait, from the schedule's cold rules or its learned window."""

    def __init__(self, schedule: PollSchedule, window: tuple[float, float, float] | None) -> None:
        self.schedule = schedule
        self.window = window
        self.learned = window is not None
        self._previous: float | None = None
        self._due = 0.0  # when (seconds into the wait) the previous cold poll was due

    def next_delay(self, elapsed: float) -> float:
        """Seconds to sleep (from ``elapsed`` seconds after the wait started) before the next poll."""
        s = self.schedule
        if self.window is None:
            # the next poll is due one interval after the previous one was due, not after it
            # returned, so the time a poll takes does not add up over the wait
            self._previous = s.interval(elapsed, self._previous)
            self._due = max(self._due + self._previous, elapsed)
            return self._due - elapsed
        lo, hi, fine = self.window
        if elapsed < lo - s.min_interval / 2:
            # before the fastest recent duration: a coarse grid, then exactly ``lo``
            step = min(s.max_interval, max(s.min_interval, lo / 2))
            target = min(lo, (math.floor(elapsed / step + 1e-9) + 1) * step)
            if lo - target < s.min_interval:
                target = lo
            return max(0.0, target - elapsed)
        if elapsed < hi + fine:
            # in the window: on the grid lo + k * fine
            k = math.floor((elapsed - lo) / fine + 1e-9) + 1
            return max(s.min_interval, lo + k * fine - elapsed)
        # slower than the recent runs: relative steps, within the cold schedule's promise
        ceiling = s.first if elapsed < s.fast_until else s.max_interval
        return min(ceiling, max(fine, (s.growth - 1) * elapsed))


def duration_of(prediction: Prediction) -> float | None:
    """How long Atlas says a completed prediction took from submit to completion, in seconds."""
    latency = prediction.raw.get("latency_ms")
    if isinstance(latency, (int, float)) and not isinstance(latency, bool) and latency > 0:
        return float(latency) / 1000
    if prediction.created_at and prediction.completed_at:
        try:
            created = datetime.fromisoformat(prediction.created_at.replace("Z", "+00:00"))
            completed = datetime.fromisoformat(prediction.completed_at.replace("Z", "+00:00"))
            seconds = (completed - created).total_seconds()
        except (ValueError, TypeError):
            return None
        return seconds if seconds > 0 else None
    return None
