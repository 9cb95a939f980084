"""From a picture to the file a project needs: save_as in the workspace, exact sizes and formats, export.

Through a real MCP client (in memory, on a handshake-era session so that it can declare its
workspace as MCP roots) against the server on the emulator: each test checks the files on disk,
what the result says about them, and what the emulator received (nothing, where nothing may be).
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Callable
from pathlib import Path, PureWindowsPath
from typing import Any

import mcp_types as types
import pytest
from mcp.client.extension import advertise
from PIL import Image

from atlas_image_mcp import workspace
from atlas_image_mcp.workspace import Root, is_system_folder, workspace_of

from .conftest import text_of
from .emulation import Emulator, Fault

GENERATE = "/api/v1/model/generateImage"


def roots_of(*folders: Path) -> Callable[..., Any]:
    """A client's ``roots/list`` answer: ``folders`` as ``file://`` roots."""

    async def listed(context: Any) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri=folder.as_uri()) for folder in folders])

    return listed


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    return folder


@pytest.fixture
def in_project(connect: Callable[..., Any], project: Path) -> Callable[..., Any]:
    """``connect`` for a client that declares ``project`` as its one root."""

    def open_client(**changes: Any) -> Any:
        options = {
            "mode": "legacy",
            "list_roots_callback": roots_of(project),
            **changes.pop("client_options", {}),
        }
        return connect(client_options=options, **changes)

    return open_client


async def call(client: Any, tool: str = "generate_image", **arguments: Any) -> Any:
    return await client.call_tool(
        tool, {"prompt": "a lighthouse", **arguments} if tool == "generate_image" else arguments
    )


def posts(emulator: Emulator) -> list[dict[str, Any]]:
    return [r.json for r in emulator.requests if r.method == "POST" and r.path == GENERATE]


# --- save_as, output_size, output_format ------------------------------------------------------------


async def test_save_as_writes_the_exact_size_and_format_into_the_client_root_and_keeps_the_original(
    in_project, project: Path, emulator: Emulator, output_dir: Path
) -> None:
    async with in_project() as client:
        result = await call(client, save_as="assets/hero.webp", output_size="1200x630")
        pid = result.structured_content["prediction_id"]
        original = await client.read_resource(f"atlas-image://predictions/{pid}/images/1")
    assert result.is_error is False, text_of(result)
    written = project / "assets" / "hero.webp"
    with Image.open(written) as img:
        assert (img.format, img.size) == ("WEBP", (1200, 630))
    [out] = result.structured_content["outputs"]
    assert out["file"] == {"path": str(written), "relative": "assets/hero.webp", "width": 1200, "height": 630}
    # the model was asked for the nearest size it makes at that ratio (sides of 16), cropped here
    assert [body["size"] for body in posts(emulator)] == ["1200*640"]
    assert (out["width"], out["height"], Path(out["path"]).parent) == (1200, 640, output_dir)
    with Image.open(io.BytesIO(base64.b64decode(original.contents[0].blob))) as img:
        assert img.size == (1200, 640)  # the upstream original stays the resource
    text = text_of(result)
    assert f"written to: {written} (assets/hero.webp), 1200x630" in text and "cropped to 1200x630" in text
    [thumb] = [b for b in result.content if b.type == "image"]
    with Image.open(io.BytesIO(base64.b64decode(thumb.data))) as img:
        assert img.size == (512, 269)  # the picture shown is the one delivered


async def test_a_second_call_does_not_overwrite_unless_asked_and_refuses_before_sending(
    in_project, project: Path, emulator: Emulator
) -> None:
    async with in_project() as client:
        first = await call(client, save_as="hero.png", seed=1)
        before = (project / "hero.png").read_bytes()
        again = await call(client, save_as="hero.png", seed=2)
        sent_before_overwrite = len(posts(emulator))
        replaced = await call(client, save_as="hero.png", seed=2, overwrite=True)
    assert first.is_error is False and again.is_error is True
    assert "already exists" in text_of(again) and "overwrite=true" in text_of(again)
    assert sent_before_overwrite == 1  # the refused call sent nothing
    assert replaced.is_error is False and len(posts(emulator)) == 2
    assert (project / "hero.png").read_bytes() != before
    with Image.open(project / "hero.png") as img:
        assert img.format == "PNG"  # the format follows the extension (the model made a JPEG)


