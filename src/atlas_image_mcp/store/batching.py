"""Concurrent requests decided together: one transaction for whatever arrived meanwhile.

A caller hands its item to :meth:`Batcher.submit` and awaits its answer. When no batch is being
decided, one starts at once with what is waiting (so a lone call waits for nothing); items that
arrive while it runs are decided together by the next one, up to ``max_batch`` at a time. Each
item gets its own answer; if the batch's transaction fails, every item in it gets that error
(nothing in it was kept).

An answer is only handed over after its transaction committed. A caller that gave up (cancelled)
before its answer came hands it to ``orphaned`` instead (the spend ledger releases a reservation
nobody will use).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Batcher"]

logger = logging.getLogger(__name__)

Item = TypeVar("Item")
Answer = TypeVar("Answer")


class Batcher(Generic[Item, Answer]):
    """Decides items with ``decide(items) -> answers`` (one answer per item, in order)."""

    def __init__(
        self,
        decide: Callable[[list[Item]], Awaitable[Sequence[Answer]]],
        *,
        max_batch: int,
        orphaned: Callable[[Item, Answer], None] | None = None,
    ) -> None:
        self._decide = decide
        self._max = max(1, max_batch)
        self._orphaned = orphaned
        self._waiting: list[tuple[Item, asyncio.Future[Answer]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Answer:
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def drained(self) -> None:
        """Wait until nothing is waiting or being decided (for a clean shutdown)."""
        while self._runner is not None and not self._runner.done():
            await asyncio.shield(self._runner)

    async def _drain(self) -> None:
        while self._waiting:
            batch = self._waiting[: self._max]
            del self._waiting[: self._max]
            try:
                answers = await self._decide([item for item, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (item, future), answer in zip(batch, answers, strict=True):
                if not future.done():
                    future.set_result(answer)
                elif self._orphaned is not None:
                    try:
                        self._orphaned(item, answer)
                    except Exception:  # pragma: no cover - a bug in the hook must not stop the batches
                        logger.exception("handing over an orphaned answer failed")
