"""The spend ledger: what each API key started, what it was expected to cost and what it was charged.

One SQLite file (stdlib ``sqlite3``, WAL mode) in the state folder holds one row per generation
that was sent, or is about to be: the caller's bucket (a hash of its Atlas key, never the key),
when it started (and its UTC day), the tool, the model, how many images, the estimate before
submission, the amount held against the daily budget, and the charge once Atlas reports it. Money
is kept as whole micro-dollars, so sums are exact.

Budgets are checked against it: ``ATLAS_MCP_MAX_IMAGES_PER_HOUR`` (images started in a rolling
hour) and ``ATLAS_MCP_BUDGET_USD_PER_DAY`` (what a UTC day's calls were charged, or are expected to
cost until Atlas says). The rules, called by the one submission path (``tools/jobs.py``):

* :meth:`Ledger.reserve` before the POST, in one ``BEGIN IMMEDIATE`` transaction: the limits are
  read and the row written while every other writer (thread or process) waits, so two calls
  racing for the last of a budget cannot both get it; :meth:`Ledger.reserve_batch` does the same
  for the jobs of a batch, one row each, in one transaction: all of them or none;
* :meth:`Ledger.release` when nothing was started (the POST never left, or Atlas refused it with a
  4xx): the row goes; a POST that may have started keeps it;
* :meth:`Ledger.submitted` once Atlas accepted the job, :meth:`Ledger.settle` when its charge is
  known (a failed prediction is not billed: 0).

The file survives restarts and is shared by every process of one machine that uses the same state
folder (several workers, or a restart while calls are in flight). It is not for network file
systems. Without a file (``path=None``: the offline emulator, or a state folder that cannot be
written while no limit is set) the ledger lives in memory for this process only.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import ROUND_CEILING, Decimal
from functools import partial
from pathlib import Path
from typing import TypeVar

import anyio.to_thread

from .constants import IMAGE_WINDOW_SECONDS, LEDGER_BUSY_SECONDS, LEDGER_KEEP_DAYS, USAGE_LARGEST
from .errors import BudgetError, LedgerError, SpendLimitError
from .models import parse_usd
from .redact import key_digest
from .settings import env_name

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

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_MICROS = Decimal("0.000001")
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    bucket TEXT NOT NULL,           -- sha256 of the Atlas key, first 16 hex digits
    started REAL NOT NULL,          -- Unix time the call was reserved
    day TEXT NOT NULL,              -- its UTC day, YYYY-MM-DD
    tool TEXT NOT NULL,
    model TEXT NOT NULL,
    images INTEGER NOT NULL,
    estimate INTEGER,               -- micro-USD expected before submission, NULL: price unknown
    reserved INTEGER,               -- micro-USD held against the daily budget until the charge is known
    charged INTEGER,                -- micro-USD Atlas reported (0: failed, not billed), NULL: not yet
    prediction_id TEXT
);
CREATE INDEX IF NOT EXISTS calls_by_bucket ON calls (bucket, started);
CREATE INDEX IF NOT EXISTS calls_by_day ON calls (bucket, day);
CREATE INDEX IF NOT EXISTS calls_by_prediction ON calls (prediction_id);
"""
#: What a row counts against the daily budget: the charge once known, else what was held.
_AMOUNT = "COALESCE(charged, reserved, 0)"


def bucket_of(api_key: str | None) -> str:
    """The ledger's name for an API key: a hash, never the key."""
    return key_digest(api_key or "")[:16]


def micros(amount: Decimal) -> int:
    """Whole micro-dollars, rounded up (an estimate never shrinks)."""
    return int(amount.quantize(_MICROS, rounding=ROUND_CEILING) / _MICROS)


def dollars(value: int) -> Decimal:
    return (Decimal(value) * _MICROS).normalize()


def _day(moment: float) -> str:
    return datetime.fromtimestamp(moment, tz=timezone.utc).strftime("%Y-%m-%d")


