"""Where the store lives: the store setting's URL read into an engine, a place, and a name to show.

* unset: the SQLite file ``ledger.sqlite3`` in the state folder (in memory for the offline emulator);
* ``sqlite:///PATH``: another SQLite file (``sqlite:////abs/path`` or ``sqlite:///relative/path``;
  ``sqlite:///:memory:`` keeps it in this process's memory);
* ``postgresql://...`` or ``postgres://...``: a PostgreSQL server, in any form libpq reads
  (``postgresql://user:password@host:port/db?sslmode=require``, ``?host=/socket/dir``...).

The password of a PostgreSQL URL is a secret: :attr:`Location.shown` leaves it out, and
:meth:`Location.secrets` names what :func:`atlas_image_mcp.redact.register_secret` must hide.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from ..constants import LEDGER_FILE, STORE_URL_SCHEMES
from ..errors import LedgerError
from ..redact import REDACTED
from ..settings import Settings, env_name

__all__ = ["Engine", "Location", "locate", "location_of"]

Engine = Literal["sqlite", "postgresql"]
_MEMORY = ":memory:"


@dataclass(frozen=True)
class Location:
    """One store: its engine and where it is. ``conninfo`` is the PostgreSQL URL (a secret)."""

    engine: Engine
    #: The SQLite file; None keeps the store in this process's memory.
    path: Path | None = None
    conninfo: str = field(default="", repr=False)
    #: The place as messages and logs show it: a path, or the URL without its password.
    shown: str = ""

    @property
    def shared(self) -> bool:
        """Whether other processes on other machines can share it (PostgreSQL)."""
        return self.engine == "postgresql"

    def secrets(self) -> tuple[str, ...]:
        """What must never be shown: the URL's password (and the URL that carries it)."""
        if self.engine != "postgresql":
            return ()
        found = [self.conninfo]
        parts = urlsplit(self.conninfo)
        if parts.password:
            found.append(unquote(parts.password))
        found += [v for k, v in parse_qsl(parts.query) if k == "password" and v]
        return tuple(found)


def locate(url: str | None, *, default_path: Path | None) -> Location:
    """The store named by ``url`` (the setting), or the SQLite file at ``default_path`` when unset.

    ``default_path`` None: in memory (the offline emulator spends nothing real).
    """
    if url is None or not url.strip():
        return _sqlite(default_path)
    text = url.strip()
    lowered = text.lower()
    if lowered.startswith("sqlite:///"):
        rest = unquote(text[len("sqlite:///") :])
        if rest == _MEMORY:
            return _sqlite(None)
        if not rest:
            raise LedgerError(f"{env_name('database_url')} names no file: write sqlite:///PATH.")
        return _sqlite(Path(rest).expanduser().resolve())
    if lowered.startswith(("postgresql://", "postgres://")):
        return Location(engine="postgresql", conninfo=text, shown=_without_password(text))
    raise LedgerError(
        f"{env_name('database_url')} must start with {' or '.join(STORE_URL_SCHEMES)}; it names "
        "something else, so the server cannot keep its budgets."
    )


def location_of(settings: Settings, *, offline: bool = False) -> Location:
    """The store the settings name: the URL when set, else ``ledger.sqlite3`` in the state folder
    (in memory for the offline emulator, which spends nothing real)."""
    default = None if offline else settings.resolved_state_dir / LEDGER_FILE
    return locate(settings.database_url, default_path=default)


def _sqlite(path: Path | None) -> Location:
    return Location(engine="sqlite", path=path, shown=str(path) if path is not None else "in memory")


def _without_password(url: str) -> str:
    """``postgresql://user@host:5432/db`` from ``postgresql://user:pw@host:5432/db?password=pw&...``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}@{hostport}" if user else hostport
    query = "&".join(
        f"{k}={REDACTED if k == 'password' else v}" for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
