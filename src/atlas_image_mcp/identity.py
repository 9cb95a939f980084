"""Who a call comes from: the caller as this server verified it, and the Atlas key it spends.

A :class:`Caller` is worked out once per request (:meth:`atlas_image_mcp.runtime.Runtime.caller`)
and carried by the call; everything that belongs to someone (the picture history, the ledger's
bucket, tasks, confirmations sealed for a later round) is keyed by it, never by a raw key.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from .history import HistoryScope
from .redact import key_digest

__all__ = ["Caller"]


@dataclass(frozen=True)
class Caller:
    """One caller: the Atlas key its calls use (never shown) and whose pictures it sees."""

    #: The Atlas key this caller's calls are sent with; None when there is none to use.
    key: str | None
    #: Whose picture history the caller reads and adds to (``last``, the gallery): its identity and,
    #: where the transport keeps one, its connection. Never a key, never a value the client chose.
    history: HistoryScope
    #: Every client of this server is this one identity: a hosted server spending its own key (no
    #: per-user keys, no sign-in), where nothing the server verified tells one client from another.
    shared: bool = False
    #: The signed-in user (a principal id: a digest of issuer and subject) when the server has
    #: sign-in on; then everything the caller owns is keyed by it, never by a key or a header.
    subject: str | None = None

    @cached_property
    def id(self) -> str:
        """A stable name for the caller that tasks and sealed confirmations are bound to (a digest)."""
        return self.subject or key_digest(self.key or "")

    @property
    def bucket(self) -> str | None:
        """Whose spending the ledger counts this caller's calls under: the signed-in user, else the key."""
        return self.subject or self.key
