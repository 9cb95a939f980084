"""Picture jobs as MCP tasks, through real clients against the server on the emulator.

The 2026-07-28 tasks extension (``io.modelcontextprotocol/tasks``) is driven with the SDK's own
client, which declares the extension and resolves ``resultType: "task"`` through a
``ResultClaim``; the 2025-11-25 form (what VS Code speaks), which the SDK client cannot parse, with
raw JSON-RPC over HTTP. A "slow job" is one whose emulator clock the test has not moved yet: it
stays ``processing`` until the test advances the clock, so nothing here waits on wall-clock time.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Literal

import anyio
import httpx
import pytest
from mcp import Client
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, Request, RequestParams, Result, TextContent
from pydantic import ConfigDict, TypeAdapter

from atlas_image_mcp.constants import MAX_TASKS_PER_OWNER
from atlas_image_mcp.http import create_http_app
from atlas_image_mcp.polling import PollSchedule
from atlas_image_mcp.runtime import Runtime
from atlas_image_mcp.server import make_server
from atlas_image_mcp.settings import Settings
from atlas_image_mcp.taskids import TaskIds
from atlas_image_mcp.tasks import TaskTool, current_task
from atlas_image_mcp.tasks_legacy import TasksWithLegacyForm
from atlas_image_mcp.tools.handoff import poll_interval_ms

from .conftest import TEST_KEY, FakeClock, make_api, text_of
from .emulation import Emulator, Fault
from .http_helpers import RawSession, mcp_transport, rpc_body, serve_app

pytestmark = pytest.mark.timeout(60)

TASKS = "io.modelcontextprotocol/tasks"
TERMINAL = {"completed", "failed", "cancelled"}
KEY_B = "apikey-BBBB-second-user-987654321"
SECRET = "task-secret-0123456789-abcdefghij"
SLOW = 60.0  # emulator seconds a job takes: it finishes only when the test moves the clock
POLL = "/api/v1/model/prediction/*"
PICTURE = {"prompt": "a red fox in the snow", "width": 512, "height": 512}

_MODERN_HEADERS = {
    "accept": "application/json, text/event-stream",
    "content-type": "application/json",
    "mcp-protocol-version": "2026-07-28",
}
_ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
}


# --- a client that uses tasks (what the SDK lets a client declare and resolve) ---------------------


class TaskIdParams(RequestParams):
    task_id: str


class GetTask(Request[TaskIdParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    params: TaskIdParams
    name_param = "taskId"  # mirrored into the Mcp-Name header, as SEP-2663 requires


class CancelTask(Request[TaskIdParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    params: TaskIdParams
    name_param = "taskId"


class CreatedTask(Result):
    """The flat ``CreateTaskResult`` of SEP-2663."""

    model_config = ConfigDict(extra="allow")
    result_type: Literal["task"] = "task"
    task_id: str
    status: str
    created_at: str
    last_updated_at: str
    ttl_ms: int | None
    poll_interval_ms: int | None = None
    status_message: str | None = None


_ANY = TypeAdapter(dict[str, Any])


async def get_task(session: Any, task_id: str) -> dict[str, Any]:
    return await session.send_request(GetTask(params=TaskIdParams(task_id=task_id)), _ANY)


async def cancel_task(session: Any, task_id: str) -> dict[str, Any]:
    return await session.send_request(CancelTask(params=TaskIdParams(task_id=task_id)), _ANY)


async def until_ended(session: Any, task_id: str) -> dict[str, Any]:
    """Poll ``tasks/get`` as a client honouring the task's ``pollIntervalMs`` does, until it ends."""
    while True:
        task = await get_task(session, task_id)
        if task["status"] in TERMINAL:
            return task
        await anyio.sleep(task["pollIntervalMs"] / 1000)


class TasksClient(ClientExtension):
    """Declares the extension; a task result is followed to its end and returned as the tool result."""

    identifier = TASKS

    def claims(self) -> list[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=CreatedTask, resolve=self._resolve)]

    @staticmethod
    async def _resolve(created: CreatedTask, ctx: ClaimContext) -> CallToolResult:
        task = await until_ended(ctx.session, created.task_id)
        assert task["status"] == "completed", task
        return CallToolResult.model_validate(task["result"])


