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
the target is a worst peak under 300 MB. Set ``PYTHONPATH`` to another checkout's ``src`` to
measure that code instead (the server process inherits the environment).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # tests.hostile, tests.pictures, tests.loadgen

import anyio  # noqa: E402
import httpx  # noqa: E402

from tests.hostile import PID, Answer, Endless, Hostile  # noqa: E402
from tests.loadgen import free_port, serve_in_thread  # noqa: E402
from tests.pictures import bomb_png  # noqa: E402

TARGET_MB = 300.0
KEY = "bench-hostile-key-0123456789"
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
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.effect_noise((4096, 4096), 128).convert("RGB").save(out, format="PNG", compress_level=1)
    _inline(hostile, "data:image/png;base64," + base64.b64encode(out.getvalue()).decode())


CASES: dict[str, Callable[[Hostile, str], None]] = {
    "huge-outputs": _huge_outputs,
    "bomb-pngs": _bomb_pngs,
    "data-uri-80mb": _data_uri_80mb,
    "data-uri-picture": _data_uri_picture,
}


def _status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextmanager
def _server(atlas: str, folder: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATLAS", "ATLASCLOUD"))}
    env.update(
        ATLASCLOUD_BASE_URL=atlas,
        ATLASCLOUD_API_KEY=KEY,
        ATLAS_MCP_OUTPUT_DIR=str(folder),
        ATLAS_MCP_WAIT_SECONDS="30",
        ATLAS_MCP_LOG_LEVEL="WARNING",
        HOME=str(folder.parent),
    )
    argv = [sys.executable, "-m", "atlas_image_mcp", "serve", "--transport", "http", "--port", str(port)]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.1)
        yield proc, url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


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
        with _server(atlas, Path(scratch) / "pictures") as (proc, url):
            idle = _status_mb(proc.pid, "VmRSS")
            started = time.monotonic()
            try:
                outcome = anyio.run(_call, url)
            except Exception as exc:  # the older code this can measure may break the connection
                outcome = f"no answer: {_first_error(exc)}"
            seconds = time.monotonic() - started
            peak = _status_mb(proc.pid, "VmHWM")
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--case", action="append", choices=list(CASES), help="run only this case (repeatable)"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    results = run(args.case)
    if args.json:
        sys.stdout.write(json.dumps(results, indent=2) + "\n")
    else:
        lines = [
            f"{case:18} peak {row['peak_mb']:7.1f} MB  idle {row['idle_mb']:6.1f} MB  "
            f"{row['seconds']:6.2f} s  {row['outcome']}"
            for case, row in results.items()
            if case != "worst"
        ]
        worst = results["worst"]
        verdict = "met" if worst["met"] else "MISSED"
        lines.append(
            f"worst: {worst['case']} at {worst['peak_mb']} MB (target < {TARGET_MB:g} MB: {verdict})"
        )
        sys.stdout.write("\n".join(lines) + "\n")
    return 0 if results["worst"]["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
