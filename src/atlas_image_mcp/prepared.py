"""A generation request as Atlas will receive it: the exact body, and the pictures still to resolve.

:func:`atlas_image_mcp.wire.prepare_request` builds one from a request in friendly names, once per
call; the Atlas client sends one (and knows nothing of tool parameters). The input pictures of an
edit are references when the request is prepared (``last``, a file, base64...): each has its
:class:`PictureSlot`, and :meth:`PreparedRequest.with_pictures` puts the URLs they resolved to in
place, so a call is priced, confirmed and sent from the same preparation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from .errors import InvalidParameterError

__all__ = ["PictureSlot", "PreparedRequest", "body_fingerprint", "check_picture_url"]


@dataclass(frozen=True)
class PictureSlot:
    """Where one input picture goes in the body, and the reference it was given as."""

    #: The argument it came from, for messages (``image``, ``images``, ``mask_image``).
    parameter: str
    #: The body field it fills (``image``, ``images``, ``mask_image``).
    field: str
    #: Its position in a list field (``images``); None for a single picture.
    index: int | None
    ref: str


@dataclass(frozen=True)
class PreparedRequest:
    """The body to POST, the size it asks for (when known), what was left out, and why."""

    body: dict[str, Any]
    width: int | None
    height: int | None
    ignored: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    #: The input pictures still given as references, in the order they are resolved.
    pictures: tuple[PictureSlot, ...] = ()
    #: The URLs those pictures resolved to, in the same order (once :meth:`with_pictures` placed them).
    sources: tuple[str, ...] = ()

    @property
    def model(self) -> str:
        return str(self.body["model"])

    @property
    def num_images(self) -> int:
        value = self.body.get("num_images", 1)
        return value if isinstance(value, int) and not isinstance(value, bool) else 1

    @property
    def prompt(self) -> str | None:
        value = self.body.get("prompt")
        return value if isinstance(value, str) else None

    def with_pictures(self, urls: Sequence[str]) -> PreparedRequest:
        """This request with the URL each picture resolved to (one per slot, in order), checked."""
        if len(urls) != len(self.pictures):
            raise ValueError(f"{len(self.pictures)} pictures to place, {len(urls)} URLs given")
        body = dict(self.body)
        checked = [
            check_picture_url(slot.parameter, url) for slot, url in zip(self.pictures, urls, strict=True)
        ]
        for slot, url in zip(self.pictures, checked, strict=True):
            if slot.index is None:
                body[slot.field] = url
            else:
                listed = body[slot.field] = list(body[slot.field])
                listed[slot.index] = url
        return replace(self, body=body, pictures=(), sources=tuple(checked))

    @cached_property
    def fingerprint(self) -> str:
        """The SHA-256 of the body to send, in canonical form (:func:`body_fingerprint`), made once."""
        return body_fingerprint(self.wire_body())

    def wire_body(self) -> dict[str, Any]:
        """The body to send; every picture must have been resolved first."""
        if self.pictures:
            raise ValueError("the request still has picture references to resolve")
        return self.body


def body_fingerprint(body: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a request body as canonical JSON (keys sorted, no spaces): the same for the
    body sent and for that body as Atlas' history gives it back, whatever the spacing or key order."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_picture_url(parameter: str, value: str) -> str:
    """``value`` when Atlas can read it (an http(s) URL or a ``data:image/`` URI), else the error."""
    ref = value.strip()
    if ref.startswith(("http://", "https://", "data:image/")):
        return ref
    raise InvalidParameterError(
        parameter,
        "must be an http(s) URL or a data:image/... URI. To use a local file, call upload_media first "
        "and pass its download_url here.",
    )
