"""The server factory: one MCPServer, the same object for stdio, streamable HTTP and SSE."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer, RequestStateSecurity
from mcp.shared.exceptions import MCPError

from . import __version__
from .auth.principal import principal_of
from .constants import TASK_KEEP_SECONDS
from .notify import install_logging_handler
from .prompts import register_prompts
from .redact import redact, redact_tree, secret_in_scope
from .resources import label_pictures, register_resources
from .runtime import Runtime
from .shared import TaskNotesInStore
from .taskids import TaskIds, task_id_secret
from .tasks_legacy import TasksWithLegacyForm
from .tools import build_tools, keyed_tools, spending_tools, tools_that_may_ask
from .viewer import make_viewer

__all__ = ["INSTRUCTIONS", "make_server", "spending_tools", "tools_that_may_ask"]

INSTRUCTIONS = """\
Creates and edits pictures with the FLUX models on Atlas Cloud.
- generate_image turns a prompt into pictures in one call: it waits (up to ~45 s), returns the
  picture, its URL and, when saving is on, the absolute path of the saved file. Use dry_run to see
  the request and its cost without spending anything.
- edit_image changes a picture from an instruction (image="last" is the latest picture of this
  session; a prediction id, URL, data or, over stdio, a file path also work), repaints a masked area
  (mask_image), or combines several pictures (images). generate_variations makes more of an earlier job.
- If a tool answers status "processing", call get_prediction with the prediction_id
  (wait_seconds=30) instead of generating again: each generation is billed.
- list_models shows the image models, what each is for (generate, edit, inpaint, ...) and its price.
- Every picture result carries estimated_price (before sending) and price (once Atlas charges it).
  An expensive call may be confirmed with the person first; if a result says confirmation_required,
  ask the person and, only if they agree, call again with max_cost_usd. get_balance shows the
  account's credit, get_usage what this server spent.
"""


def caller_of(ctx: ServerRequestContext[Any, Any]) -> str:
    """Who a request comes from, for binding tasks and sealed confirmations to it."""
    runtime: Runtime = ctx.lifespan_context
    return runtime.caller(getattr(ctx.request, "headers", None), principal=principal_of(ctx.request)).id


async def redact_answers(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """The chokepoint for answers: every result and error of every request leaves redacted.

    Tool results (text, ``structuredContent``, resource links), resource contents, prompts and
    JSON-RPC errors all pass here, whatever field upstream hid a key in. (Notifications leave
    through :mod:`atlas_image_mcp.notify`, logs through the logging filter, HTTP error bodies
    through :class:`atlas_image_mcp.http.JsonRpcErrors`; each redacts at its one exit.)
    """
    runtime: Runtime = ctx.lifespan_context
    # the caller's own key (or linked key), whether or not Atlas knows it: out of its answers,
    # notifications and logs
    caller = runtime.caller(getattr(ctx.request, "headers", None), principal=principal_of(ctx.request))
    with secret_in_scope(caller.key):
        try:
            result = await call_next(ctx)
        except MCPError as err:
            raise MCPError(err.code, redact(err.message), redact_tree(err.data)) from None
        if result is None:
            return None
        wire = (
            result
            if isinstance(result, dict)
            else result.model_dump(by_alias=True, mode="json", exclude_none=True)
        )
        redacted: dict[str, Any] = redact_tree(wire)
        return redacted


def request_state_security(runtime: Runtime) -> RequestStateSecurity:
    """How the answers of a 2026-07-28 input round trip (the cost confirmation) are sealed.

    Under a key derived from ATLAS_MCP_TASK_SECRET when it is set, so any replica can take the
    second round of a call another one asked about; else a key of this process. The state is bound
    to the caller's Atlas key, so one user's confirmation cannot be replayed by another.
    """
    secret = runtime.settings.task_secret
    key = (
        hashlib.sha256(b"atlas-image-mcp/request-state/v1\0" + secret.encode("utf-8")).digest()
        if secret
        else os.urandom(32)
    )
    return RequestStateSecurity(keys=[key], bind_principal=caller_of)


def _link_gate(linking: bool) -> list[Any]:
    """The middleware that asks a signed-in user to link a key, when keys are linked (its code, like
    all of sign-in, is imported only then)."""
    if not linking:
        return []
    from .auth.elicit import LinkGate

    return [LinkGate(keyed_tools())]


def make_server(runtime: Runtime) -> MCPServer[Runtime]:
    """Build the MCP server around ``runtime``. No I/O happens here but reading the viewer page once."""
    settings = runtime.settings
    tasks = TasksWithLegacyForm(
        TaskIds(task_id_secret(settings, remote=runtime.remote)),
        ttl_seconds=settings.task_wait_seconds + TASK_KEEP_SECONDS,
        owner=caller_of,
        # callers are told apart by their Atlas key (over stdio there is one, per-user keys one each)
        # or their sign-in; with one shared key and no sign-in a hosted server cannot list "your" tasks
        list_tasks=runtime.callers_apart,
    )
    tasks.notes = TaskNotesInStore(runtime.store)  # a cancellation, which an id cannot carry

    @asynccontextmanager
    async def lifespan(_server: MCPServer[Runtime]) -> AsyncIterator[Runtime]:
        # The runtime outlives sessions (HTTP serves many); whoever built it closes it. Task runs
        # live in the task group entered here, not in the request that started them. The store
        # opens here (once; SSE enters this per connection).
        await runtime.start()
        async with tasks.running():
            yield runtime

    viewer = make_viewer(runtime)
    linking = runtime.signin is not None and runtime.signin.accounts is not None
    server: MCPServer[Runtime] = MCPServer(
        "atlas-image-mcp",
        title="Atlas Cloud FLUX images",
        instructions=INSTRUCTIONS,
        version=__version__,
        website_url="https://www.atlascloud.ai",
        extensions=[tasks, viewer],
        lifespan=lifespan,
        request_state_security=request_state_security(runtime),
        log_level=settings.log_level if settings.log_level in _LEVELS else "INFO",  # type: ignore[arg-type]
        middleware=[redact_answers, label_pictures, *_link_gate(linking)],
        tools=build_tools(tasks, linking=linking),
    )
    tasks.bind(server)
    register_resources(server)
    register_prompts(server)
    install_logging_handler(server)
    return server


_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
