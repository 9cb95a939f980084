"""Command line: ``atlas-image-mcp`` (stdio server), ``serve``, ``generate``, ``emulator`` and
``healthcheck``.

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
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import anyio
from pydantic import BaseModel

from . import __version__
from .constants import DEFAULT_EMULATOR_LATENCY, DEFAULT_HTTP_HOST, DEFAULT_HTTP_PORT
from .params import CallOptions, GenerationParams, PictureRef, ShapeOptions
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


def _settings_pointer() -> str:
    return (
        "Settings come from environment variables: `atlas-image-mcp --help` lists them all, with their "
        "defaults."
    )


#: What ``atlas-image-mcp`` says on stderr when a person starts it in a terminal (stdin is a TTY):
#: it is not stuck, it waits for an MCP client on stdin.
TERMINAL_HINT = (
    "atlas-image-mcp is an MCP server: an MCP client (Claude Desktop, Claude Code, Cursor, VS Code, ...) "
    "starts it and talks to it over stdin and stdout, so it now waits for a client on this terminal "
    '(Ctrl+C to stop). To connect a client, see "Connect your client" in the README. To try it here '
    'instead: atlas-image-mcp generate --offline "a red fox in the snow"\n'
)


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
        epilog=_settings_pointer(),
    )
    serve.add_argument(
        "--transport",
        choices=("stdio", "http"),
        default=None,
        help="default stdio; http when --host, --port, --stateless or --allow-unauthenticated is given",
    )
    serve.add_argument("--host", default=None, help=f"HTTP bind address (default {DEFAULT_HTTP_HOST})")
    serve.add_argument(
        "--port",
        type=_port,
        default=None,
        help=f"HTTP port (default {DEFAULT_HTTP_PORT}, or {env_name('port')} when it is set)",
    )
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
        type=_local_path,
        help=f"where to save (default: {env_name('output_dir')} if set, else {default_output_dir()})",
    )
    gen.add_argument("--offline", action="store_true", default=argparse.SUPPRESS, help="use the emulator")

    emu = sub.add_parser(
        "emulator",
        help="run the Atlas API emulator on a port (for tests and demos)",
        description="Serve an emulator of the Atlas Cloud API on a port: the routes this server uses "
        "(models, model schemas, generateImage, predictions, uploadMedia, history, balance), answering "
        "with real pictures of the requested size that show the prompt. Point a server at it with "
        f"{env_name('base_url')}=http://HOST:PORT and any key. Nothing is sent anywhere, nothing is billed. "
        "(--offline does the same in process, without a port.)",
    )
    emu.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    emu.add_argument("--port", type=_port, default=8090, help="port to listen on (default 8090)")
    emu.add_argument(
        "--latency",
        type=float,
        default=DEFAULT_EMULATOR_LATENCY,
        help="seconds each prediction takes before its picture is ready "
        f"(default {DEFAULT_EMULATOR_LATENCY:g})",
    )
    emu.add_argument(
        "--api-key",
        action="append",
        metavar="KEY",
        help="a key the emulator accepts (repeat for several); without it, any bearer token is accepted",
    )

    health = sub.add_parser(
        "healthcheck",
        help="exit 0 when the HTTP server on this machine answers /healthz (container health checks)",
        description="Ask the HTTP server on this machine (127.0.0.1) whether it can serve: GET /healthz, "
        "within 4 seconds. Exit status 0 when it answers 200, 1 otherwise. The port is "
        f"{env_name('port')} (default {DEFAULT_HTTP_PORT}), the same one `serve --transport http` listens "
        "on, so a container's health check follows the port it serves on.",
    )
    health.add_argument(
        "--port", type=_port, default=None, help=f"port to probe (default {env_name('port')})"
    )
    return parser


def _local_path(text: str) -> Path:
    """A path typed in a terminal: ``~`` expanded, relative to the working directory."""
    return Path(text).expanduser().absolute()


def _picture(text: str) -> str:
    """A picture option: a file typed in a terminal (``~/fox.png``, ``fox.png``) becomes its absolute path;
    anything else (an https URL, a prediction id, base64) is passed on as it is."""
    if "://" in text or text.startswith("data:"):
        return text
    path = Path(text).expanduser()
    try:
        is_file = path.is_file()
    except (OSError, ValueError):  # too long a name for a path, a NUL byte: not a file
        is_file = False
    named_like_one = path.suffix.lower() in _PICTURE_SUFFIXES  # a missing file is then said to be missing
    return str(path.absolute()) if is_file or named_like_one or text.startswith("~") else text


_PICTURE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif"})


_PICTURE_HELP = " From the terminal: a file (relative or ~/ paths work), an https URL or a prediction id."


def add_tool_options(parser: argparse.ArgumentParser, model: type[BaseModel], *, skip: set[str]) -> None:
    """One ``--flag`` per field of a tool's argument model (its description is the help).

    The flag's kind comes from the field's type: ``bool`` is a ``--x/--no-x`` switch, a ``Literal`` a
    choice, ``int``/``float``/``str`` a value of that type; a picture (:data:`PictureRef`) also takes
    a file path as typed in a terminal. A field of any other type is left out rather than offered
    with a wrong parser.
    """
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        help_text = (info.description or "").replace("%", "%%")
        picture = PictureRef in get_args(info.annotation) or info.annotation is PictureRef
        kind = _scalar(info.annotation)
        if picture:
            parser.add_argument(
                flag, type=_picture, default=None, metavar="PICTURE", help=help_text + _PICTURE_HELP
            )
        elif kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif kind in (int, float, str):
            parser.add_argument(flag, type=kind, default=None, help=help_text)
        elif get_origin(kind) is Literal:
            parser.add_argument(flag, choices=get_args(kind), default=None, help=help_text)


def _scalar(annotation: Any) -> Any:
    """The one type a field holds: ``int`` for ``int | None`` and for ``Annotated[int, ...]``; a
    ``Literal`` stays as it is; a union of several types stays a union (no flag for it)."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) in (Union, UnionType) and len(args) == 1:
        return _scalar(args[0])
    return annotation


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
        if command == "healthcheck":
            return _healthcheck(settings.port if args.port is None else args.port)
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
    port = settings.port if port is None else port
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


def _healthcheck(port: int) -> int:
    """GET /healthz of the server on 127.0.0.1:``port``: 0 when it answers 200, else 1 (one line why)."""
    import httpx

    from .http import HEALTH_PATH

    url = f"http://127.0.0.1:{port}{HEALTH_PATH}"
    try:
        # trust_env=False: a proxy set for the container's outbound calls must not carry this one
        with httpx.Client(trust_env=False, timeout=HEALTHCHECK_TIMEOUT) as http:
            status = http.get(url).status_code
    except httpx.HTTPError as err:
        sys.stderr.write(f"atlas-image-mcp healthcheck: no answer from {url} ({type(err).__name__})\n")
        return 1
    if status != 200:
        sys.stderr.write(f"atlas-image-mcp healthcheck: {url} answered {status}\n")
        return 1
    return 0


#: Seconds ``healthcheck`` waits for /healthz (below the Docker HEALTHCHECK's own 5 s timeout).
HEALTHCHECK_TIMEOUT = 4.0


async def _serve_stdio(settings: Settings, offline: bool) -> int:
    from .runtime import Runtime
    from .server import make_server

    if sys.stdin.isatty():  # a person ran it by hand: say what it is waiting for (stdout is the protocol)
        sys.stderr.write(TERMINAL_HINT)
        sys.stderr.flush()
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
