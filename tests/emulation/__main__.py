"""``python tests/emulation [options]``: the tests' emulator (request log, faults, admin routes) on a
port, with the options of ``python -m atlas_image_mcp.emulator``."""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a path (EMULATOR_COMMAND): make the ``tests`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from atlas_image_mcp.emulator.__main__ import main  # noqa: E402
from tests.emulation.harness import Emulator  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(make_emulator=Emulator))
