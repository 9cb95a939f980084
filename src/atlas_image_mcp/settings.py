"""Settings: the one module that knows environment variable names.

Precedence is: explicit arguments (``Settings(...)`` or ``dataclasses.replace``) >
environment (``Settings.from_env(os.environ)``) > the defaults below. Nothing here
runs at import time; the CLI reads the environment once and passes a ``Settings``
object down.

Environment variables (all optional):

==================================  ===========================================================
``ATLASCLOUD_API_KEY``              Atlas Cloud API key. Without it the server still starts and
                                    lists its tools; calls that need it say how to set it.
``ATLASCLOUD_BASE_URL``             API origin (default ``https://api.atlascloud.ai``). A trailing
                                    ``/``, ``/api`` or ``/api/v1`` is tolerated.
``ATLAS_MCP_TIMEOUT``               Seconds for one API request (default 30).
``ATLAS_MCP_CONNECT_TIMEOUT``       Seconds to open a connection (default 10).
``ATLAS_MCP_UPLOAD_TIMEOUT``        Seconds for one upload (default 300).
``ATLAS_MCP_MAX_RETRIES``           Retries of a GET after a network error, 429 or 5xx (default 3).
``ATLAS_MCP_WAIT_SECONDS``          How long ``generate_image`` waits for a picture before handing
                                    back a prediction id (default 45, at most 600).
``ATLAS_MCP_IMAGE_MODE``            ``thumbnail`` (default), ``full`` or ``none``: the picture sent
                                    back inside a tool result.
``ATLAS_MCP_OUTPUT_DIR``            Folder where pictures are saved (default: ``~/Pictures/atlas-image-mcp``,
                                    or ``~/atlas-image-mcp`` when there is no Pictures folder).
``ATLAS_MCP_SAVE``                  ``0`` turns saving off (default on over stdio; over HTTP saving is
                                    on only when ``ATLAS_MCP_OUTPUT_DIR`` is set).
``ATLAS_MCP_MAX_UPLOAD_MB``         Largest file ``upload_media`` accepts, in MB (default 50).
``ATLAS_MCP_MAX_DOWNLOAD_MB``       Largest output picture downloaded, in MB (default 50).
``ATLAS_MCP_MAX_IMAGES_PER_HOUR``   Spend guard: images one process (or one per-user key) may start in
                                    a rolling hour (default unlimited).
``ATLAS_MCP_LOG_LEVEL``             stderr log level (default ``INFO``).
``ATLAS_MCP_AUTH_TOKEN``            HTTP transports: bearer token every MCP request must carry.
``ATLAS_MCP_USER_KEYS``             HTTP transports: ``1`` makes each request bring its own Atlas key
                                    in ``X-Atlas-Api-Key``; the server's key is then never used.
``ATLAS_MCP_UPLOAD_ROOT``           HTTP transports: the only folder ``upload_media(file_path=...)`` may
                                    read from (unset: local paths are refused over HTTP).
``ATLAS_MCP_ALLOWED_HOSTS``         HTTP transports: extra ``Host`` values to accept (comma separated,
                                    e.g. ``mcp.example.com``), for DNS-rebinding protection.
``ATLAS_MCP_ALLOWED_ORIGINS``       HTTP transports: extra ``Origin`` values to accept (comma separated).
==================================  ===========================================================
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = [
    "DEFAULT_BASE_URL",
    "ENV_VARS",
    "ImageMode",
    "Settings",
    "SettingsError",
    "default_output_dir",
    "normalize_base_url",
]

DEFAULT_BASE_URL = "https://api.atlascloud.ai"
MAX_WAIT_SECONDS = 600.0

ImageMode = Literal["thumbnail", "full", "none"]
_IMAGE_MODES: tuple[ImageMode, ...] = ("thumbnail", "full", "none")

#: Every variable this module reads, for ``--help`` and the README.
ENV_VARS: dict[str, str] = {
    "ATLASCLOUD_API_KEY": "Atlas Cloud API key (calls that need it explain how to set it)",
    "ATLASCLOUD_BASE_URL": f"API origin (default {DEFAULT_BASE_URL})",
    "ATLAS_MCP_TIMEOUT": "seconds for one API request (default 30)",
    "ATLAS_MCP_CONNECT_TIMEOUT": "seconds to open a connection (default 10)",
    "ATLAS_MCP_UPLOAD_TIMEOUT": "seconds for one upload (default 300)",
    "ATLAS_MCP_MAX_RETRIES": "retries of a GET after a network error, 429 or 5xx (default 3)",
    "ATLAS_MCP_WAIT_SECONDS": "how long generate_image waits before returning a prediction id (default 45)",
    "ATLAS_MCP_IMAGE_MODE": "thumbnail (default), full or none: the picture inside a tool result",
    "ATLAS_MCP_OUTPUT_DIR": "folder for saved pictures (default ~/Pictures/atlas-image-mcp; over HTTP, saving is "
    "on only when this is set)",
    "ATLAS_MCP_SAVE": "0 turns saving pictures off",
    "ATLAS_MCP_MAX_UPLOAD_MB": "largest file upload_media accepts, in MB (default 50)",
    "ATLAS_MCP_MAX_DOWNLOAD_MB": "largest output picture downloaded, in MB (default 50)",
    "ATLAS_MCP_MAX_IMAGES_PER_HOUR": "spend guard: images started per rolling hour (default unlimited)",
    "ATLAS_MCP_LOG_LEVEL": "stderr log level (default INFO)",
    "ATLAS_MCP_AUTH_TOKEN": "HTTP: bearer token every MCP request must carry",
    "ATLAS_MCP_USER_KEYS": "HTTP: 1 = each request brings its own Atlas key in X-Atlas-Api-Key",
    "ATLAS_MCP_UPLOAD_ROOT": "HTTP: the only folder upload_media(file_path=...) may read",
    "ATLAS_MCP_ALLOWED_HOSTS": "HTTP: extra Host header values to accept (comma separated)",
    "ATLAS_MCP_ALLOWED_ORIGINS": "HTTP: extra Origin header values to accept (comma separated)",
}


class SettingsError(ValueError):
    """An environment variable has a value that cannot be used."""


def normalize_base_url(url: str) -> str:
    """Return the API origin: no trailing ``/``, ``/api`` or ``/api/v1``."""
    url = url.strip().rstrip("/")
    for suffix in ("/api/v1", "/api"):
        if url.endswith(suffix):
            url = url[: -len(suffix)].rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise SettingsError(f"ATLASCLOUD_BASE_URL must start with http:// or https:// (got {url!r}).")
    return url


def default_output_dir(home: Path | None = None) -> Path:
    """``~/Pictures/atlas-image-mcp`` when a Pictures folder exists, else ``~/atlas-image-mcp``.

    Never the working directory: some clients start servers in ``/`` or ``System32``.
    """
    home = home or Path.home()
    pictures = home / "Pictures"
    return (pictures if pictures.is_dir() else home) / "atlas-image-mcp"


@dataclass(frozen=True)
class Settings:
    """Everything the server can be configured with. Immutable; build variants with ``replace``."""

    api_key: str | None = field(default=None, repr=False)
    base_url: str = DEFAULT_BASE_URL
    timeout: float = 30.0
    connect_timeout: float = 10.0
    upload_timeout: float = 300.0
    max_retries: int = 3
    wait_seconds: float = 45.0
    image_mode: ImageMode = "thumbnail"
    output_dir: Path | None = None
    output_dir_explicit: bool = False
    save: bool = True
    max_upload_bytes: int = 50 * 1024 * 1024
    max_download_bytes: int = 50 * 1024 * 1024
    max_images_per_hour: int | None = None
    log_level: str = "INFO"
    auth_token: str | None = field(default=None, repr=False)
    user_keys: bool = False
    upload_root: Path | None = None
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", normalize_base_url(self.base_url))
        if self.image_mode not in _IMAGE_MODES:
            raise SettingsError(f"ATLAS_MCP_IMAGE_MODE must be one of {', '.join(_IMAGE_MODES)}.")
        if not 0 <= self.wait_seconds <= MAX_WAIT_SECONDS:
            raise SettingsError(f"ATLAS_MCP_WAIT_SECONDS must be between 0 and {MAX_WAIT_SECONDS:g}.")

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def resolved_output_dir(self) -> Path:
        return self.output_dir or default_output_dir()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every ``ATLAS*`` variable from ``environ`` (``os.environ`` when not given)."""
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        output_dir = reader.text("ATLAS_MCP_OUTPUT_DIR")
        upload_root = reader.text("ATLAS_MCP_UPLOAD_ROOT")
        max_per_hour = reader.integer("ATLAS_MCP_MAX_IMAGES_PER_HOUR", 0)
        return cls(
            api_key=reader.text("ATLASCLOUD_API_KEY"),
            base_url=reader.text("ATLASCLOUD_BASE_URL") or DEFAULT_BASE_URL,
            timeout=reader.positive("ATLAS_MCP_TIMEOUT", 30.0),
            connect_timeout=reader.positive("ATLAS_MCP_CONNECT_TIMEOUT", 10.0),
            upload_timeout=reader.positive("ATLAS_MCP_UPLOAD_TIMEOUT", 300.0),
            max_retries=reader.integer("ATLAS_MCP_MAX_RETRIES", 3),
            wait_seconds=reader.number("ATLAS_MCP_WAIT_SECONDS", 45.0),
            image_mode=(reader.text("ATLAS_MCP_IMAGE_MODE") or "thumbnail").lower(),  # type: ignore[arg-type]
            output_dir=Path(output_dir).expanduser().resolve() if output_dir else None,
            output_dir_explicit=output_dir is not None,
            save=reader.flag("ATLAS_MCP_SAVE", True),
            max_upload_bytes=int(reader.number("ATLAS_MCP_MAX_UPLOAD_MB", 50.0) * 1024 * 1024),
            max_download_bytes=int(reader.number("ATLAS_MCP_MAX_DOWNLOAD_MB", 50.0) * 1024 * 1024),
            max_images_per_hour=max_per_hour or None,
            log_level=(reader.text("ATLAS_MCP_LOG_LEVEL") or "INFO").upper(),
            auth_token=reader.text("ATLAS_MCP_AUTH_TOKEN"),
            user_keys=reader.flag("ATLAS_MCP_USER_KEYS", False),
            upload_root=Path(upload_root).expanduser().resolve() if upload_root else None,
            allowed_hosts=reader.items("ATLAS_MCP_ALLOWED_HOSTS"),
            allowed_origins=reader.items("ATLAS_MCP_ALLOWED_ORIGINS"),
        )


@dataclass
class _Reader:
    env: Mapping[str, str]

    def text(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def number(self, name: str, default: float) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a number (got {raw!r}).") from None
        if not math.isfinite(value) or value < 0:
            raise SettingsError(f"{name} must be a finite number, not negative (got {raw!r}).")
        return value

    def positive(self, name: str, default: float) -> float:
        value = self.number(name, default)
        if value <= 0:
            raise SettingsError(f"{name} must be greater than 0 (got {value:g}).")
        return value

    def integer(self, name: str, default: int) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a whole number (got {raw!r}).") from None
        if value < 0:
            raise SettingsError(f"{name} must not be negative (got {raw!r}).")
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = self.text(name)
        if raw is None:
            return default
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name} must be 1 or 0 (got {raw!r}).")

    def items(self, name: str) -> tuple[str, ...]:
        raw = self.text(name) or ""
        return tuple(item.strip() for item in raw.split(",") if item.strip())


def read_environ() -> Mapping[str, str]:
    """The process environment, for the CLI (kept here so no other module touches ``os.environ``)."""
    return os.environ