@pytest.mark.parametrize(
    ("save_as", "words"),
    [
        ("../outside.png", "goes up a folder"),
        ("assets/../../outside.png", "goes up a folder"),
        ("/etc/outside.png", "outside the workspace"),
        ("~/outside.png", "outside the workspace"),
        ("~root/outside.png", "another user's home folder"),
        ("C:\\Users\\me\\hero.png", "is a Windows path"),
        ("C:/Users/me/hero.png", "is a Windows path"),
        ("\\\\server\\share\\hero.png", "is a Windows path"),
        ("assets/", "names a folder"),
        ("hero.gif", "must end in an extension"),
        ("hero", "must end in an extension"),
        ("file:///tmp/hero.png", "is a URI"),
    ],
)
async def test_paths_that_leave_or_do_not_name_a_file_in_the_workspace_are_refused_in_a_sentence(
    in_project, project: Path, emulator: Emulator, save_as: str, words: str
) -> None:
    async with in_project() as client:
        result = await call(client, save_as=save_as)
    assert result.is_error is True and words in text_of(result), text_of(result)
    assert posts(emulator) == [] and list(project.iterdir()) == []


@pytest.mark.parametrize("walk", ["by descriptor", "by path"])
async def test_a_link_out_of_the_workspace_is_refused(
    in_project, project: Path, tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch, walk: str
) -> None:
    """Refused either way the path is walked: from descriptors (POSIX), or checked folder by folder
    (where the system has no descriptor-relative calls, as on Windows)."""
    if walk == "by path":
        monkeypatch.setattr(workspace, "_BY_DESCRIPTOR", False)
    outside = tmp_path / "outside"
    outside.mkdir()
    (project / "out").symlink_to(outside)
    async with in_project() as client:
        refused = await call(client, save_as="out/hero.png")
        written = await call(client, save_as="in/hero.png")
    assert refused.is_error is True and "link" in text_of(refused), text_of(refused)
    assert (
        list(outside.iterdir()) == []
        and written.is_error is False
        and (project / "in" / "hero.png").is_file()
    )


