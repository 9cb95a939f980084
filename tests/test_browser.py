"""The picture viewer in a real browser: what a person sees in a host that speaks MCP Apps.

Debian's Chromium (the ``chromium`` package, never a browser download) runs headless under
Playwright and opens ``browser/host.html`` (see :mod:`tests.browser_host`), which makes the
assistant's tool call against the emulator and renders our ``ui://`` app in a sandboxed frame on
another origin, with the CSP our metadata declares. The tests look at the page as a person would
and at what the view asked the host for.

Without Chromium or Playwright the tests are skipped with the reason; with
``ATLAS_BROWSER_REQUIRED=1`` or in CI (``CI=true``) they fail instead. The viewer and gallery screenshots in
``docs/`` (shown by the README) are written by these tests.
"""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops

from atlas_image_mcp.constants import VIEWER_POLL_WAIT_SECONDS
from atlas_image_mcp.runtime import Runtime
from atlas_image_mcp.server import make_server
from atlas_image_mcp.settings import Settings

from .browser_host import HostSite, serve_host
from .conftest import TEST_KEY, FakeClock, make_api
from .emulation import Emulator

CHROMIUM = ("/usr/lib/chromium/chromium", "/usr/lib/chromium-browser/chromium-browser")
DOCS = Path(__file__).resolve().parents[1] / "docs"
WAIT_MS = 20_000
#: Tools the view may call. edit_image and generate_variations are the Edit and Variations actions.
VIEW_TOOLS = {"get_prediction", "show_gallery", "edit_image", "generate_variations"}

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # CI services set CI=true
    flags = (os.environ.get("ATLAS_BROWSER_REQUIRED", ""), os.environ.get("CI", ""))
    required = any(flag.strip().lower() in ("1", "true", "yes") for flag in flags)

    def unavailable(reason: str) -> None:
        if required:
            pytest.fail(f"the browser tests must run here (ATLAS_BROWSER_REQUIRED), but {reason}")
        pytest.skip(reason)

    executable = next((path for path in CHROMIUM if os.access(path, os.X_OK)), None)
    if executable is None:
        unavailable("Chromium is not installed (Debian/Ubuntu: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable('Playwright is not installed (pip install ".[test]")')
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic"],
        )
        try:
            yield launched
        finally:
            launched.close()


class Viewer:
    """One page of the test host showing our app, plus what it recorded."""

    def __init__(self, browser: Any, site: HostSite) -> None:
        from playwright.sync_api import expect

        expect.set_options(timeout=WAIT_MS)
        self.context = browser.new_context(viewport={"width": 780, "height": 900}, device_scale_factor=1)
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        self.site = site
        self.view = self.page.frame_locator("#slot iframe").frame_locator("iframe")

    def _console(self, message: Any) -> None:
        if message.type in ("error", "warning"):
            self.problems.append(f"console {message.type}: {message.text}")

    def open(self, tool: str, arguments: dict[str, Any]) -> None:
        self.page.goto(self.site.url(tool, arguments))

    def host(self, expression: str) -> Any:
        return self.page.evaluate(f"() => window.__host.{expression}")

    def wait_host(self, condition: str) -> None:
        """Wait until ``window.__host.<condition>`` holds."""
        self.page.wait_for_function(f"() => window.__host && window.__host.{condition}", timeout=WAIT_MS)

    def app_frame(self) -> Any:
        """The view's own frame (host page -> sandbox proxy -> view)."""
        self.view.locator("#app").wait_for()
        return next(f for f in self.page.frames if f.parent_frame and f.parent_frame.parent_frame)

    def screenshot(self, name: str) -> None:
        """Keep the README's screenshot ``docs/<name>`` up to date (written only when it changed)."""
        self.fitted()
        self.page.mouse.move(0, 0)  # no hover highlight
        png = self.page.locator("#slot iframe").screenshot(animations="disabled")
        target = DOCS / name
        if not target.exists() or not _looks_the_same(target.read_bytes(), png):
            target.parent.mkdir(exist_ok=True)
            target.write_bytes(png)

    def fitted(self) -> None:
        """Wait until the host has sized the frame to the view's present height."""
        height = self.app_frame().evaluate(
            "() => Math.ceil(document.documentElement.getBoundingClientRect().height)"
        )
        sizes = "log.filter((m) => m.method === 'ui/notifications/size-changed')"
        self.wait_host(f"{sizes}.at(-1)?.params.height === {height}")

    def click(self, target: Any) -> None:
        """Click ``target`` once the host has sized the frame to the view. Until then a frame the view
        has outgrown scrolls, and the host's resize puts the scroll back: a target below a card that
        just grew can move between Playwright's checks and its click, which then lands elsewhere."""
        self.fitted()
        target.click()

    def received(self) -> str:
        """Everything the host sent into the frame, as one string."""
        return json.dumps(self.host("log.filter((m) => m.dir === 'host->app')"))

    def close(self) -> None:
        self.context.close()


