"""Each signed-in user's linked Atlas key, on the store, sealed: :class:`Accounts`.

A key is kept in the store's ``linked_keys`` table under the user's principal id, only as the
:class:`~.vault.KeyVault` sealed it (with a digest of it, never the key). Reading it back opens the
seal; a key sealed with an older encryption key is sealed again with the current one on the way.
A key read is kept in memory for :data:`~atlas_image_mcp.constants.LINKED_KEY_CACHE_SECONDS`, so a
request does not read the store each time; unlinking on this replica forgets it at once (another
replica stops using it within that time).

The key-linking links are single-use across replicas through the store as well (:meth:`claim`):
the first browser that opens a link holds it, any other is refused, and a link that linked a key
is spent.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable

from ..constants import LINKED_KEY_CACHE_SECONDS
from ..redact import key_digest, register_secret
from ..shared import SharedStore
from ..store import Store
from .vault import KeyVault, VaultError

__all__ = ["Accounts"]

logger = logging.getLogger(__name__)

_CLAIM_PREFIX = "link-claim:"
_SPENT = "spent"


class Accounts:
    """Linked keys and single-use links on the store (see the module docstring)."""

    def __init__(
        self, vault: KeyVault, shared: SharedStore, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.vault = vault
        self._shared = shared
        self._clock = clock
        self._cache: dict[str, tuple[float, str]] = {}

    async def store(self) -> Store:
        """The server's store (opened on first use; the runtime closes it)."""
        return await self._shared.get()

    # --- linked keys ---------------------------------------------------------------------------

    async def key_of(self, owner: str) -> str | None:
        """The Atlas key ``owner`` (a principal id) linked, or None."""
        cached = self._cache.get(owner)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        store = await self.store()
        row = await store.keys.get(owner)
        if row is None:
            self._cache.pop(owner, None)
            return None
        try:
            opened = self.vault.open(row.sealed, owner)
        except VaultError as exc:
            logger.warning("a linked key cannot be opened (%s): the user will be asked to link it again", exc)
            return None
        register_secret(opened.key)
        if opened.stale:
            await store.keys.put(owner, self.vault.seal(opened.key, owner), row.digest)
        self._remember(owner, opened.key)
        return opened.key

    async def link(self, owner: str, key: str) -> None:
        """Keep ``key`` (already checked with Atlas) as ``owner``'s, replacing any earlier one."""
        register_secret(key)
        store = await self.store()
        await store.keys.put(owner, self.vault.seal(key, owner), key_digest(key))
        self._remember(owner, key)

    async def unlink(self, owner: str) -> bool:
        """Forget ``owner``'s key; whether there was one."""
        self._cache.pop(owner, None)
        store = await self.store()
        return await store.keys.remove(owner)

    def _remember(self, owner: str, key: str) -> None:
        self._cache[owner] = (self._clock() + LINKED_KEY_CACHE_SECONDS, key)
        if len(self._cache) > 10_000:  # far more users than one replica serves at once: start over
            self._cache.clear()

    # --- single-use links ----------------------------------------------------------------------

    async def claim(self, link: str, holder: str, *, ttl: float) -> bool:
        """Hold the link ``link`` (its nonce) for ``holder`` (a browser's sign-in); False when another
        holder has it, or it was spent. Claiming again as the same holder keeps it."""
        store = await self.store()
        if await self.spent(link, holder):
            return False
        return await store.tasks.put(_CLAIM_PREFIX + link, holder, "held", ttl=ttl)

    async def spend(self, link: str, holder: str, *, ttl: float) -> None:
        """Mark the link used: it opens for nobody any more."""
        store = await self.store()
        await store.tasks.put(_CLAIM_PREFIX + link, holder, _SPENT, ttl=ttl)

    async def spent(self, link: str, holder: str) -> bool:
        store = await self.store()
        return await store.tasks.get(_CLAIM_PREFIX + link, holder) == _SPENT

    @staticmethod
    def new_holder() -> str:
        return secrets.token_urlsafe(16)
