"""Shared fixtures: a clean environment, the emulator in process, and a server wired to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client

from atlas_image_mcp.client import AtlasClient, ClientHooks, ClientOptions
from atlas_image_mcp.polling import PollSchedule
from atlas_image_mcp.runtime import Runtime
from atlas_image_mcp.server import make_server
from atlas_image_mcp.settings import Settings

from .emulation import Emulator

TEST_KEY = "apikey-TESTSECRET-0123456789abcdef"
#: Every tool the server lists (one place to update when a tool is added).
TOOL_NAMES = frozenset(
    {
        "generate_image",
        "edit_image",
        "generate_variations",
        "get_prediction",
        "upload_media",
        "export_image",
        "list_models",
        "show_gallery",
        "get_balance",
        "get_usage",
    }
)
EMULATOR_URL = "http://atlas.emulator"
_OPTION_FIELDS = frozenset(ClientOptions.__dataclass_fields__)
_HOOK_FIELDS = frozenset(ClientHooks.__dataclass_fields__)


def atlas_client(
    *, api_key: str | None = None, transport: httpx.AsyncBaseTransport | None = None, **knobs: Any
) -> AtlasClient:
    """An :class:`AtlasClient` from flat keywords: its options (``base_url``, ``timeout``...) and hooks
    (``sleep``, ``clock``, ``poll_schedule``...), plus ``limits``, as tests like to write them."""
    unknown = set(knobs) - _OPTION_FIELDS - _HOOK_FIELDS - {"limits"}
    assert not unknown, f"not a client option or hook: {sorted(unknown)}"
    options = ClientOptions(**{k: v for k, v in knobs.items() if k in _OPTION_FIELDS})
    hooks = ClientHooks(**{k: v for k, v in knobs.items() if k in _HOOK_FIELDS})
    extra = {"limits": knobs["limits"]} if "limits" in knobs else {}
    return AtlasClient(options, api_key=api_key, transport=transport, hooks=hooks, **extra)


FAST_POLLS = PollSchedule(step=0.02, fast_until=1.0, ratio=0.1, max_interval=0.1)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ATLAS* variable leaks in from the machine; HOME (so the state folder too) is a scratch folder."""
    import os

    for name in list(os.environ):
        if name.startswith(("ATLAS", "ATLASCLOUD")) or name in ("XDG_STATE_HOME", "LOCALAPPDATA"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


class FakeClock:
    """A clock the test moves by hand (for the emulator's job progress)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Sleeps:
    """The client's ``sleep``: remembers each delay asked for, sleeps at most 5 ms."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        await anyio.sleep(min(seconds, 0.005))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(api_keys=[TEST_KEY], latency=0.05)


def make_api(emulator: Emulator, *, api_key: str | None = TEST_KEY, **kw: Any) -> AtlasClient:
    return atlas_client(
        api_key=api_key,
        base_url=EMULATOR_URL,
        transport=httpx.ASGITransport(app=emulator.app),
        poll_schedule=kw.pop("poll_schedule", FAST_POLLS),
        **kw,
    )


@pytest.fixture
def output_dir(tmp_path: Path) -> Path:
    return tmp_path / "pictures"


@pytest.fixture
def settings(output_dir: Path) -> Settings:
    return Settings(api_key=TEST_KEY, output_dir=output_dir, wait_seconds=10)


@pytest.fixture
def connect(emulator: Emulator, settings: Settings) -> Callable[..., Any]:
    """``async with connect(**settings_changes) as client``: an MCP client on a server on the emulator.

    ``sleep``: the Atlas client's sleep (a :class:`Sleeps` where retries must not wait for real).
    """
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def _connect(
        *,
        api_key: str | None = TEST_KEY,
        remote: bool = False,
        client_options: dict[str, Any] | None = None,
        sleep: Sleeps | None = None,
        **changes: Any,
    ) -> AsyncIterator[Client]:
        api = make_api(emulator, api_key=api_key, **({} if sleep is None else {"sleep": sleep}))
        runtime = Runtime.create(settings.replace(api_key=api_key, **changes), client=api, remote=remote)
        try:
            async with Client(make_server(runtime), **(client_options or {})) as client:
                yield client
        finally:
            await runtime.aclose()

    return _connect


def text_of(result: Any) -> str:
    return "\n".join(block.text for block in result.content if getattr(block, "type", None) == "text")


# A throwaway PostgreSQL from the distribution's binaries (tests/servers.py): ``postgres`` for the
# session, ``own_postgres`` for a test that stops or kills it. Imported here to be fixtures everywhere.
# The sign-in tests' fixtures (tests/oauth_helpers.py): ``tools`` (Node and the npm packages),
# ``provider`` (a real OpenID provider, per module) and ``browser`` (headless Chromium). A module's
# own fixture of the same name (test_browser.py, test_install_routes.py) takes precedence there.
from .oauth_helpers import browser, provider, tools  # noqa: E402, F401
from .servers import own_postgres, postgres  # noqa: E402, F401
