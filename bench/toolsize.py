#!/usr/bin/env python3
"""``python bench/toolsize.py [--no-npx] [--json]``: the size of ``tools/list``
(:mod:`bench.sections.tool_list`)."""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repository's root, not bench/
    from bench.sections.tool_list import main

    sys.exit(main())
