"""Sign-in over HTTP: the server as an OAuth 2.1 resource server, tested against a real OpenID provider.

The provider is the npm package oidc-provider (``tests/oidc_provider.mjs``) on a loopback port;
people sign in on its pages in headless Chromium; the clients are real (the MCP Python SDK's own
OAuth client, and mcp-remote in ``test_oauth_clients.py``). Each case says what the MCP
authorization specification (and the RFCs it builds on) asks of a resource server.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

from atlas_image_mcp.http import create_http_app
from atlas_image_mcp.runtime import Runtime
from atlas_image_mcp.settings import Settings, SettingsError

from .conftest import TEST_KEY, make_api, text_of
from .emulation import Emulator
from .http_helpers import (
    ENTRY_POINT,
    INITIALIZE,
    MCP_HEADERS,
    RawSession,
    child_env,
    free_port,
    mcp_client,
    serve_app,
)
from .npm_tools import NpmTools
from .oauth_helpers import (
    BOTH_SCOPES,
    SERVER_CLIENT,
    SERVER_SECRET,
    TEST_CLIENT,
    Browser,
    MemoryStorage,
    Provider,
    SignInLog,
    bearer,
    claims_of,
    forge,
    hosted,
    oauth_client,
    standard_claims,
    start_provider,
    token_for,
    www_authenticate,
)

pytestmark = [pytest.mark.timeout(180)]

PRM = "/.well-known/oauth-protected-resource"
PREREGISTERED = OAuthClientInformationFull(
    client_id=TEST_CLIENT,
    token_endpoint_auth_method="none",
    redirect_uris=["http://127.0.0.1/callback"],  # type: ignore[list-item]
    grant_types=["authorization_code", "refresh_token"],
)


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


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"oauth_issuer": "http://login.example.com"}, "ATLAS_MCP_OAUTH_ISSUER must use https://"),
        ({"public_url": "ftp://mcp.example.com"}, "ATLAS_MCP_PUBLIC_URL must be an http:// or https:// URL"),
        (
            {"linked_key_secret": "c2hvcnQ="},
            "ATLAS_MCP_LINKED_KEY_SECRET must each be base64 of 32 random bytes",
        ),
    ],
)
def test_sign_in_settings_that_cannot_be_right_are_refused_in_plain_words(
    changes: dict[str, str], said: str
) -> None:
    with pytest.raises(SettingsError, match=said):
        Settings(**changes)


@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"ATLAS_MCP_OAUTH_ISSUER": "https://login.example.com"}, "ATLAS_MCP_PUBLIC_URL must say where"),
        (
            {"ATLAS_MCP_OAUTH_ISSUER": "https://login.example.com", "ATLAS_MCP_PUBLIC_URL": "https://x.example",
             "ATLAS_MCP_USER_KEYS": "1"},
            "set ATLAS_MCP_OAUTH_CLIENT_ID and ATLAS_MCP_OAUTH_CLIENT_SECRET and ATLAS_MCP_LINKED_KEY_SECRET",
        ),
        (
            {"ATLAS_MCP_OAUTH_ISSUER": "https://login.example.com", "ATLAS_MCP_PUBLIC_URL": "https://x.example",
             "ATLAS_MCP_AUTH_TOKEN": "t" * 24},
            "unset ATLAS_MCP_AUTH_TOKEN",
        ),
    ],
    ids=["no-public-url", "linked-keys-without-client", "with-a-static-token"],
)  # fmt: skip
def test_the_server_will_not_start_with_sign_in_settings_that_cannot_work(
    tmp_path: Path, env: dict[str, str], said: str
) -> None:
    proc = subprocess.run(
        [str(ENTRY_POINT), "--offline", "serve", "--transport", "http", "--port", str(free_port())],
        env=child_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2, proc.stderr
    assert said in proc.stderr


# --- a real provider -----------------------------------------------------------------------------


@pytest.mark.npm
@pytest.mark.browser
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
@pytest.mark.parametrize("preregistered", [False, True], ids=["registered", "preregistered"])
async def test_the_sdk_client_signs_in_in_the_browser_and_makes_a_picture(
    emulator: Emulator, provider: Provider, browser: Browser, caplog: pytest.LogCaptureFixture, mode: str,
    preregistered: bool,
) -> None:  # fmt: skip
    """The SDK's own client: discovery from the 401, the metadata, dynamic registration (RFC 7591) or
    the client registered beforehand, PKCE, the token; then a picture, on either protocol era."""
    log = SignInLog()
    storage = MemoryStorage(PREREGISTERED if preregistered else None)
    with hosted(emulator, provider.issuer) as base:
        async with oauth_client(
            f"{base}/mcp", browser, "alice", storage=storage, log=log, mode=mode
        ) as client:
            result = await client.call_tool("generate_image", {"prompt": "a lighthouse at dusk"})
            assert not result.is_error, text_of(result)
            assert result.structured_content and result.structured_content["status"] == "completed"
    (asked,) = log.requests  # one sign-in
    assert asked["resource"] == f"{base}/mcp"
    assert asked["code_challenge_method"] == "S256"
    assert set(asked["scope"].split()) >= {"images:read", "images:generate"}
    assert (asked["client_id"] == TEST_CLIENT) == preregistered
    assert storage.tokens is not None
    token = storage.tokens.access_token
    assert claims_of(token)["aud"] == f"{base}/mcp" and claims_of(token)["sub"] == "alice"
    # the access token went nowhere but to this server: not to Atlas, not into a log
    assert all(token not in str(r.headers) + r.body.decode("latin-1") for r in emulator.requests)
    keys = {r.headers["authorization"] for r in emulator.requests if "authorization" in r.headers}
    assert keys == {f"Bearer {TEST_KEY}"}  # the server's own key paid
    assert token not in caplog.text


# --- tokens that must be refused --------------------------------------------------------------------


def refusal(base: str, token: str) -> tuple[int, dict[str, str], str]:
    """Status, challenge parameters and JSON-RPC message of an initialize sent with ``token``."""
    answer = httpx.post(f"{base}/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **bearer(token)}, timeout=10)
    challenge = www_authenticate(answer) if answer.status_code in (401, 403) else {}
    assert token not in answer.text and token not in answer.headers.get("www-authenticate", "")
    message = answer.json()["error"]["message"] if answer.status_code != 200 else ""
    return answer.status_code, challenge, message


def assert_invalid_token(base: str, token: str, reason: str) -> None:
    status, challenge, message = refusal(base, token)
    assert status == 401, message
    assert challenge["error"] == "invalid_token"
    assert reason in challenge["error_description"], challenge
    assert challenge["resource_metadata"] == f"{base}{PRM}/mcp"
    assert challenge["scope"] == BOTH_SCOPES
    assert reason in message


@pytest.mark.npm
@pytest.mark.browser
async def test_tokens_for_another_resource_of_another_issuer_or_of_another_kind_are_refused(
    emulator: Emulator, provider: Provider, tools: NpmTools, browser: Browser
) -> None:
    with hosted(emulator, provider.issuer) as base:
        good = (await token_for(browser, provider.issuer, resource=f"{base}/mcp", user="carol"))[
            "access_token"
        ]
        assert refusal(base, good)[0] == 200  # the control: the same sign-in, for this resource
        other = await token_for(browser, provider.issuer, resource="http://127.0.0.1:9/other", user="carol")
        assert claims_of(other["access_token"])["aud"] == "http://127.0.0.1:9/other"
        assert_invalid_token(base, other["access_token"], "issued for another resource")
        # no resource named: an opaque token for the userinfo endpoint (and an ID token, typ JWT)
        bare = await token_for(browser, provider.issuer, resource=None, user="carol", scope="openid")
        assert bare["access_token"].count(".") != 2
        assert_invalid_token(base, bare["access_token"], "not a JWT access token")
        assert_invalid_token(base, bare["id_token"], "typ is not at+jwt")  # an ID token is no access token
        with start_provider(tools) as elsewhere:
            foreign = await token_for(browser, elsewhere.issuer, resource=f"{base}/mcp", user="carol")
        assert claims_of(foreign["access_token"])["aud"] == f"{base}/mcp"
        assert_invalid_token(base, foreign["access_token"], "issued by another authorization server")


@pytest.mark.npm
@pytest.mark.browser
@pytest.mark.parametrize(
    ("offset", "reason"), [(-900, "has expired"), (900, "not valid yet")], ids=["expired", "not-yet-valid"]
)
async def test_a_token_outside_its_lifetime_is_refused(
    emulator: Emulator, tools: NpmTools, browser: Browser, offset: int, reason: str
) -> None:
    """The provider's clock is moved (its tokens live 300 s): a token that expired 600 s ago, or
    that starts 900 s from now, well past the 30 s of skew allowed; no waiting."""
    with (
        start_provider(tools, OP_CLOCK_OFFSET=str(offset)) as shifted,
        hosted(emulator, shifted.issuer) as base,
    ):
        token = (await token_for(browser, shifted.issuer, resource=f"{base}/mcp", user="dave"))[
            "access_token"
        ]
        assert abs(claims_of(token)["iat"] - time.time() - offset) < 60
        assert_invalid_token(base, token, reason)


@pytest.mark.npm
@pytest.mark.browser
async def test_a_token_signed_by_anyone_but_the_issuer_is_refused(
    emulator: Emulator, tools: NpmTools, browser: Browser
) -> None:
    with start_provider(tools) as op, hosted(emulator, op.issuer) as base:
        real = (await token_for(browser, op.issuer, resource=f"{base}/mcp", user="erin"))["access_token"]
        assert refusal(base, real)[0] == 200
        claims = claims_of(real)
        # the issuer's own key id and claims, another key's signature
        assert_invalid_token(base, forge(claims, kid=op.kid), "signature does not verify")
        # unsigned, or signed with a shared secret: refused before any key is looked up
        assert_invalid_token(base, forge(claims, alg="none", kid=op.kid), "algorithm")
        assert_invalid_token(base, forge(claims, alg="HS256", kid=op.kid), "algorithm")
        # a JWT that does not say it is an access token (RFC 9068 typ)
        assert_invalid_token(base, forge(claims, kid=op.kid, typ="JWT"), "typ is not at+jwt")
        # the provider starts again with new keys (a rotation): the first token signed with a new
        # key fetches the key set again at once, and the earlier tokens' key is gone from it
        op.restart()
        fresh = (await token_for(browser, op.issuer, resource=f"{base}/mcp", user="erin"))["access_token"]
        assert refusal(base, fresh)[0] == 200
        assert_invalid_token(base, real, "does not publish")


@pytest.mark.npm
@pytest.mark.browser
async def test_a_token_without_the_scope_a_call_needs_gets_403_naming_every_scope_it_needs(
    emulator: Emulator, provider: Provider, browser: Browser
) -> None:
    with hosted(emulator, provider.issuer) as base:
        answer = await token_for(
            browser, provider.issuer, resource=f"{base}/mcp", user="frank", scope="images:read"
        )
        reader = answer["access_token"]
        assert claims_of(reader)["scope"] == "images:read"
        async with httpx.AsyncClient(timeout=20) as http:
            session = RawSession(http, f"{base}/mcp", bearer(reader))
            await session.open()
            models = await session.call("tools/call", name="list_models", arguments={})
            assert "result" in models and not models["result"].get("isError")
            message = session._message("tools/call", {"name": "generate_image", "arguments": {"prompt": "x"}})
            refused = await http.post(session.url, headers=session.headers, json=message)
        assert refused.status_code == 403
        assert www_authenticate(refused) == {
            "error": "insufficient_scope",
            "error_description": "Making or uploading pictures needs the images:generate permission",
            "resource_metadata": f"{base}{PRM}/mcp",
            "scope": "images:read images:generate",
        }
        assert emulator.count("POST") == 0  # nothing reached Atlas


@pytest.mark.npm
@pytest.mark.browser
async def test_the_sdk_client_steps_up_to_the_scope_a_call_needs_with_a_second_sign_in(
    emulator: Emulator, provider: Provider, browser: Browser
) -> None:
    """A client holding a read-only token: its first picture call gets the 403 step-up challenge, and
    the SDK's client signs in again (a second browser round) for both scopes, then succeeds."""
    log = SignInLog()
    with hosted(emulator, provider.issuer) as base:
        answer = await token_for(
            browser, provider.issuer, resource=f"{base}/mcp", user="grace", scope="images:read"
        )
        storage = MemoryStorage(PREREGISTERED)
        storage.tokens = OAuthToken(
            access_token=answer["access_token"], token_type="Bearer", scope="images:read"
        )
        async with oauth_client(f"{base}/mcp", browser, "grace", storage=storage, log=log) as client:
            listed = await client.call_tool("list_models", {})
            assert not listed.is_error and log.requests == []  # the read-only token was enough
            made = await client.call_tool("generate_image", {"prompt": "a kite"})
            assert not made.is_error, text_of(made)
    (step_up,) = log.requests
    assert set(step_up["scope"].split()) >= {"images:read", "images:generate"}
    assert claims_of(storage.tokens.access_token)["sub"] == "grace"
    assert "images:generate" in claims_of(storage.tokens.access_token)["scope"].split()