# --- servers ----------------------------------------------------------------------------------


def hosted_runtime(emulator: Emulator, *, user_keys: bool = False, **changes: Any) -> Runtime:
    api = make_api(emulator, api_key=None if user_keys else TEST_KEY)
    settings = Settings(
        api_key=None if user_keys else TEST_KEY, wait_seconds=20, user_keys=user_keys, **changes
    )
    return Runtime.create(settings, client=api, remote=True)


@contextmanager
def hosted(emulator: Emulator, **changes: Any) -> Iterator[str]:
    """The HTTP app (as ``serve --transport http`` builds it) on 127.0.0.1, in front of ``emulator``."""
    with serve_app(create_http_app(hosted_runtime(emulator, **changes))) as base:
        yield base


@asynccontextmanager
async def modern(base: str, *, tasks: bool = True, key: str | None = None) -> AsyncIterator[Client]:
    """An SDK client at 2026-07-28 over streamable HTTP, declaring the tasks extension or not."""
    headers = {"x-atlas-api-key": key} if key else {}
    extensions = [TasksClient()] if tasks else None
    transport = mcp_transport(base, "streamable-http", headers)
    async with Client(transport, mode="2026-07-28", extensions=extensions, read_timeout_seconds=30) as client:
        yield client


@pytest.fixture
def slow(clock: FakeClock) -> Emulator:
    return Emulator(api_keys=[TEST_KEY, KEY_B], latency=SLOW, clock=clock)


def only_prediction(emulator: Emulator) -> str:
    (pid,) = emulator.predictions
    return pid


# --- the 2026-07-28 extension -----------------------------------------------------------------


async def test_a_slow_picture_is_a_task_at_once_and_tasks_get_inlines_the_picture(
    slow: Emulator, clock: FakeClock
) -> None:
    with hosted(slow) as base:
        async with modern(base) as client:
            with anyio.fail_after(30):
                created = await client.session.call_tool("generate_image", PICTURE, allow_claimed=True)
                assert isinstance(created, CreatedTask), created
                pid = only_prediction(slow)
                assert created.status == "working" and created.task_id.startswith("t1.")
                assert isinstance(created.ttl_ms, int) and created.ttl_ms > 0
                assert isinstance(created.poll_interval_ms, int) and created.poll_interval_ms > 0
                working = await get_task(client.session, created.task_id)
                assert working["resultType"] == "complete" and working["status"] == "working"
                assert pid in working["statusMessage"] and "result" not in working
                assert working["createdAt"] == created.created_at
                clock.advance(SLOW)
                done = await until_ended(client.session, created.task_id)
    assert done["status"] == "completed", done
    result = CallToolResult.model_validate(done["result"])
    assert result.is_error is False
    data = result.structured_content or {}
    assert data["status"] == "completed" and data["prediction_id"] == pid
    assert (data["outputs"][0]["width"], data["outputs"][0]["height"]) == (512, 512)
    kinds = [block.type for block in result.content]
    assert kinds[0] == "text" and "image" in kinds and "resource_link" in kinds
    assert pid in text_of(result)


async def test_a_client_with_the_extension_gets_the_picture_through_call_tool_as_usual(
    emulator: Emulator,
) -> None:
    with hosted(emulator) as base:
        async with modern(base) as client:
            with anyio.fail_after(30):
                result = await client.call_tool("generate_image", PICTURE)
    assert result.is_error is False
    assert (result.structured_content or {})["status"] == "completed"
    assert any(block.type == "image" for block in result.content)


async def test_a_client_without_the_extension_gets_the_usual_one_call_result(emulator: Emulator) -> None:
    with hosted(emulator) as base:
        async with modern(base, tasks=False) as client:
            with anyio.fail_after(30):
                result = await client.session.call_tool("generate_image", PICTURE, allow_claimed=True)
                assert isinstance(result, CallToolResult)
                with pytest.raises(MCPError) as refused:
                    await get_task(client.session, "t1.anything.at-all")
    assert (result.structured_content or {})["status"] == "completed"
    assert any(block.type == "image" for block in result.content)
    assert refused.value.error.code == -32021
    assert refused.value.error.data == {"requiredCapabilities": {"extensions": {TASKS: {}}}}


