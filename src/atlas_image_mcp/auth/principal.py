"""Who signed in: the principal a verified access token names, as the HTTP layer hands it on.

The access guard (:mod:`.guard`) puts a :class:`Principal` in the ASGI scope of every request it
let through; the tools find it from their request (:func:`principal_of`). Its :attr:`Principal.id`
is the one name everything a user owns is kept under (pictures, usage, tasks, the linked key): a
digest of the issuer and the subject, so two authorization servers' users never meet and no
subject (which may be an e-mail address) is written anywhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["PRINCIPAL", "Principal", "principal_id", "principal_of"]

#: The ASGI scope key the guard stores the principal under.
PRINCIPAL = "atlas_image_mcp.principal"


def principal_id(issuer: str, subject: str) -> str:
    """The server's name for the user ``subject`` of ``issuer`` (a digest: no personal data)."""
    digest = hashlib.sha256(f"atlas-image-mcp/principal/v1\0{issuer}\0{subject}".encode()).hexdigest()
    return "user-" + digest[:32]


@dataclass(frozen=True)
class Principal:
    """A signed-in user, from a token this server verified."""

    issuer: str
    subject: str
    #: The OAuth client the user signed in with (two clients of one user are one principal).
    client_id: str
    scopes: frozenset[str]
    #: The Atlas key this user linked (with linked keys on); never shown.
    linked_key: str | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return principal_id(self.issuer, self.subject)


def principal_of(request: object) -> Principal | None:
    """The principal of an HTTP request the guard let through (None: no sign-in, or stdio)."""
    scope = getattr(request, "scope", None)
    found = scope.get(PRINCIPAL) if isinstance(scope, Mapping) else None
    return found if isinstance(found, Principal) else None
