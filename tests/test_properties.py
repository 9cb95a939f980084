"""Bad input, property-based: arbitrary JSON at every tool and at the HTTP endpoint.

Whatever the arguments - wrong types, huge strings, NaN and infinities, negative and enormous
sizes, unicode and control characters, path tricks in ``file_path`` - each call ends in a tool
error or a JSON-RPC error with a readable message (never a Python traceback, never the SDK's bare
"Error executing tool X" that marks a crash), never hangs, and the server keeps serving.

The MCP session lives in a blocking portal (an event loop in a thread), so hypothesis drives
plain synchronous test functions and every example reuses the same server. No example database
is written (``database=None``).
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.shared.exceptions import MCPError

from atlas_image_mcp.http import create_http_app
from atlas_image_mcp.runtime import Runtime
from atlas_image_mcp.server import make_server
from atlas_image_mcp.settings import Settings

from .conftest import EMULATOR_URL, FAST_POLLS, TEST_KEY, atlas_client
from .emulation import Emulator
from .http_helpers import MCP_HEADERS
from .loadgen import serve_in_thread
from .pictures import png

CALL_BOUND = 10.0
TRACEBACK = "Traceback (most recent call last)"
CANARY = "PROPCANARY-7f3e9a"  # planted in files and the environment; must never come back

PROPERTY_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

# --- strategies ------------------------------------------------------------------------------

ANY_CHAR = st.characters(exclude_categories=())  # includes controls and lone surrogates
NASTY_CHARS = [
    "\x00",
    "\x1b[31m",
    "\u202e",
    "\ufeff",
    "\ud800",
    "\udfff",
    "🦊",
    "\r\n",
    "\t",
    "\u0301",
    "𝕏",
    "\\",
]
HUGE = st.builds(
    lambda piece, n: piece * n,
    st.sampled_from(["x", "🦊", "\x00", "\ud800", "a\nb", "<html>"]),
    st.sampled_from([1_001, 4_097, 10_001, 200_000]),
)
TEXT = st.one_of(
    st.text(ANY_CHAR, max_size=40),
    st.lists(st.sampled_from(NASTY_CHARS), min_size=1, max_size=8).map("".join),
    HUGE,
    st.sampled_from(["", " ", "   ", "null", "NaN", "-1", "1e309", "../../etc/passwd", "%s%n%x", "{{7*7}}"]),
)
NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 63, 64, 255, 256, 512, 1536, 1537, 4096, 4097, 2**31, 2**63, 10**30, -(10**30)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), 512.0, 512.5, -0.0, 1e-300, 1e308]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
VALUE = st.one_of(SCALARS, JSON)


def arguments(params: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Some of the tool's parameters with odd values, plus maybe unknown keys."""
    known = st.fixed_dictionaries({}, optional={name: strategy | VALUE for name, strategy in params.items()})
    extra = st.dictionaries(st.text(max_size=12), VALUE, max_size=2)
    return st.builds(lambda a, b: {**b, **a}, known, extra)


GENERATE_ARGS = arguments(
    {
        "prompt": TEXT,
        "model": st.sampled_from(
            ["black-forest-labs/flux-schnell", "black-forest-labs/flux-dev", "../x", "a" * 201]
        )
        | TEXT,
        "width": NUMBERS,
        "height": NUMBERS,
        "aspect_ratio": st.sampled_from(["16:9", "1:1", "0:0", "9999999:1", "1:0", "-1:1", "1e308:1", "x"])
        | TEXT,
        "num_images": NUMBERS,
        "seed": NUMBERS,
        "steps": NUMBERS,
        "guidance_scale": NUMBERS,
        "image": st.sampled_from(
            [
                "http://example.invalid/x.png",
                "data:image/png;base64,AAAA",
                "/etc/passwd",
                "file:///etc/passwd",
            ]
        )
        | TEXT,
        "mask_image": st.sampled_from(["http://example.invalid/m.png", "C:\\mask.png"]) | TEXT,
        "strength": NUMBERS,
        "enable_safety_checker": st.booleans() | VALUE,
        "wait": st.booleans(),
        "return_image": st.sampled_from(["thumbnail", "full", "none", "FULL", ""]),
        "save": st.booleans(),
        "dry_run": st.booleans(),
    }
)
PREDICTION_ARGS = arguments(
    {
        "prediction_id": st.sampled_from(["0" * 32, "../../etc/passwd", "a" * 129, "-x", "", "ab\x00cd"])
        | TEXT,
        "wait_seconds": NUMBERS,
        "return_image": st.sampled_from(["thumbnail", "full", "none", "x"]),
    }
)
MODELS_ARGS = arguments({"query": TEXT})


