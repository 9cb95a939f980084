"""MCP tasks: a tool call that answers at once with a task, and a result collected later.

The runtime and its wire form, the tasks extension (the older 2025-11-25 form is served by
:mod:`atlas_image_mcp.tasks_legacy`, on the same runtime):

* **The tasks extension** ``io.modelcontextprotocol/tasks`` (SEP-2663, protocol 2026-07-28), built on
  the SDK's :class:`~mcp.server.extension.Extension`: advertised under
  ``capabilities.extensions``; used only for a request whose client declared the extension in that
  request's ``_meta`` (never below 2026-07-28, and never by a client's ``params.task`` hint); a
  ``tools/call`` answers with a flat ``CreateTaskResult`` (``resultType: "task"``); ``tasks/get``
  inlines the result (``completed``, tool errors included as ``isError``) or the JSON-RPC error
  (``failed``); ``tasks/update`` answers input requests; ``tasks/cancel`` is an empty ack.
  ``tasks/result`` and ``tasks/list`` do not exist there (-32601); a client that did not declare
  the extension gets -32021 with ``data.requiredCapabilities``; an ``Mcp-Name`` header that is not
  the ``taskId`` gets -32020; an unknown task -32602.
How a tool runs as a task is declared per tool (:class:`TaskTool`). A tool's body always runs in a
task group the server owns (entered from the server lifespan with :meth:`TasksExtension.running`),
not in the request that started it, with progress and log notifications muted: the last progress
message becomes the task's ``statusMessage``. A *handoff* tool starts as an ordinary call and
becomes a task only when it calls :meth:`TaskRun.handoff` (a picture job does so once Atlas has
accepted it); if it finishes first, the call answers as it would without tasks. The state it hands
over goes into the task id (:mod:`atlas_image_mcp.taskids`), so any process with the same secret
can resolve the id with the tool's ``resume`` function, after a restart or on another replica.
What an id cannot carry (that the task was cancelled) goes to the :class:`TaskNotes` when there are
some (the server's store), so a task cancelled through one replica reads as cancelled on all.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Literal, Protocol, cast

import anyio
import anyio.abc
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import MCP_NAME_HEADER, decode_header_value
from mcp_types import (
    HEADER_MISMATCH,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    CallToolRequestParams,
    CallToolResult,
    InputRequiredResult,
    InputResponse,
    RequestParams,
    TextContent,
)
from mcp_types.methods import is_input_required, serialize_server_result
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from . import compat
from .constants import (
    MAX_STATUS_MESSAGE_CHARS,
    MAX_TASK_ID_CHARS,
    MAX_TASK_INPUT_ROUNDS,
    MAX_TASK_RESULTS_MB,
    MAX_TASKS,
    MAX_TASKS_PER_OWNER,
    MB,
    TASK_MIN_TTL_SECONDS,
    TASK_POLL_DEFAULT_MS,
)
from .redact import redact
from .taskids import TaskIds

__all__ = [
    "TASKS_EXTENSION",
    "TaskNotes",
    "TaskRun",
    "TaskTool",
    "TasksExtension",
    "current_task",
]

logger = logging.getLogger(__name__)

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"

Status = Literal["working", "input_required", "completed", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
_MODERN = frozenset(MODERN_PROTOCOL_VERSIONS)
_INPUT_RESPONSE: TypeAdapter[Any] = TypeAdapter(InputResponse)

Owner = Callable[[ServerRequestContext[Any, Any]], str]
#: Continues a handed-off job in this process: ``(ctx, state, created)`` -> the tool's result.
#: ``state`` is what the tool passed to :meth:`TaskRun.handoff`; ``created`` is the task's creation
#: time (Unix seconds). Raise ``MCPError`` for a protocol failure; anything else is a tool error.
Resume = Callable[[ServerRequestContext[Any, Any], Mapping[str, Any], float], Awaitable[HandlerResult]]


class TaskNotes(Protocol):
    """What a task's id cannot carry, shared by the processes that read the same ids: that the
    task was cancelled (with its status message), until the task's lifetime ends."""

    async def cancel(self, task_id: str, owner: str, message: str, until: float) -> None: ...

    async def cancelled(self, task_id: str, owner: str) -> str | None:
        """The status message of the owner's task if it was cancelled, else None."""
        ...


