"""The spend ledger: what each API key started, what it was expected to cost and what it was charged.

It lives in the server's store (:mod:`atlas_image_mcp.store`: an SQLite file in the state folder by
default, or the PostgreSQL database every replica shares), one row per generation job that was
sent, or is about to be: the caller's bucket (a hash of its Atlas key, never the key), when it
started (and its UTC day), the tool, the model, how many images, the estimate before submission,
the amount held against the daily budget, the prediction id once Atlas accepted it, and the charge
once Atlas reports it. Money is kept as whole micro-dollars, so sums are exact.

Budgets are checked against it: ``ATLAS_MCP_MAX_IMAGES_PER_HOUR`` (images started in a rolling
hour) and ``ATLAS_MCP_BUDGET_USD_PER_DAY`` (what a UTC day's calls were charged, or are expected to
cost until Atlas says). The rules, called by the one submission path (``tools/jobs.py``):

* :meth:`Ledger.reserve` before the POST, in one transaction of the store that locks the caller's
  row first, so two calls racing for the last of a budget cannot both get it, whatever process or
  replica they run in; :meth:`Ledger.reserve_batch` does the same for the jobs of a batch, one row
  each, in the same transaction: all of them or none. Concurrent reservations are decided together
  (one transaction for many), and each caller learns its answer only once it is committed;
* :meth:`Ledger.release` when nothing was started (the POST never left, or Atlas refused it with a
  4xx): the row goes; a POST that may have started keeps it;
* :meth:`Ledger.submitted` as soon as Atlas accepted the job (the prediction id, so that any
  replica can find it, and a replica that dies leaves a job another one can settle);
  :meth:`Ledger.settle` when its charge is known (a failed prediction is not billed: 0).

While the store cannot be reached, reservations are refused at once
(:class:`~atlas_image_mcp.errors.StoreUnavailableError`): nothing is ever sent unrecorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import ROUND_CEILING, Decimal
from pathlib import Path

from . import store as st
from .errors import BudgetError, SpendLimitError
from .models import parse_usd
from .redact import key_digest
from .shared import SharedStore

__all__ = [
    "BatchItem",
    "DayModel",
    "Ledger",
    "LedgerCall",
    "Limits",
    "Reservation",
    "Usage",
    "bucket_of",
    "dollars",
    "micros",
    "parse_usd",
]

_MICROS = Decimal("0.000001")


def bucket_of(api_key: str | None) -> str:
    """The ledger's name for an API key: a hash, never the key."""
    return key_digest(api_key or "")[:16]


def micros(amount: Decimal) -> int:
    """Whole micro-dollars, rounded up (an estimate never shrinks)."""
    return int(amount.quantize(_MICROS, rounding=ROUND_CEILING) / _MICROS)


def dollars(value: int) -> Decimal:
    return (Decimal(value) * _MICROS).normalize()


@dataclass(frozen=True)
class Limits:
    """The budgets: ``None`` is no limit."""

    images_per_hour: int | None = None
    usd_per_day: Decimal | None = None
    #: The setting ``usd_per_day`` comes from (named in a refusal).
    budget_setting: str = "budget_usd_per_day"

    @property
    def any(self) -> bool:
        return self.images_per_hour is not None or self.usd_per_day is not None


@dataclass(frozen=True)
class BatchItem:
    """One job of a batch to reserve: its images, its estimate, the amount held for it, and the
    fingerprint of its POST body (see :attr:`atlas_image_mcp.prepared.PreparedRequest.fingerprint`)."""

    images: int
    estimate: Decimal | None
    amount: Decimal | None
    fingerprint: str | None = None


@dataclass(frozen=True)
class Reservation:
    """A job's row in the ledger, written by :meth:`Ledger.reserve`."""

    row: str
    bucket: str


@dataclass(frozen=True)
class DayModel:
    """One UTC day's calls of one model."""

    day: str
    model: str
    calls: int
    images: int
    usd: Decimal
    estimated: int  # calls whose charge Atlas has not reported yet (their estimate is counted)