# --- the served session ----------------------------------------------------------------------


@dataclass
class Served:
    portal: BlockingPortal
    client: Client
    emulator: Emulator

    def call(self, name: str, args: Any) -> Any:
        """Call a tool; returns the CallToolResult or the MCPError, within CALL_BOUND seconds."""

        async def run() -> Any:
            with anyio.fail_after(CALL_BOUND):
                try:
                    return await self.client.call_tool(name, args)
                except MCPError as exc:
                    return exc

        return self.portal.call(run)


def _make_paths(base: Path) -> dict[str, str]:
    """Path tricks: real files, links out of the folder, devices, /proc, oddities."""
    root = base / "root"
    root.mkdir()
    outside = base / "outside-secret.txt"
    outside.write_text(f"secret {CANARY}\n")
    inside = root / "inside.png"
    inside.write_bytes(png(text=CANARY))
    (root / "link-out.png").symlink_to(outside)
    (root / "link-loop").symlink_to(root / "link-loop")
    (root / "dangling.png").symlink_to(base / "nowhere.png")
    (root / "empty.png").write_bytes(b"")
    (root / "sub").mkdir()
    os.mkfifo(root / "fifo.png")
    return {
        "root": str(root),
        "inside": str(inside),
        "outside": str(outside),
        "dotdot": f"{root}/../outside-secret.txt",
        "dotdot-deep": f"{root}/sub/../../outside-secret.txt",
        "link-out": str(root / "link-out.png"),
        "link-loop": str(root / "link-loop"),
        "dangling": str(root / "dangling.png"),
        "empty": str(root / "empty.png"),
        "directory": str(root / "sub"),
        "fifo": str(root / "fifo.png"),
    }


SYSTEM_PATHS = [
    "/proc/self/environ", "/proc/self/status", "/proc/self/mem", "/proc/self/fd/0", "/proc/self/cwd",
    "/dev/zero", "/dev/urandom", "/dev/null", "/dev/stdin", "/", "/etc/hostname", "..", "../..", ".",
    "relative/x.png", "~", "~/x.png", "~root/.ssh/id_rsa", "C:\\Windows\\System32\\config\\SAM", "c:/x.png",
    "\\\\server\\share\\x.png", "file:///etc/passwd", "/tmp/a\x00b.png", "/" + "a" * 4000, "/" + "a/" * 2000,
    "/" + "x" * 300 + ".png", "/nonexistent/\ud800.png", "/\u202eexe.png", "",
]  # fmt: skip


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, str]:
    return _make_paths(tmp_path)