def _looks_the_same(old: bytes, new: bytes) -> bool:
    """Equal but for a few anti-aliased pixels (a busy machine can round a border differently)."""
    with Image.open(io.BytesIO(old)) as before, Image.open(io.BytesIO(new)) as after:
        if before.size != after.size:
            return False
        diff = ImageChops.difference(before.convert("RGB"), after.convert("RGB")).convert("L")
        return sum(diff.histogram()[9:]) <= 100  # pixels that differ by more than 8 levels


@pytest.fixture
def home() -> Path:
    folder = Path.home()  # a scratch folder (conftest's clean_env)
    (folder / "Pictures").mkdir(parents=True, exist_ok=True)
    return folder


def _runtime(home: Path, emulator: Emulator, **changes: Any) -> Runtime:
    # Pictures go where they go for a real user: ~/Pictures/atlas-image-mcp (the default).
    settings = Settings(api_key=TEST_KEY, wait_seconds=10, **changes)
    return Runtime.create(settings, client=make_api(emulator))


@pytest.fixture
def open_viewer(browser: Any, home: Path, emulator: Emulator) -> Iterator[Any]:
    """``open_viewer(emulator=None, **settings) -> (Viewer, HostSite)``: a host page on a server."""
    with ExitStack() as stack:

        def _open(emu: Emulator | None = None, **changes: Any) -> tuple[Viewer, HostSite]:
            runtime = _runtime(home, emu or emulator, **changes)
            site = stack.enter_context(serve_host(make_server(runtime)))
            stack.callback(site.run, runtime.aclose)
            viewer = Viewer(browser, site)
            stack.callback(viewer.close)
            return viewer, site

        yield _open


def facts_of(card: Any) -> dict[str, str]:
    """The facts under a result (Model, Seed, Price, Size...), as shown."""
    pairs = "[...dl.children].map((d) => [d.firstChild.textContent, d.lastChild.textContent])"
    return card.locator(".facts").evaluate(f"(dl) => Object.fromEntries({pairs})")


def assert_private(viewer: Viewer, home: Path) -> None:
    received = viewer.received()
    for secret in (str(home), str(home.resolve()), str(home / "Pictures"), TEST_KEY):
        assert secret not in received, f"{secret!r} reached the frame"


def assert_only_our_tools(viewer: Viewer) -> None:
    calls = viewer.host("calls")
    assert {call["name"] for call in calls} <= VIEW_TOOLS, calls
    reads = viewer.host("reads")
    assert all(uri.startswith("atlas-image://predictions/") for uri in reads), reads


_HANDSHAKE = {
    "ui/notifications/sandbox-proxy-ready",
    "ui/notifications/sandbox-resource-ready",
    "ui/initialize",
    "ui/notifications/initialized",
    "ui/notifications/tool-input",
    "ui/notifications/tool-result",
}


# --- the viewer ------------------------------------------------------------------------------------


