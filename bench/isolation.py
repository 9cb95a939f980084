#!/usr/bin/env python3
"""``python bench/isolation.py [--case NAME ...] [--json]``: how long an innocent client waits, and
what the server holds, while another client attacks a hosted server (:mod:`bench.sections.isolation`)."""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repository's root, not bench/
    from bench.sections.isolation import main

    sys.exit(main())
