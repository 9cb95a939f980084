"""``atlas-image-mcp`` with some of its CPU levers turned off, for the benchmark's comparison only.

    python bench/variant.py json,engine,batching -- serve --transport http --port 8123

``json``: every answer streams (no JSON answers); ``engine``: Atlas API requests go through httpx's
request and response models (not straight to aiohttp); ``batching``: one store transaction per write.
The collector's lever is a setting (``ATLAS_MCP_GC_THRESHOLD=0``). Nothing here ships.
"""

from __future__ import annotations

import sys
from typing import Any


def turn_off(lever: str) -> None:
    if lever == "json":
        from atlas_image_mcp.answers import AnswerForms

        def always_streams(self: Any, shape: Any, session: Any) -> bool:
            return True

        AnswerForms._streams = always_streams  # type: ignore[method-assign]
    elif lever == "engine":
        import atlas_image_mcp.client as client

        class NeverTheTransport:  # isinstance(transport, this) is never true: the httpx engine
            pass

        client.AiohttpTransport = NeverTheTransport  # type: ignore[misc,assignment]
    elif lever == "batching":
        from atlas_image_mcp.store import batching, sqlite

        for kind in (batching.Batcher, sqlite.SqliteEngine):
            _one_at_a_time(kind)
    elif lever:
        raise SystemExit(f"unknown lever {lever!r}: json, engine or batching")


def _one_at_a_time(kind: Any) -> None:
    """Make every ``kind`` take one write per transaction (its ``max_batch`` set to 1)."""
    made = kind.__init__

    def init(self: Any, *args: Any, **kw: Any) -> None:
        made(self, *args, **{**kw, "max_batch": 1})

    kind.__init__ = init


def main() -> None:
    levers, _, rest = " ".join(sys.argv[1:]).partition(" -- ")
    for lever in levers.split(","):
        turn_off(lever.strip())
    from atlas_image_mcp.cli import main as serve

    sys.exit(serve(rest.split()))


if __name__ == "__main__":
    main()
