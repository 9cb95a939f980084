"""Calls left open by a replica that died: adopted by a live one, looked up at Atlas, closed.

A call is reserved (``sending``) right before its POST and becomes ``submitted`` once Atlas gave
it a prediction id; the replica that made it settles it when the charge is known. If that replica
dies (its heartbeat lapses), each round of :meth:`Sweeper.sweep` on any live replica:

1. *adopts* a few of the dead replica's open calls: a conditional update (``WHERE owner = <the dead
   one>``) that only one replica can win, committed before anything else;
2. asks Atlas about each call it adopted, through the :data:`Lookup` it was given, outside any
   transaction and bounded in time;
3. closes what it learnt, each update conditional on still owning the call:

   * Atlas finished the job: ``settled`` at its charge (a failed job: 0);
   * Atlas has the job, still running: ``submitted`` with its prediction id (found by the id, or, for a
     call that died between the POST and recording the id, by the fingerprint of the POST body);
   * Atlas has no such job and the call is older than ``release_after``: the POST never left,
     the call is released;
   * no answer (no key to ask with, Atlas unreachable): asked again next round; past
     ``give_up_after`` it is settled at what it held, so it keeps counting against the budget
     (never under-counted) and nothing stays open for ever.

If the adopting replica dies too, its adopted calls are orphans again and another replica adopts
them. Bound: a dead replica is noticed within its TTL; its calls are adopted by the next round
after that and closed as soon as Atlas says how they ended (at the latest ``give_up_after`` after
they started).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from .database import Database
from .engine import Row, Tx
from .options import SweepOptions

__all__ = ["Finding", "Lookup", "OpenCall", "SweepReport", "Sweeper"]

logger = logging.getLogger(__name__)

_OPEN_COLUMNS = "id, bucket, state, prediction_id, body_sha256, model, started_ms, held_micros"


@dataclass(frozen=True)
class OpenCall:
    """A call that a dead replica left open, as the lookup sees it."""

    id: str
    bucket: str
    state: Literal["sending", "submitted"]
    prediction_id: str | None
    #: SHA-256 of the POST body (hex), to find a job whose id was never recorded.
    body_sha256: str | None
    model: str
    started_ms: int
    held_micros: int | None


@dataclass(frozen=True)
class Finding:
    """What Atlas says about an open call.

    ``unknown``: could not ask (no key, no answer); ``not_sent``: Atlas has no such job;
    ``running``: Atlas has it (``prediction_id``), not finished; ``done``: finished, charged
    ``charged_micros`` (0: failed, not billed; None: no price said).
    """

    status: Literal["unknown", "not_sent", "running", "done"]
    prediction_id: str | None = None
    charged_micros: int | None = None


Lookup = Callable[[OpenCall], Awaitable[Finding]]


@dataclass
class SweepReport:
    adopted: int = 0
    submitted: int = 0
    settled: int = 0
    released: int = 0
    given_up: int = 0


class Sweeper:
    def __init__(self, db: Database, lookup: Lookup, options: SweepOptions | None = None) -> None:
        self._db = db
        self._lookup = lookup
        self.options = options or SweepOptions()

    async def sweep(self) -> SweepReport:
        """One round: adopt the open calls of dead replicas, then close what Atlas can say about
        the calls this replica adopted."""
        report = SweepReport()
        report.adopted = await self._db.run(self._adopt)
        mine = await self._db.run(
            lambda tx: tx.rows(
                f"SELECT {_OPEN_COLUMNS} FROM spend_calls "
                "WHERE owner = ? AND sweeps > 0 AND state <> 'settled' ORDER BY started_ms LIMIT ?",
                (self._db.replica, self.options.per_round),
            )
        )
        calls = [_open_call(row) for row in mine]
        limiter = asyncio.Semaphore(max(1, self.options.lookups_at_once))

        async def one(call: OpenCall) -> Finding:
            async with limiter:
                return await self._ask(call)

        findings = await asyncio.gather(*(one(call) for call in calls))
        for call, finding in zip(calls, findings, strict=True):
            await self._close(call, finding, report)
        return report

    async def _adopt(self, tx: Tx) -> int:
        now = self._db.now_ms()
        orphans = await tx.rows(
            "SELECT c.id, c.owner FROM spend_calls c LEFT JOIN replicas r ON r.owner = c.owner "
            "WHERE c.state <> 'settled' AND c.owner <> ? "
            "AND (r.alive_until_ms IS NULL OR r.alive_until_ms < ?) "
            "ORDER BY c.started_ms LIMIT ?",
            (self._db.replica, now, self.options.per_round),
        )
        adopted = 0
        for call_id, owner in orphans:
            adopted += await tx.execute(
                "UPDATE spend_calls SET owner = ?, sweeps = sweeps + 1, updated_ms = ? "
                "WHERE id = ? AND owner = ?",
                (self._db.replica, now, call_id, owner),
            )
        return adopted

    async def _ask(self, call: OpenCall) -> Finding:
        try:
            return await asyncio.wait_for(self._lookup(call), self.options.lookup_timeout)
        except Exception as exc:  # no answer is an answer: ask again next round
            logger.info("open call %s: Atlas could not be asked (%s)", call.id, type(exc).__name__)
            return Finding("unknown")

    async def _close(self, call: OpenCall, finding: Finding, report: SweepReport) -> None:
        now = self._db.now_ms()
        me = self._db.replica
        age = now - call.started_ms
        if finding.status in ("running", "done") and finding.prediction_id and call.state == "sending":
            report.submitted += await self._db.run(
                lambda tx: tx.execute(
                    "UPDATE spend_calls SET state = 'submitted', prediction_id = ?, updated_ms = ? "
                    "WHERE id = ? AND owner = ? AND state = 'sending'",
                    (finding.prediction_id, now, call.id, me),
                )
            )
        if finding.status == "done":
            report.settled += await self._db.run(
                lambda tx: tx.execute(
                    "UPDATE spend_calls SET state = 'settled', charged_micros = ?, updated_ms = ? "
                    "WHERE id = ? AND owner = ? AND state <> 'settled'",
                    (finding.charged_micros, now, call.id, me),
                )
            )
            return
        if (
            finding.status == "not_sent"
            and call.state == "sending"
            and age > self.options.release_after * 1000
        ):
            report.released += await self._db.run(
                lambda tx: tx.execute(
                    "DELETE FROM spend_calls WHERE id = ? AND owner = ? AND state = 'sending'", (call.id, me)
                )
            )
            return
        if age > self.options.give_up_after * 1000:
            report.given_up += await self._db.run(
                lambda tx: tx.execute(
                    "UPDATE spend_calls SET state = 'settled', updated_ms = ? "
                    "WHERE id = ? AND owner = ? AND state <> 'settled'",
                    (now, call.id, me),
                )
            )


def _open_call(row: Row) -> OpenCall:
    call_id, bucket, state, prediction_id, body_sha256, model, started, held = row
    return OpenCall(
        id=str(call_id),
        bucket=str(bucket),
        state="submitted" if state == "submitted" else "sending",
        prediction_id=prediction_id,
        body_sha256=body_sha256,
        model=str(model),
        started_ms=int(started),
        held_micros=None if held is None else int(held),
    )