@pytest.mark.npm
@pytest.mark.browser
async def test_opaque_tokens_are_introspected_only_with_client_credentials_and_must_name_this_resource(
    emulator: Emulator, tools: NpmTools, browser: Browser
) -> None:
    credentials = {"oauth_client_id": SERVER_CLIENT, "oauth_client_secret": SERVER_SECRET}
    with start_provider(tools, OP_FORMAT="opaque") as op:
        with hosted(emulator, op.issuer) as base:  # no credentials: an opaque token cannot be checked
            token = (await token_for(browser, op.issuer, resource=f"{base}/mcp", user="heidi"))[
                "access_token"
            ]
            assert token.count(".") != 2
            assert_invalid_token(base, token, "not a JWT access token")
        with hosted(emulator, op.issuer, **credentials) as base:
            token = (await token_for(browser, op.issuer, resource=f"{base}/mcp", user="heidi"))[
                "access_token"
            ]
            assert refusal(base, token)[0] == 200
            # active at the issuer, but made for its userinfo endpoint: no audience, so refused
            bare = await token_for(browser, op.issuer, resource=None, user="heidi", scope="openid")
            assert_invalid_token(base, bare["access_token"], "issued for another resource")
            # a JWT that is not an access token is asked about too (the issuer does not know it as one)
            assert_invalid_token(base, bare["id_token"], "not active")
            assert_invalid_token(base, "not-a-token-the-issuer-knows", "not active")