def _serve(tmp_path: Path, **changes: Any) -> Iterator[Served]:
    async def fast_sleep(seconds: float) -> None:
        await anyio.sleep(min(seconds, 0.005))

    emulator = Emulator(api_keys=[TEST_KEY], latency=0.0)
    base = Settings(
        api_key=TEST_KEY,
        output_dir=tmp_path / "pictures",
        wait_seconds=2,
        max_upload_mb=1.0,
    )
    remote = changes.pop("remote", False)
    with start_blocking_portal() as portal:
        api = atlas_client(
            api_key=TEST_KEY,
            base_url=EMULATOR_URL,
            transport=httpx.ASGITransport(app=emulator.app),
            poll_schedule=FAST_POLLS,
            sleep=fast_sleep,
        )
        runtime = Runtime.create(base.replace(**changes), client=api, remote=remote)
        with portal.wrap_async_context_manager(Client(make_server(runtime))) as client:
            yield Served(portal, client, emulator)
        portal.call(runtime.aclose)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    os.environ[f"ATLAS_PROP_{CANARY.replace('-', '_')}"] = CANARY  # so /proc/self/environ would show it
    try:
        yield from _serve(tmp_path)
    finally:
        os.environ.pop(f"ATLAS_PROP_{CANARY.replace('-', '_')}", None)


@pytest.fixture
def hosted(tmp_path: Path, paths: dict[str, str]) -> Iterator[Served]:
    """Remote (HTTP-like) runtime: local files only from inside ATLAS_MCP_UPLOAD_ROOT."""
    yield from _serve(tmp_path, remote=True, upload_root=Path(paths["root"]).resolve())


# --- the property every outcome must have ----------------------------------------------------


def text_of(result: Any) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


def check_outcome(name: str, outcome: Any) -> str:
    """A readable tool error, a JSON-RPC error, or a well-formed success. Returns the text."""
    if isinstance(outcome, MCPError):
        text = outcome.message
        assert text.strip(), "empty JSON-RPC error message"
    else:
        text = text_of(outcome)
        assert text.strip(), f"empty result: {outcome!r}"
        if outcome.is_error:
            assert text.strip() != f"Error executing tool {name}", f"{name} crashed (see the server log)"
        else:
            assert isinstance(outcome.structured_content, dict), outcome
    assert TRACEBACK not in text and 'File "/' not in text, text[:2000]
    assert "\x00" not in text and "\x1b" not in text, "raw control characters in a message"
    assert "errors.pydantic.dev" not in text and "validation error for" not in text, text[:2000]
    assert CANARY not in text and CANARY not in json.dumps(getattr(outcome, "structured_content", None) or {})
    return text


def keeps_serving(served: Served) -> None:
    result = served.call("generate_image", {"prompt": "fox", "dry_run": True})
    assert result.is_error is False and result.structured_content["status"] == "dry_run"


# --- properties over every tool ---------------------------------------------------------------


@PROPERTY_SETTINGS
@given(args=GENERATE_ARGS)
def test_generate_image_survives_arbitrary_arguments(served: Served, args: dict[str, Any]) -> None:
    check_outcome("generate_image", served.call("generate_image", args))
    keeps_serving(served)


@PROPERTY_SETTINGS
@given(args=PREDICTION_ARGS)
def test_get_prediction_survives_arbitrary_arguments(served: Served, args: dict[str, Any]) -> None:
    check_outcome("get_prediction", served.call("get_prediction", args))
    keeps_serving(served)


@settings(PROPERTY_SETTINGS, max_examples=30)
@given(args=MODELS_ARGS)
def test_list_models_survives_arbitrary_arguments(served: Served, args: dict[str, Any]) -> None:
    check_outcome("list_models", served.call("list_models", args))


def _upload_args(paths: dict[str, str]) -> st.SearchStrategy[dict[str, Any]]:
    path = st.sampled_from(sorted(paths.values()) + SYSTEM_PATHS) | TEXT
    data = st.one_of(
        st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()),
        st.binary(min_size=1, max_size=64).map(
            lambda b: "data:image/png;base64," + base64.b64encode(b).decode()
        ),
        st.sampled_from(
            ["data:,x", "data:image/png,AAAA", "data:;base64,", "====", "QUFB\x00", "A" * 1_500_000]
        ),
        TEXT,
    )
    filename = (
        st.sampled_from(
            ["x.png", "../../.bashrc", "a/b/c.png", "C:\\evil.exe", "\x00.png", "." * 10, "a" * 300]
        )
        | TEXT
    )
    return arguments({"file_path": path, "data": data, "filename": filename})


