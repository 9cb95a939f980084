"""The emulator as one object: its state and rules (:mod:`.core`) served as an ASGI app (:mod:`.app`)."""

from __future__ import annotations

from typing import Any

from .app import EmulatorApp, build_app
from .core import EmulatorCore, Middleware

__all__ = ["Emulator"]


class Emulator(EmulatorCore):
    """A local stand-in for the Atlas Cloud API; :attr:`app` answers its HTTP requests.

    Takes :class:`~.core.EmulatorCore`'s arguments, and ``middleware``, the one extension point: it
    receives the emulator's own ASGI app and returns the one that answers every request, seeing each
    raw ASGI message first (it may answer by itself, change the request, or pass it on). The tests
    hang their request log, fault injection and admin routes on it (``tests/emulation``); no
    user-facing mode uses it.
    """

    def __init__(self, *args: Any, middleware: Middleware | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.app: EmulatorApp = build_app(self, middleware)