def test_the_viewer_shows_the_picture_at_its_size_with_its_prompt_model_seed_price_and_status(
    open_viewer: Any, home: Path
) -> None:
    from playwright.sync_api import expect

    viewer, _ = open_viewer()
    viewer.open(
        "generate_image", {"prompt": "a red fox in the snow", "width": 1024, "height": 768, "seed": 7}
    )
    card = viewer.view.locator(".card")
    expect(card.locator(".status")).to_have_text("Completed")
    expect(card.locator(".prompt")).to_have_text("a red fox in the snow")
    assert facts_of(card) == {"Model": "flux-schnell", "Seed": "7", "Price": "$0.003", "Size": "1024 × 768"}

    thumb = card.locator(".frame img")
    expect(thumb).to_have_js_property("complete", True)
    assert thumb.evaluate("(i) => [i.naturalWidth, i.naturalHeight]") == [512, 384]  # the result's preview
    box = thumb.bounding_box()
    assert box and abs(box["width"] / box["height"] - 1024 / 768) < 0.01
    viewer.screenshot("viewer.png")

    card.locator(".frame").click()  # full size: the original picture, read through the host
    full = viewer.view.locator("#full-img")
    expect(viewer.view.locator("#full-note")).to_have_text("1024 × 768 px")
    assert full.evaluate("(i) => [i.naturalWidth, i.naturalHeight]") == [1024, 768]
    full.click()  # actual pixels
    expect(full).to_have_class("actual")
    assert full.bounding_box()["width"] == 1024
    viewer.view.get_by_role("button", name="Close").click()
    expect(card).to_be_visible()

    # The handshake comes first, and the host sends the view nothing before it.
    order = [m.get("method") for m in viewer.host("log") if m.get("method") in _HANDSHAKE]
    assert order[:5] == [
        "ui/notifications/sandbox-proxy-ready",
        "ui/notifications/sandbox-resource-ready",
        "ui/initialize",
        "ui/notifications/initialized",
        "ui/notifications/tool-input",
    ]
    assert viewer.host("events.filter((e) => e.kind === 'early')") == []
    assert_private(viewer, home)
    assert_only_our_tools(viewer)
    viewer.page.evaluate("() => window.__host.teardown('the conversation moved on')")
    viewer.wait_host("events.some((e) => e.kind === 'torn-down')")  # the view answered ui/resource-teardown
    assert viewer.problems == []


def test_a_call_that_needs_the_persons_go_ahead_shows_what_it_would_cost_and_sends_nothing(
    open_viewer: Any, home: Path, emulator: Emulator
) -> None:
    from playwright.sync_api import expect

    viewer, _ = open_viewer(confirm_above_usd="0.01")  # this host cannot ask the person (no elicitation)
    viewer.open(
        "generate_image", {"prompt": "four foxes", "model": "black-forest-labs/flux-dev", "num_images": 4}
    )
    card = viewer.view.locator(".card")
    expect(card.locator(".status")).to_have_text("Not sent")
    expect(card.locator(".note")).to_contain_text("max_cost_usd=0.048")
    expect(card.get_by_role("progressbar")).to_have_count(0)
    assert facts_of(card) == {"Model": "flux-dev", "Price": "about $0.048"}
    assert [c for c in viewer.host("calls") if c["name"] == "get_prediction"] == []  # nothing to follow
    assert emulator.count("POST", "/api/v1/model/generateImage") == 0
    assert_private(viewer, home)
    assert viewer.problems == []


PICTURE_CALLS = ("edit_image", "generate_variations")


