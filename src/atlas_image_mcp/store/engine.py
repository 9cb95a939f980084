"""One transaction body, two engines: what SQLite and PostgreSQL each provide to the store.

A transaction body is an ``async def body(tx: Tx) -> T`` that runs statements through
:class:`Tx` and decides in Python between them. Every statement is written once, in the SQL both
engines agree on (docs/replicas.md lists the rules): ``?`` placeholders (PostgreSQL's driver gets
``%s``), ``INSERT ... ON CONFLICT``, no ``RETURNING`` (SQLite before 3.35 lacks it: conditional
updates are judged by their row count), times as whole milliseconds from the application's clock.

On PostgreSQL the body's awaits are real network round trips. On SQLite the statements run in the
store's own writer thread and never suspend, so the same coroutine is driven there to its end
without an event loop (:func:`drive`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol, TypeVar

from .location import Engine as EngineName

__all__ = ["Body", "Engine", "Param", "Tx", "Unreachable", "drive", "placeholders"]

T = TypeVar("T")
Param = str | int | float | None
Row = tuple[Any, ...]


class Tx(Protocol):
    """The statements of one open transaction."""

    async def execute(self, sql: str, params: Sequence[Param] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        ...

    async def rows(self, sql: str, params: Sequence[Param] = ()) -> list[Row]:
        """Run one query; all its rows."""
        ...


Body = Callable[[Tx], Awaitable[T]]


class Unreachable(Exception):
    """The engine cannot reach its database now (connection refused or lost, pool timeout).

    The message is the reason in a few words, with no secret in it.
    """


class Engine(Protocol):
    """What the store needs from an engine. Errors: :class:`Unreachable`, else ``LedgerError``."""

    name: EngineName

    async def start(self) -> None:
        """Open the connection(s). Raises :class:`Unreachable` when the database cannot be reached."""
        ...

    async def transaction(self, body: Body[T]) -> T:
        """Run ``body`` in one transaction: committed when it returns, rolled back when it raises."""
        ...

    async def exclusive(self, body: Body[T]) -> T:
        """A transaction that no other process of the store runs at the same time (migrations)."""
        ...

    async def probe(self) -> None:
        """Raise :class:`Unreachable` unless a fresh connection to the database works."""
        ...

    async def recovered(self) -> None:
        """The database answers again after an outage: drop what the outage left stale."""
        ...

    async def close(self) -> None: ...


def drive(body: Body[T], tx: Tx) -> T:
    """Run a transaction body whose statements never suspend (SQLite's) to its end, here and now."""
    coroutine = body(tx)
    if not isinstance(coroutine, Coroutine):  # pragma: no cover - a body is an async def
        raise TypeError("a transaction body must be an async function")
    result: T = _finish(coroutine)
    return result


def _finish(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        coroutine.send(None)
    except StopIteration as done:
        value: T = done.value
        return value
    coroutine.close()
    raise RuntimeError("a transaction body awaited something other than its statements")


def placeholders(count: int, row: str = "?") -> str:
    """``?, ?, ?`` (or ``(?, ?), (?, ?)`` with ``row="(?, ?)"``): the marks of a list of values."""
    return ", ".join([row] * count)
