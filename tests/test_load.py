"""Load (the regular-suite size): 50 generate_image calls in flight at once over streamable HTTP.

The emulator runs in its own process at 1 s per prediction; the MCP server runs in this process
under a real uvicorn, so its memory and file descriptors are this process's. The benchmark
(``bench/run.py``) runs the same scenario at 200 and 500 calls with :mod:`tests.loadgen`.

Asserted: every call completes within a generous bound (the benchmark measures, this only catches
serialisation or a hang); no file descriptor leaks, counted by kind so that the timing of other
processes cannot move the numbers (while the server runs only its keep-alive pool to the emulator
may hold sockets, never more than its limit, and nothing that is not a socket grows; once it
stops, everything is back to where it started); memory returns near its baseline.
"""

from __future__ import annotations

import gc
from urllib.parse import urlsplit

import httpx
import pytest

from atlas_image_mcp.client import AtlasClient, ClientOptions
from atlas_image_mcp.constants import MAX_CONNECTIONS
from atlas_image_mcp.http import create_http_app
from atlas_image_mcp.runtime import Runtime
from atlas_image_mcp.settings import Settings

from .loadgen import (
    LOAD_ARGUMENTS,
    RssSampler,
    fd_census,
    rss_bytes,
    run_load_sync,
    serve_in_thread,
    start_emulator_process,
)

pytestmark = pytest.mark.subprocess

KEY = "apikey-LOADTEST-0123456789"
CALLS, SESSIONS = 50, 10
LATENCY = 1.0
FD_SLACK = 2  # descriptors the interpreter may open lazily (an import's file, a selector)
MB = 1024 * 1024


def test_fifty_concurrent_calls_over_http_all_complete_without_leaking(tmp_path) -> None:
    with start_emulator_process(latency=LATENCY) as emulator_url:
        upstream = urlsplit(emulator_url).port or 80
        gc.collect()
        fds_idle = fd_census(upstream)
        settings = Settings(api_key=KEY, base_url=emulator_url, save=False, wait_seconds=30)
        runtime = Runtime.create(
            settings, remote=True, client=AtlasClient(ClientOptions(base_url=emulator_url), api_key=KEY)
        )
        with serve_in_thread(create_http_app(runtime), graceful=5.0) as base:
            url = f"{base}/mcp"
            warm = run_load_sync(url, calls=2, sessions=1, arguments=LOAD_ARGUMENTS)  # imports, first pool
            assert warm.ok, warm.errors
            gc.collect()
            fds_before, rss_before = fd_census(upstream), rss_bytes()
            with RssSampler(interval=0.01) as sampler:
                stats = run_load_sync(url, calls=CALLS, sessions=SESSIONS, arguments=LOAD_ARGUMENTS)
            submits = _submit_times(emulator_url)[-CALLS:]
            gc.collect()
            fds_after, rss_after = fd_census(upstream), rss_bytes()
            # A second round: a leak shows as growth beyond what the first round left behind.
            again = run_load_sync(url, calls=CALLS, sessions=SESSIONS, arguments=LOAD_ARGUMENTS)
            gc.collect()
            fds_again, rss_again = fd_census(upstream), rss_bytes()
        # the server has stopped and its Atlas client is closed: its sockets are gone, at once
        gc.collect()
        fds_stopped = fd_census(upstream)

    summary = stats.summary() | {
        "rss_before_mb": round(rss_before / MB, 1),
        "rss_peak_mb": round(sampler.peak / MB, 1),
        "rss_after_mb": round(rss_after / MB, 1),
        "rss_after_second_round_mb": round(rss_again / MB, 1),
        "fds": (fds_idle, fds_before, fds_after, fds_again, fds_stopped),
    }
    print(f"\nload: {summary}")  # noqa: T201 - the numbers, for -s runs

    assert stats.completed == CALLS, (summary, stats.errors)
    assert again.completed == CALLS, (again.summary(), again.errors)
    assert stats.tool_errors == 0 and stats.exceptions == 0
    # In flight together, not one after the other: on the emulator's clock, many submits arrived
    # before the first of them could have finished (1 s); a server that serialised calls would
    # let one through per second.
    assert sum(1 for at in submits if at - submits[0] < LATENCY) >= SESSIONS, submits
    # Descriptors: while the server runs, only its keep-alive connections to the emulator may stay
    # open (at most its pool limit); nothing that is not a socket grows from round to round; once
    # it stops, no socket to the emulator is left and nothing else is either.
    for census in (fds_before, fds_after, fds_again):
        assert census["upstream"] <= MAX_CONNECTIONS, summary
    assert fds_after["not_sockets"] <= fds_before["not_sockets"] + FD_SLACK, summary
    assert fds_again["not_sockets"] <= fds_after["not_sockets"] + FD_SLACK, summary
    assert fds_stopped["upstream"] == 0, summary
    assert fds_stopped["not_sockets"] <= fds_idle["not_sockets"] + FD_SLACK, summary
    assert fds_stopped["other_sockets"] <= fds_idle["other_sockets"] + FD_SLACK, summary
    # Memory is bounded during the load and comes back near the baseline afterwards.
    assert sampler.peak - rss_before < 200 * MB, summary
    assert rss_after - rss_before < max(40 * MB, 0.5 * (sampler.peak - rss_before)), summary
    assert rss_again - rss_after < 15 * MB, summary  # the same load again does not keep growing


def _submit_times(emulator_url: str) -> list[float]:
    """When (emulator clock) each generate POST arrived, oldest first (the emulator's request log)."""
    answer = httpx.get(
        f"{emulator_url}/_emulator/requests",
        params={"method": "POST", "path": "/api/v1/model/generateImage"},
        timeout=10,
    )
    return sorted(float(r["at"]) for r in answer.json()["requests"])
