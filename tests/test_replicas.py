"""Three replicas of the server on one PostgreSQL, behind HAProxy, driven by the SDK's own clients.

Real parts only: PostgreSQL from the distribution's binaries, three ``atlas-image-mcp serve
--transport http --stateless`` processes (the installed console script), HAProxy in round robin in
front of them, and the emulator served on loopback in this process so that its request log says
what reached "Atlas". Clients speak 2026-07-28 (every request stands alone), so no request needs to
land on any particular replica. What is shown:

* budgets are exact across replicas: 60 concurrent paid calls against a daily budget that allows
  20, and exactly 20 POSTs reach Atlas;
* one user's ``last`` and gallery continue whichever replica answers (and stay that user's);
* the sessions a key may hold are counted across replicas (two in-process replicas on one store);
* a replica killed with SIGKILL mid-job: its task is collected through another replica, and its
  calls are settled by another (one found by its prediction id, one that died before recording
  the id, found in Atlas' history by the fingerprint of its body);
* the store stopped and started again under load: paid calls are refused cleanly with nothing
  sent, ``/readyz`` says so without failing, and the replicas recover without a restart.

Without PostgreSQL or HAProxy these skip with the reason (and fail in CI, ATLAS_SERVERS_REQUIRED=1).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from atlas_image_mcp.http import create_http_app
from atlas_image_mcp.runtime import Runtime
from atlas_image_mcp.settings import Settings

from .conftest import TEST_KEY, make_api, text_of
from .emulation import Emulator
from .http_helpers import ENTRY_POINT, INITIALIZE, MCP_HEADERS, child_env, mcp_transport, serve_app
from .servers import Balancer, TempPostgres, haproxy_missing, replica_processes, unavailable
from .test_tasks import CreatedTask, TasksClient, get_task

pytestmark = [pytest.mark.subprocess, pytest.mark.timeout(240)]

GENERATE = "/api/v1/model/generateImage"
DEV = "black-forest-labs/flux-dev"  # $0.012 a picture in the emulator's catalogue
QUICK = {"prompt": "a lighthouse", "model": DEV, "width": 512, "height": 512, "return_image": "none",
         "save": False}  # fmt: skip
SECRET = "replica-task-secret-0123456789abcdef"
ALICE, BOB = "apikey-alice-replicas-000111222", "apikey-bob-replicas-000333444"
BEAT = 0.3  # replica heartbeat (seconds): one silent for 3 beats is dead
WAIT = 60.0  # the longest any condition below is waited for


@pytest.fixture
def balancer_here() -> None:
    reason = haproxy_missing()
    if reason:
        unavailable(reason)


@dataclass
class Deployment:
    """Three replicas behind HAProxy: the balancer's URL, each replica's URL and process."""

    url: str
    replicas: list[tuple[str, subprocess.Popen[bytes]]]
    logs: Path
    done: list[str] = field(default_factory=list)

    def kill(self, index: int) -> None:
        """SIGKILL replica ``index`` (from 0) and reap it."""
        proc = self.replicas[index][1]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def tails(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.logs.glob("*"))
        )


@contextmanager
def deployment(tmp_path: Path, store_url: str, atlas: str, **settings: str) -> Iterator[Deployment]:
    """Three replicas on ``store_url`` in front of the emulator at ``atlas``, HAProxy in front of them."""
    env = child_env(
        tmp_path,
        ATLASCLOUD_BASE_URL=atlas,
        ATLAS_MCP_DATABASE_URL=store_url,
        ATLAS_MCP_TASK_SECRET=SECRET,
        ATLAS_MCP_CONFIRM_ABOVE_USD="off",
        ATLAS_MCP_SAVE="0",
        ATLAS_MCP_DOWNLOAD_HOSTS="127.0.0.1",
        ATLAS_MCP_LOG_LEVEL="WARNING",
        ATLAS_MCP_REPLICA_HEARTBEAT_SECONDS=str(BEAT),
        **settings,
    )
    logs = tmp_path / "logs"
    logs.mkdir()

    def argv(i: int, port: int) -> list[str]:
        return [str(ENTRY_POINT), "serve", "--transport", "http", "--stateless", "--port", str(port)]

    with replica_processes(argv, 3, env=lambda i: env, logs=logs) as started:
        replicas = [(f"http://127.0.0.1:{port}", proc) for port, proc in started]
        for url, _ in replicas:
            until(lambda url=url: readyz(url)[1].get("store", {}).get("up") is True, f"{url} ready")
        with Balancer([port for port, _ in started]) as lb:
            found = Deployment(lb.url, replicas, logs)
            try:
                yield found
            except BaseException:
                sys.stderr.write(found.tails())  # what the replicas logged, with the failure
                raise


def readyz(base: str) -> tuple[int, dict[str, Any]]:
    try:
        answer = httpx.get(f"{base}/readyz", timeout=5)
    except httpx.TransportError:
        return 0, {}
    return answer.status_code, answer.json()


def until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Poll ``condition`` (bounded) until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.05)


async def eventually(condition: Callable[[], Any], what: str, within: float = WAIT) -> Any:
    """Await ``condition()`` (bounded by ``within`` seconds) until it returns something true."""
    with anyio.fail_after(within):
        while True:
            found = await condition()
            if found:
                return found
            await anyio.sleep(0.1)


@asynccontextmanager
async def client(base: str, key: str | None = None, *, tasks: bool = False) -> AsyncIterator[Client]:
    """An SDK client at 2026-07-28 (every request stands alone) over streamable HTTP."""
    headers = {"x-atlas-api-key": key} if key else {}
    transport = mcp_transport(base, "streamable-http", headers)
    extensions = [TasksClient()] if tasks else None
    async with Client(transport, mode="2026-07-28", extensions=extensions, read_timeout_seconds=60) as c:
        yield c


def posts(emulator: Emulator) -> list[dict[str, Any]]:
    return [dict(r.json) for r in emulator.requests if r.method == "POST" and r.path == GENERATE]


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(api_keys=[TEST_KEY, ALICE, BOB], latency=0.2)


# --- budgets ------------------------------------------------------------------------------------


async def test_sixty_concurrent_paid_calls_across_replicas_send_exactly_what_the_budget_allows(
    balancer_here: None, postgres: TempPostgres, emulator: Emulator, tmp_path: Path
) -> None:
    budget = Decimal("0.24")  # 20 pictures of flux-dev at $0.012
    with (
        serve_app(emulator.app) as atlas,
        deployment(
            tmp_path,
            postgres.new_database(),
            atlas,
            ATLASCLOUD_API_KEY=TEST_KEY,
            ATLAS_MCP_BUDGET_USD_PER_DAY=str(budget),
        ) as lb,  # fmt: skip
    ):
        results: list[Any] = []

        async def caller() -> None:
            async with client(lb.url) as c:
                async with anyio.create_task_group() as tg:
                    for _ in range(10):
                        tg.start_soon(one, c)

        async def one(c: Client) -> None:
            results.append(await c.call_tool("generate_image", QUICK))

        with anyio.fail_after(180):
            async with anyio.create_task_group() as tg:
                for _ in range(6):
                    tg.start_soon(caller)
            async with client(lb.url) as c:
                usage = (await c.call_tool("get_usage", {})).structured_content
    sent = emulator.count("POST", GENERATE)
    refused = [text_of(r) for r in results if r.is_error]
    assert len(results) == 60 and sent == 20
    assert sum(1 for r in results if not r.is_error) == 20
    assert len(refused) == 40 and all("Daily budget" in text for text in refused), refused[:3]
    assert usage is not None and Decimal(usage["spent_today_usd"]) == budget


# --- history --------------------------------------------------------------------------------------


async def test_one_users_last_and_gallery_continue_on_whichever_replica_answers(
    balancer_here: None, postgres: TempPostgres, emulator: Emulator, tmp_path: Path
) -> None:
    with (
        serve_app(emulator.app) as atlas,
        deployment(tmp_path, postgres.new_database(), atlas, ATLAS_MCP_USER_KEYS="1") as lb,
    ):
        (one, _), (two, _), (three, _) = lb.replicas
        with anyio.fail_after(120):
            async with client(one, ALICE) as alice:  # the first picture, made by replica 1
                first = (await alice.call_tool("generate_image", QUICK)).structured_content
            async with client(two, ALICE) as alice:  # 'last' on replica 2 is that picture
                edited = await alice.call_tool(
                    "edit_image",
                    {"prompt": "at night", "image": "last", "return_image": "none", "save": False},
                )
            async with client(three, ALICE) as alice, client(lb.url, ALICE) as through:
                here = (await alice.call_tool("show_gallery", {})).structured_content
                balanced = [
                    (await through.call_tool("show_gallery", {})).structured_content for _ in range(3)
                ]
            async with client(three, BOB) as bob:
                theirs = (await bob.call_tool("show_gallery", {})).structured_content
    assert first is not None and edited.is_error is False, text_of(edited)
    edit_body = posts(emulator)[-1]
    assert edit_body["image"] == first["outputs"][0]["url"]  # replica 2 knew replica 1's picture
    made = [edited.structured_content["prediction_id"], first["prediction_id"]]  # newest first
    assert here is not None and [p["prediction_id"] for p in here["pictures"]] == made
    assert all(g is not None and [p["prediction_id"] for p in g["pictures"]] == made for g in balanced)
    assert theirs is not None and theirs["pictures"] == []  # and it is Alice's alone


# --- sessions per key ------------------------------------------------------------------------------


def test_the_sessions_a_key_may_hold_are_counted_across_replicas(
    postgres: TempPostgres, emulator: Emulator
) -> None:
    """Two replicas (in this process) sharing one PostgreSQL: a key at its session limit on one is at
    it on the other; another key is not; a session closed on one frees a place on both."""
    url = postgres.new_database()

    def replica() -> Any:
        settings = Settings(user_keys=True, database_url=url, max_sessions_per_key=2, wait_seconds=5)
        return create_http_app(Runtime.create(settings, client=make_api(emulator, api_key=None), remote=True))

    def initialize(http: httpx.Client, base: str, key: str) -> httpx.Response:
        return http.post(f"{base}/mcp", headers={**MCP_HEADERS, "x-atlas-api-key": key}, json=INITIALIZE)

    with serve_app(replica()) as one, serve_app(replica()) as two, httpx.Client(timeout=10) as http:
        first = initialize(http, one, ALICE)
        assert first.status_code == 200 and initialize(http, two, ALICE).status_code == 200
        over = initialize(http, one, ALICE)  # the third, on either replica
        assert over.status_code == 429 and "2 open sessions" in over.json()["error"]["message"]
        assert initialize(http, two, ALICE).status_code == 429
        assert initialize(http, two, BOB).status_code == 200  # another key is not affected
        session = {"mcp-session-id": first.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
        closed = http.delete(f"{one}/mcp", headers={**MCP_HEADERS, "x-atlas-api-key": ALICE, **session})
        assert closed.status_code in (200, 204)
        assert initialize(http, two, ALICE).status_code == 200  # its place is free on the other one


# --- a replica killed mid-job ---------------------------------------------------------------------


class HeldAnswer:
    """In front of the emulator: once armed, the next generation POST is carried out (the job
    exists at Atlas) but its answer is held back until released, as if it were lost on the way."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.armed = False
        self.accepted = threading.Event()
        self.release = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (self.armed and scope["type"] == "http" and scope["method"] == "POST"
                and scope["path"] == GENERATE):  # fmt: skip
            await self.app(scope, receive, send)
            return
        self.armed = False
        held: list[Message] = []

        async def keep(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, keep)
        self.accepted.set()
        await anyio.to_thread.run_sync(self.release.wait, WAIT)
        try:
            for message in held:
                await send(message)
        except Exception:  # the replica that asked is dead: nobody reads it
            pass


