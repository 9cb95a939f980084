"""The tests' emulator: the package's :class:`~atlas_image_mcp.emulator.Emulator` with a request
log, fault injection and admin routes, all behind the package emulator's ``middleware``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from starlette.types import ASGIApp, Receive, Scope, Send

from atlas_image_mcp import emulator as package

from .admin import admin_app
from .faults import Fault, FaultQueue
from .recording import RecordedRequest, count_matching, gate

__all__ = ["Emulator"]

logger = logging.getLogger(__name__)


class Emulator(package.Emulator):
    """The package's emulator, recorded and steerable.

    Every API request is recorded as it arrived (:attr:`requests`, at most ``max_logged_requests``,
    the oldest dropped first), before an armed :class:`Fault` may answer instead of the emulator
    (:meth:`inject`); ``sleep`` is what a ``Fault.delay`` waits with. ``/_emulator/*`` admin routes
    (:mod:`.admin`) steer it from another process. Every other argument is the package emulator's.
    """

    def __init__(
        self,
        *args: Any,
        max_logged_requests: int = 100_000,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        **kwargs: Any,
    ) -> None:
        if max_logged_requests < 1:
            raise ValueError("max_logged_requests must be >= 1")
        self.max_logged_requests = max_logged_requests
        self.sleep = sleep
        self.requests: list[RecordedRequest] = []
        self._faults = FaultQueue()
        self._log_lock = threading.Lock()
        super().__init__(*args, middleware=self._front_door, **kwargs)

    def _front_door(self, app: ASGIApp) -> ASGIApp:
        admin = admin_app(self)

        async def front(scope: Scope, receive: Receive, send: Send) -> None:
            await gate(self, scope, receive, send, app, admin)

        return front

    def count(self, method: str = "*", path: str = "*") -> int:
        """Recorded requests matching ``method`` and the fnmatch pattern ``path``."""
        return count_matching(list(self.requests), method, path)

    def reset_log(self) -> None:
        with self._log_lock:
            self.requests.clear()

    def inject(self, fault: Fault, *, method: str = "*", path: str = "*", times: int = 1) -> None:
        """Arm ``fault`` for the next ``times`` requests matching ``method`` / ``path``."""
        self._faults.add(fault, method=method, path=path, times=times)
        logger.info("armed fault %s for %s %s x%d", fault.kind, method, path, times)

    def pending_faults(self) -> list[dict[str, Any]]:
        return self._faults.pending()

    def reset(self) -> None:
        """Forget requests and armed faults too, besides what the package emulator forgets."""
        super().reset()
        self.reset_log()
        self._faults.clear()

    # -- used by the gate ---------------------------------------------------------------------------

    def record(self, request: RecordedRequest) -> None:
        with self._log_lock:
            self.requests.append(request)
            excess = len(self.requests) - self.max_logged_requests
            if excess > 0:
                del self.requests[:excess]

    def take_fault(self, method: str, path: str) -> Fault | None:
        return self._faults.take(method, path)
