"""Command line: ``atlas-image-mcp`` (stdio server), ``serve``, ``generate`` and ``emulator``.

Over stdio, stdout carries the MCP protocol: everything else goes to stderr. The ``generate``
command is not a server; it prints the saved paths on stdout for scripts to read.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

import anyio
from pydantic import BaseModel

from . import __version__
from .constants import DEFAULT_EMULATOR_LATENCY, DEFAULT_HTTP_HOST, DEFAULT_HTTP_PORT
from .params import CallOptions, GenerationParams, ShapeOptions
from .redact import redact_log as redact
from .settings import ENV_VARS, Settings, SettingsError, default_output_dir, env_name

__all__ = ["main"]

logger = logging.getLogger("atlas_image_mcp")


class RedactingFilter(logging.Filter):
    """Removes API keys, bearer tokens and query strings from every log record before it is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:  # the formatter uses exc_text as is, so the traceback is redacted too
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level if level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL") else "INFO")
    for noisy in ("httpx", "httpcore", "mcp.server.lowlevel.server", "sse_starlette"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def _env_help() -> str:
    width = max(map(len, ENV_VARS))
    rows = "\n".join(
        f"  {name.ljust(width)}  {var.description} (default {var.shown_default})"
        for name, var in ENV_VARS.items()
    )
    return f"environment variables:\n{rows}"


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between 0 and 65535 (got {port})")
    return port


def _workers(text: str) -> int:
    try:
        workers = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of processes: {text!r}") from None
    if not 1 <= workers <= 64:
        raise argparse.ArgumentTypeError(f"workers must be between 1 and 64 (got {workers})")
    return workers


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atlas-image-mcp",
        description="MCP server for FLUX image generation on Atlas Cloud. With no command it serves MCP over "
        "stdio, which is what MCP client configurations launch; `serve --transport http` serves streamable "
        "HTTP (/mcp) and SSE (/sse) for hosting.",
        epilog=_env_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"atlas-image-mcp {__version__}")
    parser.add_argument(
        "--offline", action="store_true", help="use the built-in Atlas emulator (no key, no network)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="serve MCP over stdio (default) or HTTP",
        description="Serve MCP. --transport http runs one server with streamable HTTP at /mcp, legacy SSE at "
        "/sse (messages to /messages/) and GET /healthz (no key needed). A --host other than a loopback "
        f"address needs {env_name('auth_token')} or {env_name('user_keys')}=1 (or --allow-unauthenticated); "
        "otherwise the command exits with status 2 before listening. Over HTTP, pictures are saved only "
        f"when {env_name('output_dir')} is set and upload_media(file_path=...) reads only inside "
        f"{env_name('upload_root')}.",
        epilog=_env_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--transport",
        choices=("stdio", "http"),
        default=None,
        help="default stdio; http when --host, --port, --stateless or --allow-unauthenticated is given",
    )
    serve.add_argument("--host", default=None, help=f"HTTP bind address (default {DEFAULT_HTTP_HOST})")
    serve.add_argument("--port", type=_port, default=None, help=f"HTTP port (default {DEFAULT_HTTP_PORT})")
    serve.add_argument(
        "--stateless",
        action="store_true",
        help="streamable HTTP without sessions, so several replicas can serve one endpoint (SSE still needs "
        "sticky sessions)",
    )
    serve.add_argument(
        "--workers",
        type=_workers,
        default=None,
        metavar="N",
        help="HTTP: N worker processes behind one port, to use more than one core; needs --stateless "
        "(a session would live in one worker) and serves no legacy SSE (default 1)",
    )
    serve.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help=f"allow a non-loopback --host with neither {env_name('auth_token')} nor {env_name('user_keys')}",
    )
    serve.add_argument("--offline", action="store_true", default=argparse.SUPPRESS, help="use the emulator")

    gen = sub.add_parser(
        "generate",
        help="generate a picture from the terminal (saves it, prints its path)",
        description="Run generate_image from the terminal: the options are its parameters.",
    )
    gen.add_argument("prompt", help="what to draw")
    add_tool_options(gen, GenerationParams, skip={"prompt"})
    add_tool_options(gen, CallOptions, skip={"wait", "return_image", "save"})
    add_tool_options(gen, ShapeOptions, skip=set())
    gen.add_argument(
        "--output-dir",
        type=Path,
        help=f"where to save (default: {env_name('output_dir')} if set, else {default_output_dir()})",
    )
    gen.add_argument("--offline", action="store_true", default=argparse.SUPPRESS, help="use the emulator")

    emu = sub.add_parser("emulator", help="run the Atlas API emulator on a port (for tests and demos)")
    emu.add_argument("--host", default="127.0.0.1")
    emu.add_argument("--port", type=int, default=8090)
    emu.add_argument(
        "--latency",
        type=float,
        default=DEFAULT_EMULATOR_LATENCY,
        help=f"seconds per prediction (default {DEFAULT_EMULATOR_LATENCY:g})",
    )
    emu.add_argument(
        "--api-key", action="append", help="accepted key (repeatable; default: any bearer token)"
    )
    return parser


def add_tool_options(parser: argparse.ArgumentParser, model: type[BaseModel], *, skip: set[str]) -> None:
    """One ``--flag`` per field of a tool's argument model (its description is the help)."""
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        kind = _scalar(info.annotation)
        help_text = info.description
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif kind in (int, float, str):
            parser.add_argument(flag, type=kind, default=None, help=help_text)
        else:
            parser.add_argument(flag, choices=get_args(kind), default=None, help=help_text)


