"""The store's tunables, in one place: batching, the pool, heartbeats, the sweeper, retention.

Times are seconds. The defaults suit a server with a few replicas; tests shorten the clocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..constants import (
    HISTORY_MAX_ENTRIES,
    HISTORY_MAX_SESSIONS,
    LEDGER_BUSY_SECONDS,
    LEDGER_KEEP_DAYS,
    REPLICA_HEARTBEAT_SECONDS,
    REPLICA_TTL_BEATS,
)

__all__ = ["PoolOptions", "StoreOptions", "SweepOptions"]


@dataclass(frozen=True)
class PoolOptions:
    """PostgreSQL's connection pool and the limits each connection asks the server for."""

    min_size: int = 1
    max_size: int = 10
    #: How long a transaction waits for a connection; past it the store counts as unreachable.
    pool_timeout: float = 2.0
    #: Transactions waiting for a connection at once; past it a call is refused as "busy".
    max_waiting: int = 200
    connect_timeout: float = 3.0
    #: A whole transaction, connection included.
    transaction_timeout: float = 15.0
    lock_timeout_ms: int = 3_000
    statement_timeout_ms: int = 10_000
    idle_in_transaction_ms: int = 30_000


@dataclass(frozen=True)
class SweepOptions:
    """How calls left open by a replica that died are settled or released (see ``store/sweeper.py``)."""

    #: Open calls adopted (and looked up at Atlas) per round.
    per_round: int = 50
    #: Lookups at Atlas at once, and how long each may take.
    lookups_at_once: int = 8
    lookup_timeout: float = 10.0
    #: A call that was being sent and that Atlas does not know is released once it is this old
    #: (Atlas' history may lag behind a POST it just accepted).
    release_after: float = 300.0
    #: A call still unresolved this long after it started is settled at what it held (counted,
    #: never under-counted): no reservation stays open for ever.
    give_up_after: float = 24 * 3600.0


@dataclass(frozen=True)
class StoreOptions:
    """Everything the store can be tuned with."""

    #: Reservations of concurrent calls decided in one transaction, at most this many.
    max_batch: int = 64
    #: SQLite: how long a write waits for another process holding the file.
    busy_seconds: float = LEDGER_BUSY_SECONDS
    #: Each replica renews its heartbeat this often; one not renewed for ``replica_ttl`` is dead.
    heartbeat: float = REPLICA_HEARTBEAT_SECONDS
    replica_ttl: float = REPLICA_HEARTBEAT_SECONDS * REPLICA_TTL_BEATS
    #: While the store is unreachable: first retry after this long, doubling up to ``retry_max``.
    retry: float = 0.5
    retry_max: float = 10.0
    #: Rows of the spend ledger older than this many days are dropped (once settled).
    keep_days: int = LEDGER_KEEP_DAYS
    #: Pictures remembered per owner and scope (one of its connections), and for how long after
    #: their last change; scopes remembered in all (the owner holding the most loses its oldest).
    pictures_per_owner: int = HISTORY_MAX_ENTRIES
    picture_scopes: int = HISTORY_MAX_SESSIONS
    pictures_keep_days: int = 30
    #: How often old rows are pruned.
    prune_every: float = 3600.0
    pool: PoolOptions = field(default_factory=PoolOptions)
    sweep: SweepOptions = field(default_factory=SweepOptions)
