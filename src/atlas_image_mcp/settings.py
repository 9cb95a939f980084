"""Settings: the one module that knows environment variable names.

Each setting is declared once, as a field of :class:`Settings` made with :func:`setting`: its
environment variable, type, default, bounds and one-line description. That declaration drives
parsing (:meth:`Settings.from_env`), the ``--help`` epilog and the README's configuration table
(checked by a test), so adding a variable is adding a field.

Precedence: explicit arguments (``Settings(...)`` or :meth:`Settings.replace`) > environment
(``Settings.from_env(os.environ)``) > the defaults in :mod:`atlas_image_mcp.constants`. Nothing
here runs at import time; the CLI reads the environment once and passes a ``Settings`` down.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import os
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    field_validator,
)

from . import constants as C
from .validation import field_problem, format_number

__all__ = [
    "ENV_VARS",
    "env_name",
    "setting_hint",
    "upper_bound",
    "SettingVar",
    "Settings",
    "SettingsError",
    "default_output_dir",
    "WorkerOptions",
    "default_state_dir",
    "export_for_workers",
    "normalize_base_url",
    "proxy_environment",
    "worker_options",
]


class SettingsError(ValueError):
    """An environment variable has a value that cannot be used."""


def setting(
    env: str,
    default: Any,
    description: str,
    *,
    shown_default: str | None = None,
    secret: bool = False,
    **bounds: Any,
) -> Any:
    """A :class:`Settings` field read from ``env``; ``shown_default`` is the default as the docs write it.

    A ``secret`` never appears in the settings' ``repr``.
    """
    shown = shown_default if shown_default is not None else ("(none)" if default is None else _shown(default))
    extra: dict[str, JsonValue] = {"env": env, "shown_default": shown}
    return Field(default, description=description, json_schema_extra=extra, repr=not secret, **bounds)


def _shown(value: Any) -> str:
    """A default as the environment spells it: booleans as 1/0, numbers as :func:`format_number` does."""
    return ("1" if value else "0") if isinstance(value, bool) else format_number(value)


def _items(value: Any) -> Any:
    """``"a, b,,c"`` -> ``("a", "b", "c")`` (comma-separated environment values)."""
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


def _path(value: Any) -> Any:
    if isinstance(value, (str, Path)):
        return Path(value).expanduser().resolve()
    return value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def normalize_base_url(url: str) -> str:
    """Return the API origin: no trailing ``/``, ``/api`` or ``/api/v1``."""
    url = url.strip().rstrip("/")
    for suffix in ("/api/v1", "/api"):
        if url.endswith(suffix):
            url = url[: -len(suffix)].rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return url


def _web_url(value: str | None) -> str | None:
    """An http(s) URL with a host, kept as written (an issuer is compared character for character);
    plain http only for a loopback host."""
    if value is None:
        return None
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or a fragment")
    if parts.scheme == "http" and not _is_loopback_name(parts.hostname):
        raise ValueError("must use https:// (plain http:// only for a loopback address)")
    return value


def _is_loopback_name(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_output_dir(home: Path | None = None) -> Path:
    """``~/Pictures/atlas-image-mcp`` when a Pictures folder exists, else ``~/atlas-image-mcp``.

    Never the working directory: some clients start servers in ``/`` or ``System32``.
    """
    home = home or Path.home()
    pictures = home / "Pictures"
    return (pictures if pictures.is_dir() else home) / C.OUTPUT_FOLDER_NAME


def default_state_dir(home: Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """Where the ledger lives when ATLAS_MCP_STATE_DIR is not set: the platform's per-user state folder.

    Linux and other Unix: ``$XDG_STATE_HOME/atlas-image-mcp``, else ``~/.local/state/atlas-image-mcp``;
    macOS: ``~/Library/Application Support/atlas-image-mcp``; Windows: ``%LOCALAPPDATA%\\atlas-image-mcp``.
    """
    env = os.environ if environ is None else environ
    home = home or Path.home()
    if sys.platform == "win32":
        local = env.get("LOCALAPPDATA", "")
        return (Path(local) if local else home / "AppData" / "Local") / C.OUTPUT_FOLDER_NAME
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / C.OUTPUT_FOLDER_NAME
    xdg = env.get("XDG_STATE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".local" / "state"
    return base / C.OUTPUT_FOLDER_NAME


_OFF = ("off", "none", "never", "no", "false")


def _threshold(value: Any) -> Any:
    """``off`` (and its synonyms) or an amount of USD, at least 0."""
    if isinstance(value, str) and value.strip().lower() in _OFF:
        return "off"
    if value is None or value == "off":
        return value
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ValueError("must be an amount in USD (such as 0.25) or off") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError("must be an amount in USD of at least 0, or off")
    return amount


Items = Annotated[tuple[str, ...], BeforeValidator(_items)]
Threshold = Annotated[Decimal | Literal["off"] | None, BeforeValidator(_threshold)]
Usd = Annotated[Decimal | None, Field(gt=0, le=1_000_000, allow_inf_nan=False)]
OptionalPath = Annotated[Path | None, BeforeValidator(_path)]
PositiveSeconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Megabytes = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class Settings(BaseModel):
    """Everything the server can be configured with. Immutable; build variants with :meth:`replace`."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    api_key: str | None = setting(
        "ATLASCLOUD_API_KEY",
        None,
        "Atlas Cloud API key (calls that need it explain how to set it)",
        secret=True,
    )
    base_url: str = setting(
        "ATLASCLOUD_BASE_URL", C.DEFAULT_BASE_URL, "API origin; a trailing /, /api or /api/v1 is tolerated"
    )
    offline: bool = setting(
        "ATLAS_MCP_OFFLINE",
        False,
        "1 = use the built-in Atlas emulator, no key and no network (what --offline does)",
    )
    timeout: PositiveSeconds = setting(
        "ATLAS_MCP_TIMEOUT", C.DEFAULT_TIMEOUT, "seconds for one API request or download, first byte to last"
    )
    connect_timeout: PositiveSeconds = setting(
        "ATLAS_MCP_CONNECT_TIMEOUT", C.DEFAULT_CONNECT_TIMEOUT, "seconds to open a connection"
    )
    upload_timeout: PositiveSeconds = setting(
        "ATLAS_MCP_UPLOAD_TIMEOUT", C.DEFAULT_UPLOAD_TIMEOUT, "seconds for one upload"
    )
    max_retries: int = setting(
        "ATLAS_MCP_MAX_RETRIES",
        C.DEFAULT_MAX_RETRIES,
        "retries of a GET after a network error, 429 (honouring Retry-After) or 5xx",
        ge=0,
    )
    wait_seconds: float = setting(
        "ATLAS_MCP_WAIT_SECONDS",
        C.DEFAULT_WAIT_SECONDS,
        "how long generate_image waits for a picture before handing back a prediction id "
        f"(at most {C.MAX_WAIT_SECONDS:g})",
        ge=0,
        le=C.MAX_WAIT_SECONDS,
        allow_inf_nan=False,
    )
    image_mode: Annotated[C.ImageMode, BeforeValidator(_lower)] = setting(
        "ATLAS_MCP_IMAGE_MODE",
        C.DEFAULT_IMAGE_MODE,
        "thumbnail, full or none: the picture inside a tool result",
    )
    output_dir: OptionalPath = setting(
        "ATLAS_MCP_OUTPUT_DIR",
        None,
        "folder for saved pictures (over HTTP, saving is on only when this is set)",
        shown_default=f"~/Pictures/{C.OUTPUT_FOLDER_NAME}",
    )
    save: bool = setting("ATLAS_MCP_SAVE", True, "0 turns saving pictures off")
    max_upload_mb: Megabytes = setting(
        "ATLAS_MCP_MAX_UPLOAD_MB", C.DEFAULT_MAX_UPLOAD_MB, "largest file upload_media accepts, in MB"
    )
    max_download_mb: Megabytes = setting(
        "ATLAS_MCP_MAX_DOWNLOAD_MB", C.DEFAULT_MAX_DOWNLOAD_MB, "largest output picture downloaded, in MB"
    )
    max_call_download_mb: Megabytes = setting(
        "ATLAS_MCP_MAX_CALL_DOWNLOAD_MB",
        C.DEFAULT_MAX_CALL_DOWNLOAD_MB,
        "most bytes one call downloads, all its pictures together, in MB",
    )
    max_megapixels: float = setting(
        "ATLAS_MCP_MAX_MEGAPIXELS",
        C.DEFAULT_MAX_MEGAPIXELS,
        "largest picture decoded, in millions of pixels (a larger one is refused before decoding)",
        gt=0,
        allow_inf_nan=False,
    )
    download_hosts: Items = setting(
        "ATLAS_MCP_DOWNLOAD_HOSTS",
        (),
        "extra hosts output pictures may be downloaded from even on private addresses (comma separated)",
        shown_default="(none)",
    )
    max_images_per_hour: int | None = setting(
        "ATLAS_MCP_MAX_IMAGES_PER_HOUR",
        None,
        "images one API key may start in a rolling hour (kept in the ledger); 0 = unlimited",
        shown_default="unlimited",
        ge=0,
    )
    budget_usd_per_day: Usd = setting(
        "ATLAS_MCP_BUDGET_USD_PER_DAY",
        None,
        "USD one API key may spend per UTC day (kept in the ledger)",
        shown_default="unlimited",
    )
    budget_usd_per_user_per_day: Usd = setting(
        "ATLAS_MCP_BUDGET_USD_PER_USER_PER_DAY",
        None,
        "HTTP with OAuth: USD one signed-in user may spend per UTC day (kept in the ledger)",
        shown_default="unlimited",
    )
    confirm_above_usd: Threshold = setting(
        "ATLAS_MCP_CONFIRM_ABOVE_USD",
        None,
        "ask the person before a call estimated above this many USD; off = never ask",
        shown_default=f"off over stdio, {C.HOSTED_CONFIRM_ABOVE_USD} over HTTP",
    )
    state_dir: OptionalPath = setting(
        "ATLAS_MCP_STATE_DIR",
        None,
        "folder of the spend ledger (budgets and usage; SQLite, on a local disk)",
        shown_default=f"~/.local/state/{C.OUTPUT_FOLDER_NAME}",
    )
    database_url: str | None = setting(
        "ATLAS_MCP_DATABASE_URL",
        None,
        "where budgets, usage and shared state live: sqlite:///PATH, or postgresql://... shared by "
        "every replica",
        shown_default="SQLite file in the state folder",
        secret=True,
    )
    replica_heartbeat_seconds: PositiveSeconds = setting(
        "ATLAS_MCP_REPLICA_HEARTBEAT_SECONDS",
        C.REPLICA_HEARTBEAT_SECONDS,
        "how often each server process renews its heartbeat in the store; one silent for "
        f"{C.REPLICA_TTL_BEATS} times this long is dead, and another settles the paid calls it left open",
    )
    log_level: Annotated[str, BeforeValidator(_upper)] = setting(
        "ATLAS_MCP_LOG_LEVEL",
        "INFO",
        "stderr log level: INFO writes a line per paid request; DEBUG adds what the client is told and "
        "a line per HTTP request",
    )
    port: int = setting(
        "ATLAS_MCP_PORT",
        C.DEFAULT_HTTP_PORT,
        "HTTP: the port serve --transport http listens on (unless --port is given) and healthcheck probes",
        ge=1,
        le=65535,
    )
    auth_token: str | None = setting(
        "ATLAS_MCP_AUTH_TOKEN", None, "HTTP: bearer token every MCP request must carry", secret=True
    )
    user_keys: bool = setting(
        "ATLAS_MCP_USER_KEYS",
        False,
        "HTTP: 1 = each user brings their own Atlas key: in X-Atlas-Api-Key, or with OAuth linked once on "
        "this server's page",
    )
    oauth_issuer: str | None = setting(
        "ATLAS_MCP_OAUTH_ISSUER",
        None,
        "HTTP: issuer URL of the OAuth authorization server, exactly as its metadata names it; turns "
        "sign-in on (access tokens instead of a shared token)",
    )
    public_url: str | None = setting(
        "ATLAS_MCP_PUBLIC_URL",
        None,
        "HTTP: this server's public base URL as clients reach it; with OAuth the protected resource is "
        "its /mcp",
    )
    oauth_client_id: str | None = setting(
        "ATLAS_MCP_OAUTH_CLIENT_ID",
        None,
        "HTTP with OAuth: this server's own client at the authorization server (signs people in on the "
        "key-linking page; introspects opaque access tokens)",
    )
    oauth_client_secret: str | None = setting(
        "ATLAS_MCP_OAUTH_CLIENT_SECRET", None, "HTTP with OAuth: the secret of that client", secret=True
    )
    linked_key_secret: Items = setting(
        "ATLAS_MCP_LINKED_KEY_SECRET",
        (),
        "HTTP with OAuth and user keys: base64 of 32 random bytes that encrypts linked Atlas keys; "
        "several, comma separated, rotate it (the first encrypts, each decrypts)",
        shown_default="(none)",
        secret=True,
    )
    upload_root: OptionalPath = setting(
        "ATLAS_MCP_UPLOAD_ROOT",
        None,
        "the only folder upload_media(file_path=...) may read (over HTTP, no file is read without it)",
    )
    upload_any_file: bool = setting(
        "ATLAS_MCP_UPLOAD_ANY_FILE", False, "1 = upload_media accepts any file, not only pictures"
    )
    allowed_hosts: Items = setting(
        "ATLAS_MCP_ALLOWED_HOSTS", (), "HTTP: extra Host header values to accept (comma separated)",
        shown_default="(none)",
    )  # fmt: skip
    allowed_origins: Items = setting(
        "ATLAS_MCP_ALLOWED_ORIGINS", (), "HTTP: extra Origin header values to accept (comma separated)",
        shown_default="(none)",
    )  # fmt: skip
    task_wait_seconds: float = setting(
        "ATLAS_MCP_TASK_WAIT_SECONDS",
        C.DEFAULT_TASK_WAIT_SECONDS,
        "how long a picture job waits for Atlas when the client runs it as an MCP task "
        f"(at most {C.MAX_TASK_WAIT_SECONDS:g})",
        gt=0,
        le=C.MAX_TASK_WAIT_SECONDS,
        allow_inf_nan=False,
    )
    task_secret: str | None = setting(
        "ATLAS_MCP_TASK_SECRET",
        None,
        "HTTP: key that signs task ids and seals cost confirmations, the same on every replica "
        "(unset: a new key at each start)",
        secret=True,
        min_length=16,
    )

    max_sessions: int = setting(
        "ATLAS_MCP_MAX_SESSIONS", C.DEFAULT_MAX_SESSIONS, "HTTP: sessions and SSE streams open at once", ge=1
    )
    max_sessions_per_key: int = setting(
        "ATLAS_MCP_MAX_SESSIONS_PER_KEY",
        C.DEFAULT_MAX_SESSIONS_PER_KEY,
        "HTTP, per-user keys or OAuth: sessions and SSE streams one key or signed-in user may hold open",
        ge=1,
    )
    session_idle_seconds: PositiveSeconds = setting(
        "ATLAS_MCP_SESSION_IDLE_SECONDS",
        C.DEFAULT_SESSION_IDLE_SECONDS,
        "HTTP: a session with no request for this long is closed",
    )
    gc_threshold: int = setting(
        "ATLAS_MCP_GC_THRESHOLD",
        C.DEFAULT_GC_THRESHOLD,
        "HTTP: allocations between two young-generation garbage collections (Python's own: 700); "
        "the heap made at start-up is left out of every collection; 0 = Python's defaults",
        ge=0,
        le=1_000_000,
    )
    max_message_kb: float = setting(
        "ATLAS_MCP_MAX_MESSAGE_KB",
        C.DEFAULT_MAX_MESSAGE_KB,
        "HTTP: largest request body in KB, except upload_media calls (capped by the upload size)",
        gt=0,
        allow_inf_nan=False,
    )
    max_connections_per_address: int = setting(
        "ATLAS_MCP_MAX_CONNECTIONS_PER_ADDRESS",
        C.DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
        "HTTP: connections one client address (IPv6: one /64) may hold open, then 503",
        ge=1,
    )
    trusted_proxies: Items = setting(
        "ATLAS_MCP_TRUSTED_PROXIES", (),
        "HTTP: addresses or networks of the reverse proxies in front (comma separated): only their "
        "X-Forwarded-For is believed", shown_default="(none)",
    )  # fmt: skip

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise SettingsError(_describe(err, data)) from None

    @field_validator("base_url")
    @classmethod
    def _origin(cls, value: str) -> str:
        return normalize_base_url(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Each an IP address or network (``10.0.0.0/8``), written the canonical way."""
        out = []
        for item in value:
            try:
                out.append(str(ipaddress.ip_network(item.strip("[]"), strict=False)))
            except ValueError:
                raise ValueError(f"{item[:60]!r} is not an IP address or network") from None
        return tuple(out)

    @field_validator("database_url")
    @classmethod
    def _store_url(cls, value: str | None) -> str | None:
        if value is not None and not value.strip().lower().startswith(C.STORE_URL_SCHEMES):
            raise ValueError("must start with " + " or ".join(C.STORE_URL_SCHEMES))
        return value.strip() if value is not None else None

    @field_validator("oauth_issuer", "public_url")
    @classmethod
    def _web_url(cls, value: str | None) -> str | None:
        return _web_url(value)

    @field_validator("linked_key_secret")
    @classmethod
    def _aes_keys(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            try:
                raw = base64.b64decode(item, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("must be base64 (of 32 random bytes), comma separated") from None
            if len(raw) != C.LINKED_KEY_SECRET_BYTES:
                raise ValueError(
                    f"must each be base64 of {C.LINKED_KEY_SECRET_BYTES} random bytes "
                    f"(one was {len(raw)} bytes)"
                )
        return value

    @field_validator("max_images_per_hour")
    @classmethod
    def _zero_is_unlimited(cls, value: int | None) -> int | None:
        return value or None

    # --- derived values ------------------------------------------------------------------------

    @property
    def output_dir_explicit(self) -> bool:
        """Whether the operator chose the output folder (over HTTP, saving needs that)."""
        return self.output_dir is not None

    @property
    def resolved_output_dir(self) -> Path:
        return self.output_dir or default_output_dir()

    @property
    def resolved_state_dir(self) -> Path:
        return self.state_dir or default_state_dir()

    def confirm_above(self, *, remote: bool) -> Decimal | None:
        """The confirmation threshold in USD, or None (never ask): unset means off over stdio."""
        if self.confirm_above_usd == "off":
            return None
        if self.confirm_above_usd is None:
            return C.HOSTED_CONFIRM_ABOVE_USD if remote else None
        return self.confirm_above_usd

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * C.MB)

    @property
    def max_download_bytes(self) -> int:
        return int(self.max_download_mb * C.MB)

    @property
    def max_call_download_bytes(self) -> int:
        return int(self.max_call_download_mb * C.MB)

    @property
    def max_pixels(self) -> int:
        return int(self.max_megapixels * 1_000_000)

    @property
    def max_message_bytes(self) -> int:
        return int(self.max_message_kb * 1024)

    @property
    def max_upload_body_bytes(self) -> int:
        """The largest HTTP body of an upload_media call: the upload as base64, plus room for the rest."""
        return self.max_upload_bytes * 4 // 3 + 256 * 1024

    # --- building ------------------------------------------------------------------------------

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied and validated again."""
        return type(self)(**{**self._given(), **changes})

    def _given(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in type(self).model_fields}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every declared variable from ``environ`` (``os.environ`` when not given).

        A variable that is unset or blank keeps its default.
        """
        env = os.environ if environ is None else environ
        given: dict[str, Any] = {}
        for var in ENV_VARS.values():
            raw = env.get(var.env, "").strip()
            if raw:
                given[var.field] = raw
        return cls(**given)


class SettingVar(BaseModel):
    """One environment variable, as declared on :class:`Settings` (for ``--help`` and the README)."""

    model_config = ConfigDict(frozen=True)

    env: str
    field: str
    description: str
    shown_default: str
    #: A key or token: never shown (and marked secret in the MCP Registry's server.json).
    secret: bool = False


def _declared() -> dict[str, SettingVar]:
    out: dict[str, SettingVar] = {}
    for name, info in Settings.model_fields.items():
        extra = info.json_schema_extra
        assert isinstance(extra, dict), name
        env = str(extra["env"])
        out[env] = SettingVar(
            env=env,
            field=name,
            description=info.description or "",
            shown_default=str(extra["shown_default"]),
            secret=not info.repr,
        )
    return out


#: Every variable, by name, in declaration order.
ENV_VARS: dict[str, SettingVar] = _declared()
_ENV_OF = {var.field: var.env for var in ENV_VARS.values()}


def env_name(field: str) -> str:
    """The environment variable of the setting ``field`` (``"wait_seconds"`` -> ``ATLAS_MCP_WAIT_SECONDS``).

    Every message that names a setting gets the name here, so a rename is one edit.
    """
    return _ENV_OF[field]


def upper_bound(field: str) -> float | None:
    """The largest value the setting ``field`` accepts, as declared (None when it has no upper bound)."""
    for item in Settings.model_fields[field].metadata:
        for bound in ("le", "lt"):
            value = getattr(item, bound, None)
            if value is not None:
                return float(value)
    return None


def setting_hint(field: str) -> str:
    """``ATLAS_MCP_WAIT_SECONDS (up to 600)``: the variable, and its upper bound when it has one."""
    high = upper_bound(field)
    return env_name(field) + (f" (up to {format_number(high)})" if high is not None else "")


def _describe(err: ValidationError, given: Mapping[str, Any]) -> str:
    """One sentence per bad value, naming the environment variable (a secret's value is not shown)."""
    sentences = []
    for problem in err.errors():
        field = str(problem["loc"][0]) if problem["loc"] else ""
        name = _ENV_OF.get(field, field)
        info = Settings.model_fields.get(field)
        if info is not None and not info.repr:
            sentences.append(f"{name} {field_problem(problem)}.")
            continue
        raw = given.get(field, problem.get("input"))
        sentences.append(f"{name} {field_problem(problem)} (got {str(raw)!r}).")
    return " ".join(sentences)


def proxy_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The proxies that HTTP clients take from the environment, as httpx does with ``trust_env``.

    ``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY`` (either case) by scheme (``https``, ``http``,
    ``all``), and ``NO_PROXY`` as ``no``: the hosts that bypass them.
    """
    env = os.environ if environ is None else environ
    found: dict[str, str] = {}
    for scheme in ("http", "https", "all", "no"):
        value = env.get(f"{scheme}_proxy") or env.get(f"{scheme.upper()}_PROXY") or ""
        if value.strip():
            found[scheme] = value.strip()
    return found


# --- serve --workers N: what the parent hands each worker process --------------------------------

#: Not a setting: ``serve --workers N`` sets it in its own environment for the worker processes it
#: starts (they inherit the environment), with what its command line said.
WORKER_ENV = "ATLAS_MCP_WORKER"


@dataclass(frozen=True)
class WorkerOptions:
    """The command-line options of ``serve`` that each worker process needs to build its app."""

    host: str
    offline: bool = False


def export_for_workers(options: WorkerOptions, settings: Settings) -> None:
    """Put what the worker processes need into this process's environment, before starting them.

    Workers re-read their settings from the same environment. Without ``ATLAS_MCP_TASK_SECRET``
    every worker would sign task ids with a key of its own, so one is made here and shared: a task
    one worker started can be answered by any other (ids still end with this process).
    """
    os.environ[WORKER_ENV] = json.dumps({"host": options.host, "offline": options.offline})
    if not settings.task_secret:
        os.environ[_ENV_OF["task_secret"]] = secrets.token_urlsafe(32)


def worker_options(environ: Mapping[str, str] | None = None) -> WorkerOptions:
    """The options ``serve --workers N`` exported for this worker process (see :func:`export_for_workers`)."""
    env = os.environ if environ is None else environ
    try:
        given = json.loads(env[WORKER_ENV])
        return WorkerOptions(host=str(given["host"]), offline=bool(given.get("offline", False)))
    except (KeyError, TypeError, ValueError) as exc:
        raise SettingsError(
            f"{WORKER_ENV} is missing or unreadable: this entry point is started by "
            "`atlas-image-mcp serve --transport http --stateless --workers N`, not by hand."
        ) from exc
