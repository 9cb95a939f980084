"""Peak memory of a real server process when Atlas turns hostile.

    python bench/hostile.py [--case NAME ...] [--json]

Each case starts a fresh ``atlas-image-mcp serve --transport http`` process whose
``ATLASCLOUD_BASE_URL`` is a hostile stand-in for Atlas (``tests/hostile.py``, served on
127.0.0.1 from this process), makes one ``generate_image`` call through the MCP SDK client
(4 pictures, thumbnails, saving on), and reads the server's peak resident memory (``VmHWM`` of
``/proc/<pid>/status``, Linux) once the call has answered. The cases:

* ``huge-outputs``: 20 outputs of 50 MB each (not pictures), for 4 asked;
* ``bomb-pngs``: four 12000x12000 PNGs (144 megapixels each, 140 KB on the wire);
* ``data-uri-80mb``: an 80 MB ``data:`` URI in the answer (over the answer cap);
* ``data-uri-picture``: the largest picture the caps let through, a 4096x4096 noise PNG
  (about 50 MB) sent inline as a ``data:`` URI (about 67 MB of base64), which is decoded.

:func:`run` returns ``{case: {"peak_mb", "idle_mb", "seconds", "outcome"}, "worst": {...}}``;
the target is a worst peak under 300 MB. :func:`section` writes them into the benchmark's report.
Set ``PYTHONPATH`` to another checkout's ``src`` to measure that code instead (the server process
inherits the environment).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from PIL import Image

from bench.procs import proc_status
from bench.report import Context, Row, Section
from bench.servers import http_server_process
from tests.hostile import PID, Answer, Endless, Hostile
from tests.loadgen import serve_in_thread
from tests.pictures import bomb_png

TARGET_MB = 300.0
ARGUMENTS = {"prompt": "a hostile fox", "num_images": 4, "return_image": "thumbnail", "save": True}
MB = 1024 * 1024


def _huge_outputs(hostile: Hostile, base: str) -> None:
    for n in range(20):
        hostile.route(f"/out/{n}.png", Endless(limit=50 * MB))
    hostile.prediction(outputs=[f"{base}/out/{n}.png" for n in range(20)])


def _bomb_pngs(hostile: Hostile, base: str) -> None:
    bomb = bomb_png(12000, 12000)
    for n in range(4):
        hostile.route(f"/out/{n}.png", Answer(200, bomb, "image/png"))
    hostile.prediction(outputs=[f"{base}/out/{n}.png" for n in range(4)])


def _inline(hostile: Hostile, uri: str) -> None:
    body = json.dumps({"code": 200, "data": {"id": PID, "status": "completed", "outputs": [uri]}})
    hostile.submit = Answer(200, body.encode(), "application/json")


def _data_uri_80mb(hostile: Hostile, base: str) -> None:
    _inline(hostile, "data:image/png;base64," + "A" * (80 * MB))


def _data_uri_picture(hostile: Hostile, base: str) -> None:
    out = io.BytesIO()
    Image.effect_noise((4096, 4096), 128).convert("RGB").save(out, format="PNG", compress_level=1)
    _inline(hostile, "data:image/png;base64," + base64.b64encode(out.getvalue()).decode())


CASES: dict[str, Callable[[Hostile, str], None]] = {
    "huge-outputs": _huge_outputs,
    "bomb-pngs": _bomb_pngs,
    "data-uri-80mb": _data_uri_80mb,
    "data-uri-picture": _data_uri_picture,
}


def _mb(pid: int, field: str) -> float:
    return proc_status(pid).get(field, 0) / MB


async def _call(url: str) -> str:
    from mcp import Client

    async with Client(f"{url}/mcp", mode="legacy", read_timeout_seconds=180) as client:
        with anyio.fail_after(180):
            result = await client.call_tool("generate_image", ARGUMENTS)
    data = result.structured_content or {}
    errors = [o.get("error") for o in data.get("outputs", []) if o.get("error")]
    text = " ".join(getattr(b, "text", "") for b in result.content)[:160]
    if result.is_error:
        return f"tool error: {text}"
    return f"{data.get('status')}, {len(data.get('outputs', []))} outputs, {len(errors)} refused"


def _first_error(exc: BaseException) -> str:
    while getattr(exc, "exceptions", None):  # an exception group: the first one inside
        exc = exc.exceptions[0]  # type: ignore[attr-defined]
    return f"{type(exc).__name__}: {str(exc)[:120]}"


def measure(case: str) -> dict[str, Any]:
    """One case in a fresh server process: its peak and idle memory and what the call answered."""
    hostile = Hostile()
    with tempfile.TemporaryDirectory() as scratch, serve_in_thread(hostile.app, graceful=0.5) as atlas:
        CASES[case](hostile, atlas)
        folder = Path(scratch) / "pictures"
        env = {
            "ATLAS_MCP_OUTPUT_DIR": str(folder),
            "ATLAS_MCP_WAIT_SECONDS": "30",
            "ATLAS_MCP_LOG_LEVEL": "WARNING",
            "HOME": str(folder.parent),
        }
        with http_server_process(atlas, ready_timeout=30, **env) as (url, pid, _):
            idle = _mb(pid, "VmRSS")
            started = time.monotonic()
            try:
                outcome = anyio.run(_call, url)
            except Exception as exc:  # the older code this can measure may break the connection
                outcome = f"no answer: {_first_error(exc)}"
            seconds = time.monotonic() - started
            peak = _mb(pid, "VmHWM")
    return {
        "peak_mb": round(peak, 1),
        "idle_mb": round(idle, 1),
        "seconds": round(seconds, 2),
        "outcome": outcome,
    }


def run(cases: list[str] | None = None) -> dict[str, Any]:
    """Every case (or the ones named); plus ``worst``, the highest peak, against the target."""
    results: dict[str, Any] = {case: measure(case) for case in (cases or list(CASES))}
    worst_case = max(results, key=lambda c: results[c]["peak_mb"])
    results["worst"] = {
        "case": worst_case,
        "peak_mb": results[worst_case]["peak_mb"],
        "target_mb": TARGET_MB,
        "met": results[worst_case]["peak_mb"] < TARGET_MB,
    }
    return results


def section(ctx: Context) -> Section:
    """Peak memory of the server against a hostile upstream (a quick run: the first case only)."""
    s = Section("Hostile upstream: peak memory")
    result = run(list(CASES)[:1] if ctx.quick else None)
    worst = result.pop("worst")
    s.add("Measured by `bench/hostile.py`: each case a hostile Atlas stand-in, the server's memory sampled.")
    s.add("")
    s.table(
        ["case", "peak", "idle", "seconds", "outcome"],
        [
            [c, f"{r['peak_mb']} MB", f"{r['idle_mb']} MB", f"{r['seconds']} s", str(r["outcome"])[:80]]
            for c, r in result.items()
        ],
    )
    s.rows.append(
        Row(
            f"Hostile upstream: worst peak memory ({worst['case']})",
            f"{worst['peak_mb']} MB",
            f"< {worst['target_mb']:g} MB",
            bool(worst["met"]) if not ctx.quick else None,
        )
    )
    return s


def _print(results: dict[str, Any]) -> None:
    lines = [
        f"{case:18} peak {row['peak_mb']:7.1f} MB  idle {row['idle_mb']:6.1f} MB  "
        f"{row['seconds']:6.2f} s  {row['outcome']}"
        for case, row in results.items()
        if case != "worst"
    ]
    worst = results["worst"]
    verdict = "met" if worst["met"] else "MISSED"
    lines.append(f"worst: {worst['case']} at {worst['peak_mb']} MB (target < {TARGET_MB:g} MB: {verdict})")
    sys.stdout.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--case", action="append", choices=list(CASES), help="run only this case (repeatable)"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    results = run(args.case)
    if args.json:
        sys.stdout.write(json.dumps(results, indent=2) + "\n")
    else:
        _print(results)
    return 0 if results["worst"]["met"] else 1
