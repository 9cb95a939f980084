"""Sign-in over HTTP: the server as an OAuth 2.1 resource server, tested against a real OpenID provider.

The provider is the npm package oidc-provider (``tests/oidc_provider.mjs``) on a loopback port;
people sign in on its pages in headless Chromium; the clients are real (the MCP Python SDK's own
OAuth client, and mcp-remote in ``test_oauth_clients.py``). Each case says what the MCP
authorization specification (and the RFCs it builds on) asks of a resource server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from atlas_image_mcp.http import create_http_app
from atlas_image_mcp.runtime import Runtime
from atlas_image_mcp.settings import Settings

from .conftest import TEST_KEY, make_api, text_of
from .emulation import Emulator
from .http_helpers import INITIALIZE, MCP_HEADERS, free_port, serve_app
from .npm_tools import NpmTools, require_tools
from .oauth_helpers import (
    Browser,
    Provider,
    SignInLog,
    forge,
    oauth_client,
    open_browser,
    standard_claims,
    start_provider,
    www_authenticate,
)

pytestmark = [pytest.mark.timeout(180)]

PRM = "/.well-known/oauth-protected-resource"


@contextmanager
def hosted(emulator: Emulator, issuer: str, **changes: Any) -> Iterator[str]:
    """The HTTP server with sign-in on (its public URL is where it listens); yields that URL."""
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    settings = Settings(api_key=TEST_KEY, oauth_issuer=issuer, public_url=public, wait_seconds=10, **changes)
    api_key = None if settings.user_keys else TEST_KEY
    runtime = Runtime.create(settings, remote=True, client=make_api(emulator, api_key=api_key))
    with serve_app(create_http_app(runtime), port=port) as base:
        assert base == public
        yield base


# --- without a provider: what the server says before any token is checked --------------------------


def test_without_sign_in_the_well_known_paths_answer_404_and_invite_nothing(emulator: Emulator) -> None:
    runtime = Runtime.create(
        Settings(api_key=TEST_KEY, auth_token="t" * 24), remote=True, client=make_api(emulator)
    )
    with serve_app(create_http_app(runtime)) as base:
        for path in (
            PRM,
            PRM + "/mcp",
            "/.well-known/oauth-authorization-server",
            "/.well-known/openid-configuration",
            "/mcp/.well-known/openid-configuration",
            "/register",
        ):
            answer = httpx.get(base + path, timeout=5)
            assert answer.status_code == 404, path
            assert "www-authenticate" not in answer.headers
        refused = httpx.post(f"{base}/mcp", json=INITIALIZE, headers=MCP_HEADERS, timeout=5)
        assert refused.status_code == 400 and "www-authenticate" not in refused.headers
        message = refused.json()["error"]["message"]
        assert "Authorization: Bearer <ATLAS_MCP_AUTH_TOKEN>" in message and "Unauthorized" not in message


def test_the_metadata_is_served_at_both_well_known_paths_to_anyone(emulator: Emulator) -> None:
    with hosted(emulator, "http://127.0.0.1:9") as base:
        for path in (PRM + "/mcp", PRM):
            answer = httpx.get(base + path, timeout=5)
            assert answer.status_code == 200
            assert answer.headers["access-control-allow-origin"] == "*"
            assert answer.json() == {
                "resource": f"{base}/mcp",
                "authorization_servers": ["http://127.0.0.1:9"],
                "scopes_supported": ["images:read", "images:generate"],
                "bearer_methods_supported": ["header"],
                "resource_name": "atlas-image-mcp: pictures with the FLUX models on Atlas Cloud",
                "resource_documentation": "https://pypi.org/project/atlas-image-mcp/",
            }
        preflight = httpx.options(base + PRM + "/mcp", headers={"origin": "https://x.example"}, timeout=5)
        assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == "*"
        assert httpx.get(f"{base}/.well-known/oauth-authorization-server", timeout=5).status_code == 404
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200


def test_a_request_without_a_token_gets_401_naming_the_metadata_and_both_scopes(emulator: Emulator) -> None:
    with hosted(emulator, "http://127.0.0.1:9") as base:
        for send in (
            lambda: httpx.post(f"{base}/mcp", json=INITIALIZE, headers=MCP_HEADERS, timeout=5),
            lambda: httpx.get(f"{base}/mcp", headers={"accept": "text/event-stream"}, timeout=5),
            lambda: httpx.get(f"{base}/sse", timeout=5),
        ):
            answer = send()
            assert answer.status_code == 401
            assert www_authenticate(answer) == {
                "resource_metadata": f"{base}{PRM}/mcp",
                "scope": "images:read images:generate",
            }  # no error code: no credentials were sent (RFC 6750 3.1)
            assert answer.json()["error"]["message"].startswith("Sign-in required")


def test_malformed_credentials_get_400_invalid_request(emulator: Emulator) -> None:
    with hosted(emulator, "http://127.0.0.1:9") as base:
        token = forge(standard_claims("http://127.0.0.1:9", f"{base}/mcp"))
        twice = httpx.post(
            f"{base}/mcp",
            json=INITIALIZE,
            headers=[
                *MCP_HEADERS.items(),
                ("authorization", f"Bearer {token}"),
                ("authorization", f"Bearer {token}"),
            ],
            timeout=5,
        )
        in_query = httpx.post(
            f"{base}/mcp?access_token={token}", json=INITIALIZE, headers=MCP_HEADERS, timeout=5
        )
        basic = httpx.post(
            f"{base}/mcp", json=INITIALIZE, headers={**MCP_HEADERS, "authorization": "Basic eDp5"}, timeout=5
        )
        for answer in (twice, in_query, basic):
            assert answer.status_code == 400
            assert www_authenticate(answer)["error"] == "invalid_request"
            assert token not in answer.text


# --- a real provider -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tools() -> NpmTools:
    return require_tools()


@pytest.fixture(scope="module")
def provider(tools: NpmTools) -> Iterator[Provider]:
    with start_provider(tools) as running:
        yield running


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with open_browser() as opened:
        yield opened


@pytest.mark.npm
@pytest.mark.browser
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_the_sdk_client_registers_signs_in_in_the_browser_and_makes_a_picture(
    emulator: Emulator, provider: Provider, browser: Browser, mode: str
) -> None:
    log = SignInLog()
    with hosted(emulator, provider.issuer) as base:
        async with oauth_client(f"{base}/mcp", browser, "alice", log=log, mode=mode) as client:
            result = await client.call_tool("generate_image", {"prompt": "a lighthouse at dusk"})
            assert not result.is_error, text_of(result)
            assert result.structured_content and result.structured_content["status"] == "completed"
    (asked,) = log.requests  # one sign-in: discovery from the 401, registration, PKCE
    assert asked["resource"] == f"{base}/mcp"
    assert asked["code_challenge_method"] == "S256"
    assert set(asked["scope"].split()) >= {"images:read", "images:generate"}
    assert asked["client_id"] != "atlas-test-client"  # registered dynamically (RFC 7591)
