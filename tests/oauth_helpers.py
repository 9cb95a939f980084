"""The OAuth tests' machinery: a real OpenID provider, real sign-ins in Chromium, tokens by hand.

* :func:`start_provider` runs ``tests/oidc_provider.mjs`` (the npm package oidc-provider from the
  pinned npm tools) on a free loopback port and stops it afterwards; ``restart`` on the same port is
  a key rotation.
* :class:`Browser`: one headless Chromium (the system's, through Playwright) for a test; each
  sign-in gets a fresh context (no session carried over) unless a context is passed.
* :func:`oauth_client`: the MCP Python SDK's own OAuth client (``OAuthClientProvider``) on a real
  ``mcp.Client``: discovery from the 401, metadata, dynamic registration or the pre-registered
  client, PKCE, the token, then the session; its browser step signs in with Chromium and its
  redirect comes back to a loopback listener.
* :func:`token_for`: an authorization-code + PKCE sign-in done by hand, for tokens the negative
  tests need (another audience, fewer scopes, no resource at all).
* :func:`forge`: a token signed by the test itself (another key, ``alg: none``, HMAC).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import secrets
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import anyio
import anyio.abc
import httpx
import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)

from atlas_image_mcp.http import create_http_app
from atlas_image_mcp.runtime import Runtime
from atlas_image_mcp.settings import Settings

from .conftest import TEST_KEY, make_api
from .emulation import Emulator
from .http_helpers import free_port, serve_app
from .npm_tools import NpmTools, require_tools

PROVIDER_SCRIPT = Path(__file__).resolve().parent / "oidc_provider.mjs"
CHROMIUM = ("/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/lib/chromium-browser/chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-sync",
]
#: The provider's pre-registered clients (tests/oidc_provider.mjs).
TEST_CLIENT = "atlas-test-client"
SERVER_CLIENT, SERVER_SECRET = "atlas-server", "atlas-server-secret"
BOTH_SCOPES = "images:read images:generate"
START_SECONDS = 20.0
WAIT_MS = 20_000


# --- the OpenID provider --------------------------------------------------------------------------


@dataclass
class Provider:
    """A running oidc-provider: its issuer URL and the key id its access tokens are signed with."""

    tools: NpmTools
    env: dict[str, str]
    issuer: str = ""
    port: int = 0
    kid: str = ""
    process: subprocess.Popen[str] | None = field(default=None, repr=False)
    _readers: list[threading.Thread] = field(default_factory=list, repr=False)
    log: list[str] = field(default_factory=list, repr=False)

    def start(self) -> None:
        env = {
            **self.tools.env,
            **self.env,
            "OP_MODULES": str(self.tools.node_modules),
            "OP_PORT": str(self.port),
        }
        self.process = subprocess.Popen(
            [str(self.tools.node), str(PROVIDER_SCRIPT)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        self._readers = [
            threading.Thread(target=lambda: lines.put(self._first_line()), daemon=True),
            threading.Thread(target=self._drain_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        try:
            first = lines.get(timeout=START_SECONDS)
        except queue.Empty:
            self.stop()
            raise AssertionError("the OpenID provider did not start:\n" + "".join(self.log)) from None
        if not first:
            self.stop()
            raise AssertionError("the OpenID provider exited:\n" + "".join(self.log))
        info = json.loads(first)
        self.issuer, self.port, self.kid = info["issuer"], int(info["port"]), info["kid"]

    def _first_line(self) -> str:
        assert self.process is not None and self.process.stdout is not None
        return self.process.stdout.readline()

    def _drain_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            if len(self.log) < 500:
                self.log.append(line)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hang is a failure, not a leak
            self.process.kill()
            self.process.wait(timeout=10)
        for reader in self._readers:  # the pipes reach their end once the process is gone
            reader.join(timeout=10)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()
        self.process = None

    def restart(self) -> None:
        """Stop and start again on the same port: same issuer, new signing keys, no clients or grants
        remembered but the pre-registered ones."""
        self.stop()
        self.start()


@contextmanager
def start_provider(tools: NpmTools, **env: str) -> Iterator[Provider]:
    """A provider for the duration of the block (``env``: ``OP_*`` settings, see the script)."""
    provider = Provider(tools, {k: str(v) for k, v in env.items()})
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()


# --- the browser ----------------------------------------------------------------------------------


def chromium() -> str:
    found = next((path for path in CHROMIUM if os.access(path, os.X_OK)), None)
    if found is None:
        if os.environ.get("ATLAS_BROWSER_REQUIRED", "").strip().lower() in ("1", "true", "yes"):
            pytest.fail(
                "the browser tests must run here (ATLAS_BROWSER_REQUIRED), but Chromium is not installed"
            )
        pytest.skip("Chromium is not installed (Debian/Ubuntu: apt-get install chromium)")
    return found


class Browser:
    """Headless Chromium for one test (async Playwright, in the test's event loop)."""

    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.pages_opened: list[str] = []

    async def sign_in(self, url: str, user: str, *, until: str, context: Any = None) -> Any:
        """Open ``url`` (an authorization request), sign in as ``user`` on the provider's login page
        (when it shows one), consent (when asked), and wait until the browser is sent to a URL that
        starts with ``until``; the page (its context kept)."""
        context = context or await self.browser.new_context()
        page = await context.new_page()
        self.pages_opened.append(url)
        await page.goto(url, timeout=WAIT_MS)
        if await page.locator("input[name=login]").count():
            await page.fill("input[name=login]", user)
            await page.fill("input[name=password]", "any password")
            await page.click("button[type=submit]")
        arrived = "(until) => location.href.startsWith(until)"
        consent = (
            "(until) => location.href.startsWith(until) || "
            "[...document.querySelectorAll('button')].some((b) => b.textContent.trim() === 'Continue')"
        )
        await page.wait_for_function(consent, arg=until, timeout=WAIT_MS)
        if not page.url.startswith(until):
            await page.click("button:has-text('Continue')")
            await page.wait_for_function(arrived, arg=until, timeout=WAIT_MS)
        await page.wait_for_load_state("load", timeout=WAIT_MS)
        return page


@asynccontextmanager
async def open_browser() -> AsyncIterator[Browser]:
    executable = chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield Browser(launched)
        finally:
            await launched.close()


# --- the SDK's OAuth client -----------------------------------------------------------------------


class MemoryStorage:
    """The SDK's ``TokenStorage``, in memory."""

    def __init__(self, client_info: OAuthClientInformationFull | None = None) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info = client_info

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class LoopbackCallback:
    """A listener on 127.0.0.1 that receives authorization responses (the client's redirect URI)."""

    def __init__(self) -> None:
        self.port = 0
        self._send, self._receive = anyio.create_memory_object_stream[dict[str, str]](4)

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}/callback"

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        task_status.started()

        async def handle(stream: anyio.abc.SocketStream) -> None:
            async with stream:
                head = b""
                with anyio.fail_after(10):
                    while b"\r\n\r\n" not in head and len(head) < 16384:
                        head += await stream.receive()
                target = head.split(b" ", 2)[1].decode()
                body = b"signed in"
                await stream.send(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                if urlsplit(target).path == "/callback":
                    await self._send.send({k: v[0] for k, v in parse_qs(urlsplit(target).query).items()})

        async with listener:
            await listener.serve(handle)

    def close(self) -> None:
        self._send.close()
        self._receive.close()

    async def result(self) -> AuthorizationCodeResult:
        with anyio.fail_after(60):
            query = await self._receive.receive()
        if "error" in query:
            raise AssertionError(f"the authorization server refused: {query}")
        return AuthorizationCodeResult(code=query["code"], state=query.get("state"), iss=query.get("iss"))


@dataclass
class SignInLog:
    """What the SDK client's sign-ins asked for (each authorization URL's query)."""

    requests: list[dict[str, str]] = field(default_factory=list)


@asynccontextmanager
async def oauth_client(
    mcp_url: str,
    browser: Browser,
    user: str,
    *,
    preregistered: bool = False,
    storage: MemoryStorage | None = None,
    log: SignInLog | None = None,
    **client_options: Any,
) -> AsyncIterator[Client]:
    """An ``mcp.Client`` whose HTTP client signs in as ``user`` through the SDK's OAuth support."""
    callback = LoopbackCallback()
    async with anyio.create_task_group() as group:
        await group.start(callback.serve)

        async def redirect(url: str) -> None:
            if log is not None:
                log.requests.append({k: v[0] for k, v in parse_qs(urlsplit(url).query).items()})
            page = await browser.sign_in(url, user, until=callback.redirect_uri)
            await page.context.close()

        if storage is None:
            info = None
            if preregistered:
                info = OAuthClientInformationFull(
                    client_id=TEST_CLIENT,
                    token_endpoint_auth_method="none",
                    redirect_uris=["http://127.0.0.1/callback"],
                    grant_types=["authorization_code", "refresh_token"],
                )
            storage = MemoryStorage(info)
        provider = OAuthClientProvider(
            server_url=mcp_url,
            client_metadata=OAuthClientMetadata(
                client_name="atlas-image-mcp tests",
                redirect_uris=[callback.redirect_uri],  # type: ignore[list-item]
                grant_types=["authorization_code", "refresh_token"],
                token_endpoint_auth_method="none",
            ),
            storage=storage,
            redirect_handler=redirect,
            callback_handler=callback.result,
        )
        http = httpx2.AsyncClient(auth=provider, timeout=httpx2.Timeout(15, read=60))
        client_options.setdefault("read_timeout_seconds", 60)
        try:
            async with (
                http,
                Client(streamable_http_client(mcp_url, http_client=http), **client_options) as client,
            ):
                yield client
        finally:
            group.cancel_scope.cancel()
            callback.close()


# --- the server ---------------------------------------------------------------------------------


@contextmanager
def hosted(emulator: Emulator, issuer: str, **changes: Any) -> Iterator[str]:
    """The HTTP server with sign-in on, the server's key paying (its public URL is where it
    listens, on a free port); yields that URL."""
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    settings = Settings(api_key=TEST_KEY, oauth_issuer=issuer, public_url=public, wait_seconds=10, **changes)
    api_key = None if settings.user_keys else TEST_KEY
    runtime = Runtime.create(settings, remote=True, client=make_api(emulator, api_key=api_key))
    with serve_app(create_http_app(runtime), port=port) as base:
        assert base == public
        yield base


@contextmanager
def linking_server(emulator: Emulator, issuer: str, database: Path) -> Iterator[str]:
    """The HTTP server with sign-in and linked keys, kept in the SQLite file ``database``."""
    port = free_port()
    settings = Settings(
        oauth_issuer=issuer,
        public_url=f"http://127.0.0.1:{port}",
        user_keys=True,
        oauth_client_id=SERVER_CLIENT,
        oauth_client_secret=SERVER_SECRET,
        linked_key_secret=base64.b64encode(os.urandom(32)).decode(),
        database_url=f"sqlite:///{database}",
        wait_seconds=10,
    )
    runtime = Runtime.create(settings, remote=True, client=make_api(emulator, api_key=None))
    with serve_app(create_http_app(runtime), port=port) as base:
        yield base


# --- tokens by hand -------------------------------------------------------------------------------


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


async def token_for(
    browser: Browser, issuer: str, *, resource: str | None, user: str, scope: str = BOTH_SCOPES
) -> dict[str, Any]:
    """The token response of a sign-in done by hand (the pre-registered public client, PKCE);
    ``resource`` None asks for no resource at all."""
    redirect = "http://127.0.0.1:9/callback"  # never served: the browser's way there is intercepted
    async with httpx.AsyncClient(timeout=10) as http:
        meta = (await http.get(f"{issuer}/.well-known/oauth-authorization-server")).json()
        verifier, challenge = pkce()
        state = secrets.token_urlsafe(12)
        params = {
            "response_type": "code",
            "client_id": TEST_CLIENT,
            "redirect_uri": redirect,
            "scope": scope,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        if resource is not None:
            params["resource"] = resource
        context = await browser.browser.new_context()
        landed: dict[str, str] = {}

        async def catch(route: Any) -> None:
            landed["url"] = route.request.url
            await route.fulfill(status=200, body="ok")

        await context.route("http://127.0.0.1:9/**", catch)
        try:
            await browser.sign_in(
                f"{meta['authorization_endpoint']}?{urlencode(params)}", user, until=redirect, context=context
            )
        finally:
            await context.close()
        query = {k: v[0] for k, v in parse_qs(urlsplit(landed["url"]).query).items()}
        assert query.get("state") == state and query.get("iss") == issuer, query
        form = {
            "grant_type": "authorization_code",
            "code": query["code"],
            "redirect_uri": redirect,
            "client_id": TEST_CLIENT,
            "code_verifier": verifier,
        }
        if resource is not None:
            form["resource"] = resource
        answer = await http.post(meta["token_endpoint"], data=form)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


def claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def forge(claims: dict[str, Any], *, alg: str = "RS256", kid: str | None = None, typ: str = "at+jwt") -> str:
    """A token with these claims signed by a key of the test's own (``none``: unsigned; ``HS256``:
    an HMAC with a made-up secret)."""
    headers = {"typ": typ, **({"kid": kid} if kid else {})}
    if alg == "none":
        head = base64.urlsafe_b64encode(json.dumps({"alg": "none", **headers}).encode()).decode().rstrip("=")
        body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        return f"{head}.{body}."
    if alg.startswith("HS"):
        return jwt.encode(claims, "a shared secret, 32 bytes or more!!", algorithm=alg, headers=headers)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def standard_claims(
    issuer: str, audience: str, *, sub: str = "mallory", scope: str = BOTH_SCOPES
) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": issuer, "aud": audience, "sub": sub, "client_id": TEST_CLIENT, "scope": scope,
            "iat": now, "exp": now + 300, "jti": secrets.token_hex(8)}  # fmt: skip


# --- raw requests to the server -------------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def www_authenticate(response: httpx.Response) -> dict[str, str]:
    """The parameters of a ``WWW-Authenticate: Bearer ...`` header (values unquoted)."""
    import re

    value = response.headers.get("www-authenticate", "")
    assert value.startswith("Bearer "), value
    return dict(re.findall(r'(\w+)="([^"]*)"', value))


# --- the fixtures of the sign-in tests (imported by each of their modules) -----------------------


@pytest.fixture(scope="module")
def tools() -> NpmTools:
    """Node and the npm packages (oidc-provider, mcp-remote, the Inspector), or the module is skipped."""
    return require_tools()


@pytest.fixture(scope="module")
def provider(tools: NpmTools) -> Iterator[Provider]:
    """A real OpenID provider for the module's tests."""
    with start_provider(tools) as running:
        yield running


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """A headless Chromium that completes the provider's login and consent pages."""
    async with open_browser() as opened:
        yield opened
