"""A replica that dies mid-call, as a separate process (for tests/test_store.py).

    python -m tests.store_victim URL TTL_SECONDS

Opens the store at URL (its heartbeat promises TTL_SECONDS of life), reserves three one-image
calls in the bucket ``victim``, whose POST bodies have the fingerprints ``body-1``, ``body-2`` and
``body-3``; records the prediction id ``pred-1`` for the first (Atlas accepted it), leaves the
second ``sending`` (its POST reached Atlas, the process died before the id was recorded) and the
third ``sending`` (it never left). Prints the three call ids as JSON, then waits to be killed.
"""

from __future__ import annotations

import asyncio
import json
import sys

from atlas_image_mcp.store import Ask, Hold, Job, StoreOptions, locate, open_store


async def main(url: str, ttl: float) -> None:
    store = await open_store(locate(url, default_path=None), StoreOptions(heartbeat=0, replica_ttl=ttl))
    ids = []
    for n in (1, 2, 3):
        job = Job(
            "generate_image",
            "flux-dev",
            1,
            estimate_micros=40_000,
            held_micros=40_000,
            body_sha256=f"body-{n}",
        )
        hold = await store.spend.reserve(Ask("victim", (job,)))
        assert isinstance(hold, Hold)
        ids.append(hold.ids[0])
    assert await store.spend.submitted(ids[0], "pred-1")
    sys.stdout.write(json.dumps({"ids": ids, "replica": store.replica}) + "\n")
    sys.stdout.flush()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # killed while waiting here


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