def test_download_edit_and_variations_send_the_picture_and_call_the_right_tools(
    open_viewer: Any, home: Path
) -> None:
    from playwright.sync_api import expect

    viewer, _ = open_viewer()
    viewer.open("generate_image", {"prompt": "a lighthouse at dusk", "width": 768, "height": 512, "seed": 3})
    card = viewer.view.locator(".card", has_text="a lighthouse at dusk").last  # new cards go on top
    expect(card.locator(".status")).to_have_text("Completed")
    result = viewer.host("log.find((m) => m.method === 'ui/notifications/tool-result').params")
    pid = result["structuredContent"]["prediction_id"]
    picture_uri = f"atlas-image://predictions/{pid}/images/1"

    card.get_by_role("button", name="Download").click()
    viewer.wait_host("events.some((e) => e.kind === 'download')")
    [download] = [e for e in viewer.host("events") if e["kind"] == "download"]
    [item] = download["contents"]
    assert item["type"] == "resource"
    assert item["resource"]["uri"] == f"file:///{pid}-1.jpg" and item["resource"]["mimeType"] == "image/jpeg"
    with Image.open(io.BytesIO(base64.b64decode(item["resource"]["blob"]))) as saved:
        assert saved.size == (768, 512)  # the full picture, not the preview

    card.get_by_role("button", name="Edit").click()
    card.get_by_role("textbox", name="What should change?").fill("make the sky pink")
    card.get_by_role("button", name="Apply edit").click()
    viewer.wait_host("calls.some((c) => c.name === 'edit_image')")
    [edit] = [c for c in viewer.host("calls") if c["name"] == "edit_image"]
    assert edit["arguments"] == {"prompt": "make the sky pink", "image": picture_uri, "wait": False}
    edit_card = viewer.view.locator(".card", has_text="Edit of picture 1")
    expect(edit_card.locator(".prompt")).to_have_text("make the sky pink")
    expect(edit_card.locator(".status")).to_have_text("Completed")  # the real edit_image ran and filled in

    viewer.click(card.get_by_role("button", name="Variations"))  # below the edit's card, which just grew
    viewer.click(card.get_by_role("button", name="Make 2 variations"))
    viewer.wait_host("calls.some((c) => c.name === 'generate_variations')")
    [vary] = [c for c in viewer.host("calls") if c["name"] == "generate_variations"]
    assert vary["arguments"] == {"prediction_id": pid, "count": 2, "wait": False}
    variations_card = viewer.view.locator(".card", has_text="2 variations of picture 1")
    expect(variations_card).to_be_visible()
    expect(variations_card.locator(".status")).to_have_text("Completed")
    assert all(c["outcome"] == "sent" for c in viewer.host("calls") if c["name"] in PICTURE_CALLS)

    assert_private(viewer, home)
    assert_only_our_tools(viewer)


def test_a_running_job_shows_progress_and_fills_in_through_short_get_prediction_calls(
    open_viewer: Any, home: Path, clock: FakeClock
) -> None:
    from playwright.sync_api import expect

    slow = Emulator(api_keys=[TEST_KEY], latency=30.0, clock=clock)
    viewer, _ = open_viewer(slow)
    viewer.open(
        "generate_image", {"prompt": "a slow red fox", "width": 640, "height": 640, "seed": 5, "wait": False}
    )
    card = viewer.view.locator(".card")
    expect(card.locator(".status")).to_contain_text("Working")
    expect(card.get_by_role("progressbar")).to_be_visible()
    expect(card.locator(".prompt")).to_have_text("a slow red fox")
    viewer.wait_host("calls.some((c) => c.name === 'get_prediction')")  # the view is polling

    clock.advance(31)  # the job finishes at the emulator
    expect(card.locator(".status")).to_have_text("Completed")
    expect(card.get_by_role("progressbar")).to_have_count(0)
    assert facts_of(card)["Size"] == "640 × 640"
    expect(card.locator(".frame img")).to_have_js_property("complete", True)
    assert card.locator(".frame img").evaluate("(i) => i.naturalWidth") == 512

    polls = [c for c in viewer.host("calls") if c["name"] == "get_prediction"]
    assert polls and all(
        c["arguments"]["wait_seconds"] == VIEWER_POLL_WAIT_SECONDS and c["outcome"] == "sent" for c in polls
    )
    assert VIEWER_POLL_WAIT_SECONDS < 60  # well under a host's timeout for a call from a frame
    assert_private(viewer, home)
    assert_only_our_tools(viewer)
    assert viewer.problems == []


