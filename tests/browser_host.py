"""A web page that hosts our MCP App for a real browser: the test side of the MCP Apps tests.

``serve_host(server)`` connects a real MCP client (advertising the Apps extension) to ``server``
and serves, on 127.0.0.1 with a free port:

* ``/`` — ``browser/host.html``, a minimal host faithful to the ext-apps specification: it makes
  the assistant's tool call, loads the tool's ``ui://`` resource into a sandbox proxy and relays
  the view's requests (``tools/call`` only for our app-visible tools);
* ``/sandbox.html`` on the *other* origin (``localhost`` instead of ``127.0.0.1``), with the
  Content-Security-Policy header the specification derives from the resource's ``_meta.ui.csp``;
* ``POST /rpc`` — the host page's MCP requests, answered by the real client.

Nothing here knows our tools; the page records what the view asked for in ``window.__host``.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio.from_thread
from mcp import Client
from mcp.client.extension import advertise

PAGES = Path(__file__).resolve().parent / "browser"
APPS_EXTENSION = advertise("io.modelcontextprotocol/ui", {"mimeTypes": ["text/html;profile=mcp-app"]})
_UNSAFE = (";", "\r", "\n", "'", '"', " ", ",")


def build_csp(csp: dict[str, Any] | None) -> str:
    """The frame's CSP as the specification builds it from ``_meta.ui.csp`` (restrictive when absent)."""
    if csp is None:
        return (
            "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; media-src 'self' data:; object-src 'none'; connect-src 'none'"
        )

    def domains(key: str) -> str:
        return " ".join(d for d in csp.get(key) or [] if not any(c in d for c in _UNSAFE))

    resources, connect = domains("resourceDomains"), domains("connectDomains")
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src 'self' 'unsafe-inline' {resources}".strip(),
            f"style-src 'self' 'unsafe-inline' {resources}".strip(),
            f"connect-src 'self' {connect}".strip(),
            f"img-src 'self' data: {resources}".strip(),
            f"font-src 'self' {resources}".strip(),
            f"media-src 'self' data: {resources}".strip(),
            f"frame-src {domains('frameDomains') or chr(39) + 'none' + chr(39)}",
            "object-src 'none'",
            f"base-uri {domains('baseUriDomains') or chr(39) + 'self' + chr(39)}",
        ]
    )


def dump(model: Any) -> Any:
    return model.model_dump(by_alias=True, exclude_none=True, mode="json")


@dataclass
class HostSite:
    port: int
    call: Callable[[str, dict[str, Any]], Any]
    """Call a tool through the host's own client (the same MCP session as the page), e.g. to make
    pictures before the page opens."""
    run: Callable[..., Any]
    """Run an async function on the client's event loop (the browser's owns this thread's)."""

    def url(self, tool: str, arguments: dict[str, Any]) -> str:
        query = urllib.parse.urlencode({"tool": tool, "args": json.dumps(arguments)})
        return f"http://127.0.0.1:{self.port}/?{query}"


@contextmanager
def serve_host(server: Any) -> Iterator[HostSite]:
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(Client(server, extensions=[APPS_EXTENSION])) as client,
    ):
        methods: dict[str, Callable[[dict[str, Any]], Any]] = {
            "tools/list": lambda p: client.list_tools(),
            "tools/call": lambda p: client.call_tool(p["name"], p.get("arguments") or {}),
            "resources/read": lambda p: client.read_resource(p["uri"]),
            "resources/list": lambda p: client.list_resources(),
        }

        def call(name: str, arguments: dict[str, Any]) -> Any:
            return portal.call(client.call_tool, name, arguments)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: bytes, ctype: str, *headers: tuple[str, str]) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                origin = self.headers.get("Host", "").split(":")[0]
                if url.path == "/" and origin == "127.0.0.1":
                    return self._send(200, (PAGES / "host.html").read_bytes(), "text/html; charset=utf-8")
                if url.path == "/sandbox.html" and origin == "localhost":
                    csp = json.loads(urllib.parse.parse_qs(url.query).get("csp", ["null"])[0])
                    return self._send(
                        200,
                        (PAGES / "sandbox.html").read_bytes(),
                        "text/html; charset=utf-8",
                        ("Content-Security-Policy", build_csp(csp)),
                    )
                if url.path == "/favicon.ico":
                    return self._send(204, b"", "image/x-icon")
                self._send(404, b"", "text/plain")

            def do_POST(self) -> None:
                if self.path != "/rpc" or self.headers.get("Host", "").split(":")[0] != "127.0.0.1":
                    return self._send(404, b"", "text/plain")
                message = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                try:
                    answer = {
                        "result": dump(portal.call(methods[message["method"]], message.get("params") or {}))
                    }
                except Exception as exc:  # surfaces as a JSON-RPC error in the page
                    answer = {"error": {"code": -32603, "message": f"{type(exc).__name__}: {exc}"}}
                self._send(200, json.dumps(answer).encode(), "application/json")

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=httpd.serve_forever, name="mcp-apps-test-host", daemon=True)
        thread.start()
        try:
            yield HostSite(port=httpd.server_address[1], call=call, run=portal.call)
        finally:
            httpd.shutdown()
            httpd.server_close()
            thread.join(10)