# --- what belongs to whom -------------------------------------------------------------------------------


def result_text(answer: dict[str, Any]) -> str:
    return "\n".join(block.get("text", "") for block in answer["result"]["content"])


@pytest.mark.npm
@pytest.mark.browser
async def test_two_signed_in_users_never_see_each_others_pictures_usage_or_tasks(
    emulator: Emulator, provider: Provider, browser: Browser
) -> None:
    """Alice and Bob share the server's Atlas key and know nothing but their own sign-in."""
    with hosted(emulator, provider.issuer) as base:
        tokens = {
            user: (await token_for(browser, provider.issuer, resource=f"{base}/mcp", user=user))[
                "access_token"
            ]
            for user in ("alice", "bob")
        }
        async with httpx.AsyncClient(timeout=30) as http:
            alice = RawSession(http, f"{base}/mcp", bearer(tokens["alice"]))
            bob = RawSession(http, f"{base}/mcp", bearer(tokens["bob"]))
            await alice.open()
            await bob.open()
            made = await alice.call("tools/call", name="generate_image", arguments={"prompt": "a red boat"})
            prediction = made["result"]["structuredContent"]["prediction_id"]
            task = await alice.call(
                "tools/call", name="generate_image", arguments={"prompt": "a", "num_images": 1}, task={}
            )
            task_id = task["result"]["task"]["taskId"]
            seen = {
                who: {
                    "gallery": await session.call("tools/call", name="show_gallery", arguments={}),
                    "usage": await session.call("tools/call", name="get_usage", arguments={}),
                    "last": await session.call(
                        "tools/call",
                        name="edit_image",
                        arguments={"image": "last", "prompt": "blue", "dry_run": True},
                    ),
                    "tasks": (await session.call("tasks/list"))["result"]["tasks"],
                    "task": await session.call("tasks/get", taskId=task_id),
                }
                for who, session in (("alice", alice), ("bob", bob))
            }
            # Bob's own session id is no way into Alice's: the SDK binds a session to its principal
            stolen = await http.post(
                alice.url,
                headers={**bob.headers, "mcp-session-id": alice.headers["mcp-session-id"]},
                json={"jsonrpc": "2.0", "id": 99, "method": "tools/list"},
            )
    assert prediction in result_text(seen["alice"]["gallery"])
    assert prediction not in result_text(seen["bob"]["gallery"])
    assert seen["alice"]["usage"]["result"]["structuredContent"]["images"] == 2
    assert prediction in str(seen["alice"]["usage"]["result"]["structuredContent"]["largest_calls"])
    assert seen["bob"]["usage"]["result"]["structuredContent"]["images"] == 0
    assert not seen["alice"]["last"]["result"].get("isError")
    assert seen["bob"]["last"]["result"]["isError"]
    assert [t["taskId"] for t in seen["alice"]["tasks"]] == [task_id]
    assert seen["bob"]["tasks"] == []
    assert "result" in seen["alice"]["task"] and "error" in seen["bob"]["task"]
    assert stolen.status_code == 404


