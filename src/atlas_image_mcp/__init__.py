"""atlas-image-mcp: an MCP server that turns a sentence into a saved FLUX picture via Atlas Cloud."""

__version__ = "0.1.0"

__all__ = ["__version__"]