@dataclass(frozen=True)
class LedgerCall:
    """One call, for the list of the largest."""

    started: float
    tool: str
    model: str
    images: int
    usd: Decimal
    charged: bool
    prediction_id: str | None


@dataclass(frozen=True)
class Usage:
    """What one key spent: per day and model, the largest calls, and where its limits stand."""

    since: str
    rows: list[DayModel]
    largest: list[LedgerCall]
    spent_today: Decimal
    images_last_hour: int
    resets_in: float
    resets_at: float
    persistent: bool
    note: str | None


class Ledger:
    """The spend ledger in ``where`` (see the module docstring): a :class:`SharedStore` (the
    server's), a store :class:`~atlas_image_mcp.store.Location`, or an SQLite file (None: in memory).

    ``clock`` is wall-clock Unix time (days and hours must survive a restart), injectable so tests
    can move it; it is the store's clock when the ledger opens its own.
    """

    def __init__(
        self,
        where: SharedStore | st.Location | Path | None,
        limits: Limits | None = None,
        *,
        clock: Callable[[], float] = time.time,
        options: st.StoreOptions | None = None,
    ) -> None:
        self.limits = limits or Limits()
        if isinstance(where, SharedStore):
            self.store = where
        else:
            location = where if isinstance(where, st.Location) else _file(where)
            self.store = SharedStore(location, options=options, clock=clock, strict=lambda: self.limits.any)

    @property
    def persistent(self) -> bool:
        """Whether the rows outlive this process (a file or a database that could be opened)."""
        return self.store.persistent

    # --- the budget rules --------------------------------------------------------------------

    async def check(self, api_key: str | None, images: int, amount: Decimal | None, model: str = "") -> None:
        """Raise what :meth:`reserve` would raise, without holding anything (before asking the person)."""
        if not self.limits.any:
            return
        job = st.Job("check", model, images, held_micros=_micros_or_none(amount))
        refusal = await (await self.store.get()).spend.check(self._ask(api_key, (job,)))
        if refusal is not None:
            raise self._refused(refusal, amount, model)

    async def reserve(
        self,
        api_key: str | None,
        *,
        tool: str,
        model: str,
        images: int,
        estimate: Decimal | None,
        amount: Decimal | None,
        fingerprint: str | None = None,
    ) -> Reservation:
        """Check the limits and record the call, atomically; raise SpendLimitError or BudgetError.

        ``amount`` is what the call is held at against the daily budget (the estimate, or a
        cautious amount when the price is unknown; None: unknown). ``fingerprint``: of the POST
        body, so that the job can be found at Atlas if this process dies before recording its id.
        """
        item = BatchItem(images, estimate, amount, fingerprint)
        return (await self.reserve_batch(api_key, tool=tool, model=model, jobs=[item]))[0]

    async def reserve_batch(
        self, api_key: str | None, *, tool: str, model: str, jobs: Sequence[BatchItem]
    ) -> list[Reservation]:
        """:meth:`reserve` for every job of a batch at once: the limits are checked for their sum and
        one row is written per job, in one transaction, so the batch is held whole or refused whole.
        Each reservation is then released, submitted and settled on its own."""
        store = await self.store.get()
        asked = tuple(
            st.Job(
                tool,
                model,
                job.images,
                _micros_or_none(job.estimate),
                _micros_or_none(job.amount),
                job.fingerprint,
            )  # fmt: skip
            for job in jobs
        )
        answer = await store.spend.reserve(self._ask(api_key, asked))
        if isinstance(answer, st.Refusal):
            amounts = [job.amount for job in jobs]
            total = None if any(a is None for a in amounts) else sum((a for a in amounts if a), Decimal(0))
            raise self._refused(answer, total, model)
        return [Reservation(row=call_id, bucket=answer.bucket) for call_id in answer.ids]

    async def release(self, reservation: Reservation) -> None:
        """Forget a reservation whose POST never started a job."""
        hold = st.Hold(reservation.bucket, (reservation.row,), 0)
        await (await self.store.get()).spend.release(hold)

    async def submitted(self, reservation: Reservation, prediction_id: str) -> None:
        """Note the prediction id Atlas gave the reserved call. While the store cannot be written the
        id is kept and written as soon as it can be (the row keeps counting at its hold)."""
        await (await self.store.get()).spend.submitted(reservation.row, prediction_id)

    async def settle(
        self,
        api_key: str | None,
        prediction_id: str,
        *,
        charged: Decimal | None,
        failed: bool = False,
        done: bool = True,
    ) -> Decimal | None:
        """Record what Atlas charged for a prediction of this key (0 when it failed); return its estimate.

        ``done=False``: the job still runs; only its estimate is read. A prediction this ledger does
        not know (made elsewhere, or by another key) changes nothing.
        """
        value = 0 if failed else (micros(charged) if charged is not None else None)
        store = await self.store.get()
        estimate = await store.spend.settle(bucket_of(api_key), prediction_id, value, final=done or failed)
        return dollars(estimate) if estimate is not None else None

    async def started(self, api_key: str | None, prediction_id: str) -> bool:
        """Whether this key sent the call that became ``prediction_id`` (within the rows kept)."""
        return await (await self.store.get()).spend.started(bucket_of(api_key), prediction_id)

    async def usage(self, api_key: str | None, days: int) -> Usage:
        """Spend by day and model over the last ``days`` UTC days, and the largest calls."""
        store = await self.store.get()
        report = await store.spend.usage(bucket_of(api_key), days, self._limits())
        now = report.now_ms / 1000
        resets_at = _next_midnight(now)
        return Usage(
            since=report.since,
            rows=[
                DayModel(row.day, row.model, row.calls, row.images, dollars(row.micros), row.estimated)
                for row in report.rows
            ],
            largest=[
                LedgerCall(
                    call.started_ms / 1000,
                    call.tool,
                    call.model,
                    call.images,
                    dollars(call.micros),
                    call.charged,
                    call.prediction_id,
                )  # fmt: skip
                for call in report.largest
            ],
            spent_today=dollars(report.spent_today_micros),
            images_last_hour=report.images_last_hour,
            resets_in=resets_at - now,
            resets_at=resets_at,
            persistent=self.persistent,
            note=self.store.note,
        )

    async def aclose(self) -> None:
        await self.store.aclose()

    def close(self) -> None:
        """Close the store soon (from synchronous code)."""
        self.store.close()

    # --- between the ledger's words and the store's ------------------------------------------

    def _limits(self) -> st.Limits:
        budget = self.limits.usd_per_day
        return st.Limits(self.limits.images_per_hour, micros(budget) if budget is not None else None)

    def _ask(self, api_key: str | None, jobs: tuple[st.Job, ...]) -> st.Ask:
        return st.Ask(bucket_of(api_key), jobs, self._limits())

    def _refused(
        self, refusal: st.Refusal, amount: Decimal | None, model: str
    ) -> SpendLimitError | BudgetError:
        if refusal.rule == "images_per_hour":
            return SpendLimitError(refusal.limit, refusal.retry_after, requested=refusal.requested,
                                   used=refusal.used)  # fmt: skip
        budget = self.limits.usd_per_day if self.limits.usd_per_day is not None else dollars(refusal.limit)
        shown = None if refusal.rule == "price_unknown" else amount
        return BudgetError(
            budget,
            dollars(refusal.used),
            shown,
            refusal.retry_after,
            model=model,
            setting=self.limits.budget_setting,
        )


def _file(path: Path | None) -> st.Location:
    return st.locate(None, default_path=path)


def _micros_or_none(amount: Decimal | None) -> int | None:
    return micros(amount) if amount is not None else None


def _next_midnight(moment: float) -> float:
    today = datetime.fromtimestamp(moment, tz=timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return (today + timedelta(days=1)).timestamp()
