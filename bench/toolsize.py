#!/usr/bin/env python3
"""The context a client pays for the tool list: the size of ``tools/list``, ours and the official one.

    python bench/toolsize.py [--no-npx] [--json]

Every conversation that has the server connected carries its tool list, so its size is a cost
paid on every turn. Both servers are started over stdio and asked for ``tools/list`` with raw
JSON-RPC (no SDK in between); each tool is measured as compact JSON (``json.dumps`` with
``(",", ":")`` separators), in total and split into its description, input schema, output schema
and the rest (name, title, annotations). The official server is the Node package ``atlascloud-mcp``
launched as its README says (``npx -y atlascloud-mcp``); it is skipped, with the reason in
``notes``, when npx is missing or the package cannot be fetched.

:func:`run` returns the numbers as a dict (for the benchmark report); run as a script it prints
them. Only the standard library is used.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["measure", "run"]

PROTOCOL = "2025-06-18"  # understood by both servers
TIMEOUT = 120.0
NPX_PACKAGE = "atlascloud-mcp"
PARTS = ("description", "inputSchema", "outputSchema")
#: Our tool -> the official server's tool that does the same job (for a like-for-like total).
EQUIVALENT = {
    "generate_image": "atlas_generate_image",
    "get_prediction": "atlas_get_prediction",
    "upload_media": "atlas_upload_media",
    "list_models": "atlas_list_models",
}


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without any ATLAS* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATLAS", "ATLASCLOUD"))}
    env.update(extra)
    return env


def _tools_list(cmd: list[str], env: dict[str, str], timeout: float = TIMEOUT) -> list[dict[str, Any]]:
    """Spawn ``cmd``, do the MCP handshake over its pipes, and return the ``tools`` of ``tools/list``."""
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tempfile.gettempdir(),
    )
    lines: queue.Queue[bytes | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout

    def send(message: dict[str, Any]) -> None:
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(message).encode() + b"\n")
        proc.stdin.flush()

    def answer(rid: int) -> dict[str, Any]:
        while True:
            try:
                line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"{cmd[0]}: no answer within {timeout:g} s") from None
            if line is None:
                raise RuntimeError(f"{cmd[0]} exited before answering")
            message = json.loads(line)
            if message.get("id") == rid:
                if "error" in message:
                    raise RuntimeError(f"{cmd[0]}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    try:
        init = {
            "protocolVersion": PROTOCOL,
            "capabilities": {},
            "clientInfo": {"name": "toolsize", "version": "1"},
        }
        send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init})
        answer(1)
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        send({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}})
        tools: list[dict[str, Any]] = answer(2).get("tools", [])
        return tools
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def measure(tools: list[dict[str, Any]]) -> dict[str, Any]:
    """Total and per-tool sizes (compact JSON characters), each split into its parts."""
    per_tool: dict[str, dict[str, int]] = {}
    for tool in tools:
        parts = {part: _size(tool[part]) if part in tool else 0 for part in PARTS}
        total = _size(tool)
        per_tool[str(tool.get("name"))] = {"total": total, **parts, "other": total - sum(parts.values())}
    total = _size(tools)
    return {
        "tools": len(tools),
        "total": total,
        "per_tool_average": round(total / len(tools)) if tools else 0,
        "per_tool": per_tool,
    }


def ours() -> dict[str, Any]:
    """This server, as a client configuration launches it (no key needed to list the tools)."""
    return measure(_tools_list([sys.executable, "-m", "atlas_image_mcp"], _clean_env()))


def official(notes: list[str]) -> dict[str, Any] | None:
    """The official Node server through npx (fetched from the npm registry on first use)."""
    npx = shutil.which("npx")
    if npx is None:
        notes.append("npx not found: the official server was not measured")
        return None
    env = _clean_env(ATLASCLOUD_API_KEY="dummy-key-for-listing")
    try:
        tools = _tools_list([npx, "-y", NPX_PACKAGE], env, timeout=300)
    except (OSError, RuntimeError, ValueError) as err:
        notes.append(f"{NPX_PACKAGE} could not be started with npx: {err}")
        return None
    found = sorted(Path.home().glob(f".npm/_npx/*/node_modules/{NPX_PACKAGE}/package.json"))
    if found:
        notes.append(
            f"{NPX_PACKAGE} {json.loads(found[-1].read_text()).get('version', '?')} from the npx cache"
        )
    return measure(tools)


def run(with_npx: bool = True) -> dict[str, Any]:
    """Sizes in characters of compact JSON::

        {"ours": {...}, "official": {...} | None, "equivalent": {...} | None, "notes": [...]}

    ``equivalent`` compares the tools that do the same jobs (:data:`EQUIVALENT`), both totals.
    """
    notes: list[str] = []
    mine = ours()
    theirs = official(notes) if with_npx else None
    equivalent = None
    if theirs is not None:
        pairs = {a: b for a, b in EQUIVALENT.items() if a in mine["per_tool"] and b in theirs["per_tool"]}
        equivalent = {
            "tools": pairs,
            "ours": sum(mine["per_tool"][a]["total"] for a in pairs),
            "official": sum(theirs["per_tool"][b]["total"] for b in pairs.values()),
        }
    return {"ours": mine, "official": theirs, "equivalent": equivalent, "notes": notes}


def _print(name: str, data: dict[str, Any]) -> None:
    out = sys.stdout
    out.write(
        f"{name}: tools/list {data['total']:,} characters, {data['tools']} tools, "
        f"{data['per_tool_average']:,} per tool on average\n"
    )
    out.write(f"  {'tool':<28}{'total':>8}{'descr.':>8}{'input':>8}{'output':>8}{'other':>8}\n")
    for tool, sizes in data["per_tool"].items():
        out.write(
            f"  {tool:<28}{sizes['total']:>8,}{sizes['description']:>8,}{sizes['inputSchema']:>8,}"
            f"{sizes['outputSchema']:>8,}{sizes['other']:>8,}\n"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-npx", action="store_true", help="measure only this server")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args(argv)
    data = run(with_npx=not args.no_npx)
    if args.json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return 0
    _print("atlas-image-mcp", data["ours"])
    if data["official"] is not None:
        _print(f"{NPX_PACKAGE} (official)", data["official"])
    if data["equivalent"] is not None:
        eq = data["equivalent"]
        sys.stdout.write(
            f"the {len(eq['tools'])} tools doing the same jobs: ours {eq['ours']:,} characters, "
            f"official {eq['official']:,}\n"
        )
    for note in data["notes"]:
        sys.stdout.write(f"note: {note}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