async def test_cancelling_stops_following_the_job_and_says_atlas_may_still_bill(
    slow: Emulator, clock: FakeClock
) -> None:
    with hosted(slow) as base:
        async with modern(base) as client:
            with anyio.fail_after(30):
                created = await client.session.call_tool("generate_image", PICTURE, allow_claimed=True)
                assert isinstance(created, CreatedTask)
                ack = await cancel_task(client.session, created.task_id)
                cancelled = await get_task(client.session, created.task_id)
                clock.advance(SLOW)  # the job finishes at Atlas anyway
                again = await cancel_task(client.session, created.task_id)
                after = await get_task(client.session, created.task_id)
    assert ack["resultType"] == "complete" and not {"taskId", "status", "result"} & set(ack)
    assert again["resultType"] == "complete"  # cancelling an ended task is acknowledged the same way
    pid = only_prediction(slow)
    assert cancelled["status"] == after["status"] == "cancelled"
    message = cancelled["statusMessage"]
    assert (
        pid in message and "may still finish" in message and "bill" in message and "get_prediction" in message
    )


async def test_a_cancelled_task_abandons_the_poll_it_was_waiting_on(
    clock: FakeClock, settings: Settings
) -> None:
    polled, abandoned = anyio.Event(), anyio.Event()

    async def held(seconds: float) -> None:  # the emulator's delay: held until the poll is given up
        polled.set()
        try:
            await anyio.sleep_forever()
        finally:
            abandoned.set()

    emulator = Emulator(api_keys=[TEST_KEY], latency=SLOW, clock=clock, sleep=held)
    emulator.inject(Fault.delay(1.0), method="GET", path=POLL)
    runtime = Runtime.create(settings, client=make_api(emulator))
    try:
        async with Client(make_server(runtime), mode="2026-07-28", extensions=[TasksClient()]) as client:
            with anyio.fail_after(30):
                created = await client.session.call_tool("generate_image", PICTURE, allow_claimed=True)
                assert isinstance(created, CreatedTask)
                await polled.wait()  # the task's poll of Atlas is in flight
                await cancel_task(client.session, created.task_id)
                await abandoned.wait()  # ... and cancelling the task gave it up
                assert (await get_task(client.session, created.task_id))["status"] == "cancelled"
    finally:
        await runtime.aclose()
    assert emulator.count("GET", POLL) == 1


async def test_a_task_sends_no_progress_notifications(emulator: Emulator, settings: Settings) -> None:
    seen: list[Any] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        seen.append((value, message))

    runtime = Runtime.create(settings, client=make_api(emulator))
    try:
        async with Client(make_server(runtime), mode="2026-07-28", extensions=[TasksClient()]) as client:
            with anyio.fail_after(30):
                result = await client.call_tool("generate_image", PICTURE, progress_callback=progress)
    finally:
        await runtime.aclose()
    assert result.is_error is False and (result.structured_content or {})["status"] == "completed"
    assert seen == []  # SEP-2663: progress becomes the task's statusMessage instead


async def test_what_ends_before_atlas_accepts_a_job_is_answered_in_the_call(slow: Emulator) -> None:
    with hosted(slow) as base:
        async with modern(base) as client:
            with anyio.fail_after(30):
                dry = await client.session.call_tool(
                    "generate_image", {**PICTURE, "dry_run": True}, allow_claimed=True
                )
                bad = await client.session.call_tool(
                    "generate_image", {**PICTURE, "width": 5}, allow_claimed=True
                )
                later = await client.session.call_tool(
                    "generate_image", {**PICTURE, "wait": False}, allow_claimed=True
                )
    assert isinstance(dry, CallToolResult) and (dry.structured_content or {})["status"] == "dry_run"
    assert isinstance(bad, CallToolResult) and bad.is_error is True
    assert (
        isinstance(later, CallToolResult)
        and (later.structured_content or {})["prediction_id"] in slow.predictions
    )