@pytest.mark.npm
@pytest.mark.browser
async def test_legacy_sse_takes_the_same_tokens_and_keeps_each_stream_to_its_user(
    emulator: Emulator, provider: Provider, browser: Browser
) -> None:
    with hosted(emulator, provider.issuer) as base:
        tokens = {
            user: (await token_for(browser, provider.issuer, resource=f"{base}/mcp", user=user))[
                "access_token"
            ]
            for user in ("judy", "mallory")
        }
        async with mcp_client(base, "sse", bearer(tokens["judy"])) as client:
            result = await client.call_tool("generate_image", {"prompt": "fox", "dry_run": True})
            assert not result.is_error and result.structured_content["status"] == "dry_run"
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        async with httpx.AsyncClient(timeout=10) as http:
            async with http.stream("GET", f"{base}/sse", headers=bearer(tokens["judy"])) as stream:
                lines = stream.aiter_lines()
                endpoint = ""
                async for line in lines:
                    if line.startswith("data:"):
                        endpoint = line[5:].strip()
                        break
                theirs = await http.post(base + endpoint, json=ping, headers=bearer(tokens["mallory"]))
                nobody = await http.post(base + endpoint, json=ping)
                own = await http.post(base + endpoint, json=ping, headers=bearer(tokens["judy"]))
    assert theirs.status_code in (403, 404) and nobody.status_code == 401 and own.status_code == 202


