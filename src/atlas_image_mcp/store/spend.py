"""The spend ledger on the store: reservations before a POST, and what they were charged after.

A *bucket* is whose money a call spends (an opaque name: the caller's identity, never a key). Each
generation job is a row of ``spend_calls``, in one of three states::

    sending   --Atlas accepted it (prediction id)-->  submitted  --charged / failed (0)-->  settled
    sending   --the POST never left (released)-->     (row deleted)

Limits per bucket: images started in a rolling hour, and micro-dollars per UTC day (a row counts
its charge once known, else what it held). The server's limits come with each :class:`Ask`; a
bucket may carry its own (:meth:`Spend.set_limits`), which replace them.

**The reservation is exact under concurrency, across processes and replicas.** In ONE transaction:
(1) lock the row of every bucket concerned (an upsert of ``buckets``, in sorted order so that two
replicas never wait for each other in a circle); (2) read each bucket's use in a *second*
statement, which on PostgreSQL at READ COMMITTED sees everything committed by whoever held the
lock before; (3) judge each ask in arrival order, in memory, each seeing those granted before it;
(4) insert the granted rows. Reading in the same statement as the lock would read a snapshot taken
before waiting for it, and overspend. On SQLite ``BEGIN IMMEDIATE`` already serialises the writers
of the file. Concurrent reservations of one process are decided together (:mod:`.batching`): three
statements per batch whatever its size. An :class:`Ask` may hold several jobs (one call making
several pictures): they are granted or refused together.

What follows the POSTs is batched the same way, with no thread hop on the caller's side: the
prediction ids of concurrent calls are written by one statement (``UPDATE ... SET prediction_id =
CASE id WHEN ...``), their charges by one read and one write, each in one transaction per batch.
A caller learns its answer only once the batch is committed.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Literal

from ..constants import IMAGE_WINDOW_SECONDS, USAGE_LARGEST
from ..errors import LedgerError
from .batching import Batcher
from .database import Database
from .engine import Param, Tx, placeholders

__all__ = [
    "Ask",
    "CallUsage",
    "DayModelUsage",
    "Hold",
    "Job",
    "Limits",
    "Refusal",
    "Spend",
    "UsageReport",
    "utc_day",
]

logger = logging.getLogger(__name__)

WINDOW_MS = int(IMAGE_WINDOW_SECONDS * 1000)
_DAY_MS = 86_400_000
_ROWS_PER_INSERT = 75  # 12 values a row: under SQLite's oldest limit of 999 per statement
_AMOUNT = "COALESCE(charged_micros, held_micros, 0)"


def utc_day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d")


def _next_midnight_ms(ms: int) -> int:
    today = datetime.fromtimestamp(ms / 1000, tz=timezone.utc).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    return int((today + timedelta(days=1)).timestamp() * 1000)


@dataclass(frozen=True)
class Limits:
    """A bucket's budgets: None is no limit. Money in micro-dollars."""

    images_per_hour: int | None = None
    usd_per_day_micros: int | None = None


@dataclass(frozen=True)
class Job:
    """One generation job to reserve. ``held_micros``: what it holds against the daily budget until
    its charge is known (None: unknown, refused while a daily budget is set)."""

    tool: str
    model: str
    images: int
    estimate_micros: int | None = None
    held_micros: int | None = None
    #: SHA-256 of the exact POST body: lets the sweeper find the job at Atlas if this process dies.
    body_sha256: str | None = None


@dataclass(frozen=True)
class Ask:
    """What one call wants to start, for one bucket: one job or several, granted or refused whole."""

    bucket: str
    jobs: tuple[Job, ...]
    limits: Limits = field(default_factory=Limits)

    @property
    def images(self) -> int:
        return sum(job.images for job in self.jobs)

    @property
    def held_micros(self) -> int | None:
        amounts = [job.held_micros for job in self.jobs]
        return None if any(a is None for a in amounts) else sum(a for a in amounts if a is not None)


@dataclass(frozen=True)
class Hold:
    """A granted ask: one row per job (``ids``, in the order of the jobs), started at ``started_ms``."""

    bucket: str
    ids: tuple[str, ...]
    started_ms: int


Rule = Literal["images_per_hour", "usd_per_day", "price_unknown"]


@dataclass(frozen=True)
class Refusal:
    """Why an ask was refused; nothing was held.

    ``limit``, ``used`` and ``requested`` are images (``images_per_hour``) or micro-dollars (the
    daily budget; ``requested`` 0 when the price is unknown). ``retry_after`` is seconds until
    enough images have left the rolling hour, or until the next UTC midnight.
    """

    bucket: str
    rule: Rule
    limit: int
    used: int
    requested: int
    retry_after: float