async def test_a_failed_job_is_a_completed_task_with_a_tool_error(slow: Emulator, clock: FakeClock) -> None:
    with hosted(slow) as base:
        async with modern(base) as client:
            with anyio.fail_after(30):
                created = await client.session.call_tool(
                    "generate_image", {**PICTURE, "prompt": "a fox [emulator:fail]"}, allow_claimed=True
                )
                assert isinstance(created, CreatedTask)
                clock.advance(SLOW)
                done = await until_ended(client.session, created.task_id)
    assert done["status"] == "completed" and done["result"]["isError"] is True
    assert "failed" in done["statusMessage"] and only_prediction(slow) in done["statusMessage"]


async def test_another_users_task_is_not_found(slow: Emulator) -> None:
    with hosted(slow, user_keys=True, task_secret=SECRET) as base:
        async with modern(base, key=TEST_KEY) as alice, modern(base, key=KEY_B) as bob:
            with anyio.fail_after(30):
                created = await alice.session.call_tool("generate_image", PICTURE, allow_claimed=True)
                assert isinstance(created, CreatedTask)
                for attempt in (get_task, cancel_task):
                    with pytest.raises(MCPError) as refused:
                        await attempt(bob.session, created.task_id)
                    assert refused.value.error.code == -32602
                assert (await get_task(alice.session, created.task_id))["status"] == "working"


async def test_a_task_survives_a_restart_and_is_read_on_another_replica(
    slow: Emulator, clock: FakeClock
) -> None:
    with hosted(slow, user_keys=True, task_secret=SECRET) as first:
        async with modern(first, key=TEST_KEY) as client:
            with anyio.fail_after(30):
                created = await client.session.call_tool("generate_image", PICTURE, allow_claimed=True)
    assert isinstance(created, CreatedTask)  # ... and that server is gone now
    clock.advance(SLOW)
    with hosted(slow, user_keys=True, task_secret=SECRET) as second:
        async with modern(second, key=TEST_KEY) as client, modern(second, key=KEY_B) as other:
            with anyio.fail_after(30):
                with pytest.raises(MCPError) as refused:
                    await get_task(other.session, created.task_id)
                done = await until_ended(client.session, created.task_id)
    assert refused.value.error.code == -32602
    assert done["status"] == "completed" and done["createdAt"] == created.created_at
    result = CallToolResult.model_validate(done["result"])
    assert (result.structured_content or {})["prediction_id"] == only_prediction(slow)
    assert any(block.type == "image" for block in result.content)


async def test_a_task_cancelled_through_one_replica_reads_as_cancelled_on_every_other(
    slow: Emulator, clock: FakeClock
) -> None:
    """Two replicas sharing the store (here the state folder's file) and the task secret: the
    cancellation, which the task id cannot carry, reaches the replica that runs the task too."""
    with (
        hosted(slow, user_keys=True, task_secret=SECRET) as first,
        hosted(slow, user_keys=True, task_secret=SECRET) as second,
    ):
        async with modern(first, key=TEST_KEY) as one, modern(second, key=TEST_KEY) as two:
            with anyio.fail_after(30):
                created = await one.session.call_tool("generate_image", PICTURE, allow_claimed=True)
                assert isinstance(created, CreatedTask)
                await cancel_task(two.session, created.task_id)
                clock.advance(SLOW)  # the job finishes at Atlas anyway
                seen = [await get_task(client.session, created.task_id) for client in (one, two, one)]
    assert [task["status"] for task in seen] == ["cancelled"] * 3
    assert "may still finish" in seen[0]["statusMessage"]


async def test_without_a_task_secret_a_restarted_server_does_not_know_the_task(slow: Emulator) -> None:
    with hosted(slow) as first:
        async with modern(first) as client:
            with anyio.fail_after(30):
                created = await client.session.call_tool("generate_image", PICTURE, allow_claimed=True)
    assert isinstance(created, CreatedTask)
    with hosted(slow) as second:
        async with modern(second) as client:
            with anyio.fail_after(30), pytest.raises(MCPError) as refused:
                await get_task(client.session, created.task_id)
    assert refused.value.error.code == -32602


