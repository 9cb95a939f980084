"""Defaults and limits, each named once and imported wherever it is needed.

Settings use these as their defaults, the client as its keyword defaults, the tools as their
bounds; nothing else writes these numbers down.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

# --- Atlas Cloud ---------------------------------------------------------------------------------

DEFAULT_BASE_URL = "https://api.atlascloud.ai"
API_PREFIX = "/api/v1"
KEYS_URL = "https://www.atlascloud.ai/console/api-keys"
BILLING_URL = "https://www.atlascloud.ai/console/billing"
#: The header that carries a user's own Atlas key in per-user-key mode (lower case, as ASGI gives it).
USER_KEY_HEADER = "x-atlas-api-key"

#: Where the server's answers are read, so that advice fits: a stdio server launched by an MCP client,
#: the ``generate`` command in a terminal, or a hosted HTTP server.
Place = Literal["stdio", "cli", "http"]

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
#: Largest model schema document read from the catalogue's ``schema`` URL.
MAX_SCHEMA_BYTES = 2 * 1024 * 1024
#: Connections to Atlas kept in the pool, and requests in flight at once (see client.DEFAULT_LIMITS).
MAX_CONNECTIONS = 64
KEEPALIVE_SECONDS = 30.0
#: Idle connections to Atlas a hosted server keeps (its aiohttp pool, which cannot look at a pooled
#: socket before reusing it as httpx does): under the 5 s after which common servers (uvicorn, several
#: proxies) close an idle connection, so a request never races that close.
HOSTED_KEEPALIVE_SECONDS = 4.0
#: A 404 within this many seconds of a submit means "not visible yet" (Atlas lags right after a submit).
NOT_FOUND_GRACE = 10.0

# --- waiting for a picture -----------------------------------------------------------------------

DEFAULT_WAIT_SECONDS = 45.0
MAX_WAIT_SECONDS = 600
HEARTBEAT_SECONDS = 1.0
#: A tool call returns within its wait plus this (downloads, decoding and saving included).
CALL_MARGIN_SECONDS = 10.0

# --- MCP tasks (the io.modelcontextprotocol/tasks extension, and the 2025-11-25 form) -----------

#: How long a picture job running as a task waits for Atlas (no client time-out to stay under).
DEFAULT_TASK_WAIT_SECONDS = 1800.0
MAX_TASK_WAIT_SECONDS = 6 * 3600
#: A task stays readable this long after its wait bound (its ttlMs = wait bound + this).
TASK_KEEP_SECONDS = 3600
#: Task records one process keeps (past this, tools answer in one call as without tasks), and one
#: owner (one Atlas key; every client of a server spending its own key) keeps: past that its oldest
#: finished ones go, and while all of them run it gets no more.
MAX_TASKS = 1000
MAX_TASKS_PER_OWNER = 100
#: The shortest lifetime a client may ask for a task (``params.task.ttl``, 2025-11-25), in seconds.
TASK_MIN_TTL_SECONDS = 60
#: Results (pictures included) of finished tasks one process holds; past this the oldest ones that
#: can be rebuilt from their id are dropped, and rebuilt from Atlas if asked for again.
MAX_TASK_RESULTS_MB = 64
MAX_TASK_ID_CHARS = 512
#: Client polling advice (pollIntervalMs): a model not seen yet, and the bounds of a learned one.
TASK_POLL_DEFAULT_MS = 1000
TASK_POLL_MIN_MS = 250
TASK_POLL_MAX_MS = 5000
#: Rounds of input (elicitation) one task may ask for before it fails.
MAX_TASK_INPUT_ROUNDS = 10
#: Longest statusMessage of a task (characters).
MAX_STATUS_MESSAGE_CHARS = 1000

# --- costs, confirmation and budgets ----------------------------------------------------------

#: A hosted server asks the person before a call estimated above this many USD (unless the operator
#: set ATLAS_MCP_CONFIRM_ABOVE_USD): above any single FLUX schnell or dev run, around two pictures of
#: the premium models (Kontext [max] is $0.08 a picture). Over stdio the default is off.
HOSTED_CONFIRM_ABOVE_USD = Decimal("0.10")
#: The largest max_cost_usd a call may name.
MAX_COST_USD = 1000
#: The ledger (budgets and usage) inside the state folder; rows are kept this many days.
LEDGER_FILE = "ledger.sqlite3"
LEDGER_KEEP_DAYS = 90
#: What ATLAS_MCP_DATABASE_URL may name: an SQLite file, or a PostgreSQL server (libpq's URL forms).
STORE_URL_SCHEMES = ("sqlite:///", "postgresql://", "postgres://")
#: How long a ledger write waits for another process holding the ledger, in seconds.
LEDGER_BUSY_SECONDS = 10.0
#: Each server process renews its heartbeat in the store this often (seconds); one whose heartbeat
#: is older than this many beats is dead, and another settles the calls it left open.
REPLICA_HEARTBEAT_SECONDS = 10.0
REPLICA_TTL_BEATS = 3
#: The images-per-hour limit counts images started in a rolling window this long, in seconds.
IMAGE_WINDOW_SECONDS = 3600.0
#: get_usage: days shown by default and at most, and how many of the largest calls it names.
USAGE_DAYS = 7
USAGE_MAX_DAYS = LEDGER_KEEP_DAYS
USAGE_LARGEST = 5
#: The public billing API (its answers are not enveloped: docs/atlas-api.md).
BILLING_PREFIX = "/public/v1"

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

DEFAULT_MODEL = "black-forest-labs/flux-schnell"
SEED_MAX = 2**31 - 1
MAX_PROMPT_CHARS = 10_000
MAX_MODEL_ID_CHARS = 200
MAX_NUM_IMAGES = 4
#: Jobs one generate_image call may run as a batch (prompts x count), and entries one export makes.
MAX_BATCH = 8
MAX_EXPORTS = 12
#: How long a client has to list its roots (workspace folders) when a call writes into them.
ROOTS_SECONDS = 10.0
MAX_PATH_CHARS = 4096
MAX_FILENAME_CHARS = 255
MAX_PREDICTION_ID_CHARS = 128
#: What a prediction id looks like (no anchors, so it can stand inside a URI pattern too).
PREDICTION_ID_CHARS = rf"[A-Za-z0-9][A-Za-z0-9_\-]{{0,{MAX_PREDICTION_ID_CHARS - 1}}}"
PREDICTION_ID_PATTERN = rf"^{PREDICTION_ID_CHARS}$"

# --- hosting -------------------------------------------------------------------------------------

DEFAULT_HTTP_HOST = "127.0.0.1"
DEFAULT_HTTP_PORT = 8000

# --- MCP resources -------------------------------------------------------------------------------

PREDICTION_URI = "atlas-image://predictions/{prediction_id}"
IMAGE_URI = "atlas-image://predictions/{prediction_id}/images/{index}"
#: IMAGE_URI as a regular expression with two groups, the id and the index (IMAGE_URI itself has no
#: regex metacharacters).
IMAGE_URI_PATTERN = (
    "^" + IMAGE_URI.format(prediction_id=f"({PREDICTION_ID_CHARS})", index="([0-9]{1,3})") + "$"
)
#: The gallery (``show_gallery``): this session's pictures, newest first, this many by default.
GALLERY_PICTURES = 24
GALLERY_MAX_PICTURES = 48

# --- MCP Apps: the picture viewer ----------------------------------------------------------------

#: The one ``ui://`` app every picture tool declares (one resource, so hosts can cache it).
VIEWER_URI = "ui://atlas-image/viewer.html"
#: How long one ``get_prediction`` call from the viewer waits: well under the 60 s a host gives a
#: call from a frame, so a running job is polled with short calls, never one long one.
VIEWER_POLL_WAIT_SECONDS = 10
#: The viewer stops polling a running job after this many calls (then offers "Check again").
VIEWER_MAX_POLLS = 60

# --- each caller's pictures ----------------------------------------------------------------------

#: Pictures remembered per caller and connection, and connections remembered in all (history.py).
HISTORY_MAX_ENTRIES = 100
HISTORY_MAX_SESSIONS = 1000

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
LARGE_BODY_TOOLS = frozenset({"upload_media", "edit_image", "generate_image"})
#: Large bodies read at once (each up to the upload cap), so a burst cannot pin the memory; one
#: identity (a key Atlas accepted, else a client address) reads one of them at a time. A large body
#: that finds no slot free is refused at once, never queued.
LARGE_BODIES_AT_ONCE = 2
LARGE_BODIES_PER_IDENTITY = 1
#: A large body must keep arriving: after this many seconds, at least this many bytes a second on
#: average, or it is cut off and its slot freed (a body dripped a byte at a time holds no slot long).
LARGE_BODY_GRACE_SECONDS = 10.0
LARGE_BODY_MIN_BYTES_PER_SECOND = 32 * 1024
#: An identity whose large body was cut off for being too slow gets no large-body slot for this many
#: seconds (so that dripping, cut off and sent again, cannot keep the slots busy).
LARGE_BODY_BARRED_SECONDS = 60.0
#: Seconds a client may take to send a request head, and a small body; idle keep-alive seconds.
HEAD_TIMEOUT_SECONDS = 10.0
BODY_TIMEOUT_SECONDS = 30.0
#: A new connection that has sent no byte of a request after this many seconds is closed.
FIRST_BYTE_SECONDS = 2.0
#: (Keep-alive: longer than clients keep an idle connection, httpx 5 s, so the client closes first and a
#: request never races the server's close; under 500 calls at once that race failed whole calls.)
KEEP_ALIVE_SECONDS = 10.0
MAX_HEADER_BYTES = 16 * 1024
#: Open connections one client address may hold (IPv6: one /64); a reverse proxy named in
#: ATLAS_MCP_TRUSTED_PROXIES is not held to it (it must limit per client itself).
DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 256
IPV6_CLIENT_PREFIX = 64
#: Per-user keys Atlas has not accepted yet (not checked, or Atlas could not be asked): such a key
#: holds one session or SSE stream; one client address holds this many of them, and all of them
#: together this share of ATLAS_MCP_MAX_SESSIONS (so invented keys can never fill the server).
UNVERIFIED_SESSIONS_PER_ADDRESS = 4
UNVERIFIED_SESSIONS_SHARE = 0.25
#: Checking a key with Atlas (one GET of the balance): how long it may take, how many run at once,
#: and how long an answer is remembered (accepted / refused), for this many keys at most.
KEY_CHECK_SECONDS = 5.0
KEY_CHECKS_AT_ONCE = 4
KEY_ACCEPTED_SECONDS = 3600.0
KEY_REFUSED_SECONDS = 600.0
MAX_CHECKED_KEYS = 4096
#: SIGTERM: seconds calls in flight may take to finish, then seconds to answer the rest "processing".
SHUTDOWN_GRACE_SECONDS = 4.0
SHUTDOWN_ANSWER_SECONDS = 2.0

# --- OAuth (the server as a resource server; linked keys) ------------------------------------------

#: The two scopes: everything that spends nothing, and everything that can spend.
SCOPE_READ = "images:read"
SCOPE_GENERATE = "images:generate"
#: The package's documentation (the protected resource metadata's resource_documentation).
DOCUMENTATION_URL = "https://pypi.org/project/atlas-image-mcp/"
#: Where the protected resource lives under the public URL (the streamable HTTP endpoint).
RESOURCE_PATH = "/mcp"
#: Clock skew allowed on a token's exp, nbf and iat, in seconds.
TOKEN_LEEWAY_SECONDS = 30.0
#: The authorization server's metadata and keys: the most bytes, seconds and keys taken from it.
AS_DOCUMENT_MAX_BYTES = 256 * 1024
AS_FETCH_TIMEOUT_SECONDS = 5.0
JWKS_MAX_KEYS = 50
#: The key set is fetched again after this many seconds (a key no longer published stops counting).
JWKS_MAX_AGE_SECONDS = 3600.0
#: An unknown key id fetches the key set again at once, then at most once per this many seconds.
JWKS_MIN_REFRESH_SECONDS = 10.0
#: A token, an authorization header, a token endpoint's answer: the most characters read.
MAX_TOKEN_CHARS = 16 * 1024
#: An introspection answer is reused for at most this many seconds (never past the token's exp).
INTROSPECTION_CACHE_SECONDS = 60.0
INTROSPECTION_CACHE_ENTRIES = 4096
#: Bytes of each linked-key encryption key (AES-256-GCM).
LINKED_KEY_SECRET_BYTES = 32
#: How long a key-linking link may wait to be opened, and a sign-in on its page to come back.
LINK_TTL_SECONDS = 600.0
LINK_LOGIN_SECONDS = 600.0
#: The key-linking page: largest form body, and attempts per account per window.
LINK_FORM_MAX_BYTES = 4096
LINK_ATTEMPTS = 10
LINK_ATTEMPTS_WINDOW_SECONDS = 600.0
#: A linked key is read again from the store after this many seconds (unlinking elsewhere shows then).
LINKED_KEY_CACHE_SECONDS = 30.0

# --- offline mode --------------------------------------------------------------------------------

#: The in-process emulator's origin. ``.invalid`` is reserved (RFC 2606): no resolver answers for it, so
#: nothing outside this process could open such a URL, and results show those pictures by their
#: resource URI instead (:func:`atlas_image_mcp.render.shown_url`).
OFFLINE_BASE_URL = "http://offline-emulator.invalid"
#: The sentence every offline picture result ends with.
OFFLINE_NOTE = (
    "Offline: the built-in emulator of the Atlas API drew this picture; nothing was sent to Atlas and "
    "nothing was charged (a cost shown is what Atlas would charge)."
)
OFFLINE_API_KEY = "offline-emulator-key"
DEFAULT_EMULATOR_LATENCY = 1.0

#: A hosted server's young-generation collection threshold (Python's default is 700): a call makes
#: thousands of short-lived objects (event streams, cancel scopes, pydantic models), so at 700 the
#: collector runs every few calls and its older generations fill with live requests that the next
#: full collection walks again; chosen by the benchmark (docs/benchmark.md, section "CPU per call").
DEFAULT_GC_THRESHOLD = 10_000
