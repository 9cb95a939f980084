"""The store's schema: one list of versions, migrated at start, the same statements on both engines.

Each version is a list of statements. At start every process runs :func:`migrate`: in one
transaction that no other process runs at the same time (PostgreSQL: an advisory lock; SQLite:
the file's write lock), it applies the versions the table ``schema_migrations`` does not list yet.
A store whose newest version is above :data:`VERSION` was written by a newer release: this one
refuses to use it rather than guess.

Types both engines read alike: ``TEXT``, ``INTEGER``, ``BIGINT`` (SQLite: integer affinity). Times
are whole milliseconds of the Unix epoch from the application's clock, days are UTC ``YYYY-MM-DD``,
money is whole micro-dollars, lists and bodies are JSON in ``TEXT``, ids are minted by the
application (no AUTOINCREMENT or IDENTITY).

The spend ledger of earlier releases (an SQLite file with the table ``calls`` and
``PRAGMA user_version = 1``) is carried over by version 1: its rows move to ``spend_calls``, counted
as before (their charge, else what they held). The file is then marked ``user_version = 2``, which
those releases refuse to open, so an old and a new server never share one file.
"""

from __future__ import annotations

from ..errors import StoreVersionError
from .engine import Engine, Tx

__all__ = ["VERSION", "VERSIONS", "migrate"]

VERSIONS: tuple[tuple[str, ...], ...] = (
    (  # 1
        # The row each reservation of a bucket (one caller's spending) locks first; it also holds
        # the bucket's own limits when they differ from the server's (NULL: the server's).
        """CREATE TABLE buckets (
            bucket TEXT PRIMARY KEY,
            touched_ms BIGINT NOT NULL,
            images_per_hour INTEGER,
            usd_per_day_micros BIGINT
        )""",
        # One generation job: reserved before its POST (sending), accepted by Atlas (submitted),
        # charged or failed (settled). A reservation whose POST never left is deleted (released).
        """CREATE TABLE spend_calls (
            id TEXT PRIMARY KEY,
            bucket TEXT NOT NULL,
            started_ms BIGINT NOT NULL,
            day TEXT NOT NULL,
            tool TEXT NOT NULL,
            model TEXT NOT NULL,
            images INTEGER NOT NULL,
            estimate_micros BIGINT,
            held_micros BIGINT,
            charged_micros BIGINT,
            state TEXT NOT NULL,
            prediction_id TEXT,
            body_sha256 TEXT,
            owner TEXT NOT NULL,
            sweeps INTEGER NOT NULL DEFAULT 0,
            updated_ms BIGINT NOT NULL
        )""",
        "CREATE INDEX spend_calls_window ON spend_calls (bucket, started_ms)",
        "CREATE INDEX spend_calls_day ON spend_calls (bucket, day)",
        "CREATE INDEX spend_calls_prediction ON spend_calls (prediction_id)",
        "CREATE INDEX spend_calls_age ON spend_calls (started_ms)",
        "CREATE INDEX spend_calls_open ON spend_calls (owner, started_ms) WHERE state <> 'settled'",
        # One running process of the server: alive while it renews alive_until_ms.
        """CREATE TABLE replicas (
            owner TEXT PRIMARY KEY,
            started_ms BIGINT NOT NULL,
            alive_until_ms BIGINT NOT NULL
        )""",
        # The pictures an owner (an identity) made, per scope (one of its connections, '' where
        # requests stand alone): 'last', variations, the gallery.
        """CREATE TABLE pictures (
            owner TEXT NOT NULL,
            scope TEXT NOT NULL,
            prediction_id TEXT NOT NULL,
            created_ms BIGINT NOT NULL,
            updated_ms BIGINT NOT NULL,
            tool TEXT NOT NULL,
            model TEXT,
            prompt TEXT,
            status TEXT NOT NULL,
            outputs TEXT NOT NULL,
            paths TEXT NOT NULL,
            sources TEXT NOT NULL,
            request_body TEXT,
            batch TEXT,
            PRIMARY KEY (owner, scope, prediction_id)
        )""",
        "CREATE INDEX pictures_recent ON pictures (owner, scope, created_ms)",
        "CREATE INDEX pictures_age ON pictures (updated_ms)",
        # Each scope that has pictures, and when it was last added to (in microseconds): the
        # least recently used go first once there are too many, from the owner that holds the most.
        """CREATE TABLE picture_scopes (
            owner TEXT NOT NULL,
            scope TEXT NOT NULL,
            touched_us BIGINT NOT NULL,
            PRIMARY KEY (owner, scope)
        )""",
        "CREATE INDEX picture_scopes_used ON picture_scopes (touched_us)",
        # An Atlas key linked to an account, sealed (encrypted) by the server: never stored in clear.
        """CREATE TABLE linked_keys (
            subject TEXT PRIMARY KEY,
            sealed TEXT NOT NULL,
            digest TEXT NOT NULL,
            created_ms BIGINT NOT NULL,
            updated_ms BIGINT NOT NULL
        )""",
        "CREATE INDEX linked_keys_digest ON linked_keys (digest)",
        # What a task needs that does not fit in its id, until it expires.
        """CREATE TABLE task_state (
            task TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            state TEXT NOT NULL,
            expires_ms BIGINT NOT NULL
        )""",
        "CREATE INDEX task_state_expiry ON task_state (expires_ms)",
        # Open sessions per owner across replicas (admission); the owner's row is the lock.
        "CREATE TABLE session_owners (owner TEXT PRIMARY KEY, touched_ms BIGINT NOT NULL)",
        """CREATE TABLE sessions (
            token TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            replica TEXT NOT NULL,
            expires_ms BIGINT NOT NULL
        )""",
        "CREATE INDEX sessions_owner ON sessions (owner)",
    ),
)
#: The newest version this release knows.
VERSION = len(VERSIONS)

