"""What an innocent client waits, and what the server holds, while another client attacks it.

    python bench/isolation.py [--case NAME ...] [--json]

Each case starts a fresh hosted server (``atlas-image-mcp serve --transport http`` with per-user
keys) in front of the emulator in its own process, which knows the innocent user's key (and, in
``large-body-drip``, the attacker's two). The attacker works from 127.0.0.2, a second loopback
address, so the server sees two clients. Once the attack is in place, the innocent client
(127.0.0.1, over raw HTTP with httpx) opens a session, uploads a 1.5 MB picture (a 2 MB body, past
the 1 MB message cap, so it needs a large-body slot) and makes a picture, doing what it is told
(a 429 or 503 is tried again after its ``Retry-After``, at most 5 s) for up to
:data:`INNOCENT_BOUND` seconds. The cases, the worst attacks of their kind found against earlier
versions:

* ``idle-connections``: 300 connections that never send a byte, each opened again as soon as the
  server closes it, against ``ATLAS_MCP_MAX_SESSIONS=10`` (uvicorn's connection limit: 276);
* ``made-up-keys``: 10 invented keys asking for 3 sessions and an SSE stream each, against
  ``ATLAS_MCP_MAX_SESSIONS=30`` and 3 per key;
* ``repeated-method``: 30 ``{"method":"ping",...,"method":"initialize"}`` messages with an invented
  key (sessions the SDK opens but an earlier guard did not count), against the same caps;
* ``large-body-drip``: two uploads of 60 MB dripped 1 KB a second with two real Atlas keys (each
  sent again when cut off), plus 150 connections that each send 1.1 MB of a 60 MB upload and stall.

Reported per case: the innocent client's wait (its first request to its last answer), how often it
was told to wait, and the server's resident memory when the innocent client starts and at its peak
during the case (``VmRSS``/``VmHWM`` of ``/proc/<pid>/status``, the peak reset when the attack
starts). Set ``PYTHONPATH`` to another checkout's ``src`` to measure that code instead.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from bench.procs import proc_status, reset_peak
from bench.report import Context, Row, Section
from bench.servers import emulator_process, http_server_process
from tests.pictures import noise_png

INNOCENT_KEY = "sk_live_innocent_0123456789abcdef"
ATTACKER_KEYS = ("sk_live_mallory_one_0123456789ab", "sk_live_mallory_two_0123456789ab")
ATTACKER = "127.0.0.2"
INNOCENT_BOUND = 60.0
TARGET_SECONDS = 30.0
TARGET_MB = 300.0
MB = 1024 * 1024
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "b", "version": "1"},
    },
}
Attack = Callable[[str, asyncio.Event], Awaitable[None]]


def _made_up(n: int) -> str:
    return f"sk_made_up_{n:02d}_0123456789abcdef"


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


# --- the attacks (each runs until ``stop`` is set) ----------------------------------------------


async def _idle_connections(url: str, stop: asyncio.Event, count: int = 300) -> None:
    host, port = _host_port(url)

    async def one() -> None:
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(host, port, local_addr=(ATTACKER, 0))
            except OSError:
                await asyncio.sleep(0.2)
                continue
            with contextlib.suppress(OSError):
                while await reader.read(65536):  # until the server closes it
                    pass
            writer.close()
            await asyncio.sleep(0.2)  # then again (a refused one would otherwise spin a core)

    await asyncio.gather(*(one() for _ in range(count)))


def _attacker_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(local_address=ATTACKER), timeout=httpx.Timeout(10, read=None)
    )


async def _made_up_keys(url: str, stop: asyncio.Event) -> None:
    async with _attacker_client() as http:

        async def stream(key: str) -> None:
            with contextlib.suppress(httpx.HTTPError):
                async with http.stream("GET", f"{url}/sse", headers={"x-atlas-api-key": key}) as answer:
                    async for _ in answer.aiter_bytes():
                        if stop.is_set():
                            return

        for n in range(10):
            for _ in range(3):
                with contextlib.suppress(httpx.HTTPError):
                    await http.post(
                        f"{url}/mcp", headers={**HEADERS, "x-atlas-api-key": _made_up(n)}, json=INITIALIZE
                    )
        streams = [asyncio.create_task(stream(_made_up(n))) for n in range(10)]
        await stop.wait()
        for task in streams:
            task.cancel()
        await asyncio.gather(*streams, return_exceptions=True)


async def _repeated_method(url: str, stop: asyncio.Event) -> None:
    params = json.dumps(INITIALIZE["params"])
    sneaky = f'{{"jsonrpc":"2.0","id":1,"method":"ping","params":{params},"method":"initialize"}}'
    async with _attacker_client() as http:
        for _ in range(30):
            with contextlib.suppress(httpx.HTTPError):
                await http.post(
                    f"{url}/mcp", headers={**HEADERS, "x-atlas-api-key": _made_up(0)}, content=sneaky
                )
        await stop.wait()


_UPLOAD_START = (
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"upload_media","arguments":{"data":"'
)


def _upload_head(host: str, port: int, key: str, length: int) -> bytes:
    return (
        f"POST /mcp HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: application/json, text/event-stream\r\nX-Atlas-Api-Key: {key}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode() + _UPLOAD_START


async def _large_body_drip(url: str, stop: asyncio.Event) -> None:
    host, port = _host_port(url)
    length = 60 * MB

    async def drip(key: str) -> None:
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(host, port, local_addr=(ATTACKER, 0))
            except OSError:
                await asyncio.sleep(0.5)
                continue
            try:
                writer.write(_upload_head(host, port, key, length))
                while not stop.is_set() and not reader.at_eof():
                    writer.write(b"A" * 1024)
                    await writer.drain()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(reader.read(65536), 1.0)  # an answer means: cut off
            except OSError:
                pass
            finally:
                writer.close()
            await asyncio.sleep(0.5)

    async def stall(n: int) -> None:
        key = ATTACKER_KEYS[n % 2]
        chunk = b"A" * (1100 * 1024)
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(host, port, local_addr=(ATTACKER, 0))
                writer.write(_upload_head(host, port, key, length) + chunk)
                await writer.drain()
                while await reader.read(65536):  # until the server closes it
                    pass
                writer.close()
            except OSError:
                pass
            await asyncio.sleep(0.5)

    await asyncio.gather(*(drip(key) for key in ATTACKER_KEYS), *(stall(n) for n in range(150)))


CASES: dict[str, tuple[Attack, dict[str, str], tuple[str, ...]]] = {
    "idle-connections": (_idle_connections, {"ATLAS_MCP_MAX_SESSIONS": "10"}, ()),
    "made-up-keys": (
        _made_up_keys,
        {"ATLAS_MCP_MAX_SESSIONS": "30", "ATLAS_MCP_MAX_SESSIONS_PER_KEY": "3"},
        (),
    ),
    "repeated-method": (
        _repeated_method,
        {"ATLAS_MCP_MAX_SESSIONS": "30", "ATLAS_MCP_MAX_SESSIONS_PER_KEY": "3"},
        (),
    ),
    "large-body-drip": (_large_body_drip, {}, ATTACKER_KEYS),
}


# --- the innocent client ------------------------------------------------------------------------


def _rpc(answer: httpx.Response) -> dict[str, Any]:
    text = answer.text
    if "data:" in text:
        text = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")][-1]
    return dict(json.loads(text))


async def innocent(url: str, picture: bytes) -> dict[str, Any]:
    """Open a session, upload ``picture``, make a picture; how long that took and how it went."""
    started = time.monotonic()
    deadline = started + INNOCENT_BOUND
    told_to_wait = 0
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.1")
    headers = {**HEADERS, "x-atlas-api-key": INNOCENT_KEY}
    async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(10, read=120)) as http:

        async def post(body: dict[str, Any]) -> httpx.Response | None:
            nonlocal told_to_wait
            while time.monotonic() < deadline:
                try:
                    answer = await http.post(f"{url}/mcp", headers=headers, json=body)
                except httpx.TransportError:
                    told_to_wait += 1
                    await asyncio.sleep(1.0)
                    continue
                if answer.status_code not in (429, 503):
                    return answer
                told_to_wait += 1
                wait = float(answer.headers.get("retry-after", "1") or 1)
                await asyncio.sleep(min(wait, 5.0, max(deadline - time.monotonic(), 0)))
            return None

        outcome = "ok"
        opened = await post(INITIALIZE)
        if opened is None or "mcp-session-id" not in opened.headers:
            outcome = "no session" if opened is None else f"initialize: HTTP {opened.status_code}"
        else:
            headers.update(
                {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
            )
            await post({"jsonrpc": "2.0", "method": "notifications/initialized"})
            data = base64.b64encode(picture).decode()
            for step, name, arguments in (
                ("upload", "upload_media", {"data": data, "filename": "innocent.png"}),
                (
                    "generate",
                    "generate_image",
                    {"prompt": "an innocent fox", "return_image": "none", "save": False},
                ),
            ):
                call = {
                    "jsonrpc": "2.0",
                    "id": step,
                    "method": "tools/call",
                    "params": {"name": name, "arguments": arguments},
                }
                answer = await post(call)
                if answer is None:
                    outcome = f"{step}: still refused"
                    break
                result = _rpc(answer).get("result") or {}
                if answer.status_code != 200 or result.get("isError"):
                    outcome = f"{step}: HTTP {answer.status_code} {str(result)[:80]}"
                    break
    seconds = min(time.monotonic() - started, INNOCENT_BOUND)
    if outcome != "ok" and time.monotonic() >= deadline:
        outcome = f"gave up after {INNOCENT_BOUND:g} s ({outcome})"
    return {"wait_s": round(seconds, 2), "told_to_wait": told_to_wait, "outcome": outcome}


async def _under_attack(url: str, pid: int, attack: Attack, picture: bytes) -> dict[str, Any]:
    stop = asyncio.Event()
    reset_peak(pid)
    attacking = asyncio.create_task(attack(url, stop))
    await asyncio.sleep(3.0)  # the attack in place
    during = proc_status(pid).get("VmRSS", 0) / MB
    try:
        result = await innocent(url, picture)
    finally:
        stop.set()
        attacking.cancel()
        await asyncio.gather(attacking, return_exceptions=True)
    peak = proc_status(pid).get("VmHWM", 0) / MB
    return {**result, "rss_mb": round(during, 1), "peak_mb": round(peak, 1)}


def measure(case: str) -> dict[str, Any]:
    """One case, on a fresh emulator and server."""
    attack, env, extra_keys = CASES[case]
    picture = noise_png(1230, 1230)
    with tempfile.TemporaryDirectory() as scratch:
        settings = {
            "ATLAS_MCP_USER_KEYS": "1",
            "ATLAS_MCP_MAX_CONNECTIONS_PER_ADDRESS": "256",  # the default (the load sections lift it)
            "ATLAS_MCP_LOG_LEVEL": "WARNING",
            "ATLAS_MCP_SAVE": "0",
            "HOME": scratch,
            **env,
        }
        keys = (INNOCENT_KEY, *extra_keys)
        with (
            emulator_process(latency=0.5, api_keys=keys) as emulator,
            http_server_process(emulator.url, ready_timeout=60, **settings) as (url, pid, _),
        ):
            return asyncio.run(_under_attack(url, pid, attack, picture))


def run(cases: list[str] | None = None) -> dict[str, Any]:
    """Every case (or the ones named); plus ``worst``: the longest wait and the highest peak."""
    results: dict[str, Any] = {case: measure(case) for case in (cases or list(CASES))}
    slowest = max(results, key=lambda c: results[c]["wait_s"])
    biggest = max(results, key=lambda c: results[c]["peak_mb"])
    results["worst"] = {
        "wait_case": slowest,
        "wait_s": results[slowest]["wait_s"],
        "all_ok": all(r["outcome"] == "ok" for r in results.values()),
        "peak_case": biggest,
        "peak_mb": results[biggest]["peak_mb"],
    }
    return results


def section(ctx: Context) -> Section:
    """The innocent client under each attack (a quick run: the first case only)."""
    s = Section("Hosted isolation: an innocent client under attack")
    result = run(list(CASES)[:1] if ctx.quick else None)
    worst = result.pop("worst")
    s.add("Measured by `bench/isolation.py`: a fresh hosted server per case, the attack from 127.0.0.2,")
    s.add("an innocent client from 127.0.0.1 opening a session, uploading 1.5 MB and making a picture.")
    s.add("")
    s.table(
        ["case", "innocent waited", "told to wait", "outcome", "server RSS under attack", "peak"],
        [
            [
                c,
                f"{r['wait_s']} s",
                str(r["told_to_wait"]),
                str(r["outcome"])[:80],
                f"{r['rss_mb']} MB",
                f"{r['peak_mb']} MB",
            ]
            for c, r in result.items()
        ],
    )
    met = None if ctx.quick else bool(worst["all_ok"] and worst["wait_s"] < TARGET_SECONDS)
    s.rows.append(
        Row(
            f"Hosted isolation: longest wait of an innocent client ({worst['wait_case']})",
            f"{worst['wait_s']} s" + ("" if worst["all_ok"] else ", not served in every case"),
            f"served in every case, < {TARGET_SECONDS:g} s",
            met,
        )
    )
    s.rows.append(
        Row(
            f"Hosted isolation: server peak memory under attack ({worst['peak_case']})",
            f"{worst['peak_mb']} MB",
            f"< {TARGET_MB:g} MB",
            None if ctx.quick else worst["peak_mb"] < TARGET_MB,
        )
    )
    return s


def _print(results: dict[str, Any]) -> None:
    lines = [
        f"{case:18} waited {row['wait_s']:6.2f} s  told to wait {row['told_to_wait']:3}  "
        f"RSS {row['rss_mb']:6.1f} MB  peak {row['peak_mb']:6.1f} MB  {row['outcome']}"
        for case, row in results.items()
        if case != "worst"
    ]
    worst = results["worst"]
    lines.append(
        f"longest wait: {worst['wait_case']} {worst['wait_s']} s; highest peak: {worst['peak_case']} "
        f"{worst['peak_mb']} MB; served in every case: {worst['all_ok']}"
    )
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
    worst = results["worst"]
    return 0 if worst["all_ok"] and worst["wait_s"] < TARGET_SECONDS else 1