@pytest.mark.npm
@pytest.mark.browser
async def test_every_signed_in_user_has_their_own_daily_budget_on_the_servers_key(
    emulator: Emulator, provider: Provider, browser: Browser
) -> None:
    """The server's key pays for both; ATLAS_MCP_BUDGET_USD_PER_USER_PER_DAY holds for each user:
    Alice's second picture would go over hers, Bob's first is his own."""
    picture = {"prompt": "a bell", "return_image": "none"}  # flux-schnell, $0.003
    with hosted(emulator, provider.issuer, budget_usd_per_user_per_day="0.005") as base:
        tokens = {
            user: (await token_for(browser, provider.issuer, resource=f"{base}/mcp", user=user))[
                "access_token"
            ]
            for user in ("nina", "omar")
        }
        async with httpx.AsyncClient(timeout=30) as http:
            nina = RawSession(http, f"{base}/mcp", bearer(tokens["nina"]))
            omar = RawSession(http, f"{base}/mcp", bearer(tokens["omar"]))
            await nina.open()
            await omar.open()
            first = await nina.call("tools/call", name="generate_image", arguments=picture)
            second = await nina.call("tools/call", name="generate_image", arguments=picture)
            other = await omar.call("tools/call", name="generate_image", arguments=picture)
    assert not first["result"].get("isError")
    assert second["result"]["isError"]
    assert "ATLAS_MCP_BUDGET_USD_PER_USER_PER_DAY" in result_text(second)
    assert "for each signed-in user" in result_text(second)
    assert not other["result"].get("isError")
    assert emulator.count("POST", "*/generateImage") == 2
