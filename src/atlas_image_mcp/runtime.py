"""The composition root: settings, the Atlas client, the store (spend ledger, picture history), where
files go.

One :class:`Runtime` serves every session of a server process. It is built by the CLI (or a
test), handed to :func:`atlas_image_mcp.server.make_server`, started by the server's lifespan
(:meth:`Runtime.start` opens the store, or it opens on first use), and closed when the process
stops. Once the store is open, its sweeper settles the paid calls that dead replicas left open,
asking Atlas with a key it may use (:meth:`Runtime.client_for_bucket`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import InitVar, dataclass, field
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import httpx

from .aiohttp_transport import AiohttpTransport
from .auth.principal import Principal
from .catalogue import Catalogue
from .client import AtlasClient, ClientOptions
from .constants import (
    DECODES_AT_ONCE,
    DEFAULT_EMULATOR_LATENCY,
    HOSTED_KEEPALIVE_SECONDS,
    MAX_CONNECTIONS,
    OFFLINE_API_KEY,
    OFFLINE_BASE_URL,
    REPLICA_TTL_BEATS,
    USER_KEY_HEADER,
    Place,
)
from .errors import LedgerError, MissingAPIKeyError
from .history import HistoryScope, PictureHistory
from .identity import Caller
from .ledger import Ledger, Limits, bucket_of
from .orphans import find_at_atlas
from .redact import key_digest, register_secret
from .settings import Settings, proxy_environment
from .shared import SharedStore
from .store import Finding, OpenCall, Store, StoreOptions, location_of

if TYPE_CHECKING:
    from .auth.service import SignIn

__all__ = ["Runtime"]

logger = logging.getLogger(__name__)


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
    #: The store the ledger, the history and task notes live in (the ledger's).
    store: SharedStore = field(init=False)
    catalogue: Catalogue = field(init=False)
    #: Each caller's pictures ('last', variations, the viewer's gallery), in the store.
    history: PictureHistory = field(init=False)
    #: pictures decoded at once in this process (each may take width x height x 4 bytes)
    decodes: anyio.CapacityLimiter = field(init=False)
    #: set when the server is stopping: calls still waiting for a picture answer "processing" now
    stopping: anyio.Event = field(init=False)
    #: True from the moment the server starts stopping (``/readyz`` then answers 503).
    draining: bool = field(default=False, init=False)
    #: Whether :meth:`start` ran (``/readyz`` answers 503 before).
    started: bool = field(default=False, init=False)
    #: The per-user keys of the requests in flight, by ledger bucket (see :meth:`lend`).
    _lent: dict[str, list[str | int]] = field(default_factory=dict, init=False, repr=False)
    #: The waits :meth:`stop_waiting` ends (see :meth:`until_stopping`).
    _waits: set[anyio.CancelScope] = field(default_factory=set, init=False, repr=False)
    #: Sign-in (OAuth) of a hosted server, when it is on (see :mod:`atlas_image_mcp.auth`).
    signin: SignIn | None = None

    def __post_init__(self, given_ledger: Ledger | None) -> None:
        self.ledger = given_ledger or default_ledger(self.settings, offline=self.offline)
        self.store = self.ledger.store
        self.catalogue = Catalogue()
        self.history = PictureHistory(self.store)
        self.decodes = anyio.CapacityLimiter(DECODES_AT_ONCE)
        self.stopping = anyio.Event()
        if self.remote:
            self.place = "http"
        self.store.when_open(self._watch)

    async def start(self) -> None:
        """Open the store (its heartbeat and sweeper start with it). A store that cannot be opened
        is logged, not raised: the calls that need it say why, and the others work."""
        try:
            await self.store.get()
        except LedgerError as err:
            logger.error("the store could not be opened: %s", err.message)
        self.started = True

    def _watch(self, store: Store) -> None:
        store.watch(self._lookup)

    async def _lookup(self, call: OpenCall) -> Finding:
        """What Atlas says of a call a dead replica left open, with a key that may ask about it."""
        api = self.client_for_bucket(call.bucket)
        if api is None:
            return Finding("unknown")
        return await find_at_atlas(api, call)

    def stop_waiting(self) -> None:
        """Tell every call waiting for a picture to answer now with its prediction id (shutdown)."""
        self.stopping.set()
        for scope in list(self._waits):
            scope.cancel()

    @contextmanager
    def until_stopping(self) -> Iterator[anyio.CancelScope]:
        """A scope that :meth:`stop_waiting` cancels (at once if the server is stopping already).

        One scope in a set per wait, where a task per wait watching :attr:`stopping` would cost a
        task group and a task for every call.
        """
        with anyio.CancelScope() as scope:
            if self.stopping.is_set():
                scope.cancel()
            self._waits.add(scope)
            try:
                yield scope
            finally:
                self._waits.discard(scope)

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
        if remote:  # the sign-in code (JWT, AES-GCM) is imported only by a hosted server
            from .auth.service import sign_in

            runtime.signin = sign_in(settings, runtime.store)
        return runtime

    async def aclose(self) -> None:
        self.draining = True
        try:
            if self.signin is not None:
                await self.signin.aclose()
            await self.ledger.aclose()
        finally:
            await self.client.aclose()

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

    @contextmanager
    def lend(self, caller: Caller) -> Iterator[None]:
        """While a request of ``caller`` is in flight, its per-user key may also settle the calls of
        its own bucket that a dead replica left open (:meth:`client_for_bucket`); never longer."""
        key = caller.key
        if not self.per_user_keys or not key:
            yield
            return
        bucket = bucket_of(caller.bucket)
        lent = self._lent.setdefault(bucket, [key, 0])
        lent[1] = int(lent[1]) + 1
        try:
            yield
        finally:
            lent[1] = int(lent[1]) - 1
            if int(lent[1]) <= 0:
                self._lent.pop(bucket, None)

    def client_for_bucket(self, bucket: str) -> AtlasClient | None:
        """A client whose key is the one ``bucket`` spends: the server's own, or (per-user keys) the
        key of a request of that bucket in flight here; None when no such key is at hand."""
        if self.per_user_keys:
            lent = self._lent.get(bucket)
            return self.client.with_api_key(str(lent[0])) if lent is not None else None
        if self.signin is not None:  # every signed-in user's bucket spends the server's own key
            return self.client if self.client.has_api_key else None
        key = self.settings.api_key
        if not key or not self.client.has_api_key or bucket_of(key) != bucket:
            return None
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

    @cached_property
    def output_dir(self) -> Path:
        """Where pictures are saved: looked up once (the default asks the disk for a Pictures folder)."""
        return self.settings.resolved_output_dir


def limits_of(settings: Settings) -> Limits:
    """The ledger's limits, per bucket: per API key, or, with sign-in, per signed-in user (then
    every per-key limit holds for each user, and the per-user daily budget too: the lower one)."""
    per_day = settings.budget_usd_per_day
    per_user = settings.budget_usd_per_user_per_day if settings.oauth_issuer else None
    if per_user is not None and (per_day is None or per_user < per_day):
        return Limits(settings.max_images_per_hour, per_user, budget_setting="budget_usd_per_user_per_day")
    return Limits(images_per_hour=settings.max_images_per_hour, usd_per_day=per_day)


def store_options(settings: Settings) -> StoreOptions:
    """The store's tunables the settings choose (the heartbeat, and the lifetime it implies)."""
    beat = settings.replica_heartbeat_seconds
    return StoreOptions(heartbeat=beat, replica_ttl=beat * REPLICA_TTL_BEATS)


def default_ledger(settings: Settings, *, offline: bool = False) -> Ledger:
    """The ledger in the store the settings name (``ATLAS_MCP_DATABASE_URL``, else the state
    folder's file); in memory for the offline emulator (nothing real is spent)."""
    return Ledger(
        location_of(settings, offline=offline), limits_of(settings), options=store_options(settings)
    )


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value