def _scalar(annotation: Any) -> Any:
    """``int`` for ``int | None``; a ``Literal`` stays as it is."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    return args[0] if get_origin(annotation) in (Union, UnionType) and len(args) == 1 else annotation


def tool_arguments(args: argparse.Namespace, *models: type[BaseModel]) -> dict[str, Any]:
    """The options given on the command line, by field name, for a tool call."""
    names = {name for model in models for name in model.model_fields}
    return {name: value for name, value in vars(args).items() if name in names and value is not None}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command or "serve"
    if (
        command == "serve"
        and getattr(args, "transport", None) == "stdio"
        and (given := _http_only_given(args))
    ):
        verb = "applies" if len(given) == 1 else "apply"
        parser.error(f"{', '.join(given)} {verb} only to --transport http (stdio has no address or port)")
    try:
        settings = Settings.from_env()
    except SettingsError as err:
        sys.stderr.write(f"atlas-image-mcp: {err}\n")
        return 2
    setup_logging(settings.log_level)
    try:
        if command == "emulator":
            from .emulator import serve as serve_emulator

            serve_emulator(host=args.host, port=args.port, latency=args.latency, api_keys=args.api_key)
            return 0
        if command == "generate":
            from .cli_generate import run_generate

            if settings.log_level != "DEBUG":  # the terminal shows progress and the result instead
                logging.getLogger().setLevel(logging.WARNING)

            arguments = {
                "prompt": args.prompt,
                **tool_arguments(args, GenerationParams, CallOptions, ShapeOptions),
            }
            offline = _offline(settings, args)
            return anyio.run(
                partial(run_generate, settings, arguments, output_dir=args.output_dir, offline=offline)
            )
        return _serve(settings, args)
    except KeyboardInterrupt:
        return 130


def _serve(settings: Settings, args: Any) -> int:
    transport = _transport(args)
    offline = _offline(settings, args)
    host = getattr(args, "host", None) or DEFAULT_HTTP_HOST  # no subcommand: stdio, no HTTP options
    port = getattr(args, "port", None)
    port = DEFAULT_HTTP_PORT if port is None else port
    workers = getattr(args, "workers", None) or 1
    if workers > 1:
        refusal = _workers_refusal(transport, bool(getattr(args, "stateless", False)))
        if refusal:
            logger.error("%s", refusal)
            return 2
        from .http import serve_workers

        return serve_workers(
            settings,
            factory=f"{__name__}:worker_app",
            workers=workers,
            host=host,
            port=port,
            offline=offline,
            allow_unauthenticated=args.allow_unauthenticated,
        )
    if transport == "http":
        from .http import serve_http

        return serve_http(
            settings,
            host=host,
            port=port,
            offline=offline,
            stateless=args.stateless,
            allow_unauthenticated=args.allow_unauthenticated,
        )
    return anyio.run(_serve_stdio, settings, offline)


def _offline(settings: Settings, args: Any) -> bool:
    """--offline, or ATLAS_MCP_OFFLINE."""
    return bool(getattr(args, "offline", False)) or settings.offline


#: ``serve`` options that only mean something over HTTP (dest -> flag).
_HTTP_ONLY = {"host": "--host", "port": "--port", "stateless": "--stateless", "workers": "--workers",
              "allow_unauthenticated": "--allow-unauthenticated"}  # fmt: skip


def _http_only_given(args: Any) -> list[str]:
    return [flag for dest, flag in _HTTP_ONLY.items() if getattr(args, dest, None) not in (None, False)]


def _transport(args: Any) -> str:
    """``--transport``, or ``http`` when it was not given but an HTTP-only option was.

    ``serve --host 0.0.0.0`` means HTTP (stdio has no address), so it is served over HTTP rather
    than silently over stdio; ``--transport stdio`` with an HTTP-only option is a usage error (main).
    """
    transport = getattr(args, "transport", None)
    if transport is None and (given := _http_only_given(args)):
        logger.info("serving over HTTP because %s was given", ", ".join(given))
        return "http"
    return str(transport or "stdio")


async def _serve_stdio(settings: Settings, offline: bool) -> int:
    from .runtime import Runtime
    from .server import make_server

    runtime = Runtime.create(settings, offline=offline)
    logger.info("atlas-image-mcp %s on stdio%s", __version__, " (offline emulator)" if offline else "")
    if not offline and not settings.api_key:
        logger.warning("%s is not set: tools will explain how to set it", env_name("api_key"))
    try:
        await make_server(runtime).run_stdio_async()
    finally:
        await runtime.aclose()
    return 0


def _workers_refusal(transport: str, stateless: bool) -> str | None:
    """Why ``--workers N`` (N > 1) cannot be used as asked, or None."""
    if transport != "http":
        return "--workers applies to --transport http (stdio serves one client, in one process)."
    if not stateless:
        return (
            "--workers needs --stateless: an MCP session lives in the worker process that opened it, "
            "and the next request of that session may reach another worker, which would answer "
            '"session not found". With --stateless every request stands alone and any worker can '
            "answer it. (For sessions, run one process per port behind a load balancer that is sticky "
            "on the Mcp-Session-Id header.)"
        )
    return None


def worker_app() -> Any:
    """What each worker process of ``serve --transport http --stateless --workers N`` runs.

    uvicorn starts the workers and calls this (by its import string) in each of them; the settings
    and the command line's options arrive through the environment the parent process exported.
    """
    from .http import worker_app as build
    from .settings import worker_options

    settings = Settings.from_env()
    setup_logging(settings.log_level)
    return build(settings, worker_options())
