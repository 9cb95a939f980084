"""Load (issue 5, the regular-suite size): 50 generate_image calls in flight at once over streamable HTTP.

The emulator runs in its own process at 1 s per prediction; the MCP server runs in this process
under a real uvicorn, so its memory and file descriptors are this process's. The benchmark
(``bench/run.py``) runs the same scenario at 200 and 500 calls with :mod:`tests.loadgen`.

Asserted: every call completes; wall time under a generous bound (the benchmark measures, this
only catches serialisation or a hang); no file descriptor leaks (counted before and after, with
the server's keep-alive pool allowed for while it runs and nothing left once it stops); memory
returns near its baseline.
"""

from __future__ import annotations

import gc
import time

import pytest

from atlas_image_mcp.client import AtlasClient
from atlas_image_mcp.http import create_http_app
from atlas_image_mcp.runtime import Runtime
from atlas_image_mcp.settings import Settings

from .loadgen import (
    LOAD_ARGUMENTS,
    RssSampler,
    open_fds,
    rss_bytes,
    run_load_sync,
    serve_in_thread,
    start_emulator_process,
)

pytestmark = pytest.mark.subprocess

KEY = "apikey-LOADTEST-0123456789"
CALLS, SESSIONS = 50, 10
WALL_BOUND = 30.0
FD_SLACK = 8
MB = 1024 * 1024


def _settle() -> None:
    gc.collect()
    time.sleep(0.3)


def test_fifty_concurrent_calls_over_http_all_complete_without_leaking(tmp_path) -> None:
    with start_emulator_process(latency=1.0) as emulator_url:
        _settle()
        fds_idle = open_fds()
        settings = Settings(api_key=KEY, base_url=emulator_url, save=False, wait_seconds=30)
        runtime = Runtime.create(
            settings, remote=True, client=AtlasClient(base_url=emulator_url, api_key=KEY)
        )
        with serve_in_thread(create_http_app(runtime), graceful=5.0) as base:
            url = f"{base}/mcp"
            warm = run_load_sync(url, calls=2, sessions=1, arguments=LOAD_ARGUMENTS)  # imports, first pool
            assert warm.ok, warm.errors
            _settle()
            fds_before, rss_before = open_fds(), rss_bytes()
            with RssSampler(interval=0.01) as sampler:
                stats = run_load_sync(url, calls=CALLS, sessions=SESSIONS, arguments=LOAD_ARGUMENTS)
            _settle()
            fds_after, rss_after = open_fds(), rss_bytes()
            # A second round: a leak shows as growth beyond what the first round left behind.
            again = run_load_sync(url, calls=CALLS, sessions=SESSIONS, arguments=LOAD_ARGUMENTS)
            _settle()
            fds_again, rss_again = open_fds(), rss_bytes()
        _settle()
        fds_stopped = open_fds()

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
    assert stats.wall_seconds < WALL_BOUND, summary
    # 50 calls at 1 s each cannot finish in under ~50 s unless they really were in flight together
    assert stats.percentile(50) < WALL_BOUND
    # Descriptors: while the server runs, only its keep-alive connections to the emulator may stay
    # open (at most one per call in flight); once it stops, the count is back to where it started.
    assert fds_after <= fds_before + CALLS + FD_SLACK, summary
    assert fds_again <= fds_after + FD_SLACK, summary
    assert fds_stopped <= fds_idle + FD_SLACK, summary
    # Memory is bounded during the load and comes back near the baseline afterwards.
    assert sampler.peak - rss_before < 200 * MB, summary
    assert rss_after - rss_before < max(40 * MB, 0.5 * (sampler.peak - rss_before)), summary
    assert rss_again - rss_after < 15 * MB, summary  # the same load again does not keep growing
