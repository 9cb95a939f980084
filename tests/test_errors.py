"""The error tree, status mapping and redaction, through status_error / redact and the error classes."""

from __future__ import annotations

import pytest

from atlas_image_mcp.constants import BILLING_URL, KEYS_URL
from atlas_image_mcp.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AtlasError,
    AuthenticationError,
    ContentBlockedError,
    InsufficientBalanceError,
    InvalidParameterError,
    InvalidRequestError,
    MissingAPIKeyError,
    NotFoundError,
    PredictionFailedError,
    RateLimitError,
    ServerError,
    SpendLimitError,
    status_error,
)
from atlas_image_mcp.redact import forget_secret, redact, register_secret

# --- status mapping -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error_type", "next_step"),
    [
        (400, InvalidRequestError, "Fix the parameters"),
        (422, InvalidRequestError, "Fix the parameters"),
        (401, AuthenticationError, "Check ATLASCLOUD_API_KEY"),
        (403, AuthenticationError, "Check ATLASCLOUD_API_KEY"),
        (402, InsufficientBalanceError, "top up"),
        (429, RateLimitError, "try again"),
        (500, ServerError, "try again"),
        (502, ServerError, "try again"),
        (503, ServerError, "try again"),
        (504, ServerError, "try again"),
        (404, NotFoundError, "check"),
    ],
)
def test_each_status_maps_to_its_error_type_and_says_what_to_do_next(code, error_type, next_step):
    err = status_error(code, {"code": code, "msg": "upstream text"}, method="GET", url="https://x/api/v1/y")

    assert type(err) is error_type
    assert isinstance(err, APIStatusError)
    assert err.status_code == code
    assert err.method == "GET"
    assert err.url == "https://x/api/v1/y"
    assert f"HTTP {code}" in err.message
    assert "Atlas said: upstream text" in err.message
    assert next_step.lower() in err.message.lower()


def test_an_unlisted_status_falls_back_to_the_base_status_error():
    err = status_error(409, {"msg": "conflict"}, what="The generation request")

    assert type(err) is APIStatusError
    assert "The generation request failed with HTTP 409" in err.message
    assert "conflict" in err.message


def test_insufficient_balance_names_the_billing_page():
    err = status_error(402, {"code": 402, "msg": "insufficient balance", "data": None})

    assert isinstance(err, InsufficientBalanceError)
    assert "top up" in err.message
    assert BILLING_URL in err.message


@pytest.mark.parametrize("code", [400, 403, 500])
def test_a_message_about_insufficient_balance_is_a_balance_error_whatever_the_status(code):
    err = status_error(code, {"msg": "Insufficient Balance: please recharge"})

    assert type(err) is InsufficientBalanceError
    assert err.status_code == code


def test_authentication_errors_point_to_the_api_keys_page():
    err = status_error(401, {"code": 401, "msg": "invalid key"})

    assert KEYS_URL in err.message
    # true wherever it is read: a client's configuration, a shell, or a hosted server's headers
    assert "ATLASCLOUD_API_KEY where the server runs" in err.message and "X-Atlas-Api-Key" in err.message


@pytest.mark.parametrize(("retry_after", "text"), [(2.0, "after about 2 s"), (None, "in a little while")])
def test_rate_limit_error_carries_retry_after_and_mentions_it(retry_after, text):
    err = status_error(429, {"msg": "slow down"}, retry_after=retry_after)

    assert isinstance(err, RateLimitError)
    assert err.retry_after == retry_after
    assert text in err.message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"msg": "from msg"}, "from msg"),
        ({"message": "from message"}, "from message"),
        ({"error": "from error"}, "from error"),
        ({"error": {"message": "from nested error"}}, "from nested error"),
        ({"detail": "from detail"}, "from detail"),
        ({"code": 500, "data": {"error": "from data.error"}}, "from data.error"),
        ("  plain text body  ", "plain text body"),
    ],
)
def test_the_upstream_message_is_read_from_msg_message_error_or_plain_text(body, expected):
    err = status_error(500, body)

    assert f"Atlas said: {expected}" in err.message


def test_without_an_upstream_message_nothing_is_quoted():
    err = status_error(500, {"code": 500, "msg": ""})

    assert "Atlas said" not in err.message
    assert err.message.startswith("Atlas had a server error (HTTP 500).")


def test_an_html_error_page_is_summarised_by_its_title():
    page = (
        "<!DOCTYPE html><html><head><title>api.atlascloud.ai | 502: Bad gateway</title>"
        "<script>var x = 1;</script></head><body>Cloudflare Ray ID: 123abc</body></html>"
    )
    err = status_error(502, page)

    assert "an HTML error page: api.atlascloud.ai | 502: Bad gateway" in err.message
    assert "<" not in err.message
    assert "Ray ID" not in err.message
    assert "var x" not in err.message


def test_an_html_page_without_a_title_is_still_only_summarised():
    err = status_error(503, "<html><body><h1>Service Unavailable</h1></body></html>")

    assert "Atlas said: an HTML error page" in err.message
    assert "<h1>" not in err.message


