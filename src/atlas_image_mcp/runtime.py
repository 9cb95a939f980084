"""The composition root: settings, the Atlas client, the spend ledger, the picture history, where files go.

One :class:`Runtime` serves every session of a server process. It is built by the CLI (or a
test), handed to :func:`atlas_image_mcp.server.make_server`, and closed when the process stops.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field
from decimal import Decimal
from pathlib import Path

import anyio
import httpx

from .aiohttp_transport import AiohttpTransport
from .auth.principal import Principal
from .auth.service import SignIn, sign_in
from .catalogue import Catalogue
from .client import AtlasClient, ClientOptions
from .constants import (
    DECODES_AT_ONCE,
    DEFAULT_EMULATOR_LATENCY,
    HOSTED_KEEPALIVE_SECONDS,
    LEDGER_FILE,
    MAX_CONNECTIONS,
    OFFLINE_API_KEY,
    OFFLINE_BASE_URL,
    USER_KEY_HEADER,
    Place,
)
from .errors import MissingAPIKeyError
from .history import HistoryScope, PictureHistory
from .identity import Caller
from .ledger import Ledger, Limits
from .redact import key_digest, register_secret
from .settings import Settings, proxy_environment

__all__ = ["Runtime"]


@dataclass
class Runtime:
    """Everything the tools need, shared by all sessions."""

    settings: Settings
    client: AtlasClient
    remote: bool = False
    offline: bool = False
    #: Where answers are read (advice in messages fits it); a remote runtime is always "http".
    place: Place = "stdio"
    #: A ledger to use instead of the one in the state folder (tests: another clock).
    given_ledger: InitVar[Ledger | None] = None
    #: What each key started and was charged, and its budgets (see :mod:`atlas_image_mcp.ledger`).
    ledger: Ledger = field(init=False)
    catalogue: Catalogue = field(init=False)
    #: This process's record of each session's pictures ('last', variations, the viewer's gallery).
    history: PictureHistory = field(init=False)
    #: pictures decoded at once in this process (each may take width x height x 4 bytes)
    decodes: anyio.CapacityLimiter = field(init=False)
    #: set when the server is stopping: calls still waiting for a picture answer "processing" now
    stopping: anyio.Event = field(init=False)
    #: Sign-in (OAuth) of a hosted server, when it is on (see :mod:`atlas_image_mcp.auth`).
    signin: SignIn | None = None

    def __post_init__(self, given_ledger: Ledger | None) -> None:
        self.ledger = given_ledger or default_ledger(self.settings, offline=self.offline)
        self.catalogue = Catalogue()
        self.history = PictureHistory()
        self.decodes = anyio.CapacityLimiter(DECODES_AT_ONCE)
        self.stopping = anyio.Event()
        if self.remote:
            self.place = "http"

    def stop_waiting(self) -> None:
        """Tell every call waiting for a picture to answer now with its prediction id (shutdown)."""
        self.stopping.set()

    @classmethod
    def create(
        cls,
        settings: Settings,
        *,
        offline: bool = False,
        remote: bool = False,
        client: AtlasClient | None = None,
        emulator_latency: float = DEFAULT_EMULATOR_LATENCY,
        place: Place = "stdio",
        ledger: Ledger | None = None,
    ) -> Runtime:
        """Build the runtime; ``offline`` puts the emulator behind the client, in process, no port.

        A ``remote`` (HTTP) server talks to Atlas through aiohttp's pool and parser
        (:mod:`atlas_image_mcp.aiohttp_transport`): under load httpx's own transport cost more CPU per
        request than the MCP call around it. Over stdio there is one user, and httpx's transport
        costs nothing on the first call (aiohttp's import would).
        """
        if client is None:
            if offline:
                from .emulator import Emulator

                emulator = Emulator(latency=emulator_latency)
                transport: httpx.AsyncBaseTransport | None = httpx.ASGITransport(app=emulator.app)
                settings = settings.replace(api_key=OFFLINE_API_KEY, base_url=OFFLINE_BASE_URL)
            elif remote:
                transport = AiohttpTransport(
                    max_connections=MAX_CONNECTIONS,
                    keepalive_expiry=HOSTED_KEEPALIVE_SECONDS,
                    proxies=proxy_environment(),
                )
            else:
                transport = None
            client = AtlasClient(
                ClientOptions.from_settings(settings),
                # Per-user-key mode: the shared client carries no key at all, so the server's own
                # key cannot be used by accident; every call goes through ``client_for(caller)``.
                api_key=None if settings.user_keys and remote else settings.api_key,
                transport=transport,
            )
        register_secret(settings.api_key, permanent=True)
        register_secret(settings.auth_token, permanent=True)
        register_secret(settings.oauth_client_secret, permanent=True)
        runtime = cls(
            settings=settings, client=client, remote=remote, offline=offline, place=place, given_ledger=ledger
        )
        runtime.signin = sign_in(settings, offline=offline) if remote else None
        return runtime

    async def aclose(self) -> None:
        await self.client.aclose()
        self.ledger.close()
        if self.signin is not None:
            await self.signin.aclose()

    @property
    def confirm_above(self) -> Decimal | None:
        """Calls estimated above this many USD are confirmed with the person first (None: never)."""
        return self.settings.confirm_above(remote=self.remote)

    # --- per-request views ---------------------------------------------------------------

    def caller(
        self,
        headers: Mapping[str, str] | None = None,
        connection: str | None = None,
        principal: Principal | None = None,
    ) -> Caller:
        """Who the request with these HTTP headers (``ctx.headers``; None over stdio) comes from.

        ``connection``: the server's own name for the connection the request came on, when it lasts
        across requests (:func:`atlas_image_mcp.compat.lasting_connection_id`); None where every
        request stands alone (stateless HTTP, 2026-07-28). The history belongs to the caller's key
        and, within it, to that connection; no header names it.

        ``principal``: the user its access token names, with sign-in on. Then the caller is that
        user: its pictures, usage and tasks are the user's, and it spends the user's linked key
        (with linked keys) or the server's.
        """
        if principal is not None:
            key = principal.linked_key if self.per_user_keys else self.settings.api_key
            scope = HistoryScope(owner=principal.id, session=connection or "")
            return Caller(key=key, history=scope, subject=principal.id)
        key = self.current_key(headers)
        scope = HistoryScope(owner=key_digest(key or "")[:32], session=connection or "")
        return Caller(key=key, history=scope, shared=self.remote and not self.per_user_keys)

    def client_for(self, caller: Caller) -> AtlasClient:
        """The client for ``caller``'s calls: its own key in per-user-key mode, else the server's.

        In per-user-key mode the Atlas key comes from the request's ``X-Atlas-Api-Key`` and the
        server's own key is never used.
        """
        if self.per_user_keys:
            key = caller.key
            if not key and self.signin is not None:
                raise MissingAPIKeyError(
                    "No Atlas Cloud API key is linked to your account on this server yet. Call "
                    "generate_image (or another tool that needs Atlas): its answer has the link to the page "
                    "where you link your key, once."
                )
            if not key:
                raise MissingAPIKeyError(
                    "This hosted server needs your own Atlas Cloud API key: send it in the "
                    "X-Atlas-Api-Key header of every MCP request (set it in the client's headers "
                    "configuration)."
                )
            return self.client.with_api_key(key)
        if not self.client.has_api_key:
            raise MissingAPIKeyError(place=self.place)
        return self.client

    @property
    def per_user_keys(self) -> bool:
        return self.settings.user_keys and self.remote

    @property
    def callers_apart(self) -> bool:
        """Whether this server can tell its callers apart (stdio, per-user keys, or sign-in)."""
        return not self.remote or self.per_user_keys or self.signin is not None

    def current_key(self, headers: Mapping[str, str] | None = None) -> str | None:
        """The Atlas key this request uses (for the ledger's bucket; never logged).

        In per-user-key mode only the message's own ``X-Atlas-Api-Key`` counts: never the
        server's key, never a key seen earlier on the same connection.
        """
        if not self.per_user_keys:
            return self.settings.api_key
        if self.signin is not None:
            return None  # with sign-in a key is linked to the user, never taken from a header
        key = _header(headers, USER_KEY_HEADER)
        return key.strip() if key and key.strip() else None

    @property
    def may_write_files(self) -> bool:
        """Over stdio always; over HTTP only when the operator set ATLAS_MCP_OUTPUT_DIR."""
        return self.settings.output_dir_explicit or not self.remote

    @property
    def save_by_default(self) -> bool:
        """Over stdio, save unless turned off; over HTTP only with an explicit ATLAS_MCP_OUTPUT_DIR."""
        return self.settings.save and self.may_write_files

    @property
    def output_dir(self) -> Path:
        return self.settings.resolved_output_dir


def limits_of(settings: Settings) -> Limits:
    """The ledger's limits, per bucket: per API key, or, with sign-in, per signed-in user (then
    every per-key limit holds for each user, and the per-user daily budget too: the lower one)."""
    per_day = settings.budget_usd_per_day
    per_user = settings.budget_usd_per_user_per_day if settings.oauth_issuer else None
    if per_user is not None and (per_day is None or per_user < per_day):
        return Limits(settings.max_images_per_hour, per_user, budget_setting="budget_usd_per_user_per_day")
    return Limits(images_per_hour=settings.max_images_per_hour, usd_per_day=per_day)


def default_ledger(settings: Settings, *, offline: bool = False) -> Ledger:
    """The ledger in the state folder; in memory for the offline emulator (nothing real is spent)."""
    path = None if offline else settings.resolved_state_dir / LEDGER_FILE
    return Ledger(path, limits_of(settings))


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value