@dataclass(frozen=True)
class TaskTool:
    """How one tool runs as a task (for clients that use tasks; others always get one call)."""

    #: Only as a task: a client without tasks gets -32021 (2026-07-28) or -32601 (2025-11-25).
    required: bool = False
    #: The call becomes a task only when the tool calls :meth:`TaskRun.handoff`; before that (or if
    #: the tool finishes first) it answers like an ordinary call.
    handoff: bool = False
    #: Rebuilds a handed-off task from its id's state when this process does not have it.
    resume: Resume | None = None
    #: The statusMessage of a cancelled task, from its state (e.g. "Atlas may still bill it").
    cancelled: Callable[[Mapping[str, Any]], str] | None = None


class TaskIdParams(RequestParams):
    """Params of ``tasks/get``, ``tasks/cancel`` and ``tasks/result`` (``taskId`` on the wire)."""

    task_id: str


class UpdateTaskParams(TaskIdParams):
    """Params of ``tasks/update``: answers to the task's ``inputRequests``, by key."""

    input_responses: dict[str, Any] = Field(default_factory=dict)


def _iso(moment: float) -> str:
    return (
        datetime.fromtimestamp(moment, tz=timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _bounded(message: str | None) -> str | None:
    if not message:
        return None
    text = redact(message)
    return text if len(text) <= MAX_STATUS_MESSAGE_CHARS else text[: MAX_STATUS_MESSAGE_CHARS - 1] + "…"


def _wire(result: Any) -> dict[str, Any]:
    if isinstance(result, BaseModel):
        return result.model_dump(by_alias=True, mode="json", exclude_none=True)
    return dict(cast(Mapping[str, Any], result or {}))


def _tool_error(exc: Exception) -> CallToolResult:
    """A tool's exception as the tool result the SDK would have answered with (``isError``)."""
    return CallToolResult(content=[TextContent(type="text", text=redact(str(exc)))], is_error=True)


@dataclass(eq=False)
class _Task:
    """One task: its wire fields, its outcome, and what its background run waits on."""

    tool: str
    owner: str
    #: The call's arguments, kept only while a run may still need them (2026-07-28 input rounds).
    arguments: dict[str, Any]
    created: float
    ttl: float
    poll_ms: int
    version: str
    clock: Callable[[], float] = time.time
    task_id: str | None = None
    state: dict[str, Any] | None = None
    status: Status = "working"
    message: str | None = None
    updated: float = 0.0
    result: dict[str, Any] | None = None
    size: int = 0  # characters of the result held
    args_size: int = 0  # characters of the arguments held (0 once the run has ended)
    delivered: bool = False  # the result went out at least once
    error: dict[str, Any] | None = None
    #: The raw outcome (a result, or the MCPError) of a run that ended before it became a task.
    outcome: Any = None
    pending: dict[str, Any] = field(default_factory=dict)
    asked: dict[str, str] = field(default_factory=dict)
    answers: dict[str, Any] = field(default_factory=dict)
    request_state: str | None = None
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    ready: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)
    wake: anyio.Event = field(default_factory=anyio.Event)

    def __post_init__(self) -> None:
        self.updated = self.updated or self.created

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def is_error(self) -> bool:
        return bool(self.result and self.result.get("isError"))

    @property
    def held(self) -> int:
        """Characters this task holds: its result, and its arguments while its run may need them."""
        return self.size + self.args_size

    def note(self, message: str | None = None, poll_ms: int | None = None) -> None:
        if poll_ms is not None:
            self.poll_ms = max(1, int(poll_ms))
        if message and not self.terminal and (text := _bounded(message)) != self.message:
            self.message = text
            self.updated = self.clock()

    def move(self, status: Status, message: str | None = None, *, keep_message: bool = False) -> bool:
        """Change the status (terminal states never change); False when it had already ended."""
        if self.terminal:
            return False
        self.status = status
        if not keep_message:
            self.message = _bounded(message)
        self.updated = self.clock()
        if status in TERMINAL:
            self.done.set()
            self.wake.set()
        return True

    def fields(self) -> dict[str, Any]:
        """The ``Task`` object, in 2026-07-28 names."""
        out: dict[str, Any] = {
            "taskId": self.task_id,
            "status": self.status,
            "createdAt": _iso(self.created),
            "lastUpdatedAt": _iso(self.updated),
            "ttlMs": int(self.ttl * 1000),
            "pollIntervalMs": self.poll_ms,
        }
        if self.message:
            out["statusMessage"] = self.message
        return out

    def detailed(self) -> dict[str, Any]:
        """The 2026-07-28 ``DetailedTask``: the task plus its input requests, result or error."""
        out = self.fields()
        if self.status == "input_required":
            out["inputRequests"] = dict(self.pending)
        elif self.status == "completed":
            out["result"] = self.result
        elif self.status == "failed":
            out["error"] = self.error
        return out

    def inline(self) -> HandlerResult:
        """What the call answers when the run ended before it became a task (its own answer)."""
        if isinstance(self.outcome, MCPError):
            raise self.outcome
        return cast(HandlerResult, self.outcome)


_CURRENT: ContextVar[TaskRun | None] = ContextVar("atlas_image_mcp.tasks.current", default=None)


def current_task() -> TaskRun | None:
    """The task the calling code runs in, or None when it answers a call directly."""
    return _CURRENT.get()


class TaskRun:
    """What a tool running as a task may do about its task."""

    def __init__(self, extension: TasksExtension, task: _Task) -> None:
        self._extension = extension
        self._task = task

    def handoff(
        self,
        state: Mapping[str, Any] | None = None,
        *,
        poll_interval_ms: int | None = None,
        message: str | None = None,
    ) -> None:
        """Make this call a task now; the caller gets its ``CreateTaskResult`` while the tool goes on.

        ``state`` (small, JSON) is what the tool's ``resume`` needs to finish the job elsewhere: it
        becomes part of the task id. Without it the task lives only in this process.
        """
        self._extension._hand_off(self._task, state)
        self._task.note(message, poll_interval_ms)
        self._task.ready.set()

    def note(self, message: str | None = None, *, poll_interval_ms: int | None = None) -> None:
        """Update the task's ``statusMessage`` and the client's suggested poll interval."""
        self._task.note(message, poll_interval_ms)


def _declared(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Whether this request may get a task: 2026-07-28 or later, and the extension in its ``_meta``."""
    if ctx.protocol_version not in _MODERN:
        return False
    capabilities = ctx.session.client_capabilities
    return bool(capabilities and capabilities.extensions and TASKS_EXTENSION in capabilities.extensions)


def _missing_capability() -> MCPError:
    return MCPError(
        code=MISSING_REQUIRED_CLIENT_CAPABILITY,
        message=f"Missing required client capability: this request needs the {TASKS_EXTENSION} extension "
        "(declare it in the request's _meta clientCapabilities.extensions)",
        data={"requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}},
    )


def _not_found(task_id: str) -> MCPError:
    shown = task_id if len(task_id) <= 80 else task_id[:77] + "..."
    return MCPError(code=INVALID_PARAMS, message=f"Failed to retrieve task: Task not found ({shown!r})")


class TasksExtension(Extension):
    """The tasks runtime and the tasks extension, over one store of tasks kept in memory.

    ``ids`` signs the ids of handed-off tasks; ``owner`` names the caller of a request (a task is
    visible to its owner only). ``ttl_seconds`` is a task's lifetime (``ttlMs``) and the most a
    client may ask for (2025-11-25 ``params.task.ttl``, at least ``TASK_MIN_TTL_SECONDS``), after which
    it is forgotten. Never earlier, with exceptions that keep memory bounded: past
    ``max_tasks_per_owner`` tasks of one owner its own oldest finished ones go, past ``max_tasks``
    in all those of the owner holding the most (either way those that can be rebuilt from their id,
    or whose result went out, first); and ``max_result_bytes`` bounds what tasks hold (results, and
    the arguments a run may still need): past it the oldest delivered results that can be rebuilt
    from their id go (a later ``tasks/get`` rebuilds them from Atlas). Where nothing may go, no task
    is started (the call answers as without tasks, or the 2025-11-25 form says to try later).
    """

    identifier = TASKS_EXTENSION

    def __init__(
        self,
        ids: TaskIds,
        *,
        ttl_seconds: float,
        owner: Owner | None = None,
        poll_interval_ms: int = TASK_POLL_DEFAULT_MS,
        max_tasks: int = MAX_TASKS,
        max_tasks_per_owner: int = MAX_TASKS_PER_OWNER,
        max_result_bytes: int = MAX_TASK_RESULTS_MB * MB,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ids = ids
        self._ttl = float(ttl_seconds)
        self._min_ttl = min(float(TASK_MIN_TTL_SECONDS), self._ttl)
        self._max_per_owner = max(1, max_tasks_per_owner)
        self._owner: Owner = owner or (lambda ctx: "")
        self._poll_ms = poll_interval_ms
        self._max = max(1, max_tasks)
        self._max_result_bytes = max_result_bytes
        self._clock = clock
        self._tools: dict[str, TaskTool] = {}
        self._tasks: dict[str, _Task] = {}  # oldest first
        self._groups: list[anyio.abc.TaskGroup] = []
        self._server: MCPServer[Any] | None = None
        #: Where what an id cannot carry is shared with the other processes (None: nowhere).
        self.notes: TaskNotes | None = None

    # --- set-up ----------------------------------------------------------------------------

    def add_tool(self, name: str, spec: TaskTool | None = None) -> None:
        """Let ``name`` run as a task for clients that use tasks."""
        self._tools[name] = spec or TaskTool()

    def bind(self, server: MCPServer[Any]) -> None:
        """Run tools on ``server`` again for the input rounds of a task."""
        self._server = server

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Own the task group task runs live in; enter it from the server lifespan.

        Re-entrant (SSE enters a lifespan per connection): runs go to the oldest group still open,
        which over HTTP is the application's own, so a run outlives the connection that started it.
        """
        async with anyio.create_task_group() as group:
            self._groups.append(group)
            try:
                yield
            finally:
                self._groups.remove(group)
                group.cancel_scope.cancel()

    # --- the Extension surface -------------------------------------------------------------

    def methods(self) -> list[MethodBinding]:
        return [
            MethodBinding("tasks/get", TaskIdParams, self._get, protocol_versions=_MODERN),
            MethodBinding("tasks/update", UpdateTaskParams, self._update, protocol_versions=_MODERN),
            MethodBinding("tasks/cancel", TaskIdParams, self._cancel, protocol_versions=_MODERN),
        ]

    async def intercept_tool_call(
        self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        spec = self._tools.get(params.name)
        if spec is None or ctx.protocol_version not in _MODERN:
            return await call_next(ctx)  # params.task (2025-11-25) is not this form's: ignored here
        if not _declared(ctx):
            if spec.required:
                raise _missing_capability()
            return await call_next(ctx)
        task = self._start(ctx, params.name, params.arguments, spec, call_next)
        if task is None:
            if spec.required:
                raise MCPError(code=INTERNAL_ERROR, message="This server cannot start another task right now")
            return await call_next(ctx)
        if spec.handoff:
            await self._until_handed_off(task)
        if task.task_id is None:
            return task.inline()
        return {"resultType": "task", **task.fields()}

    # --- tasks/* ---------------------------------------------------------------------------

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> dict[str, Any]:
        task = await self._find(ctx, params.task_id)
        answer = {"resultType": "complete", **task.detailed()}
        self._delivered(task)
        return answer

    async def _update(self, ctx: ServerRequestContext[Any, Any], params: UpdateTaskParams) -> dict[str, Any]:
        task = await self._find(ctx, params.task_id)
        if task.status == "input_required":
            for key, value in params.input_responses.items():
                if key not in task.pending:
                    continue  # not asked (or already answered): ignored, as SEP-2663 says
                try:
                    task.answers[key] = _INPUT_RESPONSE.validate_python(value)
                except ValidationError:
                    raise MCPError(
                        code=INVALID_PARAMS, message=f"inputResponses[{key!r}] is not a valid response"
                    ) from None
                del task.pending[key]
            if not task.pending:
                task.wake.set()
        return {"resultType": "complete"}

    async def _cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> dict[str, Any]:
        task = await self._find(ctx, params.task_id)
        if not task.terminal:  # SEP-2663: cancelling an ended task is acknowledged
            await self._stop(task)
        return {"resultType": "complete"}

    async def _stop(self, task: _Task) -> None:
        """Cancel ``task`` (still running), with its tool's words for what that means; a task whose id
        carries its state is noted as cancelled in the shared notes, for every process to see."""
        spec = self._tools.get(task.tool)
        note = spec.cancelled(task.state) if spec and spec.cancelled and task.state is not None else None
        task.move("cancelled", note or "Cancelled at the client's request.")
        task.scope.cancel()
        if self.notes is not None and task.state is not None and task.task_id is not None:
            try:
                await self.notes.cancel(task.task_id, task.owner, task.message or "", task.created + task.ttl)
            except Exception as exc:  # the other replicas may then follow it on: say so in the log
                logger.warning(
                    "task %s: its cancellation is known here only (%s)", task.tool, type(exc).__name__
                )

    # --- finding tasks ---------------------------------------------------------------------

    async def _find(self, ctx: ServerRequestContext[Any, Any], task_id: str) -> _Task:
        """The caller's task ``task_id`` (rebuilt from the id when this process does not have it)."""
        if ctx.protocol_version in _MODERN:
            if not _declared(ctx):
                raise _missing_capability()
            headers = getattr(ctx.request, "headers", None)
            if headers is not None and decode_header_value(headers.get(MCP_NAME_HEADER)) != task_id:
                raise MCPError(
                    code=HEADER_MISMATCH, message="The Mcp-Name header does not match params.taskId"
                )
        owner = self._owner(ctx)
        self._sweep()
        task = self._tasks.get(task_id)
        if task is not None:
            if task.owner != owner:
                raise _not_found(task_id)
            if not task.terminal and task.state is not None:  # cancelled through another process?
                cancelled = await self._cancelled_elsewhere(task_id, owner)
                if cancelled is not None and task.move("cancelled", cancelled):
                    task.scope.cancel()
            return task
        return await self._adopt(ctx, task_id, owner)

    async def _adopt(self, ctx: ServerRequestContext[Any, Any], task_id: str, owner: str) -> _Task:
        """Take over a task another process (or this one before a restart) handed off, from its id."""
        if len(task_id) > MAX_TASK_ID_CHARS:
            raise _not_found(task_id)
        envelope = self._ids.read(task_id, owner)
        if envelope is None:
            raise _not_found(task_id)
        tool, created, state = envelope.get("t"), envelope.get("c"), envelope.get("s")
        ttl = self.lifetime(envelope.get("l"))
        spec = self._tools.get(tool) if isinstance(tool, str) else None
        if (
            spec is None
            or spec.resume is None
            or not isinstance(tool, str)
            or not isinstance(created, int)
            or isinstance(created, bool)
            or not isinstance(state, dict)
        ):
            raise _not_found(task_id)
        started = created / 1000
        if started + ttl < self._clock():
            raise MCPError(code=INVALID_PARAMS, message="Failed to retrieve task: Task has expired")
        if not self._groups or not self._room(owner):
            raise MCPError(code=INTERNAL_ERROR, message="This server cannot take over another task right now")
        task = _Task(
            tool=tool, owner=owner, arguments={}, created=started, ttl=ttl, poll_ms=self._poll_ms,
            version=ctx.protocol_version, clock=self._clock, task_id=task_id, state=state,
            message="Checking on the job (this server has just taken over the task).",
        )  # fmt: skip
        task.updated = self._clock()
        cancelled = await self._cancelled_elsewhere(task_id, owner)
        if cancelled is not None:  # another process cancelled it: so it stays
            task.move("cancelled", cancelled)
            self._tasks[task_id] = task
            return task
        self._tasks[task_id] = task
        resume = spec.resume

        async def invoke(run_ctx: ServerRequestContext[Any, Any]) -> HandlerResult:
            try:
                return await resume(run_ctx, state, started)
            except MCPError:
                raise
            except Exception as exc:  # a tool error, as the SDK answers for a tool that raises
                return _tool_error(exc)

        self._groups[0].start_soon(self._run, task, ctx, invoke)
        return task

    async def _cancelled_elsewhere(self, task_id: str, owner: str) -> str | None:
        if self.notes is None:
            return None
        try:
            return await self.notes.cancelled(task_id, owner)
        except Exception as exc:  # not known: followed on (the job itself lives at Atlas)
            logger.info("task notes not read (%s)", type(exc).__name__)
            return None

    # --- running -----------------------------------------------------------------------------

    def lifetime(self, requested_ms: Any) -> float:
        """A task's lifetime in seconds: what the client asked for (ms) within this server's bounds."""
        if not isinstance(requested_ms, (int, float)) or isinstance(requested_ms, bool):
            return self._ttl
        if requested_ms != requested_ms:  # NaN
            return self._ttl
        return min(self._ttl, max(self._min_ttl, requested_ms / 1000))

    def _start(
        self,
        ctx: ServerRequestContext[Any, Any],
        name: str,
        arguments: Any,
        spec: TaskTool,
        invoke: CallNext,
        *,
        ttl: float | None = None,
    ) -> _Task | None:
        """Start ``invoke`` (the rest of the ``tools/call`` chain) in the background; None: no room.

        The arguments are kept only where a run may call the tool again with them (the input rounds
        of 2026-07-28); they count against what tasks may hold until the run ends.
        """
        owner = self._owner(ctx)
        keep = ctx.protocol_version in _MODERN and isinstance(arguments, Mapping)
        kept = dict(arguments) if keep else {}
        size = _size_of(kept) if kept else 0
        if not self._groups or not self._room(owner, size):
            return None
        task = _Task(
            tool=name,
            owner=owner,
            arguments=kept,
            created=self._clock(),
            ttl=self._ttl if ttl is None else ttl,
            poll_ms=self._poll_ms,
            version=ctx.protocol_version,
            clock=self._clock,
        )
        task.args_size = size
        if not spec.handoff:
            self._hand_off(task, None)
        self._groups[0].start_soon(self._run, task, ctx, invoke)
        return task

    def _hand_off(self, task: _Task, state: Mapping[str, Any] | None) -> None:
        """Give ``task`` its id and keep it: from here on ``tasks/get`` resolves it."""
        if task.task_id is not None:
            return
        task.created = task.updated = self._clock()
        task_id = None
        if state is not None:
            envelope: dict[str, Any] = {"t": task.tool, "c": int(task.created * 1000), "s": dict(state)}
            if task.ttl != self._ttl:
                envelope["l"] = int(task.ttl * 1000)  # the lifetime the client asked for, wherever it is read
            try:
                task_id = self._ids.mint(envelope, task.owner)
                task.state = dict(state)
            except (TypeError, ValueError):
                logger.warning(
                    "task state of %s does not fit in an id; the task lives in this process only", task.tool
                )
        task.task_id = task_id or f"t0.{secrets.token_urlsafe(24)}"
        self._tasks[task.task_id] = task

    async def _until_handed_off(self, task: _Task) -> None:
        """Wait until the run hands off (or ends); a caller that goes away first stops the run."""
        settled = False
        try:
            await task.ready.wait()
            settled = True
        finally:
            if not settled:
                # abandoned before it became a task: stopped, as a plain call would be
                task.scope.cancel()

    async def _run(self, task: _Task, ctx: ServerRequestContext[Any, Any], invoke: CallNext) -> None:
        """The task's body, in the server's task group; ends in exactly one of its outcomes."""
        token = _CURRENT.set(TaskRun(self, task))
        # SEP-2663: no progress or log notification for a task; its progress text is its statusMessage
        run_ctx = replace(ctx, session=compat.quiet_session(ctx.session, task.note))
        try:
            with task.scope:
                try:
                    outcome = await invoke(run_ctx)
                    outcome = await self._answer_inputs(task, run_ctx, outcome)
                except MCPError as err:
                    self._settle(task, err)
                except ValidationError:
                    self._settle(task, MCPError(code=INVALID_PARAMS, message="Invalid request parameters"))
                except Exception:
                    logger.exception("task %s of %s crashed", task.task_id, task.tool)
                    self._settle(
                        task, MCPError(code=INTERNAL_ERROR, message="Internal error while running the task")
                    )
                else:
                    self._settle(task, outcome)
        finally:
            _CURRENT.reset(token)
            task.arguments, task.args_size = {}, 0  # no run left to need them
            task.ready.set()

    def _settle(self, task: _Task, outcome: Any) -> None:
        if task.task_id is None:
            task.outcome = outcome  # ended before it became a task: the call answers with this
            return
        if isinstance(outcome, MCPError):
            error = outcome.error.model_dump(mode="json", exclude_none=True)
            if task.move("failed", outcome.error.message):
                task.error = error
            return
        result = _wire(outcome)
        try:  # the tool result as the protocol version that asked for the task words it
            result = serialize_server_result("tools/call", task.version, result)
        except (KeyError, ValueError):
            logger.error(
                "task %s of %s: the tool returned something that is not a tool result",
                task.task_id,
                task.tool,
            )
            if task.move("failed", "The tool returned something that is not a tool result."):
                task.error = {"code": INTERNAL_ERROR, "message": "Handler returned an invalid result"}
            return
        if task.version in _MODERN:
            result.setdefault("resultType", "complete")
        message = None
        if result.get("isError"):
            texts = [
                c.get("text")
                for c in result.get("content", [])
                if isinstance(c, dict) and c.get("type") == "text"
            ]
            message = next((t for t in texts if isinstance(t, str) and t), "The tool reported an error.")
        if task.move("completed", message):
            task.result = result
            task.size = len(json.dumps(result))

    async def _answer_inputs(self, task: _Task, ctx: ServerRequestContext[Any, Any], outcome: Any) -> Any:
        """While the tool asks for input (and this is a task), park in ``input_required`` and re-run it."""
        rounds = 0
        while is_input_required(outcome) and task.task_id is not None:
            if task.version not in _MODERN or self._server is None:
                raise MCPError(
                    code=INTERNAL_ERROR,
                    message="This task needs input, which this protocol version cannot carry",
                )
            if rounds >= MAX_TASK_INPUT_ROUNDS:
                raise MCPError(
                    code=INTERNAL_ERROR, message=f"The task asked for input more than {rounds} times"
                )
            asked = InputRequiredResult.model_validate(_wire(outcome))
            task.pending, task.asked, task.answers = {}, {}, {}
            for key, request in (asked.input_requests or {}).items():
                unique = f"r{rounds}-{key}"  # keys are never reused over a task's lifetime
                task.asked[unique] = key
                task.pending[unique] = request.model_dump(by_alias=True, mode="json", exclude_none=True)
            task.request_state = asked.request_state
            if task.pending:
                task.move("input_required", keep_message=True)
                while task.pending and not task.terminal:
                    await task.wake.wait()
                    task.wake = anyio.Event()
                task.move("working", keep_message=True)
            rounds += 1
            answers = {task.asked[key]: value for key, value in task.answers.items()}
            params = CallToolRequestParams(
                name=task.tool,
                arguments=task.arguments,
                input_responses=answers,
                request_state=task.request_state,
            )
            context: Context[Any, Any] = Context(
                request_context=ctx, mcp_server=self._server, input_params=params
            )
            try:
                outcome = await self._server.call_tool(task.tool, task.arguments, context)
            except MCPError:
                raise
            except Exception as exc:
                outcome = _tool_error(exc)
        return outcome

    # --- keeping tasks ---------------------------------------------------------------------

    def _sweep(self) -> None:
        """Forget the tasks whose lifetime is over (a run still going is stopped)."""
        now = self._clock()
        for task_id, task in list(self._tasks.items()):
            if task.created + task.ttl < now:
                task.scope.cancel()
                del self._tasks[task_id]

    def _delivered(self, task: _Task) -> None:
        """Note that ``task``'s result went out; then keep what tasks hold within its budget.

        Over budget, the oldest completed tasks whose result went out and that can be rebuilt from
        their id are dropped (a later ``tasks/get`` rebuilds them from Atlas). A result that never
        went out is never dropped, so a client always gets it at least once.
        """
        if task.status != "completed":
            return
        task.delivered = True
        self._shed(0)

    def _held(self) -> int:
        return sum(t.held for t in self._tasks.values())

    def _shed(self, wanted: int) -> int:
        """Drop delivered, rebuildable results (oldest first) until ``wanted`` more fits; what is held."""
        held = self._held()
        for task_id, kept in list(self._tasks.items()):
            if held + wanted <= self._max_result_bytes:
                break
            if kept.delivered and kept.state is not None and kept.terminal:
                held -= kept.held
                del self._tasks[task_id]
        return held

    def _room(self, owner: str, size: int = 0) -> bool:
        """Whether one more task of ``owner`` holding ``size`` may be kept, forgetting finished ones.

        The owner's own oldest finished task goes when it is at its share; the oldest finished task
        of the owner holding the most when the store is full; never a task still running.
        """
        self._sweep()
        mine = [task for task in self._tasks.values() if task.owner == owner]
        if len(mine) >= self._max_per_owner and not self._forget_one(mine):
            return False
        if len(self._tasks) >= self._max:
            counts: dict[str, int] = {}
            for task in self._tasks.values():
                counts[task.owner] = counts.get(task.owner, 0) + 1
            biggest = sorted(counts, key=lambda o: -counts[o])
            if not any(self._forget_one([t for t in self._tasks.values() if t.owner == o]) for o in biggest):
                return False
        if not size:
            return True
        held = self._shed(size)
        return held == 0 or held + size <= self._max_result_bytes  # alone, a call's own arguments fit

    def _forget_one(self, tasks: list[_Task]) -> bool:
        """Forget the oldest of ``tasks`` that has ended (rebuildable or delivered ones first)."""
        finished = [task for task in tasks if task.terminal]
        for task in sorted(finished, key=lambda t: (t.state is None, not t.delivered)):
            if task.task_id is not None:
                del self._tasks[task.task_id]
                return True
        return False


def _size_of(value: Mapping[str, Any]) -> int:
    """Characters ``value`` takes as JSON (what a task holding it counts against its budget)."""
    try:
        return len(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return len(repr(value))
