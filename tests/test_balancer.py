"""The load balancer the replica tests stand behind: HAProxy from the distribution (tests/servers.py).

Three trivial replica processes behind it: requests are spread round robin; a 2025-era session
(its id minted by whichever replica answered ``initialize``) keeps going to that replica because
the balancer learns the id from the answer (without that, requests land on replicas that do not
know the session); an event stream passes through; a replica killed with SIGKILL costs no request.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from .servers import Balancer, haproxy_missing, replica_processes, unavailable

TIMEOUT = 10.0
Started = list[tuple[int, "subprocess.Popen[bytes]"]]


def _argv(i: int, port: int) -> list[str]:
    app = "tests.lb_replica:app"
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]


@pytest.fixture
def replicas() -> Iterator[Started]:
    reason = haproxy_missing()
    if reason:
        unavailable(reason)
    with replica_processes(_argv, 3, env=lambda i: {**os.environ, "REPLICA": f"r{i}"}) as started:
        yield started


def _sessions(base: str, sessions: int = 6, requests: int = 5) -> tuple[int, int]:
    """Open sessions through the balancer and use each: (requests answered 404, requests made)."""
    misrouted = made = 0
    with httpx.Client(timeout=TIMEOUT) as client:
        for _ in range(sessions):
            first = client.post(f"{base}/mcp", content=b"{}")
            session = first.headers["mcp-session-id"]
            for _ in range(requests):
                made += 1
                answer = client.post(f"{base}/mcp", content=b"{}", headers={"Mcp-Session-Id": session})
                if answer.status_code == 404:
                    misrouted += 1
                else:
                    assert answer.json()["replica"] == session.split("-")[0]
    return misrouted, made


def test_requests_are_spread_round_robin_and_sessions_stay_with_their_replica(replicas: Started) -> None:
    with Balancer([port for port, _ in replicas]) as lb:
        fresh = collections.Counter(
            httpx.get(f"{lb.url}/whoami", timeout=TIMEOUT).json()["replica"] for _ in range(30)
        )
        assert fresh == {"r1": 10, "r2": 10, "r3": 10}
        with httpx.Client(timeout=TIMEOUT) as client:  # one kept-alive connection: still each request
            kept = collections.Counter(client.get(f"{lb.url}/whoami").json()["replica"] for _ in range(30))
        assert kept == {"r1": 10, "r2": 10, "r3": 10}
        assert _sessions(lb.url) == (0, 30)
        with httpx.stream("GET", f"{lb.url}/events?n=5", timeout=TIMEOUT) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            events = [line for line in stream.iter_lines() if line.startswith("data:")]
        assert len(events) == 5


def test_without_learning_session_ids_requests_land_on_replicas_that_do_not_know_them(
    replicas: Started,
) -> None:
    with Balancer([port for port, _ in replicas], sticky=False) as lb:
        misrouted, made = _sessions(lb.url)
        assert misrouted > made // 2


def test_a_replica_killed_with_sigkill_costs_no_request(replicas: Started) -> None:
    with Balancer([port for port, _ in replicas]) as lb:
        _, victim = replicas[1]
        victim.kill()
        victim.wait(TIMEOUT)
        answered = collections.Counter(
            httpx.get(f"{lb.url}/whoami", timeout=TIMEOUT).json()["replica"] for _ in range(30)
        )
        assert sum(answered.values()) == 30 and "r2" not in answered
