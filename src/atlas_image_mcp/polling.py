"""When to poll a running prediction: :class:`PollSchedule` and the per-wait :class:`PollPlan`.

Pure timing logic (no I/O): tests drive it with a fake clock.

**The rule every wait keeps**, learned or not, first call included: the poll after one due ``t``
seconds into the wait is due at most ``ceiling(t)`` later, where ``ceiling(t)`` is ``step``
(0.3 s) while ``t < fast_until`` (10 s), then ``ratio * t`` (10% of the time waited so far,
at most ``max_interval``). So a prediction that completes ``d`` seconds into the wait is seen by a
poll due at most 0.3 s later when ``d <= 10`` s, and at most 10% of ``d`` later beyond (plus the
time the poll itself travels). Nothing learned can stretch a gap past the rule: learning only
moves where the polls fall.

**Cold** (nothing learned for the model yet): polls are due at ``step``, ``2 * step``, ... (a
plain fixed 300 ms schedule, which is the fewest polls any schedule keeping the rule can make for
every duration), then each ``ceiling`` after the previous one, ``growth`` = 1 + ``ratio`` apart.

**Learned**: the schedule keeps the model's last ``history`` durations as Atlas reports them
(``latency_ms``, else ``completed_at - created_at``, else what the polls bracketed) and uses them
twice:

1. *phase*: the fast part's grid is ``phase + k * step`` instead of ``k * step``. The phase is
   the one that minimises, over the recent durations up to ``fast_until``, the time from
   completion to the poll that sees it plus ``step`` seconds for every poll more than the fixed
   schedule would make. A model that always takes ~1 s is then polled at 0.1, 0.4, 0.7 and 1.0 s
   and seen right away, with as many polls as the fixed schedule (4); with durations spread
   over several seconds no phase helps and the grid stays the fixed one. For any duration the
   shifted grid makes at most one poll more than the fixed one.
2. *anchors*: past ``fast_until``, where gaps grow, a poll lands exactly on each recent
   duration (nearby ones merged) whenever it falls within the rule's gap, and the gaps grow again
   from there. A model that takes ~30 s is seen within a few ms of finishing; a prediction that
   departs from history is still seen within the rule.

Timing depends only on the model id (not size or steps) and assumes the wait starts right after
the submit; the wait's own clock starts when the submit's answer arrived, so a poll due at a
learned duration reaches Atlas just after that duration has passed there. One schedule is shared
by a client and its per-key views; ``learn=False`` keeps it cold.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from datetime import datetime

from .models import Prediction

__all__ = ["PollPlan", "PollSchedule", "duration_of"]

_MAX_MODELS_TRACKED = 64
_EPS = 1e-9


class PollSchedule:
    """When to poll a running prediction, learning how long each model takes (see the module doc)."""

    def __init__(
        self,
        *,
        step: float = 0.3,
        fast_until: float = 10.0,
        ratio: float = 0.1,
        max_interval: float = 30.0,
        learn: bool = True,
        history: int = 20,
        merge: float = 0.05,
    ) -> None:
        if not (step > 0 and fast_until >= 0 and ratio > 0 and max_interval >= step):
            raise ValueError("step and ratio must be > 0, fast_until >= 0 and max_interval >= step")
        self.step = step
        self.fast_until = fast_until
        self.ratio = ratio
        self.max_interval = max_interval
        self.learn = learn
        self.history = max(1, history)
        self.merge = merge
        self._durations: dict[str, list[float]] = {}
        self._plans: dict[str, tuple[float, tuple[float, ...]]] = {}  # model -> (phase, anchors)

    def ceiling(self, elapsed: float) -> float:
        """The longest gap allowed after a poll due ``elapsed`` seconds into a wait."""
        if elapsed < self.fast_until:
            return self.step
        return min(self.max_interval, max(self.step, self.ratio * elapsed))

    def fixed_polls(self, seconds: float) -> int:
        """Polls a plain fixed ``step`` schedule makes for a prediction that takes ``seconds``."""
        return max(1, math.ceil(seconds / self.step - _EPS))

    # --- learning ----------------------------------------------------------------------------

    def observe(self, model: str | None, seconds: float) -> None:
        """Record that a prediction of ``model`` took ``seconds`` from submit to completion."""
        if not self.learn or not model or not 0 < seconds < 24 * 3600:
            return
        recent = self._durations.pop(model, [])  # re-inserted last: the dict stays in LRU order
        self._durations[model] = [*recent, seconds][-self.history :]
        self._plans.pop(model, None)
        while len(self._durations) > _MAX_MODELS_TRACKED:
            oldest = next(iter(self._durations))
            del self._durations[oldest]
            self._plans.pop(oldest, None)

    def recent(self, model: str | None) -> list[float]:
        """The durations (seconds) of the model's recent predictions, oldest first."""
        return list(self._durations.get(model or "", ()))

    def expected(self, model: str | None) -> tuple[float, float] | None:
        """(fastest, slowest) recent duration of ``model`` in seconds, or None while cold.

        The single slowest is left out once there are four, so one outlier does not count.
        """
        recent = sorted(self._durations.get(model or "", ()))
        if not recent:
            return None
        return recent[0], recent[-2] if len(recent) >= 4 else recent[-1]

    def plan(self, model: str | None) -> PollPlan:
        """The poll timing of one wait for a prediction of ``model`` (None = not known yet)."""
        recent = self._durations.get(model or "") if self.learn else None
        if not recent:
            return PollPlan(self, self.step, ())
        assert model is not None
        learned = self._plans.get(model)
        if learned is None:
            learned = self._plans[model] = (self._phase(recent), self._anchors(recent))
        return PollPlan(self, *learned, learned=True)

    def _phase(self, durations: list[float]) -> float:
        """The fast grid's phase in (0, step] that serves ``durations`` best (see the module doc).

        With ``r = d mod step`` in (0, step], a phase ``p >= r`` sees ``d`` ``p - r`` after it
        completes with as many polls as the fixed grid; a phase ``p < r`` sees it ``p + step - r``
        after, one poll more. Cost of ``p``: the sum of those delays + ``step`` per extra poll.
        """
        s = self.step
        rests = sorted(d - s * (math.ceil(d / s - _EPS) - 1) for d in durations if d < self.fast_until)
        if not rests:
            return s
        n = len(rests)
        # The fixed grid (phase = step) costs n * s. A shift must save a quarter step per prediction,
        # and a step more in all: with durations spread over more than a step every phase is as good
        # as any other, and a shift fitted to a few of them would only buy the next ones extra polls.
        best, best_cost = s, 0.75 * n * s - s
        for p in rests:
            later = n - bisect.bisect_right(rests, p + _EPS)  # these pay a poll more, and wait p + s - r
            cost = n * p + later * 2 * s  # sum of delays + s per extra poll, minus sum(r) (the same for all)
            if cost < best_cost - _EPS:
                best, best_cost = p, cost
        return min(s, max(best, _EPS))

    def _anchors(self, durations: list[float]) -> tuple[float, ...]:
        """Recent durations beyond ``fast_until``, merged when within ``merge`` (5%) of each other.

        A merged group is represented by its longest duration, so its poll comes after them all.
        """
        kept: list[float] = []
        for d in sorted((d for d in durations if d >= self.fast_until), reverse=True):
            if not kept or kept[-1] - d > self.merge * kept[-1]:
                kept.append(d)
        return tuple(reversed(kept))


