"""``python -m atlas_image_mcp`` runs the same command line as ``atlas-image-mcp``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