# --- the gallery -----------------------------------------------------------------------------------


def test_the_gallery_shows_this_sessions_pictures_newest_first_from_the_viewer_and_as_a_tool(
    open_viewer: Any, home: Path
) -> None:
    from playwright.sync_api import expect

    viewer, site = open_viewer()
    earlier = [
        ("a lighthouse at dusk", 11),
        ("a bowl of ramen, top view", 12),
        ("a paper boat on a pond", 13),
    ]
    for prompt, seed in earlier:  # the assistant made these earlier in the conversation
        assert (
            site.call(
                "generate_image", {"prompt": prompt, "width": 768, "height": 768, "seed": seed}
            ).is_error
            is False
        )
    viewer.open(
        "generate_image", {"prompt": "a red fox in the snow", "width": 1024, "height": 768, "seed": 7}
    )
    expect(viewer.view.locator(".card .status")).to_have_text("Completed")

    viewer.view.get_by_role("button", name="Gallery").click()
    items = viewer.view.locator(".gallery-item")
    expect(items).to_have_count(4)
    expect(viewer.view.locator("#gallery-note")).to_have_text("4 pictures, newest first.")
    captions = items.locator("figcaption").all_text_contents()
    assert captions == [
        "a red fox in the snow · flux-schnell",
        *(f"{prompt} · flux-schnell" for prompt, _ in reversed(earlier)),
    ]
    for n in range(4):
        img = items.nth(n).locator(".frame img")
        expect(img).to_have_js_property("complete", True)
        assert img.evaluate("(i) => i.naturalWidth") in (1024, 768)  # the pictures themselves
        for action in ("Download", "Edit", "Variations"):
            expect(items.nth(n).get_by_role("button", name=action)).to_be_visible()
    viewer.screenshot("gallery.png")

    items.nth(2).locator(".frame").click()
    expect(viewer.view.locator("#full-note")).to_have_text("768 × 768 px")
    viewer.view.get_by_role("button", name="Close").click()
    expect(items).to_have_count(4)
    viewer.view.get_by_role("button", name="Back").click()
    expect(viewer.view.locator(".card .prompt")).to_have_text("a red fox in the snow")

    viewer.open("show_gallery", {})  # the assistant can open it too
    expect(viewer.view.locator(".gallery-item")).to_have_count(4)
    expect(viewer.view.locator(".card")).to_have_count(0)
    assert_private(viewer, home)
    assert_only_our_tools(viewer)
    assert viewer.problems == []


# --- what the frame may do -------------------------------------------------------------------------

_ASK = """([method, params]) => new Promise((resolve) => {
  const id = "probe-" + Math.random();
  window.addEventListener("message", function answer(event) {
    if (event.data && event.data.id === id) {
      window.removeEventListener("message", answer);
      resolve(event.data);
    }
  });
  window.parent.postMessage({ jsonrpc: "2.0", id, method, params }, "*");
})"""

_BLOCKED = """(url) => new Promise((resolve) => {
  const seen = [];
  document.addEventListener("securitypolicyviolation", (e) => seen.push(e.effectiveDirective));
  fetch(url).catch(() => {});
  const img = new Image();
  img.onerror = () => setTimeout(() => resolve(seen), 0);
  img.src = url + "/picture.png";
})"""


