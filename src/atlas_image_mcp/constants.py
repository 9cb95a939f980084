"""Defaults and limits, each named once and imported wherever it is needed.

Settings use these as their defaults, the client as its keyword defaults, the tools as their
bounds; nothing else writes these numbers down.
"""

from __future__ import annotations

from typing import Literal

# --- Atlas Cloud ---------------------------------------------------------------------------------

DEFAULT_BASE_URL = "https://api.atlascloud.ai"
API_PREFIX = "/api/v1"
KEYS_URL = "https://www.atlascloud.ai/console/api-keys"
BILLING_URL = "https://www.atlascloud.ai/console/billing"
#: The header that carries a user's own Atlas key in per-user-key mode (lower case, as ASGI gives it).
USER_KEY_HEADER = "x-atlas-api-key"

# --- requests and retries ------------------------------------------------------------------------

DEFAULT_TIMEOUT = 30.0
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_UPLOAD_TIMEOUT = 300.0
DEFAULT_MAX_RETRIES = 3
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER = 30.0
#: A ``Retry-After`` above this is not believed (it is read as this many seconds).
RETRY_AFTER_CEILING = 600.0
MODELS_TTL = 300.0
#: Connections to Atlas kept in the pool, and requests in flight at once (see client.DEFAULT_LIMITS).
MAX_CONNECTIONS = 64
KEEPALIVE_SECONDS = 30.0
#: A 404 within this many seconds of a submit means "not visible yet" (Atlas lags right after a submit).
NOT_FOUND_GRACE = 10.0

# --- waiting for a picture -----------------------------------------------------------------------

DEFAULT_WAIT_SECONDS = 45.0
MAX_WAIT_SECONDS = 600
HEARTBEAT_SECONDS = 1.0
#: A tool call returns within its wait plus this (downloads, decoding and saving included).
CALL_MARGIN_SECONDS = 10.0

# --- pictures ------------------------------------------------------------------------------------

ImageMode = Literal["thumbnail", "full", "none"]
IMAGE_MODES: tuple[ImageMode, ...] = ("thumbnail", "full", "none")
DEFAULT_IMAGE_MODE: ImageMode = "thumbnail"
THUMBNAIL_SIZE = 512
#: Base64 characters of pictures inside one tool result (what travels, not decoded bytes).
MAX_BASE64_CHARS = 1_000_000
MB = 1024 * 1024
DEFAULT_MAX_UPLOAD_MB = 50.0
DEFAULT_MAX_DOWNLOAD_MB = 50.0
DEFAULT_MAX_CALL_DOWNLOAD_MB = 100.0
#: Largest picture decoded, in millions of pixels (4096x4096 fits); a call decodes at most
#: MAX_NUM_IMAGES of them, and a process DECODES_AT_ONCE at a time.
DEFAULT_MAX_MEGAPIXELS = 17.0
OUTPUT_FOLDER_NAME = "atlas-image-mcp"

# --- tool parameters -----------------------------------------------------------------------------

SEED_MAX = 2**31 - 1
MAX_PROMPT_CHARS = 10_000
MAX_MODEL_ID_CHARS = 200
MAX_NUM_IMAGES = 4
MAX_PATH_CHARS = 4096
MAX_FILENAME_CHARS = 255
MAX_PREDICTION_ID_CHARS = 128
PREDICTION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,127}$"

# --- MCP resources -------------------------------------------------------------------------------

PREDICTION_URI = "atlas-image://predictions/{prediction_id}"
IMAGE_URI = "atlas-image://predictions/{prediction_id}/images/{index}"

# --- the trust boundary --------------------------------------------------------------------------

#: Redirects followed by hand for one download (each hop checked again).
MAX_REDIRECTS = 3
#: Longest output URL shown or fetched; longer ones are treated as not a URL.
MAX_URL_CHARS = 4096
#: Longest upstream texts kept from a prediction (model id, price, error).
MAX_UPSTREAM_TEXT_CHARS = 1000
MAX_PRICE_CHARS = 32
#: Picture formats accepted from upstream and for upload (Pillow format names).
PICTURE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
#: A per-user key shorter than this is refused (no Atlas key is); longer than the max too.
MIN_USER_KEY_CHARS = 16
MAX_USER_KEY_CHARS = 512
#: Per-user keys remembered for redaction at once (least recently used forgotten first).
MAX_REMEMBERED_KEYS = 1024
#: Pictures decoded at once in one process (each can take width x height x 4 bytes).
DECODES_AT_ONCE = 2

# --- HTTP hosting ---------------------------------------------------------------------------------

DEFAULT_MAX_SESSIONS = 1000
DEFAULT_MAX_SESSIONS_PER_KEY = 10
DEFAULT_SESSION_IDLE_SECONDS = 300.0
DEFAULT_MAX_MESSAGE_KB = 1024.0
#: Tools whose calls may carry a large body (base64 data), up to the upload cap.
LARGE_BODY_TOOLS = frozenset({"upload_media"})
#: Large bodies read at once (each up to the upload cap), so a burst cannot pin the memory.
LARGE_BODIES_AT_ONCE = 2
#: Seconds a client may take to send a request head, and a small body; idle keep-alive seconds.
HEAD_TIMEOUT_SECONDS = 10.0
BODY_TIMEOUT_SECONDS = 30.0
KEEP_ALIVE_SECONDS = 5.0
MAX_HEADER_BYTES = 16 * 1024
#: SIGTERM: seconds calls in flight may take to finish, then seconds to answer the rest "processing".
SHUTDOWN_GRACE_SECONDS = 4.0
SHUTDOWN_ANSWER_SECONDS = 2.0

# --- offline mode --------------------------------------------------------------------------------

OFFLINE_BASE_URL = "http://atlas.emulator"
OFFLINE_API_KEY = "offline-emulator-key"
DEFAULT_EMULATOR_LATENCY = 1.0