async def test_a_replica_killed_mid_job_leaves_nothing_open_and_its_task_is_collected_elsewhere(
    balancer_here: None, postgres: TempPostgres, tmp_path: Path
) -> None:
    emulator = Emulator(api_keys=[TEST_KEY], latency=3.0)  # long enough to be killed in the middle
    front = HeldAnswer(emulator.app)
    with (
        serve_app(front) as atlas,
        deployment(tmp_path, postgres.new_database(), atlas, ATLASCLOUD_API_KEY=TEST_KEY) as lb,
    ):
        victim = lb.replicas[0][0]
        with anyio.fail_after(150):
            async with client(victim, tasks=True) as c:  # job 1: a task, on the replica about to die
                created = await c.session.call_tool("generate_image", QUICK, allow_claimed=True)
            assert isinstance(created, CreatedTask)

            front.armed = True  # job 2: Atlas takes it, but its answer never reaches the replica

            async def doomed() -> None:
                with anyio.move_on_after(WAIT):
                    async with client(victim) as c:
                        await c.call_tool("generate_image", {**QUICK, "prompt": "a lost answer"})

            async with anyio.create_task_group() as tg:
                tg.start_soon(_quietly, doomed)
                assert await anyio.to_thread.run_sync(front.accepted.wait, WAIT)
                lb.kill(0)  # SIGKILL: the replica's heartbeat stops, its calls are left open
                front.release.set()
                tg.cancel_scope.cancel()

            async with client(lb.url, tasks=True) as c:  # the task, through the other replicas

                async def finished() -> dict[str, Any] | None:
                    task = await get_task(c.session, created.task_id)
                    return task if task["status"] in ("completed", "failed", "cancelled") else None

                task = await eventually(finished, "the killed replica's task collected elsewhere")
                pids = set(emulator.predictions)

                async def settled() -> dict[str, Any] | None:
                    usage = (await c.call_tool("get_usage", {})).structured_content or {}
                    calls = {call["prediction_id"]: call for call in usage.get("largest_calls", [])}
                    return usage if set(calls) == pids and all(x["charged"] for x in calls.values()) else None

                usage = await eventually(settled, "both calls of the killed replica settled")
    assert task["status"] == "completed", task
    assert task["result"]["structuredContent"]["prediction_id"] in pids
    assert len(pids) == 2 and emulator.count("POST", GENERATE) == 2  # nothing was sent twice
    assert usage["by_day_and_model"][0]["estimated_calls"] == 0
    assert Decimal(usage["spent_today_usd"]) == Decimal("0.024")  # both charged, as Atlas charged them