def test_a_long_upstream_message_is_cut_to_a_short_preview():
    err = status_error(400, {"msg": "word " * 500})

    quoted = err.message.split("Atlas said: ", 1)[1]
    assert "..." in quoted
    assert len(err.message) < 600


def test_the_status_error_keeps_the_body_for_callers_with_keys_redacted():
    body = {"code": 400, "msg": "bad request", "data": {"echo": "Authorization: Bearer apikey-ECHOED123456"}}

    kept = status_error(400, body).body

    assert kept["code"] == 400 and kept["msg"] == "bad request"
    assert "apikey-ECHOED123456" not in repr(kept)


# --- redaction -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        ("Authorization: Bearer apikey-abcdef123", "apikey-abcdef123", "Authorization"),
        ("token bearer sk.live.token_value here", "sk.live.token_value", "here"),
        ('{"authorization": "opaque-value-42"}', "opaque-value-42", "authorization"),
        ("X-Atlas-Api-Key=opaque-value-43; next", "opaque-value-43", "next"),
        ("key apikey-Zy0_-9876 leaked", "apikey-Zy0_-9876", "leaked"),
    ],
)
def test_redact_removes_bearer_tokens_key_headers_and_apikey_values(text, secret, kept):
    out = redact(text)

    assert secret not in out
    assert "[redacted]" in out
    assert kept in out


def test_redact_removes_a_registered_key_wherever_it_appears():
    secret = "zz-registered-secret-8871"
    register_secret(secret)
    try:
        out = redact(f"prefix{secret}suffix and again {secret}")
    finally:
        forget_secret(secret)

    assert secret not in out
    assert out == "prefix[redacted]suffix and again [redacted]"


def test_a_forgotten_key_is_no_longer_redacted():
    secret = "zz-forgotten-secret-5512"
    register_secret(secret)
    forget_secret(secret)

    assert redact(f"value {secret}") == f"value {secret}"


def test_redact_leaves_ordinary_text_alone_and_stringifies_other_values():
    assert redact("a red fox in snow, 1024*768") == "a red fox in snow, 1024*768"
    as_text = redact({"Authorization": "Bearer apikey-abcdef"})
    assert as_text.startswith("{'Authorization': '")
    assert "apikey-abcdef" not in as_text
    assert "[redacted]" in as_text
    assert redact(None) == "None"


@pytest.mark.parametrize(
    "make",
    [
        lambda t: AtlasError(t),
        lambda t: APIConnectionError(t, method="GET", url="https://x"),
        lambda t: APITimeoutError(t),
        lambda t: status_error(500, t),
        lambda t: status_error(401, {"msg": t}),
        lambda t: PredictionFailedError("abc", t),
    ],
    ids=[
        "AtlasError",
        "APIConnectionError",
        "APITimeoutError",
        "ServerError",
        "AuthenticationError",
        "Failed",
    ],
)
def test_every_error_redacts_its_message_str_and_repr(make):
    err = make("server said Bearer apikey-LEAKED77777 and apikey-LEAKED77777")

    for text in (err.message, str(err), repr(err), str(err.args)):
        assert "LEAKED77777" not in text
    assert "[redacted]" in err.message


def test_error_repr_names_the_class_and_message():
    err = NotFoundError("nothing here", status_code=404)

    assert repr(err) == "NotFoundError('nothing here')"


# --- specific errors ------------------------------------------------------------------------


def test_missing_api_key_error_says_which_variable_to_set():
    message = MissingAPIKeyError().message

    assert "ATLASCLOUD_API_KEY" in message
    assert KEYS_URL in message
    assert "--offline" in message


def test_invalid_parameter_error_names_the_parameter_and_is_a_value_error():
    err = InvalidParameterError("width", "2000 is out of range; allowed: 256 to 1536.")

    assert isinstance(err, ValueError)
    assert err.parameter == "width"
    assert str(err) == "Invalid width: 2000 is out of range; allowed: 256 to 1536."


def test_prediction_failed_error_explains_nothing_was_billed_and_what_to_do():
    err = PredictionFailedError("p1", "Generation failed: boom", status="timeout")

    assert err.prediction_id == "p1"
    assert err.status == "timeout"
    assert err.reason == "Generation failed: boom"
    assert "Prediction p1 timeout: Generation failed: boom" in err.message
    assert "not billed" in err.message
    assert "generate_image again" in err.message
    assert "no reason given" in PredictionFailedError("p2", "").message


def test_content_blocked_error_is_a_prediction_failure_that_asks_to_rephrase():
    err = ContentBlockedError("p3")

    assert isinstance(err, PredictionFailedError)
    assert err.status == "blocked"
    assert "safety checker" in err.message
    assert "Rephrase" in err.message


def test_spend_limit_error_says_nothing_was_billed_and_when_to_retry():
    err = SpendLimitError(limit=20, retry_after=1500)

    assert "at most 20 images per hour" in err.message
    assert "Nothing was sent or billed" in err.message
    assert "about 25 minute(s)" in err.message
    assert "about 1 minute(s)" in SpendLimitError(limit=1, retry_after=5).message
