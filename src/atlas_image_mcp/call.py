"""One tool call, as one object: the runtime, who calls, the Atlas client for them, where files go.

:meth:`Call.of` builds it once per call, from the SDK's request context (the tool adapter does, and
a task resuming a job does); everything below the tools takes it instead of threading the context,
the runtime and the client by hand. What a call may do that depends on the caller (the key it
spends, its history, later its signed-in identity) is worked out here once, and so is where it may
write files (:meth:`Call.workspace`: the client's roots are asked for at most once per call).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import anyio
from mcp.server.apps import client_supports_apps
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types import ListRootsRequest, ListRootsResult, LoggingLevel
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from . import compat
from .auth.principal import principal_of
from .client import AtlasClient
from .constants import CALL_MARGIN_SECONDS, ROOTS_SECONDS
from .errors import AtlasError, InvalidParameterError, LedgerError, MissingAPIKeyError
from .identity import Caller
from .notify import notify, progress
from .runtime import Runtime
from .sources import SourceContext
from .workspace import Root, Workspace, client_roots, workspace_of

__all__ = ["Call", "Outputs", "ToolContext", "fail"]

logger = logging.getLogger(__name__)

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
    _workspace: Workspace | None = field(default=None, init=False, repr=False)

    @classmethod
    def of(cls, ctx: ToolContext, *, started: float | None = None) -> Call:
        runtime: Runtime = ctx.request_context.lifespan_context
        outputs = Outputs(runtime.output_dir, runtime.may_write_files, runtime.save_by_default)
        moment = time.monotonic() if started is None else started
        connection = compat.lasting_connection_id(ctx.request_context.session)
        caller = runtime.caller(ctx.headers, connection, principal_of(ctx.request_context.request))
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

    async def notify(self, level: LoggingLevel, message: str, *, operator: bool = False) -> None:
        await notify(self.ctx, level, message, operator=operator)

    async def progress(self, done: float, total: float | None, message: str) -> None:
        await progress(self.ctx, done, total, message)

    async def workspace(self) -> Workspace:
        """Where ``save_as`` may write in this call (see :mod:`atlas_image_mcp.workspace`).

        Over stdio: the roots the client declares (asked with ``roots/list`` on a handshake-era
        session; the 2026-07-28 revision deprecated roots, so its sessions are not asked), else the
        working directory when it is usable, else the output folder. Hosted: the output folder.
        """
        if self._workspace is None:
            hosted = self.runtime.remote
            listed = None if hosted else await self._client_roots()
            self._workspace = workspace_of(listed, cwd=_cwd(), output_dir=self.outputs.folder, hosted=hosted)
        return self._workspace

    async def _client_roots(self) -> list[Root] | None:
        """The client's root folders, or None when it declares none (or cannot be asked here)."""
        ctx = self.ctx
        capabilities = ctx.client_capabilities
        if capabilities is None or capabilities.roots is None:
            return None
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return None
        context = ctx.request_context
        if not context.session.can_send_request:
            return None
        try:
            with anyio.fail_after(ROOTS_SECONDS):
                listed = await context.session.send_request(
                    ListRootsRequest(),
                    ListRootsResult,
                    metadata=ServerMessageMetadata(related_request_id=context.request_id),
                )
        except TimeoutError:
            raise InvalidParameterError(
                "save_as",
                f"the client declares workspace folders (MCP roots) but did not list them within "
                f"{ROOTS_SECONDS:g} s, so nothing was written or sent. Try again, or give an absolute path "
                "inside the output folder.",
            ) from None
        except (MCPError, ValidationError) as err:  # a client that cannot list them has none
            logger.info("roots/list failed: %s", type(err).__name__)
            return None
        return client_roots(str(root.uri) for root in listed.roots)

    def picture_sources(self, *, upload: bool, keyless: bool = False) -> SourceContext:
        """How this call resolves picture references (``upload=False``: check them, send nothing).

        ``keyless``: without an Atlas key, the shared client (downloads need none; looking a
        prediction up at Atlas then fails, and says so).
        """
        settings = self.runtime.settings
        try:
            api = self.api
        except MissingAPIKeyError:
            if not keyless:
                raise
            api = self.runtime.client
        return SourceContext(
            api=api,
            history=self.runtime.history,
            session=self.caller.history,
            output_dir=self.outputs.folder,
            remote=self.runtime.remote,
            upload_root=settings.upload_root,
            max_upload_bytes=settings.max_upload_bytes,
            max_pixels=settings.max_pixels,
            owns=self.owns_prediction,
            upload=upload,
        )

    async def owns_prediction(self, prediction_id: str) -> bool:
        """Whether this caller made (or collected) ``prediction_id``, so may use the copies saved here.

        Over stdio, and on a hosted server spending its own key without sign-in, every caller is one
        identity. With per-user keys or sign-in the output folder is shared, so only the identity the
        prediction belongs to may: its history knows it, or the spend ledger (which survives
        restarts) has it sent by the caller. Never what Atlas says for another key.
        """
        runtime = self.runtime
        if not runtime.remote or self.caller.shared:
            return True
        try:
            if await runtime.history.owns(self.caller.history.owner, prediction_id):
                return True
            return await runtime.ledger.started(self.caller.bucket, prediction_id)
        except LedgerError:  # the store cannot say (it is down): not shown to be theirs
            return False


def _cwd() -> Path | None:
    try:
        return Path(os.getcwd())
    except OSError:  # removed while the server runs
        return None


def fail(err: AtlasError) -> ToolError:
    """The tool error (``isError: true``) an assistant sees for ``err``."""
    return ToolError(err.message)