async def test_a_task_id_names_no_secret_and_cannot_be_forged_or_borrowed() -> None:
    ids = TaskIds(SECRET.encode())
    state = {"t": "generate_image", "c": 1_700_000_000_000, "s": {"p": "abc123"}}
    task_id = ids.mint(state, "owner-a")
    assert ids.read(task_id, "owner-a") == state
    assert ids.read(task_id, "owner-b") is None
    assert TaskIds(b"another-secret-0123456789").read(task_id, "owner-a") is None
    version, body, tag = task_id.split(".")
    forged = json.dumps({**state, "c": 1_800_000_000_000}).encode()
    forged_body = base64.urlsafe_b64encode(forged).rstrip(b"=").decode()
    assert ids.read(f"{version}.{forged_body}.{tag}", "owner-a") is None
    for garbage in ("", "t1", "t1..", "t1.%%%.%%%", "x" * 10_000, f"{task_id}.extra"):
        assert ids.read(garbage, "owner-a") is None
    assert SECRET not in task_id


def test_the_suggested_poll_interval_follows_how_long_the_model_takes() -> None:
    schedule = PollSchedule()
    assert poll_interval_ms(schedule, "flux-fast") == 1000  # not seen yet
    schedule.observe("flux-fast", 1.2)
    schedule.observe("flux-slow", 40.0)
    schedule.observe("flux-mid", 8.0)
    assert poll_interval_ms(schedule, "flux-fast") == 300
    assert poll_interval_ms(schedule, "flux-mid") == 2000
    assert poll_interval_ms(schedule, "flux-slow") == 5000
    schedule.observe("flux-instant", 0.1)
    assert poll_interval_ms(schedule, "flux-instant") == 250


async def test_the_server_advertises_the_extension_and_no_legacy_tasks_capability(emulator: Emulator) -> None:
    with hosted(emulator) as base:
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.post(
                f"{base}/mcp",
                headers={**_MODERN_HEADERS, "mcp-method": "server/discover"},
                json={"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": _ENVELOPE}},
            )
    capabilities = rpc_body(response)["result"]["capabilities"]
    assert capabilities["extensions"][TASKS] == {} and "tasks" not in capabilities


# --- the 2025-11-25 form (VS Code) ------------------------------------------------------------


async def test_vscode_style_tasks_on_2025_11_25_get_list_result_and_cancel(
    slow: Emulator, clock: FakeClock
) -> None:
    with hosted(slow, user_keys=True) as base:
        async with httpx.AsyncClient(timeout=30) as http:
            session = RawSession(http, f"{base}/mcp", {"x-atlas-api-key": TEST_KEY})
            other = RawSession(http, f"{base}/mcp", {"x-atlas-api-key": KEY_B})
            with anyio.fail_after(30):
                initialized = await session.open()
                tools = (await session.call("tools/list"))["result"]["tools"]
                created = await session.call("tools/call", name="generate_image", arguments=PICTURE, task={})
                task = created["result"]["task"]
                working = (await session.call("tasks/get", taskId=task["taskId"]))["result"]
                listed = (await session.call("tasks/list"))["result"]["tasks"]
                await other.open()
                not_yours = (await other.call("tasks/list"))["result"]["tasks"]
                other_get = await other.call("tasks/get", taskId=task["taskId"])
                clock.advance(SLOW)
                result = (await session.call("tasks/result", taskId=task["taskId"]))[
                    "result"
                ]  # blocks until done
                done = (await session.call("tasks/get", taskId=task["taskId"]))["result"]
                late_cancel = await session.call("tasks/cancel", taskId=task["taskId"])
                second = await session.call("tools/call", name="generate_image", arguments=PICTURE, task={})
                second_id = second["result"]["task"]["taskId"]
                cancelled = (await session.call("tasks/cancel", taskId=second_id))["result"]
                no_result = await session.call("tasks/result", taskId=second_id)
                not_a_task = await session.call("tools/call", name="list_models", arguments={}, task={})
    assert initialized["capabilities"]["tasks"] == {
        "list": {},
        "cancel": {},
        "requests": {"tools": {"call": {}}},
    }
    support = {tool["name"]: tool.get("execution", {}).get("taskSupport") for tool in tools}
    assert support == {
        "generate_image": "optional",
        "edit_image": "optional",
        "generate_variations": "optional",
        "get_prediction": None,
        "upload_media": None,
        "export_image": None,
        "list_models": None,
        "show_gallery": None,
        "get_balance": None,
        "get_usage": None,
    }
    assert (
        task["status"] == "working" and isinstance(task["ttl"], int) and isinstance(task["pollInterval"], int)
    )
    assert "ttlMs" not in task and "resultType" not in created["result"]
    assert working["taskId"] == task["taskId"] and working["status"] == "working"
    assert [t["taskId"] for t in listed] == [task["taskId"]]
    assert not_yours == [] and other_get["error"]["code"] == -32602  # another user's task
    assert result["isError"] is False and result["structuredContent"]["status"] == "completed"
    assert result["_meta"]["io.modelcontextprotocol/related-task"] == {"taskId": task["taskId"]}
    assert any(block["type"] == "image" for block in result["content"])
    assert done["status"] == "completed"
    assert late_cancel["error"]["code"] == -32602  # 2025-11-25: an ended task cannot be cancelled
    assert cancelled["status"] == "cancelled" and "may still finish" in cancelled["statusMessage"]
    assert "error" in no_result
    assert not_a_task["error"]["code"] == -32601


