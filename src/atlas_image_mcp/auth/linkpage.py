"""The key-linking page: where a signed-in user gives this server their Atlas key, once.

The way through it, for the link ``/link?t=<token>`` a tool answer gave (:mod:`.elicit`):

1. ``GET /link?t=...``: the token is opened (sealed by this server: who it is for, a nonce, an
   expiry of :data:`~atlas_image_mcp.constants.LINK_TTL_SECONDS`); the first browser to open it
   holds it (any other is refused; the store keeps this across replicas). The page then signs the
   person in with the same authorization server, as this server's own client: an authorization
   code request with PKCE (S256), a ``state`` and an OpenID ``nonce``, kept in a sealed cookie.
2. ``GET /link/callback``: the state is checked, the ``iss`` of the answer too (RFC 9207), the code
   is exchanged with the client's secret, and the ID token verified. The key may be given only if
   the person who signed in is the user the link is for (same issuer and subject): the
   specification's rule that a server verify who opens a URL it sent, so a forwarded or stolen
   link links nothing. The form carries a CSRF token that matches the sealed cookie.
3. ``POST /link``: the form (at most :data:`~atlas_image_mcp.constants.LINK_FORM_MAX_BYTES`) from
   this server's own origin, the CSRF token, the link still held by this browser, a bounded number
   of tries per user; the key is checked with Atlas (a read of the account's balance with it) and
   only then sealed and stored (:mod:`.accounts`). The link is spent; the key is never shown again.

Every answer is ``no-store``, with a ``same-origin`` referrer policy (the token is in the URL: it
never goes to another site), framed by nobody, under a
Content-Security-Policy that allows nothing but its own inline style (by hash) and posting its form
to itself. Nothing the person types is logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import logging
import secrets
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route, Router
from starlette.types import ASGIApp

from ..constants import (
    KEYS_URL,
    LINK_ATTEMPTS,
    LINK_ATTEMPTS_WINDOW_SECONDS,
    LINK_FORM_MAX_BYTES,
    LINK_LOGIN_SECONDS,
    LINK_TTL_SECONDS,
    MAX_USER_KEY_CHARS,
    MIN_USER_KEY_CHARS,
)
from ..errors import AtlasError, AuthenticationError, LedgerError
from ..runtime import Runtime
from .config import LINK_CALLBACK_PATH, LINK_PATH
from .issuer import AuthServerUnavailable
from .principal import principal_id
from .sealing import SealError
from .service import SignIn
from .verifier import TokenRefused

__all__ = ["link_page"]

logger = logging.getLogger(__name__)

_COOKIE = "atlas_link"
_STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#222}"
    "h1{font-size:1.4rem}input[type=password]{width:100%;padding:.5rem;font:inherit;box-sizing:border-box}"
    "button{margin-top:1rem;padding:.5rem 1.2rem;font:inherit}.note{color:#555;font-size:.9rem}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
_HEADERS = {
    "Cache-Control": "no-store",
    # same-origin, not no-referrer: the link's URL never goes to another site, and the form's POST
    # still carries this page's Origin (with no-referrer Chromium sends "Origin: null")
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}


def link_page(runtime: Runtime) -> ASGIApp:
    """The page's app (``/link`` and ``/link/callback``) for a runtime with linked keys on."""
    page = _LinkPage(runtime)
    return Router(
        routes=[
            Route(LINK_PATH, page.open_link, methods=["GET"]),
            Route(LINK_PATH, page.submit, methods=["POST"]),
            Route(LINK_CALLBACK_PATH, page.signed_in, methods=["GET"]),
        ]
    )


def _page(status: int, title: str, *paragraphs: str, form: str = "") -> HTMLResponse:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    text = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}{form}</body></html>"
    )
    return HTMLResponse(text, status_code=status, headers=_HEADERS)


def _ask_again() -> str:
    return "Ask your assistant again: the next call that needs Atlas gives you a new link."


class _Attempts:
    """Tries of the form per user, within a rolling window (this process)."""

    def __init__(self) -> None:
        self._seen: OrderedDict[str, list[float]] = OrderedDict()

    def allow(self, who: str) -> bool:
        now = time.monotonic()
        recent = [t for t in self._seen.pop(who, []) if now - t < LINK_ATTEMPTS_WINDOW_SECONDS]
        allowed = len(recent) < LINK_ATTEMPTS
        if allowed:
            recent.append(now)
        self._seen[who] = recent
        while len(self._seen) > 10_000:
            self._seen.popitem(last=False)
        return allowed