def test_the_frame_can_call_only_our_app_visible_tools_and_reach_nothing_outside(
    open_viewer: Any, home: Path
) -> None:
    from playwright.sync_api import expect

    viewer, site = open_viewer()
    viewer.open("generate_image", {"prompt": "a red fox", "width": 512, "height": 512, "seed": 1})
    expect(viewer.view.locator(".card .status")).to_have_text("Completed")
    frame = viewer.app_frame()

    listed = frame.evaluate(_ASK, ["tools/list", {}])["result"]["tools"]
    assert "upload_media" not in {tool["name"] for tool in listed}  # it reads local files
    refused = frame.evaluate(
        _ASK, ["tools/call", {"name": "upload_media", "arguments": {"file_path": "/etc/hosts"}}]
    )
    assert refused["error"]["code"] == -32602
    foreign = frame.evaluate(_ASK, ["tools/call", {"name": "send_email", "arguments": {}}])
    assert foreign["error"]["code"] == -32602
    assert [c["outcome"] for c in viewer.host("calls") if c["name"] in ("upload_media", "send_email")] == [
        "refused",
        "refused",
    ]

    blocked = frame.evaluate(_BLOCKED, f"http://127.0.0.1:{site.port}")  # even the host's own origin
    assert {"connect-src", "img-src"} <= set(blocked)
    assert_private(viewer, home)


# --- a batch ---------------------------------------------------------------------------------------


def test_a_batch_is_one_grid_in_the_viewer_and_one_item_in_the_gallery(open_viewer: Any, home: Path) -> None:
    from playwright.sync_api import expect

    viewer, _ = open_viewer()
    prompts = ["a red logo", "a blue logo", "a green logo"]
    viewer.open(
        "generate_image",
        {"prompt": prompts[0], "prompts": prompts[1:], "width": 512, "height": 512, "seed": 4},
    )
    card = viewer.view.locator(".card")
    expect(card.locator(".status")).to_have_text("Completed")
    expect(card.locator(".head")).to_contain_text("Batch of 3 jobs")
    pictures = card.locator(".pictures figure")
    expect(pictures).to_have_count(3)
    assert pictures.locator("figcaption").all_text_contents() == [
        f"Job {n} · {prompt}" for n, prompt in enumerate(prompts, start=1)
    ]
    for n in range(3):
        expect(pictures.nth(n).locator(".frame img")).to_have_js_property("complete", True)
    result = viewer.host("log.find((m) => m.method === 'ui/notifications/tool-result').params")
    second = result["structuredContent"]["jobs"][1]["prediction_id"]
    viewer.click(pictures.nth(1).get_by_role("button", name="Variations"))
    viewer.click(pictures.nth(1).get_by_role("button", name="Make 1 variation"))
    viewer.wait_host("calls.some((c) => c.name === 'generate_variations')")
    [vary] = [c for c in viewer.host("calls") if c["name"] == "generate_variations"]
    assert vary["arguments"]["prediction_id"] == second  # the picture's own job, not the batch's first

    viewer.view.get_by_role("button", name="Gallery").click()
    batch = viewer.view.locator(".gallery-item.batch")
    expect(batch).to_have_count(1)
    expect(batch.locator("figure")).to_have_count(3)
    expect(batch.locator(".label").first).to_have_text("Batch of 3 pictures")
    assert_private(viewer, home)
    assert_only_our_tools(viewer)
    assert viewer.problems == []


def test_a_running_batch_fills_its_grid_as_each_job_finishes(
    open_viewer: Any, home: Path, clock: FakeClock
) -> None:
    from playwright.sync_api import expect

    slow = Emulator(api_keys=[TEST_KEY], latency=30.0, clock=clock)
    viewer, _ = open_viewer(slow)
    viewer.open(
        "generate_image", {"prompt": "a slow fox", "count": 2, "width": 512, "height": 512, "wait": False}
    )
    card = viewer.view.locator(".card")
    expect(card.locator(".status")).to_contain_text("Working")
    viewer.wait_host("calls.filter((c) => c.name === 'get_prediction').length >= 2")  # each job is followed
    clock.advance(31)
    expect(card.locator(".status")).to_have_text("Completed")
    expect(card.locator(".pictures figure")).to_have_count(2)
    polled = {c["arguments"]["prediction_id"] for c in viewer.host("calls") if c["name"] == "get_prediction"}
    assert polled == set(slow.predictions)
    assert_private(viewer, home)
    assert viewer.problems == []