async def test_a_tool_error_fails_a_2025_task_and_older_versions_see_no_tasks(
    slow: Emulator, clock: FakeClock
) -> None:
    with hosted(slow) as base:
        async with httpx.AsyncClient(timeout=30) as http:
            session = RawSession(http, f"{base}/mcp")
            older = RawSession(http, f"{base}/mcp")
            with anyio.fail_after(30):
                initialized = await session.open()
                created = await session.call(
                    "tools/call",
                    name="generate_image",
                    arguments={**PICTURE, "prompt": "x [emulator:fail]"},
                    task={},
                )
                task_id = created["result"]["task"]["taskId"]
                clock.advance(SLOW)
                result = (await session.call("tasks/result", taskId=task_id))["result"]
                failed = (await session.call("tasks/get", taskId=task_id))["result"]
                unlisted = await session.call("tasks/list")
                plain = await session.call(
                    "tools/call", name="generate_image", arguments={**PICTURE, "wait": False}
                )
                old = await older.open("2025-06-18")
                old_tools = (await older.call("tools/list"))["result"]["tools"]
    assert failed["status"] == "failed" and result["isError"] is True  # 2025-11-25: isError fails the task
    # one shared Atlas key: callers cannot be told apart, so no tasks/list (as 2025-11-25 advises)
    assert "list" not in initialized["capabilities"]["tasks"] and unlisted["error"]["code"] == -32601
    assert "task" not in plain["result"] and plain["result"]["structuredContent"]["status"] in (
        "created",
        "processing",
    )
    assert "tasks" not in old["capabilities"]
    assert all("execution" not in tool for tool in old_tools)


# --- lifetime and capacity of the task store (a small server on the same extension) -------------


def small_server(
    clock: FakeClock, release: anyio.Event, *, max_tasks: int = 100, max_result_bytes: int = 10**6
) -> MCPServer[Any]:
    tasks = TasksWithLegacyForm(
        TaskIds(b"small-server-secret"),
        ttl_seconds=60,
        poll_interval_ms=10,
        max_tasks=max_tasks,
        max_result_bytes=max_result_bytes,
        clock=clock,
    )

    @asynccontextmanager
    async def lifespan(_server: MCPServer[Any]) -> AsyncIterator[dict[str, Any]]:
        async with tasks.running():
            yield {}

    server: MCPServer[Any] = MCPServer("small", extensions=[tasks], lifespan=lifespan)
    tasks.bind(server)

    @server.tool()
    async def hold() -> str:
        await release.wait()
        return "released"

    @server.tool()
    async def quick() -> str:
        return "quick"

    @server.tool()
    async def hold_with(data: str) -> str:
        await release.wait()
        return str(len(data))

    @server.tool()
    async def quick_with(data: str) -> str:
        return str(len(data))

    @server.tool()
    async def job(n: int) -> str:
        run = current_task()
        assert run is not None
        run.handoff({"n": n})  # the state a task id carries
        return f"original {n}"

    async def rebuild(ctx: Any, state: Mapping[str, Any], created: float) -> CallToolResult:
        return CallToolResult(content=[TextContent(type="text", text=f"rebuilt {state['n']}")])

    tasks.add_tool("hold")
    tasks.add_tool("quick")
    tasks.add_tool("hold_with")
    tasks.add_tool("quick_with")
    tasks.add_tool("job", TaskTool(handoff=True, resume=rebuild))
    return server