@dataclass(frozen=True)
class DayModelUsage:
    day: str
    model: str
    calls: int
    images: int
    micros: int
    #: Calls whose charge is not known yet (counted at what they hold).
    estimated: int


@dataclass(frozen=True)
class CallUsage:
    started_ms: int
    tool: str
    model: str
    images: int
    micros: int
    charged: bool
    prediction_id: str | None


@dataclass(frozen=True)
class UsageReport:
    since: str
    rows: list[DayModelUsage]
    largest: list[CallUsage]
    spent_today_micros: int
    images_last_hour: int
    now_ms: int
    #: The bucket's limits as they apply now (its own, else the ones asked with).
    limits: Limits


@dataclass(frozen=True)
class _Settle:
    bucket: str
    prediction_id: str
    charged_micros: int | None
    final: bool


@dataclass
class _Use:
    images: int = 0
    micros: int = 0
    own: Limits = field(default_factory=Limits)


class Spend:
    """The spend ledger of one store (see the module docstring)."""

    def __init__(self, db: Database, *, max_batch: int = 64) -> None:
        self._db = db
        self._batcher: Batcher[Ask, Hold | Refusal] = Batcher(
            self._decide_batch, max_batch=max_batch, orphaned=self._orphaned
        )
        # what happens after the POSTs of concurrent calls is written together too
        self._marks: Batcher[tuple[str, str], None] = Batcher(self._mark_batch, max_batch=max_batch)
        self._settles: Batcher[_Settle, int | None] = Batcher(self._settle_batch, max_batch=max_batch)
        self._unsent: dict[str, str] = {}  # call id -> prediction id not yet recorded
        self._unsettled: dict[tuple[str, str], int | None] = {}  # (bucket, prediction id) -> charge
        self._background: set[asyncio.Task[None]] = set()

    # --- before the POST ------------------------------------------------------------------

    async def reserve(self, ask: Ask) -> Hold | Refusal:
        """Check the limits and hold the ask's jobs, atomically (refused at once while down)."""
        if not ask.jobs:
            raise ValueError("an ask holds at least one job")
        self._db.require_up()
        return await self._batcher.submit(ask)

    async def check(self, ask: Ask) -> Refusal | None:
        """What :meth:`reserve` would refuse, holding nothing (before asking the person)."""

        async def body(tx: Tx) -> Hold | Refusal:
            now = self._db.now_ms()
            use = await self._used(tx, [ask.bucket], now)
            return (await self._judge(tx, [ask], use, now))[0]

        answer = await self._db.run(body)
        return answer if isinstance(answer, Refusal) else None

    async def release(self, hold: Hold) -> None:
        """Forget a hold whose POST never started a job (rows still ``sending`` only)."""
        ids = list(hold.ids)
        await self._db.run(
            lambda tx: tx.execute(
                f"DELETE FROM spend_calls WHERE id IN ({placeholders(len(ids))}) AND state = 'sending'", ids
            )
        )

    # --- after the POST -------------------------------------------------------------------

    async def submitted(self, call_id: str, prediction_id: str) -> bool:
        """Record the prediction id Atlas gave a held job. Returns False when the store could not
        be written now: the id is kept and written by :meth:`flush` (the row keeps counting)."""
        try:
            self._db.require_up()
            await self._marks.submit((call_id, prediction_id))
        except LedgerError as exc:
            logger.warning("prediction %s not recorded yet (%s); retrying in the background",
                           prediction_id, type(exc).__name__)  # fmt: skip
            self._unsent[call_id] = prediction_id
            return False
        return True

    async def flush(self) -> int:
        """Write the prediction ids :meth:`submitted` could not, then the charges :meth:`settle`
        could not (a charge finds its call by its prediction id); how many are still unwritten."""
        for call_id, prediction_id in list(self._unsent.items()):
            try:
                await self._db.run(lambda tx: self._mark_submitted(tx, call_id, prediction_id))  # noqa: B023
            except LedgerError:
                break
            self._unsent.pop(call_id, None)
        if not self._unsent:
            for (bucket, prediction_id), charged in list(self._unsettled.items()):
                try:
                    await self._settles.submit(_Settle(bucket, prediction_id, charged, True))
                except LedgerError:
                    break
                self._unsettled.pop((bucket, prediction_id), None)
        return len(self._unsent) + len(self._unsettled)

    async def settle(
        self, bucket: str, prediction_id: str, charged_micros: int | None, *, final: bool = True
    ) -> int | None:
        """Record what Atlas charged for a finished prediction of this bucket (0: failed, None: not
        said); return its estimate. A prediction the ledger does not know changes nothing.
        ``final=False`` (the job still runs): only the estimate is read, nothing changes.

        While the store cannot be written, a final charge is kept and written by :meth:`flush` as
        soon as it can be (meanwhile the call counts at what it holds); the error is raised still.
        """
        try:
            self._db.require_up()
            return await self._settles.submit(_Settle(bucket, prediction_id, charged_micros, final))
        except LedgerError:
            if final:
                self._unsettled[(bucket, prediction_id)] = charged_micros
            raise

    async def started(self, bucket: str, prediction_id: str) -> bool:
        """Whether this bucket sent the call that became ``prediction_id`` (within the rows kept)."""
        found = await self._db.run(
            lambda tx: tx.rows(
                "SELECT 1 FROM spend_calls WHERE bucket = ? AND prediction_id = ? LIMIT 1",
                (bucket, prediction_id),
            )
        )
        return bool(found)

    # --- limits and usage -----------------------------------------------------------------

    async def set_limits(self, bucket: str, limits: Limits) -> None:
        """Give a bucket its own limits (None fields: the server's apply)."""
        await self._db.run(
            lambda tx: tx.execute(
                "INSERT INTO buckets (bucket, touched_ms, images_per_hour, usd_per_day_micros) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (bucket) DO UPDATE SET "
                "images_per_hour = excluded.images_per_hour, "
                "usd_per_day_micros = excluded.usd_per_day_micros",
                (bucket, self._db.now_ms(), limits.images_per_hour, limits.usd_per_day_micros),
            )
        )

    async def usage(self, bucket: str, days: int, limits: Limits | None = None) -> UsageReport:
        """Spend by day and model over the last ``days`` UTC days, the largest calls, and where the
        limits stand (``limits``: the server's, replaced by the bucket's own)."""

        async def body(tx: Tx) -> UsageReport:
            now = self._db.now_ms()
            since = utc_day(now - (max(1, days) - 1) * _DAY_MS)
            rows = [
                DayModelUsage(str(d), str(m), int(c), int(i), int(s), int(e))
                for d, m, c, i, s, e in await tx.rows(
                    f"SELECT day, model, COUNT(*), SUM(images), SUM({_AMOUNT}), "
                    "SUM(CASE WHEN charged_micros IS NULL THEN 1 ELSE 0 END) FROM spend_calls "
                    "WHERE bucket = ? AND day >= ? GROUP BY day, model "
                    f"ORDER BY day DESC, SUM({_AMOUNT}) DESC",
                    (bucket, since),
                )
            ]
            largest = [
                CallUsage(int(t), str(tool), str(m), int(i), int(a), c is not None, p)
                for t, tool, m, i, a, c, p in await tx.rows(
                    f"SELECT started_ms, tool, model, images, {_AMOUNT}, charged_micros, prediction_id "
                    "FROM spend_calls WHERE bucket = ? AND day >= ? "
                    f"ORDER BY {_AMOUNT} DESC, started_ms DESC LIMIT ?",
                    (bucket, since, USAGE_LARGEST),
                )
            ]
            use = (await self._used(tx, [bucket], now))[bucket]
            own = use.own
            given = limits or Limits()
            return UsageReport(
                since=since,
                rows=rows,
                largest=largest,
                spent_today_micros=use.micros,
                images_last_hour=use.images,
                now_ms=now,
                limits=Limits(
                    own.images_per_hour if own.images_per_hour is not None else given.images_per_hour,
                    own.usd_per_day_micros
                    if own.usd_per_day_micros is not None
                    else given.usd_per_day_micros,
                ),
            )

        return await self._db.run(body)

    async def prune(self, keep_days: int) -> int:
        """Drop settled rows older than ``keep_days`` and idle buckets with no limits of their own."""
        cutoff = self._db.now_ms() - keep_days * _DAY_MS

        async def body(tx: Tx) -> int:
            gone = await tx.execute(
                "DELETE FROM spend_calls WHERE started_ms < ? AND state = 'settled'", (cutoff,)
            )
            await tx.execute(
                "DELETE FROM buckets WHERE touched_ms < ? AND images_per_hour IS NULL "
                "AND usd_per_day_micros IS NULL",
                (cutoff,),
            )
            return gone

        return await self._db.run(body)

    async def drained(self) -> None:
        await self._batcher.drained()
        await self._marks.drained()
        await self._settles.drained()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # --- one transaction for a batch of asks ------------------------------------------------

    async def _decide_batch(self, asks: list[Ask]) -> list[Hold | Refusal]:
        return await self._db.run(lambda tx: self._decide(tx, asks))

    async def _decide(self, tx: Tx, asks: Sequence[Ask]) -> list[Hold | Refusal]:
        now = self._db.now_ms()
        buckets = sorted({ask.bucket for ask in asks})
        await self._lock(tx, buckets, now)
        use = await self._used(tx, buckets, now)
        return await self._judge(tx, asks, use, now, hold=True)

    async def _lock(self, tx: Tx, buckets: Sequence[str], now: int) -> None:
        """Create or lock each bucket's row, in sorted order (PostgreSQL: row locks until COMMIT)."""
        await tx.execute(
            f"INSERT INTO buckets (bucket, touched_ms) VALUES {placeholders(len(buckets), '(?, ?)')} "
            "ON CONFLICT (bucket) DO UPDATE SET touched_ms = excluded.touched_ms",
            [value for bucket in buckets for value in (bucket, now)],
        )

    async def _used(self, tx: Tx, buckets: Sequence[str], now: int) -> dict[str, _Use]:
        """Images in the rolling hour and micro-dollars of today, per bucket, and its own limits."""
        since, day = now - WINDOW_MS, utc_day(now)
        marks = placeholders(len(buckets))
        use = {bucket: _Use() for bucket in buckets}
        for bucket, images, micros in await tx.rows(
            "SELECT bucket, COALESCE(SUM(CASE WHEN started_ms > ? THEN images ELSE 0 END), 0), "
            f"COALESCE(SUM(CASE WHEN day = ? THEN {_AMOUNT} ELSE 0 END), 0) FROM spend_calls "
            f"WHERE bucket IN ({marks}) AND (started_ms > ? OR day = ?) GROUP BY bucket",
            [since, day, *buckets, since, day],
        ):
            use[bucket].images, use[bucket].micros = int(images), int(micros)
        for bucket, images_per_hour, usd_per_day in await tx.rows(
            f"SELECT bucket, images_per_hour, usd_per_day_micros FROM buckets WHERE bucket IN ({marks}) "
            "AND (images_per_hour IS NOT NULL OR usd_per_day_micros IS NOT NULL)",
            list(buckets),
        ):
            use[bucket].own = Limits(
                None if images_per_hour is None else int(images_per_hour),
                None if usd_per_day is None else int(usd_per_day),
            )
        return use

    async def _judge(
        self, tx: Tx, asks: Sequence[Ask], use: dict[str, _Use], now: int, *, hold: bool = False
    ) -> list[Hold | Refusal]:
        """Each ask in order against its bucket's use so far; insert the granted ones (``hold``)."""
        out: list[Hold | Refusal] = []
        rows: list[Param] = []
        for ask in asks:
            bucket = use[ask.bucket]
            refusal = _refusal(ask, bucket, now)
            if refusal is not None:
                out.append(refusal)
                continue
            bucket.images += ask.images
            bucket.micros += ask.held_micros or 0
            ids = tuple(uuid.uuid4().hex for _ in ask.jobs)
            out.append(Hold(ask.bucket, ids, now))
            for call_id, job in zip(ids, ask.jobs, strict=True):
                rows += [call_id, ask.bucket, now, utc_day(now), job.tool[:64], job.model[:200],
                         job.images, job.estimate_micros, job.held_micros, job.body_sha256,
                         self._db.replica, now]  # fmt: skip
        if hold:
            width = 12
            for start in range(0, len(rows), width * _ROWS_PER_INSERT):
                chunk = rows[start : start + width * _ROWS_PER_INSERT]
                await tx.execute(
                    "INSERT INTO spend_calls (id, bucket, started_ms, day, tool, model, images, "
                    "estimate_micros, held_micros, body_sha256, owner, updated_ms, state) VALUES "
                    + placeholders(len(chunk) // width, "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'sending')"),
                    chunk,
                )
        return [await self._with_retry_time(tx, answer, now) for answer in out]

    async def _with_retry_time(self, tx: Tx, answer: Hold | Refusal, now: int) -> Hold | Refusal:
        """An images refusal learns when enough images leave the window (the rows of the hour)."""
        if not isinstance(answer, Refusal) or answer.rule != "images_per_hour":
            return answer
        must_leave = answer.used + answer.requested - answer.limit
        left = 0
        for started, images in await tx.rows(
            "SELECT started_ms, images FROM spend_calls WHERE bucket = ? AND started_ms > ? "
            "ORDER BY started_ms",
            (answer.bucket, now - WINDOW_MS),
        ):
            left += int(images)
            if left >= must_leave:
                return _replace_retry(answer, max(0.0, (WINDOW_MS - (now - int(started))) / 1000))
        return _replace_retry(answer, WINDOW_MS / 1000)

    async def _mark_batch(self, marks: list[tuple[str, str]]) -> list[None]:
        """The prediction ids of many held jobs, in one transaction (one statement per hundred)."""

        async def body(tx: Tx) -> list[None]:
            now = self._db.now_ms()
            for start in range(0, len(marks), 100):
                chunk = dict(marks[start : start + 100])
                cases = " ".join(["WHEN ? THEN CAST(? AS TEXT)"] * len(chunk))
                await tx.execute(
                    f"UPDATE spend_calls SET state = 'submitted', prediction_id = CASE id {cases} END, "
                    f"updated_ms = ? WHERE state = 'sending' AND id IN ({placeholders(len(chunk))})",
                    [*(v for pair in chunk.items() for v in pair), now, *chunk],
                )
            return [None] * len(marks)

        return await self._db.run(body)

    async def _settle_batch(self, settles: list[_Settle]) -> list[int | None]:
        """The charges of many finished predictions, in one transaction: one read, one write."""

        async def body(tx: Tx) -> list[int | None]:
            found: dict[tuple[str, str], tuple[str, int | None]] = {}
            pids = list(dict.fromkeys(item.prediction_id for item in settles))
            for start in range(0, len(pids), 100):
                chunk = pids[start : start + 100]
                for call_id, bucket, pid, estimate in await tx.rows(
                    "SELECT id, bucket, prediction_id, estimate_micros FROM spend_calls "
                    f"WHERE prediction_id IN ({placeholders(len(chunk))})",
                    chunk,
                ):
                    found.setdefault((str(bucket), str(pid)), (str(call_id), estimate))
            charges: dict[str, int | None] = {}
            for item in settles:
                row = found.get((item.bucket, item.prediction_id))
                if row is not None and item.final:
                    charges.setdefault(row[0], item.charged_micros)
            ids = list(charges)
            for start in range(0, len(ids), 100):
                chunk = ids[start : start + 100]
                cases = " ".join(["WHEN ? THEN CAST(? AS BIGINT)"] * len(chunk))
                await tx.execute(
                    f"UPDATE spend_calls SET state = 'settled', charged_micros = COALESCE(CASE id {cases} "
                    f"END, charged_micros), updated_ms = ? WHERE id IN ({placeholders(len(chunk))})",
                    [*(v for call_id in chunk for v in (call_id, charges[call_id])), self._db.now_ms(),
                     *chunk],
                )  # fmt: skip
            answers: list[int | None] = []
            for item in settles:
                row = found.get((item.bucket, item.prediction_id))
                answers.append(None if row is None or row[1] is None else int(row[1]))
            return answers

        return await self._db.run(body)

    async def _mark_submitted(self, tx: Tx, call_id: str, prediction_id: str) -> None:
        await tx.execute(
            "UPDATE spend_calls SET state = 'submitted', prediction_id = ?, updated_ms = ? "
            "WHERE id = ? AND state = 'sending'",
            (prediction_id, self._db.now_ms(), call_id),
        )

    def _orphaned(self, ask: Ask, answer: Hold | Refusal) -> None:
        """A hold whose caller gave up before learning of it: nothing will be sent, release it."""
        if isinstance(answer, Hold):
            task = asyncio.get_running_loop().create_task(self._release_quietly(answer))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _release_quietly(self, hold: Hold) -> None:
        try:
            await self.release(hold)
        except LedgerError as exc:  # the sweeper settles it later (the row keeps counting)
            logger.warning("an abandoned reservation was not released (%s)", type(exc).__name__)


def _refusal(ask: Ask, use: _Use, now: int) -> Refusal | None:
    images_limit = (
        use.own.images_per_hour if use.own.images_per_hour is not None else ask.limits.images_per_hour
    )
    usd_limit = (
        use.own.usd_per_day_micros
        if use.own.usd_per_day_micros is not None
        else ask.limits.usd_per_day_micros
    )
    if images_limit is not None and use.images + ask.images > images_limit:
        return Refusal(ask.bucket, "images_per_hour", images_limit, use.images, ask.images, 0.0)
    if usd_limit is not None:
        resets = (_next_midnight_ms(now) - now) / 1000
        held = ask.held_micros
        if held is None:
            return Refusal(ask.bucket, "price_unknown", usd_limit, use.micros, 0, resets)
        if use.micros + held > usd_limit:
            return Refusal(ask.bucket, "usd_per_day", usd_limit, use.micros, held, resets)
    return None


def _replace_retry(refusal: Refusal, seconds: float) -> Refusal:
    return Refusal(refusal.bucket, refusal.rule, refusal.limit, refusal.used, refusal.requested, seconds)
