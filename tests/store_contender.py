"""One replica's worth of concurrent reservations, as a separate process (for tests/test_store.py).

    python -m tests.store_contender URL CALLS [unlocked BARRIER_DIR PROCESSES]

Opens the store at URL (migrating it, like every replica at start), prints ``ready``, waits for a
line on stdin, then makes CALLS concurrent reservations of one image at $0.05 each against a daily
budget of $1.00 (20 of them) in the bucket ``shared``, and prints one JSON line: how many were
held, refused, or failed.

``unlocked`` is the negative control: a spend ledger without the bucket lock whose first batch
waits, after reading the bucket's use, until every process has read it too (a barrier of files in
BARRIER_DIR). Without the lock each process then holds what it read as free: the budget is
overspent, which shows that the test of the real ledger can fail.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from atlas_image_mcp.store import Ask, Hold, Job, Limits, StoreOptions, locate, open_store
from atlas_image_mcp.store.database import Database
from atlas_image_mcp.store.engine import Tx
from atlas_image_mcp.store.spend import Spend

BUDGET = Limits(usd_per_day_micros=1_000_000)
JOB = Job(tool="generate_image", model="flux-dev", images=1, estimate_micros=50_000, held_micros=50_000)
BARRIER_SECONDS = 20.0


class UnlockedSpend(Spend):
    """The spend ledger with its lock statement removed, and a barrier after its first read (test only)."""

    def __init__(self, db: Database, barrier: Path, processes: int) -> None:
        super().__init__(db)
        self._barrier, self._processes, self._waited = barrier, processes, False

    async def _lock(self, tx: Tx, buckets: Sequence[str], now: int) -> None:
        return None

    async def _used(self, tx: Tx, buckets: Sequence[str], now: int, asks: Sequence[Ask] | None = None):  # type: ignore[no-untyped-def]
        use = await super()._used(tx, buckets, now, asks)
        if not self._waited:
            self._waited = True
            (self._barrier / str(os.getpid())).touch()
            await asyncio.get_running_loop().run_in_executor(None, self._wait_for_all)
        return use

    def _wait_for_all(self) -> None:
        """A bounded poll until every process has read the bucket's use."""
        deadline = time.monotonic() + BARRIER_SECONDS
        while len(list(self._barrier.iterdir())) < self._processes and time.monotonic() < deadline:
            time.sleep(0.01)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main(argv: list[str]) -> None:
    url, calls = argv[0], int(argv[1])
    store = await open_store(locate(url, default_path=None), StoreOptions(heartbeat=0))
    spend = store.spend
    if len(argv) > 2 and argv[2] == "unlocked":
        spend = UnlockedSpend(store.db, Path(argv[3]), int(argv[4]))
    say("ready")
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    results = await asyncio.gather(
        *(spend.reserve(Ask("shared", (JOB,), BUDGET)) for _ in range(calls)), return_exceptions=True
    )
    say(json.dumps({
        "held": sum(isinstance(r, Hold) for r in results),
        "refused": sum(not isinstance(r, (Hold, BaseException)) for r in results),
        "errors": [repr(r) for r in results if isinstance(r, BaseException)][:3],
    }))  # fmt: skip
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
