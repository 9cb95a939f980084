"""Running the emulator as a real HTTP server (uvicorn), logging to stderr only."""

from __future__ import annotations

import copy
import logging
import sys
from typing import Any

from .emulator import Emulator

__all__ = ["serve"]

logger = logging.getLogger(__name__)

_PACKAGE_LOGGER = "atlas_image_mcp.emulator"


def serve(
    host: str = "127.0.0.1",
    port: int = 8090,
    *,
    log_level: str = "info",
    emulator: Emulator | None = None,
    **emulator_kwargs: Any,
) -> None:
    """Serve an emulator on ``http://host:port`` until interrupted (blocking).

    Pass either ``emulator`` or the :class:`Emulator` keyword arguments. Clients use
    ``http://host:port`` (or ``.../api/v1``) as their Atlas base URL.
    """
    import uvicorn

    if emulator is not None and emulator_kwargs:
        raise TypeError("pass either emulator or Emulator keyword arguments, not both")
    emulator = emulator or Emulator(**emulator_kwargs)
    _log_to_stderr(log_level)
    logger.info(
        "Atlas Cloud emulator on http://%s:%d/api/v1 (latency %s, queue %.2fs, failed as HTTP %d, %s)",
        host,
        port,
        f"{emulator.durations} (seed {emulator.seed})" if emulator.durations else f"{emulator.latency:.2f}s",
        emulator.queue_delay,
        emulator.fail_http_status,
        "any API key" if emulator.api_keys is None else f"{len(emulator.api_keys)} API key(s)",
    )
    uvicorn.run(
        emulator.app,
        host=host,
        port=port,
        log_level=log_level,
        log_config=_uvicorn_log_config(),
        lifespan="off",
        ws="none",
    )


def _log_to_stderr(level: str) -> None:
    """Make the emulator's own log records visible on stderr if nobody configured logging."""
    package = logging.getLogger(_PACKAGE_LOGGER)
    package.setLevel(level.upper())
    if logging.getLogger().handlers or package.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    package.addHandler(handler)


def _uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's default logging config with the access log moved from stdout to stderr."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    for handler in config.get("handlers", {}).values():
        if handler.get("stream") == "ext://sys.stdout":
            handler["stream"] = "ext://sys.stderr"
    return config
