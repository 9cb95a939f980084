"""A bare MCP server on the same SDK, for the CPU baseline: one trivial tool over streamable HTTP.

    python bench/bare.py --port 8123 [--json]

Sessions kept, uvicorn on uvloop, no access log, as ``atlas-image-mcp serve --transport http`` runs;
``--json`` answers every request in one JSON body instead of an event stream.
"""

from __future__ import annotations

import argparse
import logging

import uvicorn
from mcp.server.mcpserver import MCPServer


def app(json_response: bool) -> object:
    server: MCPServer[object] = MCPServer("bare")

    @server.tool()
    async def echo(text: str) -> str:
        """Say ``text`` back."""
        return text

    return server.streamable_http_app(json_response=json_response)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.getLogger("uvicorn.access").disabled = True
    uvicorn.run(app(args.json), host="127.0.0.1", port=args.port, log_level="warning", server_header=False)


if __name__ == "__main__":
    main()
