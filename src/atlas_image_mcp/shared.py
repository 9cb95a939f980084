"""The store of one server process: opened once (at start, or by its first use), closed at stop.

The spend ledger, the picture history and the task notes of a :class:`~atlas_image_mcp.runtime.Runtime`
all use one :class:`SharedStore`. Where it lives comes from the settings
(:func:`~atlas_image_mcp.store.location_of`): an SQLite file in the state folder by default, in
memory for the offline emulator, or the database ``ATLAS_MCP_DATABASE_URL`` names.

The default SQLite file may be impossible to open (a state folder that is not writable). Then, as
the ledger always did: while a budget depends on it (``strict``), every use raises
:class:`~atlas_image_mcp.errors.LedgerError` (and opening is tried again next time); with no budget
set, the store falls back to this process's memory, and :attr:`SharedStore.note` says why. A
PostgreSQL store that cannot be reached opens *down* instead: paid calls are refused at once and it
recovers by itself (see :mod:`atlas_image_mcp.store.database`). A store written by a newer release
is never replaced by another one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence

from .errors import LedgerError, StoreVersionError
from .settings import env_name
from .store import Location, Store, StoreOptions, StoreStatus, locate, open_store

__all__ = ["SessionsInStore", "SharedStore", "TaskNotesInStore"]

logger = logging.getLogger(__name__)


class SharedStore:
    """The one store of a process (see the module docstring).

    ``strict``: whether budgets depend on it (asked each time the file cannot be opened).
    ``options``: the store's tunables (tests shorten its clocks).
    """

    def __init__(
        self,
        location: Location,
        *,
        options: StoreOptions | None = None,
        clock: Callable[[], float] = time.time,
        strict: Callable[[], bool] = lambda: False,
    ) -> None:
        self.location = location
        self.options = options or StoreOptions()
        self.clock = clock
        self._strict = strict
        self._store: Store | None = None
        self._lock: asyncio.Lock | None = None
        self._note: str | None = None
        self._on_open: list[Callable[[Store], None]] = []
        self._closing: set[asyncio.Task[None]] = set()
        #: Why the store could not be opened the last time it was tried (None: it was, or not yet).
        self.failure: str | None = None

    @property
    def note(self) -> str | None:
        """Why the default file could not be used (the store then lives in memory), else None."""
        return self._note

    @property
    def persistent(self) -> bool:
        """Whether what it keeps outlives this process."""
        if self.location.engine == "postgresql":
            return True
        return self.location.path is not None and self._note is None

    @property
    def opened(self) -> Store | None:
        """The store once it was opened (None before, and after :meth:`aclose`)."""
        return self._store

    def status(self) -> StoreStatus | None:
        """The store's state for ``/readyz`` (None: not opened yet)."""
        return self._store.ready() if self._store is not None else None

    def when_open(self, callback: Callable[[Store], None]) -> None:
        """Call ``callback`` with the store once it is open (at once if it is)."""
        self._on_open.append(callback)
        if self._store is not None:
            callback(self._store)

    async def get(self) -> Store:
        """The store, opened on first use. Raises LedgerError when it cannot be opened."""
        store = self._store
        if store is not None:
            return store
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._store is None:
                try:
                    opened = await self._open()
                except LedgerError as err:
                    self.failure = err.message
                    raise
                self._store, self.failure = opened, None
                for callback in self._on_open:
                    callback(opened)
            return self._store

    async def _open(self) -> Store:
        try:
            return await open_store(self.location, self.options, clock=self.clock)
        except StoreVersionError:
            raise
        except LedgerError as exc:
            where = self.location.path
            if self.location.engine != "sqlite" or where is None:
                raise
            cause = exc.__cause__ or exc
            if self._strict():
                raise LedgerError(
                    f"The spend ledger at {where} cannot be opened ({cause}), so the budgets set for this "
                    f"server cannot be enforced and nothing was sent. Set {env_name('state_dir')} (or "
                    f"{env_name('database_url')}) to a writable place on a local disk (or unset the budgets)."
                ) from exc
            self._note = f"the ledger file {where} could not be opened ({cause})"
            logger.warning("%s: usage is kept in memory until this server stops", self._note)
            return await open_store(locate("sqlite:///:memory:", default_path=None), self.options,
                                    clock=self.clock)  # fmt: skip

    async def aclose(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            await store.close()

    def close(self) -> None:
        """Close it soon, from synchronous code (the event loop finishes the job)."""
        if self._store is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop: the process is ending; the store's thread ends with it
            self._store = None
            return
        task = loop.create_task(self.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


class SessionsInStore:
    """The sessions each key holds open, counted across every replica that shares the store (an
    :class:`~atlas_image_mcp.admission.OwnerSessions`).

    A session is admitted in one transaction that counts the key's live sessions on every replica
    (:mod:`atlas_image_mcp.store.sessions`); it stays counted while its replica renews it (its row
    lasts ``ttl``, the idle time after which a session closes) and that replica's heartbeat lasts.
    While the store cannot be reached, each replica counts its own sessions (admission never waits
    for the store, and the calls that spend nothing keep working).
    """

    def __init__(self, store: SharedStore, *, ttl: float) -> None:
        self._store = store
        self._ttl = ttl

    async def admit(self, owner: str, token: str, *, limit: int, here: int) -> int | None:
        try:
            sessions = (await self._store.get()).sessions
            if await sessions.admit(owner, token, limit=limit, ttl=self._ttl):
                return None
            return await sessions.live(owner)
        except LedgerError as err:
            logger.info("sessions counted in this replica only (%s)", type(err).__name__)
            return None if here < limit else here

    async def renew(self, tokens: Sequence[str]) -> None:
        try:
            await (await self._store.get()).sessions.renew_held(tokens, ttl=self._ttl)
        except LedgerError as err:  # they lapse after the idle time: a lower count, never a lock-out
            logger.info("sessions not renewed in the store (%s)", type(err).__name__)

    async def leave(self, tokens: Sequence[str]) -> None:
        try:
            sessions = (await self._store.get()).sessions
            for token in tokens:
                await sessions.leave(token)
        except LedgerError as err:  # they lapse after the idle time
            logger.info("closed sessions not removed from the store (%s)", type(err).__name__)


class TaskNotesInStore:
    """Task notes (:class:`~atlas_image_mcp.tasks.TaskNotes`) in the store's task state, keyed by a
    digest of the task id and readable by the task's owner only, until the task's lifetime ends."""

    def __init__(self, store: SharedStore) -> None:
        self._store = store

    async def cancel(self, task_id: str, owner: str, message: str, until: float) -> None:
        ttl = until - self._store.clock()
        if ttl <= 0:
            return
        state = json.dumps({"status": "cancelled", "message": message[:2000]})
        await (await self._store.get()).tasks.put(_task_key(task_id), owner, state, ttl=ttl)

    async def cancelled(self, task_id: str, owner: str) -> str | None:
        text = await (await self._store.get()).tasks.get(_task_key(task_id), owner)
        try:
            state = json.loads(text) if text else None
        except ValueError:
            return None
        if not isinstance(state, dict) or state.get("status") != "cancelled":
            return None
        message = state.get("message")
        return message if isinstance(message, str) else ""


def _task_key(task_id: str) -> str:
    return hashlib.sha256(task_id.encode("utf-8", "surrogateescape")).hexdigest()