async def test_a_task_is_kept_for_its_ttl_and_forgotten_after_it(clock: FakeClock) -> None:
    release = anyio.Event()
    async with Client(small_server(clock, release), mode="2026-07-28", extensions=[TasksClient()]) as client:
        with anyio.fail_after(30):
            created = await client.session.call_tool("hold", {}, allow_claimed=True)
            assert isinstance(created, CreatedTask) and created.ttl_ms == 60_000
            clock.advance(59)
            assert (await get_task(client.session, created.task_id))["status"] == "working"
            release.set()
            done = await until_ended(client.session, created.task_id)
            clock.advance(2)
            with pytest.raises(MCPError) as expired:
                await get_task(client.session, created.task_id)
    assert done["status"] == "completed" and done["result"]["content"][0]["text"] == "released"
    assert expired.value.error.code == -32602


async def test_past_its_capacity_the_server_answers_in_one_call(clock: FakeClock) -> None:
    release = anyio.Event()
    server = small_server(clock, release, max_tasks=1)
    async with Client(server, mode="2026-07-28", extensions=[TasksClient()]) as client:
        with anyio.fail_after(30):
            held = await client.session.call_tool("hold", {}, allow_claimed=True)
            full = await client.session.call_tool("quick", {}, allow_claimed=True)
            release.set()
            await until_ended(client.session, held.task_id)  # type: ignore[union-attr]
            room = await client.session.call_tool("quick", {}, allow_claimed=True)
    assert isinstance(held, CreatedTask)
    assert isinstance(full, CallToolResult) and full.content[0].text == "quick"  # type: ignore[union-attr]
    assert isinstance(room, CreatedTask)  # the finished task made room


@pytest.mark.parametrize(("budget", "second_read"), [(10**6, "original 7"), (1, "rebuilt 7")])
async def test_past_the_result_budget_a_delivered_result_is_rebuilt_from_its_id(
    clock: FakeClock, budget: int, second_read: str
) -> None:
    server = small_server(clock, anyio.Event(), max_result_bytes=budget)
    async with Client(server, mode="2026-07-28", extensions=[TasksClient()]) as client:
        with anyio.fail_after(30):
            created = await client.session.call_tool("job", {"n": 7}, allow_claimed=True)
            assert isinstance(created, CreatedTask)
            first = await until_ended(client.session, created.task_id)
            second = await until_ended(client.session, created.task_id)
    assert first["result"]["content"][0]["text"] == "original 7"  # always delivered once
    assert second["result"]["content"][0]["text"] == second_read
    assert second["createdAt"] == first["createdAt"]


# --- what a task holds, and for how long ----------------------------------------------------------


async def test_a_2025_task_lives_as_long_as_the_client_asked_within_the_servers_bound(
    slow: Emulator, clock: FakeClock
) -> None:
    with hosted(slow, user_keys=True) as base:
        async with httpx.AsyncClient(timeout=30) as http:
            session = RawSession(http, f"{base}/mcp", {"x-atlas-api-key": TEST_KEY})
            with anyio.fail_after(30):
                await session.open()
                asked = await session.call(
                    "tools/call", name="generate_image", arguments=PICTURE, task={"ttl": 90_000}
                )
                greedy = await session.call(
                    "tools/call", name="generate_image", arguments=PICTURE, task={"ttl": 10**12}
                )
                plain = await session.call("tools/call", name="generate_image", arguments=PICTURE, task={})
                odd = await session.call(
                    "tools/call", name="generate_image", arguments=PICTURE, task={"ttl": "x"}
                )
                got = (await session.call("tasks/get", taskId=asked["result"]["task"]["taskId"]))["result"]
                clock.advance(SLOW)
    bound = plain["result"]["task"]["ttl"]
    assert asked["result"]["task"]["ttl"] == 90_000 and got["ttl"] == 90_000
    assert greedy["result"]["task"]["ttl"] == bound  # the server's bound: the wait for the job plus an hour
    assert odd["error"]["code"] == -32602  # params.task.ttl must be a number