@PROPERTY_SETTINGS
@given(data=st.data())
def test_upload_media_survives_arbitrary_arguments_and_path_tricks(
    served: Served, paths: dict[str, str], data: st.DataObject
) -> None:
    args = data.draw(_upload_args(paths))
    check_outcome("upload_media", served.call("upload_media", args))
    keeps_serving(served)


@settings(PROPERTY_SETTINGS, max_examples=80)
@given(data=st.data())
def test_hosted_upload_never_reads_outside_the_upload_root(
    hosted: Served, paths: dict[str, str], data: st.DataObject
) -> None:
    file_path = data.draw(st.sampled_from(sorted(paths.values()) + SYSTEM_PATHS) | TEXT)
    before = hosted.emulator.count("POST", "*uploadMedia")
    outcome = hosted.call("upload_media", {"file_path": file_path})
    check_outcome("upload_media", outcome)
    sent = hosted.emulator.count("POST", "*uploadMedia") - before
    if sent:
        # The only readable file is the one inside the root; its bytes go to Atlas, never into the result.
        assert file_path == paths["inside"], file_path
        assert not outcome.is_error


# --- the named path tricks, one by one --------------------------------------------------------


@pytest.mark.parametrize(
    ("file_path", "expected"),
    [
        ("/dev/zero", "not a regular file"),
        ("/dev/urandom", "not a regular file"),
        ("/dev/null", "not a regular file"),
        ("/proc/self/environ", "empty"),
        ("/proc/self/status", "empty"),
        ("/", "directory"),
        ("..", "absolute path"),
        ("C:\\Users\\me\\cat.png", "Windows path"),
        ("\\\\server\\share\\cat.png", "Windows path"),
        ("/" + "a" * 4000, "No file at"),
        ("/tmp/a\x00b.png", "No file at"),
        ("/" + "a" * 5000, "4096"),
    ],
)
def test_special_files_are_refused_before_anything_is_read_or_sent(
    served: Served, file_path: str, expected: str
) -> None:
    assert os.stat("/dev/zero").st_size == 0 and not Path("/dev/zero").is_file()  # a char device
    if file_path.startswith("/proc/self/"):
        assert Path(file_path).is_file() and os.stat(file_path).st_size == 0  # a regular file of size 0
    result = served.call("upload_media", {"file_path": file_path})
    text = check_outcome("upload_media", result)
    assert result.is_error and expected in text, text
    assert served.emulator.count("POST", "*uploadMedia") == 0


def test_a_fifo_is_refused_without_blocking(served: Served, paths: dict[str, str]) -> None:
    result = served.call("upload_media", {"file_path": paths["fifo"]})
    assert result.is_error and "not a regular file" in check_outcome("upload_media", result)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("dotdot", "outside the folder"),
        ("dotdot-deep", "outside the folder"),
        ("link-out", "outside the folder"),
        ("outside", "outside the folder"),
        ("link-loop", "No file at"),
        ("dangling", "No file at"),
        ("directory", "directory"),
        ("empty", "empty"),
        ("fifo", "not a regular file"),
    ],
)
def test_hosted_path_tricks_are_refused(
    hosted: Served, paths: dict[str, str], name: str, expected: str
) -> None:
    result = hosted.call("upload_media", {"file_path": paths[name]})
    text = check_outcome("upload_media", result)
    assert result.is_error and expected in text, text
    assert hosted.emulator.count("POST", "*uploadMedia") == 0


def test_hosted_upload_inside_the_root_works_and_returns_no_content(
    hosted: Served, paths: dict[str, str]
) -> None:
    result = hosted.call("upload_media", {"file_path": paths["inside"]})
    check_outcome("upload_media", result)
    assert result.is_error is False and result.structured_content["download_url"].startswith("http")
    [post] = [r for r in hosted.emulator.requests if r.path.endswith("uploadMedia")]
    assert CANARY.encode() in post.body  # the bytes went to Atlas, and only there