_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_ms BIGINT NOT NULL)"
)
#: SQLite's header field that the ledger of earlier releases checks: above 1 they refuse the file.
_LEGACY_GUARD = 2
_IMPORT_LEGACY = (
    "INSERT INTO spend_calls (id, bucket, started_ms, day, tool, model, images, estimate_micros, "
    "held_micros, charged_micros, state, prediction_id, owner, updated_ms) "
    "SELECT 'v1-' || id, bucket, CAST(started * 1000 AS INTEGER), day, tool, model, images, estimate, "
    "reserved, charged, 'settled', prediction_id, 'earlier-release', ? FROM calls"
)


async def migrate(engine: Engine, now_ms: int) -> int:
    """Bring the store to :data:`VERSION`; return it. Raises LedgerError for a newer store."""

    async def body(tx: Tx) -> int:
        await tx.execute(_TABLE)
        done = {int(v) for (v,) in await tx.rows("SELECT version FROM schema_migrations")}
        newest = max(done, default=0)
        if newest > VERSION:
            raise StoreVersionError(
                f"The store's schema is version {newest}, newer than this release knows ({VERSION}): a "
                "newer release of atlas-image-mcp has used it. Run that release (or newer), or point this "
                "one at another store."
            )
        for version, statements in enumerate(VERSIONS, 1):
            if version in done:
                continue
            for statement in statements:
                await tx.execute(statement)
            if version == 1 and engine.name == "sqlite":
                await _import_legacy(tx, now_ms)
            await tx.execute(
                "INSERT INTO schema_migrations (version, applied_ms) VALUES (?, ?)", (version, now_ms)
            )
        return VERSION

    return await engine.exclusive(body)


async def _import_legacy(tx: Tx, now_ms: int) -> None:
    """SQLite only: the ledger file of earlier releases becomes this schema, keeping its rows."""
    found = await tx.rows("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'calls'")
    if found:
        await tx.execute(_IMPORT_LEGACY, (now_ms,))
        await tx.execute("DROP TABLE calls")
    await tx.execute(f"PRAGMA user_version = {_LEGACY_GUARD}")
