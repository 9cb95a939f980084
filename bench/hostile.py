#!/usr/bin/env python3
"""``python bench/hostile.py [--case NAME ...] [--json]``: peak memory against a hostile Atlas
(:mod:`bench.sections.hostile`)."""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repository's root, not bench/
    from bench.sections.hostile import main

    sys.exit(main())
