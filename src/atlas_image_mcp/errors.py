"""The error tree. Every message says what happened and what to do next, with no key in it.

The tree::

    AtlasError                       base; ``str(err)`` says what happened and what to do next
      + MissingAPIKeyError           no key configured (or none sent, in per-user-key mode)
      + InvalidParameterError        an argument is out of range; names the allowed range
      + LocalFileError               a file to upload is missing, a directory, empty, too big or refused
      + SpendLimitError              the images-per-hour limit refused a generation
      + BudgetError                  the daily USD budget refused a generation
      + LedgerError                  the spend ledger cannot be read or written
        - StoreUnavailableError      the store cannot be reached now (nothing was sent)
        - StoreVersionError          the store was written by a newer release
      + SaveError                    a picture could not be written to the output folder
      + APIConnectionError           the request did not get an answer (``sent``: it may have arrived)
        - APITimeoutError            ... because it timed out
      + APIStatusError               HTTP 4xx/5xx or a non-200 envelope ``code``
        - AuthenticationError        401 / 403
        - InsufficientBalanceError   402
        - NotFoundError              404
        - InvalidRequestError        400 / 422
        - RateLimitError             429
        - ServerError                5xx
      + InvalidResponseError         the answer was not the JSON we expected
      + DownloadError                an output picture could not be fetched (``retryable``)
      + PredictionFailedError        the prediction ended as failed / timeout / canceled
        - ContentBlockedError        ... because the safety checker flagged the output

Every error carries context as attributes (``status_code``, ``prediction_id``, ``body``...).
Messages never contain an API key: they are built with :func:`atlas_image_mcp.redact.redact`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from .constants import BILLING_URL, KEYS_URL, Place
from .models import message_of
from .redact import preview, redact, redacted_body
from .settings import env_name

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AtlasError",
    "AuthenticationError",
    "BudgetError",
    "ContentBlockedError",
    "DownloadError",
    "InsufficientBalanceError",
    "InvalidParameterError",
    "InvalidRequestError",
    "InvalidResponseError",
    "LedgerError",
    "LocalFileError",
    "MissingAPIKeyError",
    "NotFoundError",
    "PredictionFailedError",
    "RateLimitError",
    "SaveError",
    "ServerError",
    "SpendLimitError",
    "StoreUnavailableError",
    "StoreVersionError",
    "no_such_prediction",
    "status_error",
]


# --- the tree --------------------------------------------------------------------------------


class AtlasError(Exception):
    """Base of every error this package raises. The message is already redacted."""

    def __init__(self, message: str) -> None:
        self.message = redact(message)
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"

    def extend_message(self, text: str) -> None:
        """Append a (redacted) sentence to the message, e.g. a next step known only to the caller."""
        self.message = redact(f"{self.message} {text}".strip())
        self.args = (self.message,)


class MissingAPIKeyError(AtlasError):
    """No Atlas Cloud API key is available for this call.

    ``place`` says where the message is read, so the advice is one the reader can follow: the
    env block of a client's configuration (stdio), the shell (the ``generate`` command), or the
    operator of a hosted server (HTTP).
    """

    def __init__(self, message: str | None = None, *, place: Place | None = None) -> None:
        self.place = place
        super().__init__(message or _NO_KEY.get(place or "", _NO_KEY[""]))


_NO_KEY = {
    "stdio": f"No Atlas Cloud API key is set. Add {env_name('api_key')} to the env of this server's entry in "
    f"the MCP client's configuration (create a key at {KEYS_URL}), then restart the client. To try the "
    f'server without a key, set "{env_name("offline")}": "1" there instead.',
    "cli": f"No Atlas Cloud API key is set. Set {env_name('api_key')} in this shell (create a key at "
    f"{KEYS_URL}) and run the command again, or add --offline to try it without a key.",
    "http": f"This hosted server has no Atlas Cloud API key. Its operator must set {env_name('api_key')} "
    f"where the server runs, or run it with {env_name('user_keys')}=1 so that each client sends its own key "
    "in the X-Atlas-Api-Key header.",
    "": f"No Atlas Cloud API key is set. Set the {env_name('api_key')} environment variable (create a key at "
    f"{KEYS_URL}). To try the server without a key, run it with --offline or {env_name('offline')}=1.",
}


class InvalidParameterError(AtlasError, ValueError):
    """An argument is outside what the model accepts."""

    def __init__(self, parameter: str, message: str, *, whole: bool = False) -> None:
        """``"Invalid <parameter>: <message>"``; with ``whole``, ``message`` is the entire text (it names
        each parameter itself, e.g. one sentence per bad argument)."""
        self.parameter = parameter
        super().__init__(message if whole else f"Invalid {parameter}: {message}")


class LocalFileError(AtlasError):
    """A local file cannot be used for an upload."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(message)