async def test_a_2025_call_that_ends_at_once_is_a_finished_task_holding_only_its_answer(
    emulator: Emulator,
) -> None:
    with hosted(emulator, user_keys=True) as base:
        async with httpx.AsyncClient(timeout=30) as http:
            session = RawSession(http, f"{base}/mcp", {"x-atlas-api-key": TEST_KEY})
            with anyio.fail_after(30):
                await session.open()
                big = "A" * 200_000  # not a picture: refused at once, like a dry run answers at once
                dry = await session.call(
                    "tools/call", name="generate_image", arguments={**PICTURE, "dry_run": True}, task={}
                )
                invalid = await session.call(
                    "tools/call", name="edit_image", arguments={"prompt": "x", "image": big}, task={}
                )
                dry_result = (await session.call("tasks/result", taskId=dry["result"]["task"]["taskId"]))[
                    "result"
                ]
                invalid_result = (
                    await session.call("tasks/result", taskId=invalid["result"]["task"]["taskId"])
                )["result"]
    assert (
        dry["result"]["task"]["status"] == "completed"
        and dry_result["structuredContent"]["status"] == "dry_run"
    )
    assert invalid["result"]["task"]["status"] == "failed" and invalid_result["isError"] is True
    assert big not in json.dumps(invalid_result)
    assert emulator.count("POST") == 0


async def test_one_caller_cannot_fill_the_task_store_or_push_out_anothers_task(emulator: Emulator) -> None:
    with hosted(emulator, user_keys=True) as base:
        async with httpx.AsyncClient(timeout=30) as http:
            alice = RawSession(http, f"{base}/mcp", {"x-atlas-api-key": TEST_KEY})
            bob = RawSession(http, f"{base}/mcp", {"x-atlas-api-key": KEY_B})
            dry = {**PICTURE, "dry_run": True}
            with anyio.fail_after(60):
                await alice.open()
                await bob.open()
                bobs = (await bob.call("tools/call", name="generate_image", arguments=dry, task={}))["result"]
                for _ in range(MAX_TASKS_PER_OWNER + 20):
                    created = await alice.call("tools/call", name="generate_image", arguments=dry, task={})
                    assert "task" in created["result"], created
                alices = await list_all(alice)
                bobs_list = await list_all(bob)
                bobs_result = await bob.call("tasks/result", taskId=bobs["task"]["taskId"])
    assert len(alices) == MAX_TASKS_PER_OWNER  # the oldest finished ones went
    assert [t["taskId"] for t in bobs_list] == [bobs["task"]["taskId"]]
    assert bobs_result["result"]["structuredContent"]["status"] == "dry_run"


async def list_all(session: RawSession) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = (await session.call("tasks/list", **({"cursor": cursor} if cursor else {})))["result"]
        tasks += page["tasks"]
        cursor = page.get("nextCursor")
        if not cursor:
            return tasks


async def test_what_tasks_hold_counts_their_arguments_until_they_end(clock: FakeClock) -> None:
    """A 2026-07-28 task keeps its arguments for its input rounds; they count against the budget."""
    release = anyio.Event()
    server = small_server(clock, release, max_result_bytes=100_000)
    big = "B" * 80_000
    async with Client(server, mode="2026-07-28", extensions=[TasksClient()]) as client:
        with anyio.fail_after(30):
            held = await client.session.call_tool("hold_with", {"data": big}, allow_claimed=True)
            over = await client.session.call_tool("quick_with", {"data": big}, allow_claimed=True)
            release.set()
            await until_ended(client.session, held.task_id)  # type: ignore[union-attr]
            room = await client.session.call_tool("quick_with", {"data": big}, allow_claimed=True)
    assert isinstance(held, CreatedTask)
    assert isinstance(over, CallToolResult) and over.content[0].text == "80000"  # type: ignore[union-attr]
    assert isinstance(room, CreatedTask)  # the ended task gave its arguments back
