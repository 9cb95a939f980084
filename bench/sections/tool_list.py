"""The context a client pays for the tool list: the size of ``tools/list``, ours and the official one.

    python bench/toolsize.py [--no-npx] [--json]

Every conversation that has the server connected carries its tool list, so its size is a cost
paid on every turn. Both servers are started over stdio and asked for ``tools/list`` with raw
JSON-RPC (no SDK in between); each tool is measured as compact JSON (``json.dumps`` with
``(",", ":")`` separators), in total and split into its description, input schema, output schema
and the rest (name, title, annotations). The official server is the Node package ``atlascloud-mcp``
launched as its README says (``npx -y atlascloud-mcp``); it is skipped, with the reason in
``notes``, when npx is missing or the package cannot be fetched.

:func:`run` returns the numbers as a dict, :func:`section` writes them into the benchmark's report;
run as a script it prints them. Only the standard library is used.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bench import official
from bench.procs import clean_env
from bench.report import Context, Row, Section
from bench.servers import SERVER_COMMAND
from bench.stdio import RawStdio

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


def tools_list(cmd: list[str], env: dict[str, str], timeout: float = 120.0) -> list[dict[str, Any]]:
    """Spawn ``cmd``, do the MCP handshake over its pipes, and return the ``tools`` of ``tools/list``."""
    with RawStdio(cmd, env) as server:
        server.handshake(timeout)
        return server.tools


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
    return measure(tools_list(SERVER_COMMAND, clean_env()))


def theirs(notes: list[str]) -> dict[str, Any] | None:
    """The official Node server through npx (fetched from the npm registry on first use)."""
    command = official.npx_command()
    if command is None:
        notes.append("npx not found: the official server was not measured")
        return None
    try:
        tools = tools_list(command, official.official_env(), timeout=300)
    except (OSError, RuntimeError, ValueError) as err:
        notes.append(f"{official.NPX_PACKAGE} could not be started with npx: {err}")
        return None
    package_json = official.npx_package_json()
    if package_json is not None:
        notes.append(official.cache_note(package_json))
    return measure(tools)


def run(with_npx: bool = True) -> dict[str, Any]:
    """Sizes in characters of compact JSON::

        {"ours": {...}, "official": {...} | None, "equivalent": {...} | None, "notes": [...]}

    ``equivalent`` compares the tools that do the same jobs (:data:`EQUIVALENT`), both totals.
    """
    notes: list[str] = []
    mine = ours()
    other = theirs(notes) if with_npx else None
    equivalent = None
    if other is not None:
        pairs = {a: b for a, b in EQUIVALENT.items() if a in mine["per_tool"] and b in other["per_tool"]}
        equivalent = {
            "tools": pairs,
            "ours": sum(mine["per_tool"][a]["total"] for a in pairs),
            "official": sum(other["per_tool"][b]["total"] for b in pairs.values()),
        }
    return {"ours": mine, "official": other, "equivalent": equivalent, "notes": notes}


def _server_row(name: str, data: dict[str, Any]) -> list[str]:
    return [name, str(data["tools"]), f"{data['total']:,}", f"{data['per_tool_average']:,}"]


def section(ctx: Context) -> Section:
    """The size of the ``tools/list`` answer, ours and the official one's, for the report."""
    s = Section("Tool list size (`tools/list`, characters of compact JSON)")
    result = run(with_npx=ctx.npx)
    mine, other, same = result["ours"], result["official"], result["equivalent"]
    rows = [_server_row("atlas-image-mcp", mine)]
    if other:
        rows.append(_server_row(official.NPX_PACKAGE, other))
    s.add("Measured by `bench/toolsize.py` (its `--help` has the details).")
    s.add("")
    s.table(["server", "tools", "total", "per tool"], rows)
    if same:
        s.add(
            f"The tools that do the same jobs ({', '.join(same['tools'])}): ours {same['ours']:,}, "
            f"official {same['official']:,} characters."
        )
    for note in result["notes"]:
        s.add(f"- {note}")
    s.rows.append(
        Row(
            "`tools/list` size",
            f"{mine['total']:,} characters, {mine['tools']} tools"
            + (f" (official: {other['total']:,}, {other['tools']} tools)" if other else ""),
        )
    )
    if same:
        s.rows.append(
            Row(
                "`tools/list` size of the tools doing the same jobs, ours vs official",
                f"{same['ours']:,} vs {same['official']:,}",
            )
        )
    return s


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
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--no-npx", action="store_true", help="measure only this server")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args(argv)
    data = run(with_npx=not args.no_npx)
    if args.json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return 0
    _print("atlas-image-mcp", data["ours"])
    if data["official"] is not None:
        _print(f"{official.NPX_PACKAGE} (official)", data["official"])
    if data["equivalent"] is not None:
        eq = data["equivalent"]
        sys.stdout.write(
            f"the {len(eq['tools'])} tools doing the same jobs: ours {eq['ours']:,} characters, "
            f"official {eq['official']:,}\n"
        )
    for note in data["notes"]:
        sys.stdout.write(f"note: {note}\n")
    return 0