class SpendLimitError(AtlasError):
    """The per-hour image budget (``ATLAS_MCP_MAX_IMAGES_PER_HOUR``) is used up."""

    def __init__(
        self, limit: int, retry_after: float, *, requested: int = 1, used: int | None = None
    ) -> None:
        self.limit = limit
        self.retry_after = retry_after
        self.requested = requested
        self.used = used
        rule = (
            f"Spend guard: this server may start at most {limit} images per hour with one API key "
            f"({env_name('max_images_per_hour')})"
        )
        if requested > limit:
            super().__init__(
                f"{rule} and this call asks for {requested}. Nothing was sent or billed. Ask for at most "
                f"{limit} (num_images), or ask the user to raise the limit."
            )
            return
        minutes = max(1, round(retry_after / 60))
        started = f"{used} already started in the last hour, " if used is not None else ""
        super().__init__(
            f"{rule}; {started}so {requested} more would go over it. Nothing was sent or billed. "
            f"Try again in about {minutes} minute(s), or ask the user to raise the limit."
        )


def no_such_prediction(prediction_id: str) -> str:
    """What every tool says when Atlas does not know a prediction id it was given."""
    return (
        f"No prediction with id {prediction_id[:80]!r} was found at Atlas. Check the id: it is the "
        "prediction_id from a generate_image result (predictions are kept for a limited time)."
    )


def usd(amount: Decimal) -> str:
    """``$0.036``, ``$1.50``: at least two decimals, no exponent, no trailing zeros past them."""
    text = format(amount.normalize(), "f")
    whole, _, cents = text.partition(".")
    return f"${whole}.{cents.ljust(2, '0')}"


def wait_words(seconds: float) -> str:
    """``about 3 h 12 min`` / ``about 5 minute(s)``: how long until something resets."""
    minutes = max(1, round(seconds / 60))
    if minutes < 60:
        return f"about {minutes} minute(s)"
    return f"about {minutes // 60} h {minutes % 60:02d} min"


class BudgetError(AtlasError):
    """The daily USD budget (``ATLAS_MCP_BUDGET_USD_PER_DAY``) would be exceeded, or cannot be checked."""

    def __init__(
        self,
        budget: Decimal,
        spent: Decimal,
        amount: Decimal | None,
        resets_in: float,
        *,
        model: str = "",
        setting: str = "budget_usd_per_day",
    ) -> None:
        self.budget = budget
        self.spent = spent
        self.amount = amount
        self.resets_in = resets_in
        self.left = max(Decimal(0), budget - spent)
        whose = "for each signed-in user" if setting == "budget_usd_per_user_per_day" else "with one API key"
        rule = (
            f"Daily budget: this server may spend at most {usd(budget)} a day {whose} ({env_name(setting)})"
        )
        when = f"it resets at 00:00 UTC, in {wait_words(resets_in)}"
        if amount is None:
            super().__init__(
                f"{rule}, and the price of {model or 'this model'} is not known, so this call cannot be "
                f"checked against it ({usd(self.left)} is left today; {when}). Nothing was sent or billed. "
                "If the person agrees to a most it may cost, call again with max_cost_usd set to that "
                "amount (it counts against the budget until Atlas reports the charge)."
            )
            return
        super().__init__(
            f"{rule}; {usd(spent)} is spent or reserved today, so this call (about {usd(amount)}) would go "
            f"over it: {usd(self.left)} is left, and {when}. Nothing was sent or billed. Ask for less "
            "(fewer pictures or a cheaper model), wait for the reset, or ask the user to raise the budget."
        )


class LedgerError(AtlasError):
    """The spend ledger (budgets and usage) cannot be opened, read or written."""


class StoreUnavailableError(LedgerError):
    """The store (``ATLAS_MCP_DATABASE_URL``) cannot be reached now; a paid call sent nothing.

    ``down_since``: Unix time the store was first found unreachable. The server keeps trying to
    reach it and recovers by itself.
    """

    def __init__(self, where: str, reason: str, *, down_since: float) -> None:
        self.where = where
        self.down_since = down_since
        super().__init__(
            f"The store that keeps budgets and shared state ({where}) cannot be reached ({reason}), so "
            "nothing was sent and nothing was spent. The server reconnects by itself: try again in a "
            "moment; if it lasts, the operator should check that the database is running."
        )


class StoreVersionError(LedgerError):
    """The store's schema is newer than this release knows: a newer release has used it."""


class SaveError(AtlasError):
    """A picture could not be written to the output folder."""


class APIConnectionError(AtlasError):
    """The request got no answer (DNS, refused or reset connection, proxy failure)."""

    def __init__(self, message: str, *, method: str = "", url: str = "", sent: bool = True) -> None:
        self.method = method
        self.url = url
        self.sent = sent
        super().__init__(message)


class APITimeoutError(APIConnectionError):
    """The request timed out."""


class APIStatusError(AtlasError):
    """The API answered with an error status (HTTP, or the envelope's ``code``)."""

    def __init__(
        self, message: str, *, status_code: int, body: Any = None, method: str = "", url: str = ""
    ) -> None:
        self.status_code = status_code
        self.body = redacted_body(body)
        self.method = method
        self.url = url
        super().__init__(message)