async def _quietly(work: Callable[[], Any]) -> None:
    try:
        await work()
    except Exception:  # the call on a replica that was killed fails: that is the point
        pass


# --- the store down, under load --------------------------------------------------------------------


async def test_the_store_stopped_under_load_refuses_paid_calls_cleanly_and_recovers_by_itself(
    balancer_here: None, own_postgres: TempPostgres, emulator: Emulator, tmp_path: Path
) -> None:
    pg = own_postgres
    outcomes: list[tuple[str, str]] = []  # ("ok", prediction id) or ("refused", message), in order
    phase = {"now": "before"}
    with (
        serve_app(emulator.app) as atlas,
        deployment(tmp_path, pg.url, atlas, ATLASCLOUD_API_KEY=TEST_KEY) as lb,
    ):

        async def load(stop: anyio.Event) -> None:
            async with client(lb.url) as c:
                while not stop.is_set():
                    result = await c.call_tool("generate_image", QUICK)
                    if result.is_error:
                        outcomes.append((phase["now"] + ":refused", text_of(result)))
                    else:
                        pid = (result.structured_content or {})["prediction_id"]
                        outcomes.append((phase["now"] + ":ok", pid))

        def seen(kind: str) -> int:
            return sum(1 for what, _ in outcomes if what == kind)

        async def all_ready(up: bool) -> bool:
            found = [await anyio.to_thread.run_sync(readyz, url) for url, _ in lb.replicas]
            return all(status == 200 and body["store"]["up"] is up for status, body in found)

        stop = anyio.Event()
        with anyio.fail_after(200):
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(load, stop)
                await eventually(lambda: _now(seen("before:ok") >= 6), "calls going through")
                phase["now"] = "down"
                await anyio.to_thread.run_sync(pg.stop)
                await eventually(lambda: _now(seen("down:refused") >= 6), "paid calls refused")
                await eventually(lambda: all_ready(False), "every replica saying the store is down")
                sent_while_down = emulator.count("POST", GENERATE)
                refused_while_down = seen("down:refused")
                earlier = next(pid for what, pid in outcomes if what == "before:ok")
                async with client(lb.url) as c:  # what spends nothing works where it can
                    collected = await c.call_tool(
                        "get_prediction", {"prediction_id": earlier, "return_image": "none"}
                    )
                    models = await c.call_tool("list_models", {})
                    gallery = await c.call_tool("show_gallery", {})
                phase["now"] = "back"
                await anyio.to_thread.run_sync(pg.start)
                await eventually(lambda: _now(seen("back:ok") >= 6), "paid calls going through again")
                await eventually(lambda: all_ready(True), "every replica saying the store is up")
                stop.set()
            async with client(lb.url) as c:

                async def all_settled() -> dict[str, Any] | None:
                    usage = (await c.call_tool("get_usage", {"days": 1})).structured_content or {}
                    rows = usage.get("by_day_and_model", [])
                    return usage if rows and all(row["estimated_calls"] == 0 for row in rows) else None

                usage = await eventually(all_settled, "every call settled once the store is back")
    assert collected.is_error is False and (collected.structured_content or {})["status"] == "completed"
    assert models.is_error is False
    assert gallery.is_error is True and "cannot be reached" in text_of(gallery)  # the history is the store's
    ok = [pid for what, pid in outcomes if what.endswith(":ok")]
    refused = [text for what, text in outcomes if what.endswith(":refused")]
    assert refused_while_down >= 6 and seen("back:ok") >= 6
    assert all("nothing was sent" in text for text in refused), refused[:3]
    assert any("cannot be reached" in text and "reconnects by itself" in text for text in refused)
    assert "postgresql://atlas@" in " ".join(refused) and pg.password not in " ".join(refused)
    # every POST that reached Atlas is a call that answered with its prediction id: none unrecorded
    assert emulator.count("POST", GENERATE) == len(ok) == len(set(ok)) == len(emulator.predictions)
    assert sent_while_down <= len(ok)
    images = sum(row["images"] for row in usage["by_day_and_model"])
    assert images == len(ok)  # the ledger counts each of them, the ones finished during the outage too


async def _now(value: bool) -> bool:
    return value
