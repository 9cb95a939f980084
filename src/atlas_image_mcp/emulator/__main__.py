"""``python -m atlas_image_mcp.emulator``: run the Atlas Cloud emulator on a local port."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from .emulator import Emulator
from .server import serve
from .store import DURATION_KINDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m atlas_image_mcp.emulator",
        description="Local emulator of the Atlas Cloud image API (a test double and demo backend).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8090, help="port to bind (default: %(default)s)")
    parser.add_argument("--latency", type=float, default=1.0, help="seconds until a prediction completes")
    parser.add_argument(
        "--durations",
        metavar="KIND:ARGS",
        help="draw each prediction's latency from a distribution instead of --latency: "
        + ", ".join(DURATION_KINDS.values())
        + " (e.g. uniform:1,8, lognormal:3,0.5, two-mode:2,20,0.8)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the --durations draws (default: %(default)s)"
    )
    parser.add_argument("--queue-delay", type=float, default=0.0, help="seconds a prediction stays 'created'")
    parser.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help="accepted API key (repeatable; default: any non-empty Bearer token)",
    )
    parser.add_argument(
        "--fail-http-status",
        type=int,
        default=500,
        choices=(200, 500),
        help="HTTP status of a failed prediction's poll answer (default: %(default)s)",
    )
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return parser


def main(argv: Sequence[str] | None = None, *, make_emulator: Callable[..., Emulator] = Emulator) -> int:
    """Parse ``argv`` and serve until interrupted; ``make_emulator`` builds the emulator from the options."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        emulator = make_emulator(
            api_keys=args.api_keys,
            latency=args.latency,
            durations=args.durations,
            seed=args.seed,
            queue_delay=args.queue_delay,
            fail_http_status=args.fail_http_status,
        )
        serve(args.host, args.port, log_level=args.log_level, emulator=emulator)
    except ValueError as exc:
        logging.getLogger(__name__).error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