def test_a_local_upload_returns_a_url_never_the_file_content(served: Served, paths: dict[str, str]) -> None:
    result = served.call("upload_media", {"file_path": paths["inside"]})
    check_outcome("upload_media", result)  # includes: the canary inside the file is not in the result
    assert result.is_error is False


def test_a_local_file_that_is_not_a_picture_is_never_uploaded(served: Served, paths: dict[str, str]) -> None:
    """Over stdio too: a secret text file (think ~/.ssh/id_rsa) is refused by its content."""
    result = served.call("upload_media", {"file_path": paths["outside"]})
    text = check_outcome("upload_media", result)
    assert result.is_error and "not a picture" in text, text
    assert served.emulator.count("POST", "*uploadMedia") == 0


# --- a file swapped while it is read -----------------------------------------------------------

RACES = 250  # calls while another thread swaps the file: enough to land in any window between checks


class Swapper:
    """Swaps ``target`` between a real picture and ``other`` (placed by ``place``), as fast as it can.

    A pipe is kept as one inode that every swap links into place, and each round opens it for writing
    without blocking: a reader that opened it (and would wait for a writer forever) is let go with
    an empty read rather than hanging the test.
    """

    def __init__(self, target: Path, picture: bytes, place: Any, fifo: Path | None = None) -> None:
        self.target, self.picture, self.place, self.fifo = target, picture, place, fifo
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="swapper", daemon=True)

    def _run(self) -> None:
        staging = self.target.with_name(".staging")
        while not self.stop.is_set():
            staging.write_bytes(self.picture)
            os.replace(staging, self.target)
            self.place(staging)
            os.replace(staging, self.target)
            if self.fifo is not None:
                try:
                    os.close(os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK))
                except OSError:
                    pass  # nobody is reading it: good

    def __enter__(self) -> Swapper:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def test_a_file_swapped_for_a_link_after_its_check_is_never_read(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    secret = tmp_path / "id_rsa"
    secret.write_text(f"-----BEGIN PRIVATE KEY----- {CANARY}\n")
    picture = png()
    target = root / "pic.png"
    target.write_bytes(picture)

    def link(staging: Path) -> None:
        staging.symlink_to(secret)

    for served in _serve(tmp_path, upload_root=root.resolve()):
        with Swapper(target, picture, link):
            outcomes = [served.call("upload_media", {"file_path": str(target)}) for _ in range(RACES)]
        bodies = [r.body for r in served.emulator.requests if r.path.endswith("uploadMedia")]
    for outcome in outcomes:
        check_outcome("upload_media", outcome)
    assert bodies, "no upload got through: the race was not run"
    assert all(CANARY.encode() not in body for body in bodies)
    assert all(picture in body for body in bodies)


def test_a_file_swapped_for_a_pipe_after_its_check_never_blocks_or_sends_anything_else(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    picture = png()
    target = root / "pic.png"
    target.write_bytes(picture)

    def pipe(staging: Path) -> None:
        os.link(fifo, staging)

    for served in _serve(tmp_path, upload_root=root.resolve()):
        with Swapper(target, picture, pipe, fifo):
            outcomes = [served.call("upload_media", {"file_path": str(target)}) for _ in range(RACES)]
        bodies = [r.body for r in served.emulator.requests if r.path.endswith("uploadMedia")]
    texts = [check_outcome("upload_media", outcome) for outcome in outcomes]
    assert any("not a regular file" in text for text in texts), "the pipe was never seen: no race was run"
    assert all(picture in body for body in bodies)  # never an empty or partial read of the pipe


# --- the HTTP endpoint -------------------------------------------------------------------------

PROTOCOL = "2025-06-18"


@dataclass
class Endpoint:
    base: str
    http: httpx.Client
    session_id: str

    def post(
        self, body: bytes, headers: dict[str, str] | None = None, session: bool = True
    ) -> httpx.Response:
        sent = dict(MCP_HEADERS)
        if session:
            sent |= {"mcp-session-id": self.session_id, "mcp-protocol-version": PROTOCOL}
        return self.http.post(f"{self.base}/mcp", content=body, headers=sent | (headers or {}))


def _initialize(http: httpx.Client, base: str) -> str:
    init = {
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL,
            "capabilities": {},
            "clientInfo": {"name": "fuzz", "version": "0"},
        },
    }  # fmt: skip
    response = http.post(f"{base}/mcp", json=init, headers=MCP_HEADERS)
    assert response.status_code == 200, response.text
    session_id = response.headers["mcp-session-id"]
    done = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    headers = MCP_HEADERS | {"mcp-session-id": session_id, "mcp-protocol-version": PROTOCOL}
    assert http.post(f"{base}/mcp", json=done, headers=headers).status_code == 202
    return session_id


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[Endpoint]:
    emulator = Emulator(api_keys=[TEST_KEY], latency=0.0)
    api = atlas_client(
        api_key=TEST_KEY,
        base_url=EMULATOR_URL,
        transport=httpx.ASGITransport(app=emulator.app),
        poll_schedule=FAST_POLLS,
    )
    settings_ = Settings(api_key=TEST_KEY, wait_seconds=2, max_upload_mb=0.25, save=False)
    app = create_http_app(Runtime.create(settings_, client=api, remote=True))
    with serve_in_thread(app, graceful=1.0) as base, httpx.Client(timeout=CALL_BOUND) as http:
        yield Endpoint(base, http, _initialize(http, base))


def _messages(response: httpx.Response) -> list[dict[str, Any]]:
    """JSON-RPC messages of a response (a JSON body or an SSE stream)."""
    if not response.content:
        return []
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        return [
            json.loads(line[5:])
            for line in response.text.splitlines()
            if line.startswith("data:") and line[5:].strip()
        ]
    return [json.loads(response.content)]


def check_http(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    assert TRACEBACK not in response.text and 'File "/' not in response.text, response.text[:2000]
    if response.status_code >= 400 and response.content:
        body = json.loads(response.content)  # errors are JSON, not an HTML or text page
        if "error" in body:
            assert isinstance(body["error"].get("message"), str) and body["error"]["message"].strip()
    for message in _messages(response):
        if "error" in message:
            assert message["error"]["message"].strip()
        if "result" in message and message["result"].get("isError"):
            text = " ".join(block.get("text", "") for block in message["result"].get("content", []))
            assert text.strip() and not re.fullmatch(r"Error executing tool \w+", text.strip()), text


def endpoint_keeps_serving(endpoint: Endpoint) -> None:
    arguments = {"prompt": "fox", "dry_run": True}
    call = {
        "jsonrpc": "2.0",
        "id": 99,
        "method": "tools/call",
        "params": {"name": "generate_image", "arguments": arguments},
    }
    response = endpoint.post(json.dumps(call).encode())
    assert response.status_code == 200
    [message] = _messages(response)
    assert message["result"]["isError"] is False


def _json_bytes(value: Any) -> bytes:
    try:
        return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")
    except (ValueError, TypeError):
        return repr(value).encode("utf-8", "surrogatepass")


RPC_METHODS = st.sampled_from(
    ["tools/call", "tools/list", "initialize", "ping", "resources/read", "prompts/get", "logging/setLevel",
     "completion/complete", "notifications/cancelled", "x/unknown", ""]
)  # fmt: skip
RPC_IDS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.text(max_size=10),
    st.none(),
    st.floats(),
    st.lists(st.integers(), max_size=2),
)
RPC_MESSAGES = st.one_of(
    st.fixed_dictionaries(
        {"jsonrpc": st.sampled_from(["2.0", "1.0", 2.0]) | VALUE, "method": RPC_METHODS | TEXT},
        optional={"id": RPC_IDS, "params": VALUE},
    ),
    st.fixed_dictionaries(
        {
            "jsonrpc": st.just("2.0"),
            "id": st.integers(1, 1000),
            "method": st.just("tools/call"),
            "params": st.fixed_dictionaries(
                {
                    "name": st.sampled_from(
                        [
                            "generate_image",
                            "edit_image",
                            "generate_variations",
                            "get_prediction",
                            "upload_media",
                            "list_models",
                            "nope",
                        ]
                    )
                    | TEXT
                },
                optional={"arguments": VALUE | GENERATE_ARGS, "_meta": VALUE},
            ),
        },
    ),  # fmt: skip
    st.lists(JSON, max_size=3),  # batches and junk arrays
    VALUE,
)


@PROPERTY_SETTINGS
@given(message=RPC_MESSAGES, with_session=st.booleans())
def test_http_endpoint_answers_arbitrary_json_rpc_with_a_4xx_or_an_error(
    endpoint: Endpoint, message: Any, with_session: bool
) -> None:
    check_http(endpoint.post(_json_bytes(message), session=with_session))
    endpoint_keeps_serving(endpoint)


@settings(PROPERTY_SETTINGS, max_examples=40)
@given(
    body=st.binary(max_size=512)
    | st.text(ANY_CHAR, max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))
)
def test_http_endpoint_answers_arbitrary_bytes_with_a_4xx(endpoint: Endpoint, body: bytes) -> None:
    response = endpoint.post(body)
    check_http(response)
    endpoint_keeps_serving(endpoint)


