"""One tool call, as one object: the runtime, who calls, the Atlas client for them, where files go.

:meth:`Call.of` builds it once per call, from the SDK's request context (the tool adapter does, and
a task resuming a job does); everything below the tools takes it instead of threading the context,
the runtime and the client by hand. What a call may do that depends on the caller (the key it
spends, its history, later its signed-in identity) is worked out here once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from mcp.server.apps import client_supports_apps
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import LoggingLevel

from .auth.principal import principal_of
from .client import AtlasClient
from .constants import CALL_MARGIN_SECONDS
from .errors import AtlasError
from .identity import Caller
from .notify import notify, progress
from .runtime import Runtime
from .sources import SourceContext

__all__ = ["Call", "Outputs", "ToolContext", "fail"]

#: The context the SDK gives a tool: its lifespan context is the server's :class:`Runtime`.
ToolContext = Context[Runtime, Any]


@dataclass(frozen=True)
class Outputs:
    """Where a call's pictures may be saved, and whether they are by default."""

    folder: Path
    #: Over stdio always; over HTTP only when the operator chose the output folder.
    may_write: bool
    save_by_default: bool


@dataclass
class Call:
    """One tool call: built once by :meth:`of`, passed whole to everything the call does."""

    ctx: ToolContext
    runtime: Runtime
    caller: Caller
    outputs: Outputs
    #: When the call started (``time.monotonic``); a resumed task's is its creation time.
    started: float

    @classmethod
    def of(cls, ctx: ToolContext, *, started: float | None = None) -> Call:
        runtime: Runtime = ctx.request_context.lifespan_context
        outputs = Outputs(runtime.output_dir, runtime.may_write_files, runtime.save_by_default)
        moment = time.monotonic() if started is None else started
        caller = runtime.caller(ctx.headers, principal_of(ctx.request_context.request))
        return cls(ctx, runtime, caller, outputs, moment)

    @cached_property
    def api(self) -> AtlasClient:
        """The Atlas client for this caller (raises :class:`MissingAPIKeyError` when there is no key)."""
        return self.runtime.client_for(self.caller)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def deadline(self, wait: float) -> float:
        """When a call that waits ``wait`` seconds must answer at the latest (on the client's clock)."""
        return self.api.deadline_in(wait + CALL_MARGIN_SECONDS)

    @property
    def shows_apps(self) -> bool:
        """The client shows results in an MCP App (whose frame receives the whole result)."""
        return client_supports_apps(self.ctx)

    @property
    def wants_progress(self) -> bool:
        """Whether progress reports reach anyone: over HTTP only a request with a progress token.

        Over stdio and in process the SDK decides where progress goes, so reports are always sent.
        """
        context = self.ctx.request_context
        if context.request is None:
            return True
        return (context.meta or {}).get("progress_token") is not None

    async def notify(self, level: LoggingLevel, message: str) -> None:
        await notify(self.ctx, level, message)

    async def progress(self, done: float, total: float | None, message: str) -> None:
        await progress(self.ctx, done, total, message)

    def picture_sources(self, *, upload: bool) -> SourceContext:
        """How this call resolves picture references (``upload=False``: check them, send nothing)."""
        settings = self.runtime.settings
        return SourceContext(
            api=self.api,
            history=self.runtime.history,
            session=self.caller.history,
            output_dir=self.outputs.folder,
            remote=self.runtime.remote,
            upload_root=settings.upload_root,
            max_upload_bytes=settings.max_upload_bytes,
            upload=upload,
        )


def fail(err: AtlasError) -> ToolError:
    """The tool error (``isError: true``) an assistant sees for ``err``."""
    return ToolError(err.message)
