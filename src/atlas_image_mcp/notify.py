"""Notifications to the client (log messages and progress): the one way they leave, always redacted.

Log notifications honour the client's ``logging/setLevel``.

Handshake-era clients set a level per session with ``logging/setLevel``; the SDK leaves the
filtering to the server, so the level is kept per session here. On 2026-07-28 connections the
client opts in per request through ``_meta`` and the SDK filters by itself.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_types import EmptyResult, LoggingLevel, SetLevelRequestParams
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from .compat import add_request_handler, connection_state
from .redact import redact

__all__ = ["install_logging_handler", "notify", "progress"]

logger = logging.getLogger(__name__)

_ORDER: tuple[LoggingLevel, ...] = (
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
)
_DEFAULT_LEVEL: LoggingLevel = "info"
_STATE_KEY = "atlas_image_mcp.log_level"


async def _set_level(ctx: ServerRequestContext[Any], params: SetLevelRequestParams) -> EmptyResult:
    connection_state(ctx.session)[_STATE_KEY] = params.level
    return EmptyResult()


def install_logging_handler(server: MCPServer[Any]) -> None:
    """Serve ``logging/setLevel`` (which also makes the server declare the logging capability).

    The SDK warns on every log message because the 2026-07-28 protocol replaced ``setLevel`` with
    a per-request opt-in; handshake-era clients (most IDEs today) still use it, so that one warning
    is silenced.
    """
    warnings.filterwarnings(
        "ignore", message="The logging capability is deprecated", category=MCPDeprecationWarning
    )
    add_request_handler(server, "logging/setLevel", SetLevelRequestParams, _set_level)


async def notify(
    ctx: Context[Any, Any], level: LoggingLevel, message: str, *, operator: bool = False
) -> None:
    """Send ``message`` to the client as a log notification if its level allows; also log to stderr,
    at INFO when ``operator`` (a paid request was sent: the line an operator's log keeps of a call)
    and at DEBUG otherwise. A log line costs about 0.1 ms of CPU on a loaded server; the three a call
    used to write were a tenth of its CPU, so the default level keeps the one that names what was paid.

    A handshake-era request answered in one JSON body (no event stream: it has no channel for
    anything but its answer, :mod:`atlas_image_mcp.answers`) sends none.
    """
    local = logging.INFO if operator else logging.DEBUG
    if logger.isEnabledFor(local):
        logger.log(local, "%s", redact(message))
    if (
        ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS
        and not ctx.request_context.session.can_send_request
    ):
        return
    try:
        wanted = connection_state(ctx.request_context.session).get(_STATE_KEY, _DEFAULT_LEVEL)
        if _ORDER.index(level) < _ORDER.index(wanted):
            return
        await ctx.log(level, redact(message), logger_name="atlas-image-mcp")
    except Exception:  # logging must never break a tool call
        logger.debug("log notification failed", exc_info=True)


async def progress(ctx: Context[Any, Any], done: float, total: float | None, message: str) -> None:
    """Send a progress notification (a no-op when the client asked for none); never breaks a call."""
    try:
        await ctx.report_progress(done, total, redact(message))
    except Exception:  # a client that went away must not break the call
        logger.debug("progress notification failed", exc_info=True)
