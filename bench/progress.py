"""Progress lines on stderr (stdout carries the report of a quick run)."""

from __future__ import annotations

import sys
import time


def log(message: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()