def _next_midnight(moment: float) -> float:
    today = datetime.fromtimestamp(moment, tz=timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return (today + timedelta(days=1)).timestamp()


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
    """One job of a batch to reserve: its images, its estimate, and the amount held for it."""

    images: int
    estimate: Decimal | None
    amount: Decimal | None


@dataclass(frozen=True)
class Reservation:
    """A row written by :meth:`Ledger.reserve`."""

    row: int
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
    """The spend ledger at ``path`` (None: in memory, this process only). See the module docstring.

    The blocking work runs in a worker thread; ``clock`` is wall-clock Unix time (days and hours
    must survive a restart), injectable so tests can move it.
    """

    def __init__(
        self,
        path: Path | None,
        limits: Limits | None = None,
        *,
        clock: Callable[[], float] = time.time,
        busy_seconds: float = LEDGER_BUSY_SECONDS,
    ) -> None:
        self.path = path
        self.limits = limits or Limits()
        self._clock = clock
        self._busy = busy_seconds
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._note: str | None = None  # why a file ledger fell back to memory

    @property
    def persistent(self) -> bool:
        """Whether the rows outlive this process (a file that could be opened)."""
        return self.path is not None and self._note is None

    # --- the budget rules --------------------------------------------------------------------

    async def check(self, api_key: str | None, images: int, amount: Decimal | None, model: str = "") -> None:
        """Raise what :meth:`reserve` would raise, without holding anything (before asking the person)."""
        if self.limits.any:
            await self._run(partial(self._check, bucket_of(api_key), images, amount, model))

    async def reserve(
        self,
        api_key: str | None,
        *,
        tool: str,
        model: str,
        images: int,
        estimate: Decimal | None,
        amount: Decimal | None,
    ) -> Reservation:
        """Check the limits and record the call, atomically; raise SpendLimitError or BudgetError.

        ``amount`` is what the call is held at against the daily budget (the estimate, or a
        cautious amount when the price is unknown; None: unknown).
        """
        return await self._run(
            partial(self._reserve, bucket_of(api_key), tool, model, images, estimate, amount)
        )

    async def reserve_batch(
        self, api_key: str | None, *, tool: str, model: str, jobs: Sequence[BatchItem]
    ) -> list[Reservation]:
        """:meth:`reserve` for every job of a batch at once: the limits are checked for their sum and
        one row is written per job, in one transaction, so the batch is held whole or refused whole.
        Each reservation is then released, submitted and settled on its own."""
        return await self._run(partial(self._reserve_batch, bucket_of(api_key), tool, model, tuple(jobs)))

    async def release(self, reservation: Reservation) -> None:
        """Forget a reservation whose POST never started a job."""
        await self._run(partial(self._write, "DELETE FROM calls WHERE id = ?", (reservation.row,)))

    async def submitted(self, reservation: Reservation, prediction_id: str) -> None:
        """Note the prediction id Atlas gave the reserved call."""
        await self._run(
            partial(
                self._write,
                "UPDATE calls SET prediction_id = ? WHERE id = ?",
                (prediction_id, reservation.row),
            )
        )

    async def settle(
        self, api_key: str | None, prediction_id: str, *, charged: Decimal | None, failed: bool = False
    ) -> Decimal | None:
        """Record what Atlas charged for a prediction of this key (0 when it failed); return its estimate.

        A prediction this ledger does not know (made elsewhere, or by another key) changes nothing.
        """
        value = 0 if failed else (micros(charged) if charged is not None else None)
        return await self._run(partial(self._settle, bucket_of(api_key), prediction_id, value))

    async def started(self, api_key: str | None, prediction_id: str) -> bool:
        """Whether this key sent the call that became ``prediction_id`` (within the rows kept)."""
        return await self._run(partial(self._started, bucket_of(api_key), prediction_id))

    async def usage(self, api_key: str | None, days: int) -> Usage:
        """Spend by day and model over the last ``days`` UTC days, and the largest calls."""
        return await self._run(partial(self._usage, bucket_of(api_key), days))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # --- in the worker thread ----------------------------------------------------------------

    async def _run(self, work: Callable[[], _T]) -> _T:
        return await anyio.to_thread.run_sync(self._locked, work)

    def _locked(self, work: Callable[[], _T]) -> _T:
        with self._lock:
            try:
                return work()
            except sqlite3.Error as exc:
                if self._conn is not None and self._conn.in_transaction:
                    self._conn.rollback()
                busy = "locked" in str(exc) or "busy" in str(exc)
                raise LedgerError(
                    "The spend ledger is busy (another call or process held it too long), so nothing was "
                    "sent. Try again in a moment."
                    if busy
                    else f"The spend ledger ({self._where()}) could not be read or written ({exc}), so "
                    "nothing was sent. Check that its folder is on a local disk with free space, or set "
                    f"{env_name('state_dir')} to another folder."
                ) from exc

    def _where(self) -> str:
        return str(self.path) if self.path is not None else "in memory"

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        self._conn = None  # a connection is never used across a fork
        try:
            conn = self._open_file() if self.path is not None and self._note is None else self._open_memory()
        except (OSError, sqlite3.Error) as exc:
            if self.limits.any:
                raise LedgerError(
                    f"The spend ledger at {self.path} cannot be opened ({exc}), so the budgets set for this "
                    f"server cannot be enforced and nothing was sent. Set {env_name('state_dir')} to a "
                    "writable folder on a local disk (or unset the budgets)."
                ) from exc
            self._note = f"the ledger file {self.path} could not be opened ({exc})"
            logger.warning("%s: usage is kept in memory until this server stops", self._note)
            conn = self._open_memory()
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _open_file(self) -> sqlite3.Connection:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # private from the start
        os.close(fd)
        conn = sqlite3.connect(
            str(self.path), timeout=self._busy, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._prepare(conn)
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    def _open_memory(self) -> sqlite3.Connection:
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self._prepare(conn)
        return conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """Create the table (or check it), and drop rows older than the retention period."""
        with _writing(conn):
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"ledger schema {version} is newer than this server ({_SCHEMA_VERSION})"
                )
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            cutoff = self._clock() - LEDGER_KEEP_DAYS * 86400
            conn.execute("DELETE FROM calls WHERE started < ?", (cutoff,))

    def _write(self, sql: str, params: tuple[object, ...]) -> None:
        conn = self._connection()
        with _writing(conn):
            conn.execute(sql, params)

    def _check(self, bucket: str, images: int, amount: Decimal | None, model: str) -> None:
        conn = self._connection()
        conn.execute("BEGIN")
        try:
            self._within_limits(conn, bucket, images, amount, model, self._clock())
        finally:
            conn.rollback()

    def _reserve(
        self,
        bucket: str,
        tool: str,
        model: str,
        images: int,
        estimate: Decimal | None,
        amount: Decimal | None,
    ) -> Reservation:
        return self._reserve_batch(bucket, tool, model, (BatchItem(images, estimate, amount),))[0]

    def _reserve_batch(
        self, bucket: str, tool: str, model: str, jobs: tuple[BatchItem, ...]
    ) -> list[Reservation]:
        conn = self._connection()
        now = self._clock()
        amounts = [job.amount for job in jobs]
        total = (
            None
            if any(a is None for a in amounts)
            else sum((a for a in amounts if a is not None), Decimal(0))
        )
        rows: list[Reservation] = []
        with _writing(conn):  # the write lock: no other writer until COMMIT
            self._within_limits(conn, bucket, sum(job.images for job in jobs), total, model, now)
            for job in jobs:
                cursor = conn.execute(
                    "INSERT INTO calls (bucket, started, day, tool, model, images, estimate, reserved) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        bucket, now, _day(now), tool[:64], model[:200], job.images,
                        micros(job.estimate) if job.estimate is not None else None,
                        micros(job.amount) if job.amount is not None else None,
                    ),
                )  # fmt: skip
                assert cursor.lastrowid is not None
                rows.append(Reservation(row=cursor.lastrowid, bucket=bucket))
        return rows

    def _within_limits(
        self,
        conn: sqlite3.Connection,
        bucket: str,
        images: int,
        amount: Decimal | None,
        model: str,
        now: float,
    ) -> None:
        limit = self.limits.images_per_hour
        if limit is not None:
            since = now - IMAGE_WINDOW_SECONDS
            used = _images_since(conn, bucket, since)
            if used + images > limit:
                rows = conn.execute(
                    "SELECT started, images FROM calls WHERE bucket = ? AND started > ? ORDER BY started",
                    (bucket, since),
                ).fetchall()
                raise SpendLimitError(limit, _retry_after(rows, used + images - limit, now), requested=images,
                                      used=used)  # fmt: skip
        budget = self.limits.usd_per_day
        if budget is not None:
            spent = _spent_on(conn, bucket, _day(now))
            resets_in = _next_midnight(now) - now
            if amount is None:
                raise BudgetError(
                    budget, dollars(spent), None, resets_in, model=model, setting=self.limits.budget_setting
                )
            if spent + micros(amount) > micros(budget):
                raise BudgetError(
                    budget, dollars(spent), amount, resets_in, model=model, setting=self.limits.budget_setting
                )

    def _settle(self, bucket: str, prediction_id: str, value: int | None) -> Decimal | None:
        conn = self._connection()
        found = conn.execute(
            "SELECT id, estimate, charged FROM calls WHERE bucket = ? AND prediction_id = ?",
            (bucket, prediction_id),
        ).fetchone()
        if found is None:
            return None
        row, estimate, charged = found
        if value is not None and value != charged:
            self._write("UPDATE calls SET charged = ? WHERE id = ?", (value, row))
        return dollars(estimate) if estimate is not None else None

    def _started(self, bucket: str, prediction_id: str) -> bool:
        found = self._connection().execute(
            "SELECT 1 FROM calls WHERE bucket = ? AND prediction_id = ? LIMIT 1", (bucket, prediction_id)
        )
        return found.fetchone() is not None

    def _usage(self, bucket: str, days: int) -> Usage:
        conn = self._connection()
        now = self._clock()
        since = _day(now - (max(1, days) - 1) * 86400)
        rows = [
            DayModel(day, model, calls, images, dollars(spent), estimated)
            for day, model, calls, images, spent, estimated in conn.execute(
                f"SELECT day, model, COUNT(*), SUM(images), SUM({_AMOUNT}), "
                "SUM(CASE WHEN charged IS NULL THEN 1 ELSE 0 END) FROM calls "
                "WHERE bucket = ? AND day >= ? GROUP BY day, model ORDER BY day DESC, SUM("
                + _AMOUNT
                + ") DESC",
                (bucket, since),
            )
        ]
        largest = [
            LedgerCall(started, tool, model, images, dollars(amount), charged is not None, pid)
            for started, tool, model, images, amount, charged, pid in conn.execute(
                f"SELECT started, tool, model, images, {_AMOUNT}, charged, prediction_id FROM calls "
                f"WHERE bucket = ? AND day >= ? ORDER BY {_AMOUNT} DESC, started DESC LIMIT ?",
                (bucket, since, USAGE_LARGEST),
            )
        ]
        return Usage(
            since=since,
            rows=rows,
            largest=largest,
            spent_today=dollars(_spent_on(conn, bucket, _day(now))),
            images_last_hour=_images_since(conn, bucket, now - IMAGE_WINDOW_SECONDS),
            resets_in=_next_midnight(now) - now,
            resets_at=_next_midnight(now),
            persistent=self.persistent,
            note=self._note,
        )


@contextmanager
def _writing(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction: BEGIN IMMEDIATE (the write lock), COMMIT, or ROLLBACK on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


def _images_since(conn: sqlite3.Connection, bucket: str, since: float) -> int:
    (count,) = conn.execute(
        "SELECT COALESCE(SUM(images), 0) FROM calls WHERE bucket = ? AND started > ?", (bucket, since)
    ).fetchone()
    return int(count)


def _spent_on(conn: sqlite3.Connection, bucket: str, day: str) -> int:
    """Micro-dollars spent (charged, else reserved) on ``day``."""
    (spent,) = conn.execute(
        f"SELECT COALESCE(SUM({_AMOUNT}), 0) FROM calls WHERE bucket = ? AND day = ?", (bucket, day)
    ).fetchone()
    return int(spent)


def _retry_after(rows: list[tuple[float, int]], must_leave: int, now: float) -> float:
    """Seconds until ``must_leave`` of the images in the window (oldest first) have left it."""
    left = 0
    for started, images in rows:
        left += images
        if left >= must_leave:
            return max(0.0, IMAGE_WINDOW_SECONDS - (now - started))
    return IMAGE_WINDOW_SECONDS