@pytest.mark.parametrize(
    ("headers", "body", "statuses"),
    [
        ({"content-type": "text/plain"}, b"{}", {400, 415}),
        ({"accept": "text/html"}, b'{"jsonrpc":"2.0","id":1,"method":"ping"}', {406}),
        ({"mcp-session-id": "not-a-session"}, b'{"jsonrpc":"2.0","id":1,"method":"ping"}', {400, 404}),
        ({"host": "evil.example"}, b'{"jsonrpc":"2.0","id":1,"method":"ping"}', {400, 403, 421}),
        ({"origin": "http://evil.example"}, b'{"jsonrpc":"2.0","id":1,"method":"ping"}', {400, 403}),
        ({}, b"{" * 100_000, {400}),
        (
            {},
            b'{"jsonrpc":"2.0","id":1,"method":"ping","params":' + b"[" * 50_000 + b"]" * 50_000 + b"}",
            {200, 400},
        ),
        (
            {},
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"generate_image","arguments":{"prompt":NaN}}}',
            {200, 400},
        ),
        (
            {},
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"generate_image","arguments":{"prompt":"\\ud800"}}}',
            {200, 400},
        ),
        ({}, b"\xff\xfe\x00garbage", {400}),
    ],
)
def test_http_endpoint_refuses_malformed_requests_cleanly(
    endpoint: Endpoint, headers: dict[str, str], body: bytes, statuses: set[int]
) -> None:
    response = endpoint.post(body, headers=headers)
    check_http(response)
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    endpoint_keeps_serving(endpoint)


def test_http_endpoint_refuses_a_body_over_the_limit_without_reading_it_all(endpoint: Endpoint) -> None:
    big = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"' + b"a" * (2 * 1024 * 1024) + b'"}}'
    response = endpoint.post(big)
    check_http(response)
    assert response.status_code == 413
    endpoint_keeps_serving(endpoint)


def test_http_endpoint_survives_a_client_that_disconnects_mid_body(endpoint: Endpoint) -> None:
    host, port = endpoint.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.sendall(
            b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Accept: application/json, text/event-stream\r\nContent-Length: 100000\r\n\r\n{"jsonrpc":'
        )
    endpoint_keeps_serving(endpoint)