class AuthenticationError(APIStatusError):
    """401 / 403: the key is missing, wrong, expired or lacks permission."""


class InsufficientBalanceError(APIStatusError):
    """402: the account has no credit left."""


class NotFoundError(APIStatusError):
    """404: the prediction, model or path does not exist."""


class InvalidRequestError(APIStatusError):
    """400 / 422: Atlas rejected the parameters."""


class RateLimitError(APIStatusError):
    """429: too many requests."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)


class ServerError(APIStatusError):
    """5xx: Atlas (or its CDN) had a fault."""


class InvalidResponseError(AtlasError):
    """The API answered 2xx with a body we could not understand (or one too large to read).

    ``retryable``: asking again may help (garbled JSON may be a glitch; an oversized answer is not).
    ``prediction_id``: the prediction the answer was about, when that much could be read.
    """

    def __init__(self, message: str, *, retryable: bool = True, prediction_id: str | None = None) -> None:
        self.retryable = retryable
        self.prediction_id = prediction_id
        super().__init__(message)


class DownloadError(AtlasError):
    """An output picture could not be downloaded (gone, too large, not an image).

    ``retryable``: the same download may succeed if tried again (a 5xx or 429 answer).
    """

    def __init__(self, message: str, *, url: str = "", retryable: bool = False) -> None:
        self.url = url
        self.retryable = retryable
        super().__init__(message)


class PredictionFailedError(AtlasError):
    """The prediction ended without a picture."""

    def __init__(self, prediction_id: str, reason: str, *, status: str = "failed") -> None:
        self.prediction_id = prediction_id
        self.reason = redact(reason)
        self.status = status
        super().__init__(
            f"Prediction {prediction_id} {status}: {self.reason or 'no reason given'}. "
            "Nothing to collect; failed predictions are not billed. Adjust the prompt or parameters "
            "and call generate_image again."
        )


class ContentBlockedError(PredictionFailedError):
    """The safety checker flagged every output (``has_nsfw_contents``)."""

    def __init__(self, prediction_id: str) -> None:
        AtlasError.__init__(
            self,
            f"Prediction {prediction_id} finished but the safety checker blocked its output "
            "(has_nsfw_contents), so there is no picture. Rephrase the prompt to avoid explicit "
            "content and call generate_image again.",
        )
        self.prediction_id = prediction_id
        self.reason = "blocked by the safety checker"
        self.status = "blocked"


# --- status mapping --------------------------------------------------------------------------


def status_error(
    status_code: int,
    body: Any,
    *,
    method: str = "",
    url: str = "",
    retry_after: float | None = None,
    what: str = "The request",
    billable: bool = False,
) -> APIStatusError:
    """Map an HTTP status (or envelope code) and body to the right error, with a next step.

    ``billable``: the request was a generation or upload, so a 5xx may have started a job (the
    caller says what to check) and is not simply "try again".
    """
    upstream = preview(message_of(body), 300)
    if upstream and upstream[-1] not in ".!?":
        upstream += "."  # the next sentence follows on the same line
    said = f" Atlas said: {upstream}" if upstream else ""
    kw: dict[str, Any] = {"status_code": status_code, "body": body, "method": method, "url": url}
    lower = upstream.lower()
    if status_code == 402 or ("insufficient" in lower and "balance" in lower):
        return InsufficientBalanceError(
            f"{what} was refused: the Atlas Cloud account has insufficient balance (HTTP "
            f"{status_code}).{said} "
            f"Ask the user to top up at {BILLING_URL}, then try again.",
            **kw,
        )
    if status_code in (401, 403):
        return AuthenticationError(
            f"{what} was refused: the Atlas Cloud API key is invalid, expired or not allowed to do this "
            f"(HTTP {status_code}).{said} Check {env_name('api_key')} where the server runs (on a hosted "
            f"server with per-user keys: the X-Atlas-Api-Key header you send); keys are at {KEYS_URL}.",
            **kw,
        )
    if status_code == 404:
        return NotFoundError(
            f"{what} found nothing (HTTP 404).{said} Check the id or model name: a prediction id comes "
            "from generate_image, and a job submitted a moment ago can take a few seconds to appear.",
            **kw,
        )
    if status_code in (400, 422):
        return InvalidRequestError(
            f"Atlas rejected the request as invalid (HTTP {status_code}).{said} "
            "Fix the parameters (see the tool's input schema) and try again.",
            **kw,
        )
    if status_code == 429:
        wait = f" after about {_duration(retry_after)}" if retry_after else " in a little while"
        return RateLimitError(
            f"Atlas is rate limiting this key (HTTP 429).{said} Wait and try again{wait}.",
            retry_after=retry_after,
            **kw,
        )
    if status_code >= 500:
        hint = "" if billable else " This is usually temporary: try again in a minute."
        return ServerError(f"Atlas had a server error (HTTP {status_code}).{said}{hint}", **kw)
    return APIStatusError(f"{what} failed with HTTP {status_code}.{said}", **kw)


def _duration(seconds: float) -> str:
    """``7 s``, ``3 min``: a wait as a person would say it."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"
