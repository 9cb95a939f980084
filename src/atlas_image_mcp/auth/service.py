"""Sign-in as one object the runtime holds: :class:`SignIn` (built by :func:`sign_in`).

It gathers what the HTTP layer, the tools and the key-linking page share: the checked settings,
the authorization server, the token verifier and, with linked keys, the accounts and the sealers
of links and of the page's state (keys derived from the first linked-key secret).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import urlencode

from ..constants import LINK_TTL_SECONDS
from ..settings import Settings
from ..shared import SharedStore
from .accounts import Accounts
from .config import OAuthConfig, oauth_config
from .issuer import AuthorizationServer
from .principal import Principal
from .sealing import Sealer
from .vault import KeyVault
from .verifier import TokenVerifier

__all__ = ["SignIn", "sign_in"]


@dataclass
class SignIn:
    config: OAuthConfig
    issuer: AuthorizationServer
    verifier: TokenVerifier
    #: With linked keys: the keys, the sealer of links, the sealer of the page's own state.
    accounts: Accounts | None = None
    links: Sealer | None = None
    page: Sealer | None = None

    def link_for(self, principal: Principal) -> str:
        """A single-use, short-lived link to the key-linking page for ``principal`` (who it is for
        is sealed inside: nothing personal shows in the URL)."""
        assert self.links is not None
        token = self.links.seal(
            {"iss": principal.issuer, "sub": principal.subject, "n": secrets.token_urlsafe(12)},
            LINK_TTL_SECONDS,
        )
        return f"{self.config.link_url}?{urlencode({'t': token})}"

    async def aclose(self) -> None:
        await self.issuer.aclose()


def sign_in(settings: Settings, store: SharedStore) -> SignIn | None:
    """Sign-in for these settings, or None when it is off (SettingsError when they cannot work).
    Linked keys are kept in ``store`` (the server's)."""
    config = oauth_config(settings)
    if config is None:
        return None
    issuer = AuthorizationServer(config.issuer)
    service = SignIn(config, issuer, TokenVerifier(config, issuer))
    if config.linking:
        service.accounts = Accounts(KeyVault(config.vault_keys), store)
        service.links = Sealer(config.vault_keys[0], "link")
        service.page = Sealer(config.vault_keys[0], "link-page")
    return service
