"""Asking a signed-in user to link their Atlas key: :class:`LinkGate`, an MCP server middleware.

With linked keys, a ``tools/call`` of a tool that needs Atlas from a user who has linked no key
does not run. Its answer sends the user to the key-linking page (a single-use, short-lived link;
see :mod:`.linkpage`), in the best form the client takes:

* **2026-07-28**, the client takes URL elicitation: ``input_required`` with one
  ``elicitation/create`` request in URL mode. The client opens the page and calls again with the
  answer and the ``requestState`` this answer carried (sealed by the SDK, bound to the user); if a
  key is linked by then the call runs (the tool's own questions, such as a cost confirmation, start
  afresh), otherwise the link comes again.
* **2025-11-25**, the client takes URL elicitation: the JSON-RPC error -32042
  (``URLElicitationRequiredError``) with the URL; the client opens it and calls again.
* **otherwise** (no URL elicitation, or 2025-06-18): a tool error whose text has the link.

The link is also in every message's text, for a person reading it. The page itself checks who
opens it (the specification's rule for URL elicitation: the server verifies the user who opens the
URL), so the link in a transcript is worth nothing to anyone else.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import UrlElicitationRequiredError
from mcp_types import ElicitRequestURLParams
from mcp_types.version import is_version_at_least

from ..constants import KEYS_URL, LINK_TTL_SECONDS
from .principal import principal_of

if TYPE_CHECKING:
    from .service import SignIn

__all__ = ["LinkGate"]

#: The ``inputRequests`` key of our question, and the mark of our ``requestState``.
_ASK = "atlas_link_key"
_MODERN = "2026-07-28"


def _message(url: str) -> str:
    return (
        "Link your Atlas Cloud API key to your account on this server, once: open the page below, sign in "
        f"with the same account, and paste your key (create one at {KEYS_URL}). The link works once, for "
        f"{LINK_TTL_SECONDS / 60:g} minutes; then call the tool again.\n{url}"
    )


class LinkGate:
    """The middleware (see the module docstring). ``keyed``: the tools that need the caller's key."""

    def __init__(self, keyed: frozenset[str]) -> None:
        self.keyed = keyed

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        params = dict(ctx.params or {})
        signin: SignIn | None = getattr(ctx.lifespan_context, "signin", None)
        principal = principal_of(ctx.request)
        if (
            ctx.method != "tools/call"
            or params.get("name") not in self.keyed
            or signin is None
            or signin.accounts is None
            or principal is None
        ):
            return await call_next(ctx)
        ours = _is_ours(params.get("requestState"))
        if principal.linked_key:
            if ours:  # our question is answered: the call starts afresh, with its own questions
                params.pop("requestState", None)
                params.pop("inputResponses", None)
                ctx = replace(ctx, params=params)
            return await call_next(ctx)
        url = signin.link_for(principal)
        modern = is_version_at_least(ctx.protocol_version, _MODERN)
        declined = ours and _declined(params.get("inputResponses"))
        if _takes_url(ctx) and not declined:
            request = ElicitRequestURLParams(message=_message(url), url=url)
            if modern:
                return {
                    "resultType": "input_required",
                    "inputRequests": {
                        _ASK: {
                            "method": "elicitation/create",
                            "params": request.model_dump(by_alias=True, exclude_none=True, mode="json"),
                        }
                    },
                    "requestState": json.dumps({_ASK: 1}),
                }
            request = request.model_copy(update={"elicitation_id": secrets.token_urlsafe(12)})
            raise UrlElicitationRequiredError([request], message=_message(url))
        answer: dict[str, Any] = {"content": [{"type": "text", "text": _message(url)}], "isError": True}
        if modern:
            answer["resultType"] = "complete"  # an answer made here is sent as it is: it must be whole
        return answer


def _is_ours(state: object) -> bool:
    if not isinstance(state, str):
        return False
    try:
        found = json.loads(state)
    except ValueError:
        return False
    return isinstance(found, dict) and found.get(_ASK) == 1


def _declined(responses: object) -> bool:
    answer = responses.get(_ASK) if isinstance(responses, dict) else None
    return isinstance(answer, dict) and answer.get("action") in ("decline", "cancel")


def _takes_url(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Whether the client declared URL elicitation (2025-11-25 onward)."""
    capabilities = getattr(ctx.session, "client_capabilities", None)
    elicitation = getattr(capabilities, "elicitation", None)
    return getattr(elicitation, "url", None) is not None
