"""What sign-in needs from the settings, checked together once: :class:`OAuthConfig`.

Sign-in is on when ``ATLAS_MCP_OAUTH_ISSUER`` is set. Then ``ATLAS_MCP_PUBLIC_URL`` must say where
clients reach this server: the protected resource (the audience every access token must name) is
its ``/mcp``, and every URL this server hands out (the metadata, the key-linking page) is built
from it, never from a request's ``Host``. Linked keys (``ATLAS_MCP_USER_KEYS=1`` with sign-in)
also need this server's own client at the authorization server and the key that encrypts them.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..constants import RESOURCE_PATH, SCOPE_GENERATE, SCOPE_READ
from ..settings import Settings, SettingsError, env_name

__all__ = ["METADATA_PATH", "OAuthConfig", "oauth_config"]

#: RFC 9728's well-known path of the protected resource metadata (root form).
METADATA_PATH = "/.well-known/oauth-protected-resource"
#: Where the key-linking page lives, and where the authorization server sends its sign-in back.
LINK_PATH = "/link"
LINK_CALLBACK_PATH = "/link/callback"


@dataclass(frozen=True)
class OAuthConfig:
    """Sign-in settings, checked (see :func:`oauth_config`)."""

    #: The authorization server's issuer, exactly as configured (compared character for character).
    issuer: str
    #: This server's public base URL, without a trailing ``/``.
    public_url: str
    #: This server's own client at the authorization server (sign-in on the page; introspection).
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    #: Each user links their own Atlas key (``ATLAS_MCP_USER_KEYS=1``).
    linking: bool = False
    #: The keys that encrypt linked Atlas keys: the first encrypts, each decrypts.
    vault_keys: tuple[bytes, ...] = field(default=(), repr=False)
    #: The scopes this server knows, the narrower first.
    scopes: tuple[str, ...] = (SCOPE_READ, SCOPE_GENERATE)

    @property
    def resource(self) -> str:
        """The protected resource's identifier (RFC 8707): the audience tokens must name."""
        return self.public_url + RESOURCE_PATH

    @property
    def metadata_url(self) -> str:
        """The path-suffixed metadata URL (RFC 9728 section 3.1), named in every challenge."""
        return self.public_url + METADATA_PATH + RESOURCE_PATH

    @property
    def link_url(self) -> str:
        return self.public_url + LINK_PATH

    @property
    def callback_url(self) -> str:
        return self.public_url + LINK_CALLBACK_PATH

    @property
    def introspects(self) -> bool:
        """Opaque (non-JWT) tokens are asked about at the issuer (RFC 7662): only with client credentials."""
        return self.client_id is not None and self.client_secret is not None


def oauth_config(settings: Settings) -> OAuthConfig | None:
    """The sign-in settings, or None when sign-in is off; SettingsError for a combination that cannot work."""
    issuer = settings.oauth_issuer
    if issuer is None:
        return None
    if settings.public_url is None:
        raise SettingsError(
            f"{env_name('oauth_issuer')} is set, so {env_name('public_url')} must say where clients reach "
            "this server (such as https://mcp.example.com): access tokens are issued for its /mcp."
        )
    if urlsplit(settings.public_url).path.strip("/"):
        raise SettingsError(
            f"{env_name('public_url')} must be an origin without a path (such as https://mcp.example.com): "
            "the server answers at /mcp and at the well-known paths of that origin."
        )
    if settings.auth_token:
        raise SettingsError(
            f"{env_name('oauth_issuer')} and {env_name('auth_token')} are both set: with sign-in every "
            f"request brings an access token, so unset {env_name('auth_token')}."
        )
    if (settings.oauth_client_id is None) != (settings.oauth_client_secret is None):
        raise SettingsError(
            f"Set both {env_name('oauth_client_id')} and {env_name('oauth_client_secret')} (this server's "
            "client at the authorization server), or neither."
        )
    if settings.user_keys:
        missing = [
            env_name(name)
            for name in ("oauth_client_id", "oauth_client_secret", "linked_key_secret")
            if not getattr(settings, name)
        ]
        if missing:
            raise SettingsError(
                f"{env_name('user_keys')}=1 with {env_name('oauth_issuer')}: each user links their Atlas key "
                f"on this server's page, which signs them in as this server's own client and encrypts the "
                f"key; set {' and '.join(missing)} (see docs/oauth.md)."
            )
    return OAuthConfig(
        issuer=issuer,
        public_url=settings.public_url.rstrip("/"),
        client_id=settings.oauth_client_id,
        client_secret=settings.oauth_client_secret,
        linking=settings.user_keys,
        vault_keys=tuple(base64.b64decode(item) for item in settings.linked_key_secret),
    )