class PollPlan:
    """The due times of one wait's polls (seconds from the start of the wait), in order.

    :meth:`next_delay` says how long to sleep before the next poll. Polls are due on the plan's
    grid, not one interval after the previous poll returned, so slow answers do not stretch it;
    a poll that is already late goes out at once, and the grid resumes after it.
    """

    def __init__(
        self, schedule: PollSchedule, phase: float, anchors: tuple[float, ...], *, learned: bool = False
    ) -> None:
        self.schedule = schedule
        self.phase = phase
        self.anchors = anchors
        self.learned = learned
        self._times = self.due_times()
        self._next = next(self._times)

    def due_times(self) -> Iterator[float]:
        """Every due time of this plan, in order (endless)."""
        s = self.schedule
        k = 0
        t = self.phase
        while t < s.fast_until:  # the fast grid: phase + k * step
            yield t
            k += 1
            t = self.phase + k * s.step
        anchors = iter(a for a in self.anchors if a > t + _EPS)
        anchor = next(anchors, math.inf)
        while True:
            yield t
            limit = t + s.ceiling(t)
            while anchor <= t + _EPS:
                anchor = next(anchors, math.inf)
            if anchor <= limit + _EPS:
                t = anchor
                anchor = next(anchors, math.inf)
            else:
                t = limit

    def next_delay(self, elapsed: float) -> float:
        """Seconds to sleep, from ``elapsed`` seconds into the wait, before the next poll."""
        due = self._next
        if due > elapsed + _EPS:
            self._next = next(self._times)
            return due - elapsed
        self.skip(elapsed)  # late: poll now, then resume at the first due time after now
        return 0.0

    def skip(self, elapsed: float) -> None:
        """Forget the due times up to ``elapsed`` (a plan taken over in the middle of a wait)."""
        while self._next <= elapsed + _EPS:
            self._next = next(self._times)


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
