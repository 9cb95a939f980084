"""Each signed-in user's own Atlas key: asked for through the client, linked on this server's page.

The provider is oidc-provider on a loopback port (``tests/oidc_provider.mjs``), the browser headless
Chromium, the MCP client the SDK's own (with its OAuth support); Atlas is the emulator, which
records the key each request carried. What is checked is what the person and Atlas see: the link
in the answer, the page, the key Atlas receives, and the database file on disk.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from mcp.shared.exceptions import MCPError, UrlElicitationRequiredError
from mcp_types import ElicitRequestURLParams, ElicitResult

from .conftest import TEST_KEY, text_of
from .emulation import Emulator
from .oauth_helpers import (
    Browser,
    Provider,
    linking_server,
    oauth_client,
)

pytestmark = [pytest.mark.npm, pytest.mark.browser, pytest.mark.timeout(180)]

ALICE_KEY = "apikey-ALICE-linked-0123456789abcdef"
BOB_KEY = "apikey-BOB-linked-fedcba9876543210"
PICTURE = {"prompt": "a paper crane", "return_image": "none"}


@pytest.fixture
def atlas() -> Emulator:
    return Emulator(api_keys=[TEST_KEY, ALICE_KEY, BOB_KEY], latency=0.05)


async def link_on_the_page(browser: Browser, url: str, user: str, key: str) -> str:
    """Open a link as ``user`` (signing in on the provider's page), paste ``key``; the page's text."""
    base = f"{urlsplit(url).scheme}://{urlsplit(url).netloc}"
    page = await browser.sign_in(url, user, until=base)  # back on this server (or never sent away)
    try:
        if not await page.locator("input[name=key]").count():
            return str(await page.inner_text("body"))
        await page.fill("input[name=key]", key)
        async with page.expect_navigation():
            await page.click("button[type=submit]")
        return str(await page.inner_text("body"))
    finally:
        await page.context.close()


def generate_posts(emulator: Emulator) -> list[str]:
    """The Authorization header of every picture job Atlas received."""
    return [
        r.headers.get("authorization", "")
        for r in emulator.requests
        if r.method == "POST" and "generate" in r.path
    ]


def assert_sealed_only(database: Path, key: str) -> None:
    """The key is in the store only sealed: no byte of the database files holds it."""
    files = [p for p in database.parent.iterdir() if p.name.startswith(database.name)]
    assert files
    for path in files:
        data = path.read_bytes()
        assert key.encode() not in data and key.encode("utf-16-le") not in data, path
    with sqlite3.connect(database) as db:
        (sealed,) = db.execute("SELECT sealed FROM linked_keys").fetchone()
    assert sealed.startswith("v1.") and key not in sealed


async def test_a_user_links_a_key_through_the_asked_for_page_and_the_call_then_spends_it(
    atlas: Emulator, provider: Provider, browser: Browser, tmp_path: Path
) -> None:
    """2026-07-28: the call answers input_required with a URL elicitation; the client opens the page,
    the person signs in as the same user and pastes the key; the retried call reaches Atlas with it."""
    database = tmp_path / "store.sqlite3"
    asked: list[ElicitRequestURLParams] = []
    pages: list[str] = []

    async def elicit(context: Any, params: Any) -> ElicitResult:
        assert isinstance(params, ElicitRequestURLParams)
        asked.append(params)
        pages.append(await link_on_the_page(browser, params.url, "alice", ALICE_KEY))
        return ElicitResult(action="accept")

    with linking_server(atlas, provider.issuer, database) as base:
        async with oauth_client(
            f"{base}/mcp", browser, "alice", mode="2026-07-28", elicitation_callback=elicit
        ) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            made = await client.call_tool("generate_image", PICTURE)
            assert not made.is_error, text_of(made)
            again = await client.call_tool("generate_image", PICTURE)  # linked once: no more asking
            assert not again.is_error
    assert "unlink_atlas_key" in tools
    (question,) = asked
    assert question.url.startswith(f"{base}/link?t=") and question.url in question.message
    assert "alice" not in question.url  # nothing personal in the link
    assert "Your Atlas key is linked" in pages[0] and ALICE_KEY not in pages[0]
    assert generate_posts(atlas) == [f"Bearer {ALICE_KEY}"] * 2
    assert_sealed_only(database, ALICE_KEY)


async def test_on_2025_11_25_the_call_answers_url_elicitation_required_with_the_link(
    atlas: Emulator, provider: Provider, browser: Browser, tmp_path: Path
) -> None:
    database = tmp_path / "store.sqlite3"

    async def elicit(context: Any, params: Any) -> ElicitResult:  # declares URL elicitation
        raise AssertionError("the link comes as the -32042 error, not as a request")

    with linking_server(atlas, provider.issuer, database) as base:
        async with oauth_client(
            f"{base}/mcp", browser, "bob", mode="legacy", elicitation_callback=elicit
        ) as client:
            with pytest.raises(MCPError) as raised:
                await client.call_tool("generate_image", PICTURE)
            assert raised.value.error.code == -32042
            (wanted,) = UrlElicitationRequiredError.from_error(raised.value.error).elicitations
            assert wanted.url in raised.value.error.message  # the link in the text too
            assert "linked" in await link_on_the_page(browser, wanted.url, "bob", BOB_KEY)
            made = await client.call_tool("generate_image", PICTURE)
            assert not made.is_error, text_of(made)
    assert generate_posts(atlas) == [f"Bearer {BOB_KEY}"]
    assert_sealed_only(database, BOB_KEY)


async def test_a_link_works_once_for_its_own_user_and_can_be_unlinked(
    atlas: Emulator, provider: Provider, browser: Browser, tmp_path: Path
) -> None:
    """A client without URL elicitation gets the link in the tool's text. Opened by another signed-in
    user it links nothing; after its user linked a key, opening it again is refused; unlinking makes
    the next call ask again."""
    with linking_server(atlas, provider.issuer, tmp_path / "store.sqlite3") as base:
        async with oauth_client(f"{base}/mcp", browser, "carol") as client:
            first = await client.call_tool("generate_image", PICTURE)
            assert first.is_error and f"{base}/link?t=" in text_of(first)
            link = next(word for word in text_of(first).split() if word.startswith(f"{base}/link?t="))
            # Mallory, signed in as herself, opens Carol's link: refused, nothing linked
            stranger = await link_on_the_page(browser, link, "mallory", BOB_KEY)
            assert "This link is for another account" in stranger
            # that link is spent on Mallory's browser; Carol asks again and links her key
            second = await client.call_tool("generate_image", PICTURE)
            assert second.is_error
            link = next(word for word in text_of(second).split() if word.startswith(f"{base}/link?t="))
            assert "linked" in await link_on_the_page(browser, link, "carol", ALICE_KEY)
            assert "used already" in await link_on_the_page(browser, link, "carol", BOB_KEY)  # replay
            made = await client.call_tool("generate_image", PICTURE)
            assert not made.is_error, text_of(made)
            unlinked = await client.call_tool("unlink_atlas_key", {})
            assert unlinked.structured_content == {"unlinked": True}
            after = await client.call_tool("generate_image", PICTURE)
            assert after.is_error and f"{base}/link?t=" in text_of(after)
    assert generate_posts(atlas) == [f"Bearer {ALICE_KEY}"]


async def test_the_page_is_locked_down_and_stores_only_a_key_atlas_accepts(
    atlas: Emulator, provider: Provider, browser: Browser, tmp_path: Path
) -> None:
    database = tmp_path / "store.sqlite3"
    with linking_server(atlas, provider.issuer, database) as base:
        async with oauth_client(f"{base}/mcp", browser, "dora") as client:
            asked = await client.call_tool("generate_image", PICTURE)
        link = next(word for word in text_of(asked).split() if word.startswith(f"{base}/link?t="))
        async with httpx.AsyncClient(timeout=10) as http:
            forged = await http.get(f"{base}/link", params={"t": "1" + "A" * 80})
            no_session = await http.post(f"{base}/link", data={"csrf": "x", "key": ALICE_KEY})
            elsewhere = await http.post(
                f"{base}/link",
                data={"csrf": "x", "key": ALICE_KEY},
                headers={"origin": "https://evil.example"},
            )
        assert forged.status_code == 400 and "does not work" in forged.text
        assert no_session.status_code == 400 and elsewhere.status_code == 403
        for answer in (forged, no_session, elsewhere):
            assert answer.headers["cache-control"] == "no-store"
            assert answer.headers["referrer-policy"] == "same-origin"
            assert answer.headers["x-frame-options"] == "DENY"
            policy = answer.headers["content-security-policy"]
            assert "default-src 'none'" in policy and "form-action 'self'" in policy and "http" not in policy
        context = await browser.browser.new_context()
        problems: list[str] = []
        context.on("console", lambda message: problems.append(message.text))
        page = await browser.sign_in(link, "dora", until=base, context=context)
        await page.fill("input[name=key]", "apikey-UNKNOWN-0000000000000000")
        async with page.expect_navigation():
            await page.click("button[type=submit]")
        refused = await page.inner_text("body")
        await page.fill("input[name=key]", ALICE_KEY)
        async with page.expect_navigation():
            await page.click("button[type=submit]")
        linked = await page.inner_text("body")
        await context.close()
    assert "Atlas does not accept this key" in refused
    assert "Your Atlas key is linked" in linked
    assert not any("Content Security Policy" in text for text in problems), problems  # its style is allowed
    assert_sealed_only(database, ALICE_KEY)
    assert "UNKNOWN" not in database.read_bytes().decode("latin-1")
    assert generate_posts(atlas) == []
