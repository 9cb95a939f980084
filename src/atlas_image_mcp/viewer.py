"""The picture viewer: an MCP Apps (``io.modelcontextprotocol/ui``) app the picture tools declare.

A host that speaks MCP Apps renders ``viewer.html`` in a sandboxed frame next to each picture
result and forwards the whole tool result to it; the frame shows the pictures and calls our
tools back through the host. Everything here is about what that frame may see and do:

* one self-contained HTML document (its code inline, no library, no network), served as
  :data:`~atlas_image_mcp.constants.VIEWER_URI` with a content security policy that allows
  nothing beyond the page itself and ``data:`` pictures;
* a client that negotiated the extension never receives a local path or a key in a tool result
  (:class:`PictureViewer` checks every result it is sent, on top of the tools naming saved
  copies by file name only);
* clients that did not negotiate it get exactly the results they got before.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from importlib.resources import files
from pathlib import Path
from typing import Any

from mcp.server.apps import Apps, ResourceCsp, client_supports_apps
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp_types import CallToolRequestParams, CallToolResult, TextContent

from .constants import (
    MAX_NUM_IMAGES,
    MAX_PROMPT_CHARS,
    VIEWER_MAX_POLLS,
    VIEWER_POLL_WAIT_SECONDS,
    VIEWER_URI,
)
from .redact import redact
from .runtime import Runtime

__all__ = ["STRICT_CSP", "PictureViewer", "keep_local_paths_out", "make_viewer", "viewer_html"]

#: Declared, not left to the host's default: no origin at all for scripts, styles, pictures,
#: fonts, fetches, frames or ``<base>``. The host then allows only the page's own inline code
#: and ``data:`` pictures (the spec's CSP: ``img-src 'self' data:``, ``connect-src 'self'``).
STRICT_CSP = ResourceCsp(connect_domains=[], resource_domains=[], frame_domains=[], base_uri_domains=[])

#: Where the page takes its settings from (a JSON block, read with ``JSON.parse``; never code).
_CONFIG_MARK = "/*ATLAS_VIEWER_CONFIG*/{}"


class PictureViewer(Apps):
    """The MCP Apps extension, plus a last check on every tool result an Apps client receives.

    The tools already name saved copies by file name for such clients; this check also catches a
    path inside an error message (a folder that could not be written) and redacts any secret.
    """

    def __init__(self, runtime: Runtime) -> None:
        super().__init__()
        self._runtime = runtime

    async def intercept_tool_call(
        self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        result = await call_next(ctx)
        if isinstance(result, CallToolResult) and client_supports_apps(ctx):
            return keep_local_paths_out(result, self.local_folders())
        return result

    def local_folders(self) -> dict[str, str]:
        """Local folders that must not show in a frame, each with the words that stand for it."""
        folders = dict.fromkeys(_spellings(self._runtime.output_dir), "the output folder")
        try:
            home = Path.home()
        except (RuntimeError, KeyError):  # no home folder at all: nothing to hide
            pass
        else:
            folders.update(dict.fromkeys(_spellings(home), "~"))
        return {name: folders[name] for name in sorted(folders, key=len, reverse=True) if len(name) > 1}


def _spellings(folder: Path) -> Iterable[str]:
    yield str(folder)
    try:
        yield str(folder.resolve())
    except OSError:
        pass


def keep_local_paths_out(result: CallToolResult, folders: dict[str, str]) -> CallToolResult:
    """``result`` with every local folder of ``folders`` replaced by its words and secrets redacted.

    Only whole path components match (``/home/al`` is replaced in ``/home/al/x.png`` and in
    ``file:///home/al/x.png``, not in ``https://cdn/home/al/x.png`` or ``/home/alfred``); pictures
    pass untouched.
    """
    if not folders:
        return result
    pattern = re.compile(
        r"(?:(?<=file://)|(?<![\w.:/\\-]))("
        + "|".join(re.escape(f) for f in folders)
        + r")(?=[/\\\s'\")\]},;:.]|$)"
    )

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return pattern.sub(lambda m: folders[m.group(1)], redact(value))
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        return value

    content = [
        block.model_copy(update={"text": clean(block.text)}) if isinstance(block, TextContent) else block
        for block in result.content
    ]
    return result.model_copy(
        update={"content": content, "structured_content": clean(result.structured_content)}
    )


@functools.cache
def viewer_html() -> str:
    """The page, with its settings filled in (the tools it calls, how it polls); read once."""
    page = files(__package__).joinpath("viewer.html").read_text(encoding="utf-8")
    config = {
        "tools": {
            "poll": "get_prediction",
            "edit": "edit_image",
            "variations": "generate_variations",
            "gallery": "show_gallery",
        },
        "pollWaitSeconds": VIEWER_POLL_WAIT_SECONDS,
        "maxPolls": VIEWER_MAX_POLLS,
        "maxVariations": MAX_NUM_IMAGES,
        "maxPromptChars": MAX_PROMPT_CHARS,
    }
    if page.count(_CONFIG_MARK) != 1:
        raise RuntimeError("viewer.html must hold its settings mark exactly once")
    return page.replace(_CONFIG_MARK, json.dumps(config).replace("<", "\\u003c"))


def make_viewer(runtime: Runtime) -> PictureViewer:
    """The extension with its one ``ui://`` resource; the picture tools are bound to it by the tools."""
    viewer = PictureViewer(runtime)
    viewer.add_html_resource(
        VIEWER_URI,
        viewer_html(),
        name="picture-viewer",
        title="Picture viewer",
        description="Shows a picture result (or this session's gallery) with Download, Edit and Variations.",
        csp=STRICT_CSP,
        prefers_border=True,
    )
    return viewer