async def test_a_link_out_of_the_workspace_is_refused_and_one_inside_is_followed(
    in_project, project: Path, tmp_path: Path, emulator: Emulator
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (project / "out").symlink_to(outside)
    (project / "deep").mkdir()
    (project / "deep" / "up").symlink_to("../../outside")
    (project / "site").mkdir()
    (project / "public").symlink_to("site")
    async with in_project() as client:
        absolute = await call(client, save_as="out/hero.png")
        relative = await call(client, save_as="deep/up/hero.png")
        inside = await call(client, save_as="public/img/hero.png")
    for refused in (absolute, relative):
        assert refused.is_error is True and "points out of the workspace" in text_of(refused)
    assert list(outside.iterdir()) == [] and len(posts(emulator)) == 1
    assert inside.is_error is False and (project / "site" / "img" / "hero.png").is_file()


async def test_a_link_placed_after_the_check_is_still_not_followed_out(
    in_project, project: Path, tmp_path: Path, emulator: Emulator
) -> None:
    """The write walks the path again from the root's descriptor: what the check saw does not matter."""
    outside = tmp_path / "outside"
    outside.mkdir()

    async def swap_while_the_job_is_submitted(seconds: float) -> None:
        (project / "assets").symlink_to(outside)

    emulator.sleep = swap_while_the_job_is_submitted
    emulator.inject(Fault.delay(0), method="POST", path=GENERATE)
    async with in_project() as client:
        result = await call(client, save_as="assets/hero.png")
    assert list(outside.iterdir()) == []
    [out] = result.structured_content["outputs"]
    assert "points out of the workspace" in out["error"] and Path(out["path"]).is_file()  # the paid picture


async def test_several_pictures_get_numbered_names(in_project, project: Path) -> None:
    async with in_project() as client:
        result = await call(client, save_as="sprites/tree.jpg", num_images=3)
    assert result.is_error is False
    assert sorted(p.name for p in (project / "sprites").iterdir()) == [
        "tree-1.jpg",
        "tree-2.jpg",
        "tree-3.jpg",
    ]
    assert [o["file"]["relative"] for o in result.structured_content["outputs"]] == [
        "sprites/tree-1.jpg",
        "sprites/tree-2.jpg",
        "sprites/tree-3.jpg",
    ]


async def test_contain_pads_with_the_background_and_quality_sets_the_encoding(
    in_project, project: Path
) -> None:
    async with in_project() as client:
        result = await call(
            client, save_as="banner.jpg", output_size="900x300", fit="contain", background="#ff0000",
            quality=40, aspect_ratio="1:1",
        )  # fmt: skip
    assert result.is_error is False, text_of(result)
    with Image.open(project / "banner.jpg") as img:
        assert img.size == (900, 300)
        left, middle = img.convert("RGB").getpixel((5, 150)), img.convert("RGB").getpixel((450, 150))
    assert left[0] > 200 and left[1] < 60 and middle != left  # padded in red beside the square picture


async def test_output_format_alone_converts_into_the_output_folder_and_a_mismatch_is_refused(
    in_project, output_dir: Path, emulator: Emulator
) -> None:
    async with in_project() as client:
        converted = await call(client, output_format="webp")
        mismatch = await call(client, save_as="hero.png", output_format="webp")
    [out] = converted.structured_content["outputs"]
    assert out["mime_type"] == "image/jpeg" and out["file"]["relative"].endswith(".webp")
    with Image.open(output_dir / out["file"]["relative"]) as img:
        assert img.format == "WEBP"
    assert mismatch.is_error is True and "does not match save_as" in text_of(mismatch)
    assert len(posts(emulator)) == 1


async def test_flux_2_is_asked_for_the_delivered_type_or_for_png(in_project, project: Path, emulator) -> None:
    flux2 = "black-forest-labs/flux-2-dev/text-to-image"
    async with in_project() as client:
        await call(client, model=flux2, save_as="a.png")
        await call(client, model=flux2, save_as="b.webp")
        await call(client, model=flux2, save_as="c.jpg")
    assert [body.get("output_format") for body in posts(emulator)] == ["png", "png", "jpeg"]
    with Image.open(project / "b.webp") as img:
        assert img.format == "WEBP"


async def test_get_prediction_writes_an_earlier_picture_into_the_workspace(in_project, project: Path) -> None:
    async with in_project() as client:
        made = await call(client)
        pid = made.structured_content["prediction_id"]
        result = await client.call_tool("get_prediction", {"prediction_id": pid, "save_as": "later/hero.jpg"})
    assert result.is_error is False and (project / "later" / "hero.jpg").read_bytes()


async def test_a_dry_run_names_the_files_it_would_write_and_writes_nothing(in_project, project: Path) -> None:
    async with in_project() as client:
        result = await call(client, save_as="assets/hero.png", dry_run=True)
    assert f"It would write {project / 'assets' / 'hero.png'}." in text_of(result)
    assert list(project.iterdir()) == []


# --- where the workspace is ------------------------------------------------------------------------


async def test_without_roots_the_working_directory_is_the_workspace(
    connect, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    async with connect() as client:
        result = await call(client, save_as="hero.png")
    assert result.is_error is False and (folder / "hero.png").is_file()


@pytest.mark.parametrize("where", ["root", "read-only"])
async def test_a_root_or_read_only_working_directory_is_never_used(
    connect, tmp_path: Path, output_dir: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    folder = Path("/") if where == "root" else tmp_path / "locked"
    if where == "read-only":
        folder.mkdir()
        folder.chmod(0o555)
    monkeypatch.chdir(folder)
    async with connect() as client:
        result = await call(client, save_as="hero.png")
    assert result.is_error is False, text_of(result)
    assert Path(result.structured_content["outputs"][0]["file"]["path"]) == output_dir.resolve() / "hero.png"
    assert not (folder / "hero.png").exists()


def test_system_folders_of_either_system_are_never_a_workspace(tmp_path: Path) -> None:
    for system in ("C:\\Windows\\System32", "C:/", "D:\\", "c:\\program files\\app", "C:\\ProgramData"):
        assert is_system_folder(PureWindowsPath(system)), system
    assert not is_system_folder(PureWindowsPath("C:\\Users\\me\\project"))
    for system in ("/", "/usr/local/bin", "/etc", "/System/Library"):
        assert is_system_folder(Path(system)), system
    assert not is_system_folder(tmp_path)
    output = tmp_path / "out"
    assert workspace_of(None, cwd=Path("/"), output_dir=output, hosted=False).roots == (
        Root(output, "output folder"),
    )
    assert workspace_of(None, cwd=Path("/usr/bin"), output_dir=output, hosted=False).roots[0].origin == (
        "output folder"
    )


async def test_a_hosted_server_writes_only_into_its_operators_output_folder(
    connect, tmp_path: Path, output_dir: Path, emulator: Emulator
) -> None:
    async with connect(remote=True, output_dir=None) as client:
        refused = await call(client, save_as="hero.png")
    assert refused.is_error is True and "writes no files" in text_of(refused) and posts(emulator) == []
    async with connect(remote=True, output_dir=output_dir) as client:
        written = await call(client, save_as="site/hero.png")
        outside = await call(client, save_as=str(tmp_path / "elsewhere.png"))
    assert written.is_error is False, text_of(written)
    assert (output_dir / "site" / "hero.png").is_file()
    assert outside.is_error is True and "outside the workspace" in text_of(outside)


async def test_an_mcp_app_client_sees_workspace_paths_only(
    connect, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    apps = advertise("io.modelcontextprotocol/ui", {"mimeTypes": ["text/html;profile=mcp-app"]})
    async with connect(client_options={"extensions": [apps]}) as client:
        result = await call(client, save_as="assets/hero.png")
    file = result.structured_content["outputs"][0]["file"]
    assert file["path"] == "assets/hero.png" and str(folder) not in str(result.structured_content)
    assert (folder / "assets" / "hero.png").is_file()


# --- export_image ------------------------------------------------------------------------------------


async def test_export_of_last_to_a_favicon_set_writes_a_multi_size_icon_and_pngs_without_asking_atlas(
    in_project, project: Path, emulator: Emulator
) -> None:
    async with in_project() as client:
        await call(client)
        seen = len(emulator.requests)
        result = await client.call_tool(
            "export_image",
            {"image": "last", "sizes": ["favicon", "og", "64x64.webp"], "save_as": "public/logo.png"},
        )
    assert result.is_error is False, text_of(result)
    assert len(emulator.requests) == seen  # nothing was asked of Atlas
    public = project / "public"
    with Image.open(public / "favicon.ico") as icon:
        assert icon.format == "ICO" and {(16, 16), (32, 32), (48, 48), (64, 64)} <= set(icon.info["sizes"])
    for name, size, fmt in [
        ("apple-touch-icon.png", (180, 180), "PNG"),
        ("icon-512.png", (512, 512), "PNG"),
        ("logo-1200x630.png", (1200, 630), "PNG"),
        ("logo-64x64.webp", (64, 64), "WEBP"),
    ]:
        with Image.open(public / name) as img:
            assert (img.size, img.format) == (size, fmt), name
    files = result.structured_content["files"]
    assert [f["relative"] for f in files] == [
        "public/favicon.ico",
        "public/apple-touch-icon.png",
        "public/icon-512.png",
        "public/logo-1200x630.png",
        "public/logo-64x64.webp",
    ]
    assert "nothing was sent to Atlas" in text_of(result)


async def test_export_takes_data_and_refuses_whole_before_writing_when_one_file_exists(
    in_project, project: Path, emulator: Emulator
) -> None:
    picture = io.BytesIO()
    Image.new("RGB", (300, 200), (0, 90, 200)).save(picture, format="PNG")
    data = base64.b64encode(picture.getvalue()).decode()
    (project / "img-32x32.png").write_bytes(b"mine")
    async with in_project() as client:
        refused = await client.call_tool(
            "export_image", {"image": data, "sizes": ["16x16", "32x32"], "save_as": "img.png"}
        )
        nothing_written = not (project / "img-16x16.png").exists()
        made = await client.call_tool(
            "export_image",
            {"image": data, "sizes": ["16x16", "100x100.jpg"], "save_as": "img.png", "fit": "contain"},
        )
    assert refused.is_error is True and "img-32x32.png" in text_of(refused)
    assert (project / "img-32x32.png").read_bytes() == b"mine" and nothing_written
    assert made.is_error is False and emulator.requests == []
    with Image.open(project / "img-100x100.jpg") as img:
        assert img.size == (100, 100) and img.getpixel((50, 5)) == (255, 255, 255)  # padded in white


async def test_export_refuses_what_it_cannot_make(in_project) -> None:
    async with in_project() as client:
        bad_size = await client.call_tool(
            "export_image", {"image": "last", "sizes": ["big"], "save_as": "a.png"}
        )
        no_picture = await client.call_tool(
            "export_image", {"image": "last", "sizes": ["og"], "save_as": "a.png"}
        )
        odd_icon = await client.call_tool(
            "export_image", {"image": "last", "sizes": ["64x32"], "save_as": "a.ico"}
        )
    assert bad_size.is_error and "favicon', 'og' or 'WxH'" in text_of(bad_size)
    assert no_picture.is_error and "there is none yet" in text_of(no_picture)
    assert odd_icon.is_error and "an .ico is square" in text_of(odd_icon)


def test_the_workspace_checks_run_without_following_links_on_this_system() -> None:
    """The descriptor-relative calls the confined writes rely on exist where the tests run (POSIX)."""
    if os.name == "posix":
        assert all(f in os.supports_dir_fd for f in (os.open, os.mkdir, os.link, os.unlink, os.readlink))


async def test_a_task_keeps_its_save_as_across_a_restart(tmp_path: Path, clock: Any) -> None:
    """The file to write travels in the task id: another replica that finishes the job writes it."""
    import anyio

    from .conftest import TEST_KEY
    from .test_tasks import SLOW, CreatedTask, hosted, modern, until_ended

    slow = Emulator(api_keys=[TEST_KEY], latency=SLOW, clock=clock)
    secret = "task-secret-0123456789-abcdefghij"
    folder = tmp_path / "served"
    picture = {"prompt": "a fox", "save_as": "site/hero.webp", "output_size": "300x200"}
    with hosted(slow, task_secret=secret, output_dir=folder) as first:
        async with modern(first) as client:
            with anyio.fail_after(30):
                created = await client.session.call_tool("generate_image", picture, allow_claimed=True)
    assert isinstance(created, CreatedTask) and not (folder / "site" / "hero.webp").exists()
    clock.advance(SLOW)
    with hosted(slow, task_secret=secret, output_dir=folder) as second:
        async with modern(second) as client:
            with anyio.fail_after(30):
                done = await until_ended(client.session, created.task_id)
    assert done["status"] == "completed", done
    with Image.open(folder / "site" / "hero.webp") as img:
        assert (img.format, img.size) == ("WEBP", (300, 200))


async def test_a_client_root_that_is_the_whole_disk_is_not_a_workspace(
    connect, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    options = {"mode": "legacy", "list_roots_callback": roots_of(Path("/"), Path("/etc"))}
    async with connect(client_options=options) as client:
        inside = await call(client, save_as="hero.png")
        system = await call(client, save_as="/etc/hero.png")
    assert inside.is_error is False and (folder / "hero.png").is_file()
    assert system.is_error is True and "outside the workspace" in text_of(system)
