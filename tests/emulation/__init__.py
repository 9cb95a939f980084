"""What only the tests and the benchmark need of the Atlas emulator, outside the shipped package.

:class:`Emulator` is :class:`atlas_image_mcp.emulator.Emulator` plus a request log
(:attr:`Emulator.requests`, :meth:`Emulator.count`), fault injection (:meth:`Emulator.inject`
with a :class:`Fault`) and ``/_emulator/*`` admin routes (:mod:`.admin`), all hung on the package
emulator's one extension point, its ``middleware`` argument.

Out of process, with the options of ``python -m atlas_image_mcp.emulator``: run
:data:`EMULATOR_COMMAND` (``python tests/emulation`` from anywhere, or ``python -m tests.emulation``
from the repository's root).
"""

from __future__ import annotations

import sys
from pathlib import Path

from .faults import EmulatedConnectionReset, Fault
from .harness import Emulator
from .recording import RecordedRequest

__all__ = ["EMULATOR_COMMAND", "EmulatedConnectionReset", "Emulator", "Fault", "RecordedRequest"]

#: The command that serves this emulator on a port (add ``--port`` and the other options).
EMULATOR_COMMAND: tuple[str, ...] = (sys.executable, str(Path(__file__).resolve().parent))
