"""``unlink_atlas_key``: forget the Atlas key the signed-in user linked (offered only with linked keys).

Linking itself needs no tool: a call that needs Atlas while no key is linked answers with the link
to the page that links one (:mod:`atlas_image_mcp.auth.elicit`).
"""

from __future__ import annotations

from typing import Annotated

from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel, Field

from ..call import Call
from ..errors import AtlasError

__all__ = ["UnlinkResult", "unlink_atlas_key"]


class UnlinkResult(BaseModel):
    unlinked: bool = Field(description="A key was linked, and is now deleted from this server.")


async def unlink_atlas_key(call: Call) -> Annotated[CallToolResult, UnlinkResult]:
    """Unlink your Atlas Cloud API key from this server: it is deleted here, and calls that need
    Atlas will ask you to link a key again. The key itself stays valid at Atlas."""
    signin = call.runtime.signin
    subject = call.caller.subject
    if signin is None or signin.accounts is None or subject is None:
        raise AtlasError("This server does not keep linked keys: there is nothing to unlink.")
    unlinked = await signin.accounts.unlink(subject)
    text = (
        "Your Atlas Cloud API key is unlinked and deleted from this server. The next call that needs Atlas "
        "will give you the page to link a key again. (The key still works at Atlas: revoke it in the Atlas "
        "console if you no longer want it.)"
        if unlinked
        else "No Atlas Cloud API key was linked to your account on this server."
    )
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=UnlinkResult(unlinked=unlinked).model_dump(mode="json"),
    )
