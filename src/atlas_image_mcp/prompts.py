"""The prompts: ``draw`` turns a short idea into a detailed FLUX prompt and a generate_image call."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

from .runtime import Runtime

__all__ = ["register_prompts"]


def register_prompts(server: MCPServer[Runtime]) -> None:
    @server.prompt(
        name="draw",
        title="Draw a picture",
        description="Turn a short idea into a detailed FLUX prompt and generate it.",
    )
    def draw(idea: str, style: str = "photographic") -> str:
        return (
            f"Write a detailed FLUX image prompt for: {idea}. Style: {style}. Describe the subject, setting, "
            "lighting, composition and camera or medium in one paragraph, then call generate_image with it "
            "and show me the result."
        )