class _LinkPage:
    def __init__(self, runtime: Runtime) -> None:
        signin = runtime.signin
        assert signin is not None and signin.accounts is not None and signin.links is not None
        assert signin.page is not None and signin.config.client_id and signin.config.client_secret
        self.runtime = runtime
        self.signin: SignIn = signin
        self.accounts = signin.accounts
        self.links = signin.links
        self.state = signin.page
        self.config = signin.config
        self.client = (signin.config.client_id, signin.config.client_secret)
        self.secure = urlsplit(signin.config.public_url).scheme == "https"
        self.attempts = _Attempts()

    # --- the cookie that carries this browser's sign-in state ------------------------------------

    def _cookie(self, response: Response, payload: dict[str, Any] | None) -> Response:
        if payload is None:
            response.delete_cookie(_COOKIE, path=LINK_PATH, secure=self.secure, httponly=True, samesite="lax")
            return response
        response.set_cookie(
            _COOKIE,
            self.state.seal(payload, LINK_LOGIN_SECONDS),
            max_age=int(LINK_LOGIN_SECONDS),
            path=LINK_PATH,
            secure=self.secure,
            httponly=True,
            samesite="lax",
        )
        return response

    def _state(self, request: Request, kind: str) -> dict[str, Any] | None:
        raw = request.cookies.get(_COOKIE)
        if not raw:
            return None
        try:
            state = self.state.open(raw)
        except SealError:
            return None
        return state if state.get("k") == kind else None

    def _link(self, token: str) -> dict[str, Any] | None:
        """The link token's payload, when it is one of ours, for this issuer, and not expired."""
        try:
            found = self.links.open(token)
        except SealError:
            return None
        ok = found.get("iss") == self.config.issuer and isinstance(found.get("sub"), str)
        return found if ok and isinstance(found.get("n"), str) else None

    # --- 1. the link is opened ------------------------------------------------------------------

    async def open_link(self, request: Request) -> Response:
        token = request.query_params.get("t", "")
        link = self._link(token)
        if link is None:
            return _page(400, "This link does not work", "It is not valid, or it has expired.", _ask_again())
        earlier = self._state(request, "login") or self._state(request, "form")
        holder = earlier["h"] if earlier and earlier.get("t") == token else self.accounts.new_holder()
        try:
            if not await self.accounts.claim(link["n"], holder, ttl=LINK_TTL_SECONDS):
                return _page(
                    410,
                    "This link was used already",
                    "A link to this page works once, in one browser.",
                    _ask_again(),
                )
            authorize = await self.signin.issuer.endpoint("authorization_endpoint")
        except (LedgerError, AuthServerUnavailable) as exc:
            logger.warning("key-linking page: %s", exc)
            return _page(503, "Try again in a moment", "This server cannot reach what it needs right now.")
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(48)  # RFC 7636: 43 to 128 characters
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        query = {
            "response_type": "code",
            "client_id": self.client[0],
            "redirect_uri": self.config.callback_url,
            "scope": "openid",
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        response = RedirectResponse(f"{authorize}?{urlencode(query)}", status_code=303, headers=_HEADERS)
        return self._cookie(
            response, {"k": "login", "t": token, "h": holder, "s": state, "v": verifier, "o": nonce}
        )

    # --- 2. the sign-in comes back ---------------------------------------------------------------

    async def signed_in(self, request: Request) -> Response:
        login = self._state(request, "login")
        given = request.query_params
        if login is None or not hmac.compare_digest(str(login.get("s")), given.get("state", "")):
            return _page(400, "The sign-in did not come back here", "Open your link again.", _ask_again())
        link = self._link(str(login["t"]))
        if link is None:
            return self._cookie(_page(400, "This link has expired", _ask_again()), None)
        if "error" in given:
            why = html.escape(given.get("error_description") or given["error"])[:300]
            return _page(400, "The sign-in did not complete", f"The authorization server said: {why}.")
        try:
            claims = await self._sign_in(given.get("code", ""), given.get("iss"), login)
        except TokenRefused as refused:
            return _page(400, "The sign-in did not complete", html.escape(refused.description) + ".")
        except AuthServerUnavailable as exc:
            logger.warning("key-linking sign-in: %s", exc)
            return _page(503, "Try again in a moment", "This server cannot reach the authorization server.")
        if claims["sub"] != link["sub"]:
            return self._cookie(
                _page(
                    403,
                    "This link is for another account",
                    "You signed in as a different user than the one this link was made for, so nothing "
                    "can be linked here. Sign in with the account you use in your assistant, or ask it for "
                    "a new link.",
                ),
                None,
            )
        csrf = secrets.token_urlsafe(24)
        response = self._form(200, csrf)
        return self._cookie(response, {"k": "form", "t": login["t"], "h": login["h"], "c": csrf})

    async def _sign_in(self, code: str, iss: str | None, login: dict[str, Any]) -> dict[str, Any]:
        metadata = await self.signin.issuer.metadata()
        if iss is not None and iss != self.config.issuer:  # RFC 9207: the answer names its issuer
            raise TokenRefused("The sign-in answer came from another authorization server")
        if iss is None and metadata.get("authorization_response_iss_parameter_supported") is True:
            raise TokenRefused("The sign-in answer does not name its authorization server")
        if not code:
            raise TokenRefused("The sign-in answer has no code")
        answer = await self.signin.issuer.post_form(
            "token_endpoint",
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.config.callback_url,
                "code_verifier": str(login["v"]),
            },
            self.client,
        )
        id_token = answer.get("id_token")
        if not isinstance(id_token, str):
            error = str(answer.get("error_description") or answer.get("error") or "no ID token")[:200]
            raise TokenRefused(f"The authorization server did not sign you in ({error})")
        return await self.signin.verifier.id_token(id_token, client_id=self.client[0], nonce=str(login["o"]))

    def _form(self, status: int, csrf: str, *problem: str) -> HTMLResponse:
        form = (
            f'<form method="post" action="{LINK_PATH}" autocomplete="off">'
            f'<input type="hidden" name="csrf" value="{html.escape(csrf)}">'
            '<label for="key">Your Atlas Cloud API key</label>'
            '<input type="password" id="key" name="key" required '
            f'minlength="{MIN_USER_KEY_CHARS}" maxlength="{MAX_USER_KEY_CHARS}">'
            '<button type="submit">Link this key</button></form>'
            '<p class="note">The key is checked with Atlas, then stored encrypted; this server never shows '
            "it again. You can unlink it from your assistant at any time (unlink_atlas_key).</p>"
        )
        return _page(
            status,
            "Link your Atlas Cloud API key",
            *problem,
            f'Paste an API key of your Atlas Cloud account (<a href="{KEYS_URL}">make one</a>). Calls you '
            "make through this server then spend it.",
            form=form,
        )

    # --- 3. the key is given ---------------------------------------------------------------------

    async def submit(self, request: Request) -> Response:
        session = self._state(request, "form")
        origin = request.headers.get("origin")
        public = urlsplit(self.config.public_url)
        site = request.headers.get("sec-fetch-site", "same-origin")
        if (origin is not None and origin != f"{public.scheme}://{public.netloc}") or site != "same-origin":
            return _page(403, "Refused", "The form was not sent from this server's own page.")
        form = await _small_form(request)
        if (
            session is None
            or form is None
            or not hmac.compare_digest(str(session["c"]), form.get("csrf", ""))
        ):
            return _page(400, "The form has expired", "Open your link again.", _ask_again())
        link = self._link(str(session["t"]))
        if link is None:
            return self._cookie(_page(400, "This link has expired", _ask_again()), None)
        owner = principal_id(str(link["iss"]), str(link["sub"]))
        if not self.attempts.allow(owner):
            return _page(429, "Too many tries", "Wait a few minutes, then open a new link.")
        key = form.get("key", "").strip()
        if not _plausible(key):
            return self._form(
                400, str(session["c"]), "That is not an Atlas Cloud API key: paste the whole key."
            )
        try:
            if not await self.accounts.claim(str(link["n"]), str(session["h"]), ttl=LINK_TTL_SECONDS):
                return self._cookie(_page(410, "This link was used already", _ask_again()), None)
            verdict = await self._check(key)
            if verdict is not None:
                return self._form(400, str(session["c"]), verdict)
            await self.accounts.link(owner, key)
            await self.accounts.spend(str(link["n"]), str(session["h"]), ttl=LINK_TTL_SECONDS)
        except LedgerError as exc:
            logger.warning("key-linking page: %s", exc.message)
            return _page(503, "Try again in a moment", "This server cannot reach its database right now.")
        logger.info("a user linked an Atlas key")
        return self._cookie(
            _page(
                200,
                "Your Atlas key is linked",
                "Go back to your assistant and call the tool again: it uses your key from now on.",
                "This server will not show the key again.",
            ),
            None,
        )

    async def _check(self, key: str) -> str | None:
        """Ask Atlas whether it knows ``key`` (a read of the account's balance); what to tell the person
        when it is not linked (None: it may be linked)."""
        try:
            await self.runtime.client.with_api_key(key).get_balance()
        except AuthenticationError:
            return "Atlas does not accept this key (unknown, or expired). Check it, or make a new one."
        except AtlasError as exc:
            logger.warning("key-linking page: cannot check a key with Atlas: %s", type(exc).__name__)
            return "Atlas could not be asked about this key right now; try again in a moment."
        return None


def _plausible(key: str) -> bool:
    return (
        MIN_USER_KEY_CHARS <= len(key) <= MAX_USER_KEY_CHARS
        and key.isascii()
        and key.isprintable()
        and not any(c in key for c in " \"',;\\<>")
    )


async def _small_form(request: Request) -> dict[str, str] | None:
    """The urlencoded form of ``request``, at most LINK_FORM_MAX_BYTES; None otherwise."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > LINK_FORM_MAX_BYTES:
            return None
    try:
        return dict(parse_qsl(body.decode("ascii"), keep_blank_values=True, max_num_fields=8))
    except (UnicodeDecodeError, ValueError):
        return None
