#!/usr/bin/env python3
"""``python bench/run.py [--quick] [--output PATH] ...``: the benchmark (:mod:`bench.cli`)."""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repository's root, not bench/
    from bench.cli import main

    sys.exit(main())
