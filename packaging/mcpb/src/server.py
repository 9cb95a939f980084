"""The Claude Desktop bundle's entry point: the same stdio server as the `atlas-image-mcp` command."""

import sys

from atlas_image_mcp.cli import main

sys.exit(main([]))
