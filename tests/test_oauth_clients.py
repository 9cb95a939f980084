"""Third-party clients sign in to the hosted server: mcp-remote (the bridge Claude Desktop users run)
and the MCP Inspector's CLI, each driven headless.

Each runs as its own process with a scratch home (their token stores land there), and a stand-in
``$BROWSER`` that only records the URL it is asked to open: the test opens that URL in headless
Chromium, signs in on the OpenID provider's page and consents; the client's own loopback callback
finishes the exchange and it lists the server's tools. Every process is bounded in time and stopped
at the end.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio
import pytest

from .emulation import Emulator
from .http_helpers import free_port
from .npm_tools import NpmTools
from .oauth_helpers import Browser, Provider, claims_of, hosted, linking_server

pytestmark = [pytest.mark.npm, pytest.mark.browser, pytest.mark.subprocess, pytest.mark.timeout(180)]

RUN_SECONDS = 90.0
AUTHORIZE = "Please authorize this client by visiting:"


class Lines:
    """A process's output, line by line, as it comes (a reader thread per pipe)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.threads = [
            threading.Thread(target=self._read, args=(pipe,), daemon=True)
            for pipe in (proc.stdout, proc.stderr)
        ]
        for thread in self.threads:
            thread.start()

    def _read(self, pipe: object) -> None:
        for line in pipe:  # type: ignore[attr-defined]
            self.queue.put(line.rstrip("\n"))
        self.queue.put(None)

    async def next_line(self) -> str:
        """The next line of output (a pipe's end is no line); callers bound the wait."""
        while True:
            try:  # each wait in the thread is short, so a cancelled one leaves no thread behind
                line = await anyio.to_thread.run_sync(self.queue.get, True, 0.5)
            except queue.Empty:
                continue
            if line is not None:
                self.seen.append(line)
                return line

    async def rest(self) -> list[str]:
        """Every line still to come, once the process has ended (its pipes reach their end)."""
        for thread in self.threads:
            await anyio.to_thread.run_sync(thread.join)
        while not self.queue.empty():
            line = self.queue.get_nowait()
            if line is not None:
                self.seen.append(line)
        return self.seen

    async def until(self, wanted: str) -> str:
        """The first line (from now on) that contains ``wanted``; callers bound the wait."""
        while wanted not in (line := await self.next_line()):
            pass
        return line


@contextmanager
def client_process(
    argv: list[str], home: Path, tools: NpmTools, **env: str
) -> Iterator[subprocess.Popen[str]]:
    """A Node client with a scratch home and a $BROWSER that only writes down the URL; stopped after."""
    fake = home / "fake-browser"
    home.mkdir(parents=True, exist_ok=True)
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$1" >> "$(dirname "$0")/opened.txt"\n')
    fake.chmod(0o755)
    environment = {
        **tools.env,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "MCP_REMOTE_CONFIG_DIR": str(home / ".mcp-auth"),
        "MCP_STORAGE_DIR": str(home / ".mcp-inspector"),
        "BROWSER": str(fake),
        **env,
    }
    proc = subprocess.Popen(
        argv,
        env=environment,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            proc.wait(timeout=10)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


async def test_mcp_remote_signs_in_headless_and_lists_the_tools(
    emulator: Emulator, provider: Provider, tools: NpmTools, browser: Browser, tmp_path: Path
) -> None:
    home = tmp_path / "mr-home"
    callback = free_port()
    with hosted(emulator, provider.issuer) as base:
        argv = tools.mcp_remote_client_cmd(f"{base}/mcp", str(callback), "--transport", "http-only")
        with client_process(argv, home, tools) as proc:
            lines = Lines(proc)
            with anyio.fail_after(RUN_SECONDS):
                await lines.until(AUTHORIZE)
                url = await lines.next_line()
            assert url.startswith(f"{provider.issuer}/auth?")
            page = await browser.sign_in(url, "mallory", until=f"http://localhost:{callback}/oauth/callback")
            assert "Authorization successful" in await page.inner_text("body")
            await page.context.close()
            with anyio.fail_after(RUN_SECONDS):
                await lines.until("Exiting OK")
                code = await anyio.to_thread.run_sync(proc.wait)
    output = "\n".join(lines.seen)
    assert code == 0
    assert '"name": "generate_image"' in output and '"name": "list_models"' in output
    (opened,) = (home / "opened.txt").read_text().split()  # the "browser" was asked to open it
    assert parse_qs(urlsplit(opened).query) == parse_qs(urlsplit(url).query)
    (stored,) = (home / ".mcp-auth").rglob("*_tokens.json")
    token = json.loads(stored.read_text())["access_token"]
    assert claims_of(token)["aud"] == f"{base}/mcp" and claims_of(token)["sub"] == "mallory"
    assert "resource=" in url and "code_challenge_method=S256" in url


async def test_the_inspector_cli_signs_in_headless_and_lists_the_tools(
    emulator: Emulator, provider: Provider, tools: NpmTools, browser: Browser, tmp_path: Path
) -> None:
    home = tmp_path / "inspector-home"
    callback = f"http://127.0.0.1:{free_port()}/oauth/callback"
    with hosted(emulator, provider.issuer) as base:
        argv = tools.inspector_cmd(
            f"{base}/mcp", "--transport", "http", "--method", "tools/list", "--callback-url", callback
        )
        # without a TTY it signs in only when told it may open a browser
        with client_process(argv, home, tools, MCP_AUTO_OPEN_ENABLED="true") as proc:
            lines = Lines(proc)
            with anyio.fail_after(RUN_SECONDS):
                url = (await lines.until("Please navigate to: ")).split("Please navigate to: ", 1)[1]
            page = await browser.sign_in(url, "ivan", until=callback)
            await page.context.close()
            with anyio.fail_after(RUN_SECONDS):
                code = await anyio.to_thread.run_sync(proc.wait)
                await lines.until('"name": "list_models"')
    assert code == 0
    assert parse_qs(urlsplit(url).query)["resource"] == [f"{base}/mcp"]
    assert any('"name": "generate_image"' in line for line in lines.seen)


async def test_the_inspector_cli_shows_the_link_to_a_user_who_has_linked_no_key(
    provider: Provider, tools: NpmTools, browser: Browser, tmp_path: Path
) -> None:
    """With linked keys on, a client that does not do URL elicitation (the Inspector CLI) shows the
    link in the tool's answer."""
    home = tmp_path / "inspector-home"
    callback = f"http://127.0.0.1:{free_port()}/oauth/callback"
    with linking_server(Emulator(latency=0.05), provider.issuer, tmp_path / "store.sqlite3") as base:
        argv = tools.inspector_cmd(
            f"{base}/mcp", "--transport", "http", "--method", "tools/call", "--tool-name", "generate_image",
            "--tool-arg", "prompt=a fox", "--callback-url", callback,
        )  # fmt: skip
        with client_process(argv, home, tools, MCP_AUTO_OPEN_ENABLED="true") as proc:
            lines = Lines(proc)
            with anyio.fail_after(RUN_SECONDS):
                url = (await lines.until("Please navigate to: ")).split("Please navigate to: ", 1)[1]
            page = await browser.sign_in(url, "kim", until=callback)
            await page.context.close()
            with anyio.fail_after(RUN_SECONDS):
                code = await anyio.to_thread.run_sync(proc.wait)
                output = "\n".join(await lines.rest())
    assert "Link your Atlas Cloud API key" in output and f"{base}/link?t=" in output
    assert '"isError": true' in output
    assert code is not None
