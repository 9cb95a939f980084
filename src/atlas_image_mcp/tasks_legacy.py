"""The 2025-11-25 tasks form, on the runtime of :mod:`atlas_image_mcp.tasks`.

This is the experimental form that the 2025-11-25 revision put in the core protocol and
2026-07-28 moved out into the tasks extension; VS Code speaks it today. It is served only to a
client that asked for it: ``capabilities.tasks``, per-tool ``execution.taskSupport``,
``params.task`` on ``tools/call`` answered with ``{"task": {...}}``, ``tasks/get`` (flat),
``tasks/result`` (blocks until the task ends), ``tasks/list``, ``tasks/cancel`` (-32602 for a task
that already ended); a tool error makes the task ``failed``. The Extension API cannot return that
shape (the SDK sieves every 2025 result through the ``CallToolResult`` schema), so this form is
served by a server middleware; see :func:`atlas_image_mcp.compat.add_middleware` for why that is
fenced.

**When to remove it:** once the clients that use tasks speak 2026-07-28 (VS Code is the one seen
speaking this form) and the SDK stops negotiating 2025-11-25, delete this module and build the
server with :class:`~atlas_image_mcp.tasks.TasksExtension` itself (``server.make_server``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import MethodBinding
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, METHOD_NOT_FOUND, ErrorData, PaginatedRequestParams
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from . import compat
from .tasks import TaskIdParams, TasksExtension, UpdateTaskParams, _Task

__all__ = ["LEGACY_VERSION", "TasksWithLegacyForm"]

#: The protocol revision of the experimental tasks form (removed from the core spec in 2026-07-28).
LEGACY_VERSION = "2025-11-25"
RELATED_TASK = "io.modelcontextprotocol/related-task"
IMMEDIATE_RESPONSE = "io.modelcontextprotocol/model-immediate-response"
_MODERN = frozenset(MODERN_PROTOCOL_VERSIONS)
_LEGACY = frozenset({LEGACY_VERSION})
_LIST_PAGE = 50


def legacy_fields(task: _Task) -> dict[str, Any]:
    """The ``Task`` object in 2025-11-25 names (``ttl``, ``pollInterval``); a tool error fails it."""
    out = task.fields()
    out["ttl"] = out.pop("ttlMs")
    out["pollInterval"] = out.pop("pollIntervalMs")
    if task.status == "completed" and task.is_error:
        out["status"] = "failed"
    return {key: out[key] for key in _ORDER if key in out}


_ORDER = ("taskId", "status", "createdAt", "lastUpdatedAt", "ttl", "pollInterval", "statusMessage")


class TasksWithLegacyForm(TasksExtension):
    """The tasks extension, plus the 2025-11-25 form for the clients that ask for it.

    ``list_tasks`` offers the 2025-11-25 ``tasks/list``, which that revision advises only when the
    owner tells requestors apart.
    """

    def __init__(self, *args: Any, list_tasks: bool = True, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._list_tasks = list_tasks

    def bind(self, server: MCPServer[Any]) -> None:
        super().bind(server)
        compat.add_middleware(server, self._legacy)

    def methods(self) -> list[MethodBinding]:
        both = _MODERN | _LEGACY
        return [
            MethodBinding("tasks/get", TaskIdParams, self._get, protocol_versions=both),
            MethodBinding("tasks/update", UpdateTaskParams, self._update, protocol_versions=_MODERN),
            MethodBinding("tasks/cancel", TaskIdParams, self._cancel, protocol_versions=both),
            MethodBinding("tasks/result", TaskIdParams, self._result, protocol_versions=_LEGACY),
            MethodBinding("tasks/list", PaginatedRequestParams, self._list, protocol_versions=_LEGACY),
        ]

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> dict[str, Any]:
        if ctx.protocol_version in _MODERN:
            return await super()._get(ctx, params)
        return legacy_fields(await self._find(ctx, params.task_id))

    async def _cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> dict[str, Any]:
        if ctx.protocol_version in _MODERN:
            return await super()._cancel(ctx, params)
        task = await self._find(ctx, params.task_id)
        if task.terminal:
            raise MCPError(
                code=INVALID_PARAMS,
                message=f"Task {params.task_id!r} already ended ({task.status}); it cannot be cancelled",
            )
        await self._stop(task)
        return legacy_fields(task)

    async def _result(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> dict[str, Any]:
        """2025-11-25: block until the task ends, then answer what the call would have answered."""
        task = await self._find(ctx, params.task_id)
        with anyio.move_on_after(max(0.0, task.created + task.ttl - self._clock())):
            await task.done.wait()
        if task.status == "completed" and task.result is not None:
            meta = dict(task.result.get("_meta") or {})
            meta[RELATED_TASK] = {"taskId": task.task_id}
            answer = {**task.result, "_meta": meta}
            self._delivered(task)
            return answer
        if task.status == "failed" and task.error is not None:
            raise MCPError.from_error_data(ErrorData.model_validate(task.error))
        raise MCPError(
            code=INVALID_PARAMS, message=f"Task {params.task_id!r} was {task.status}; it has no result"
        )

    async def _list(
        self, ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams
    ) -> dict[str, Any]:
        if not self._list_tasks:
            raise MCPError(
                code=METHOD_NOT_FOUND,
                message="tasks/list is not offered: this server cannot tell callers apart",
            )
        owner = self._owner(ctx)
        self._sweep()
        mine = [task for task in self._tasks.values() if task.owner == owner]
        cursor = params.cursor or "0"
        if not (cursor.isascii() and cursor.isdigit()) or int(cursor) > len(mine):
            raise MCPError(code=INVALID_PARAMS, message="Invalid cursor for tasks/list")
        start = int(cursor)
        page = mine[start : start + _LIST_PAGE]
        out: dict[str, Any] = {"tasks": [legacy_fields(task) for task in page]}
        if start + _LIST_PAGE < len(mine):
            out["nextCursor"] = str(start + _LIST_PAGE)
        return out

    async def _legacy(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Server middleware: the 2025-11-25 tasks form (capability, taskSupport, params.task)."""
        if ctx.method == "initialize":
            return _advertise_legacy(await call_next(ctx), list_tasks=self._list_tasks)
        if ctx.protocol_version != LEGACY_VERSION:
            return await call_next(ctx)
        if ctx.method == "tools/list":
            return self._mark_tools(await call_next(ctx))
        if ctx.method == "tools/call":
            return await self._legacy_call(ctx, call_next)
        return await call_next(ctx)

    def _mark_tools(self, result: HandlerResult) -> HandlerResult:
        if not isinstance(result, dict) or not isinstance(result.get("tools"), list):
            return result
        tools = []
        for tool in result["tools"]:
            name = tool.get("name") if isinstance(tool, dict) else None
            spec = self._tools.get(name) if isinstance(name, str) else None
            if spec is not None:
                tool = {**tool, "execution": {"taskSupport": "required" if spec.required else "optional"}}
            tools.append(tool)
        return {**result, "tools": tools}

    async def _legacy_call(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        params = ctx.params or {}
        name, wanted = params.get("name"), params.get("task")
        spec = self._tools.get(name) if isinstance(name, str) else None
        if wanted is None:
            if spec is not None and spec.required:
                raise MCPError(
                    code=METHOD_NOT_FOUND, message=f"Tool {name!r} must be called as a task (params.task)"
                )
            return await call_next(ctx)
        if spec is None or not isinstance(name, str):
            raise MCPError(
                code=METHOD_NOT_FOUND,
                message=f"Tool {name!r} does not run as a task; call it without params.task",
            )
        if not isinstance(wanted, Mapping):
            raise MCPError(code=INVALID_PARAMS, message="params.task must be an object")
        ttl = wanted.get("ttl")
        if ttl is not None and (not isinstance(ttl, (int, float)) or isinstance(ttl, bool) or ttl < 0):
            raise MCPError(code=INVALID_PARAMS, message="params.task.ttl must be a number of milliseconds")
        # The call's arguments are not kept: this form has no input rounds that would need them again.
        task = self._start(ctx, name, params.get("arguments"), spec, call_next, ttl=self.lifetime(ttl))
        if task is None:
            raise MCPError(
                code=INTERNAL_ERROR,
                message="This server cannot start another task right now (too many of your tasks are still "
                "running, or held); try again once one has ended",
            )
        if spec.handoff:
            await self._until_handed_off(task)
        if task.task_id is None:
            if isinstance(task.outcome, MCPError) or task.outcome is None:
                return task.inline()  # a protocol error before the job started: answered as such
            # finished at once (a dry run, an invalid call): the spec wants a task for a task-augmented
            # call, so it is one that has already ended, holding only its (small) answer
            self._hand_off(task, None)
            self._settle(task, task.outcome)
            task.outcome = None
        return {
            "task": legacy_fields(task),
            "_meta": {IMMEDIATE_RESPONSE: f"Started as task {task.task_id}; its result will follow."},
        }


def _advertise_legacy(result: HandlerResult, *, list_tasks: bool) -> HandlerResult:
    """Add ``capabilities.tasks`` to an ``initialize`` result that settled on 2025-11-25."""
    if not isinstance(result, dict) or result.get("protocolVersion") != LEGACY_VERSION:
        return result
    capabilities = dict(result.get("capabilities") or {})
    tasks: dict[str, Any] = {"list": {}} if list_tasks else {}
    capabilities["tasks"] = {**tasks, "cancel": {}, "requests": {"tools": {"call": {}}}}
    return {**result, "capabilities": capabilities}
