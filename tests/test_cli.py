"""The command line: ``--help`` is complete, and the Dockerfile's command works outside a container."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import select
import shlex
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from atlas_image_mcp.cli import build_parser, main
from atlas_image_mcp.settings import ENV_VARS, default_output_dir

from .http_helpers import ENTRY_POINT, child_env, free_port, serve_process

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
TOKEN = "tok-docker-cmd-0123456789"


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines


@pytest.mark.parametrize("argv", [["--help"]], ids=" ".join)
def test_help_lists_every_environment_variable(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(argv, capsys)
    for name, var in ENV_VARS.items():
        assert f"{name} {' '.join(var.description.split())}" in text, name


def test_serve_help_is_about_serving_and_points_at_the_settings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = capsys.readouterr().out
    listed = [name for name in ENV_VARS if re.search(rf"^  {name}\s{{2,}}\S", text, re.M)]  # table rows
    assert listed == [], f"serve --help repeats the settings table: {listed}"
    assert "`atlas-image-mcp --help` lists them" in " ".join(text.split())
    assert len(text.splitlines()) < 45, text


def test_help_names_the_commands_and_the_http_options_and_endpoints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    top = _help(["--help"], capsys)
    for word in ("serve", "generate", "emulator", "--offline", "--version", "stdio", "/mcp", "/sse"):
        assert word in top, word
    serve = _help(["serve", "--help"], capsys)
    for word in ("--transport {stdio,http}", "--host", "default 127.0.0.1", "--port", "default 8000",
                 "--stateless", "--allow-unauthenticated", "--offline", "/mcp", "/sse", "/messages/",
                 "/healthz", "ATLAS_MCP_AUTH_TOKEN", "ATLAS_MCP_USER_KEYS=1", "status 2"):  # fmt: skip
        assert word in serve, word
    # every option the parser knows is in the help it prints
    for action in build_parser()._subparsers._group_actions[0].choices["serve"]._actions:  # type: ignore[union-attr]
        for flag in action.option_strings:
            assert flag in serve, flag


@pytest.mark.subprocess
def test_the_installed_command_prints_the_same_help() -> None:
    proc = subprocess.run([str(ENTRY_POINT), "--help"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and proc.stderr == ""
    for name in ENV_VARS:
        assert name in proc.stdout


def test_emulator_help_says_what_it_is_and_documents_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(["emulator", "--help"], capsys)
    assert "emulator of the Atlas Cloud API" in text and "ATLASCLOUD_BASE_URL=http://HOST:PORT" in text
    emulator = build_parser()._subparsers._group_actions[0].choices["emulator"]  # type: ignore[union-attr]
    for action in emulator._actions:
        assert action.help, f"{action.option_strings} has no help"


def test_generate_help_shows_every_flag_with_a_sane_value(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(["generate", "--help"], capsys)
    assert "FieldInfo" not in text and "<class" not in text and "choose from" not in text
    for flag in ("--image PICTURE", "--mask-image PICTURE", "--width WIDTH"):
        assert flag in text, flag
    assert re.search(r"--output-format \{[a-z]+(,[a-z]+)+\}", text), "a choice of the field's values"
    assert "a file (relative or ~/ paths work), an https URL or a prediction id" in text


def test_an_impossible_port_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["serve", "--transport", "http", "--port", "70000"])
    assert stop.value.code == 2 and "65535" in capsys.readouterr().err


# --- the Dockerfile ----------------------------------------------------------------------------


def _instruction(name: str) -> str:
    """The text of the last ``name`` instruction (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    found = [line[len(name) :].strip() for line in text.splitlines() if line.startswith(f"{name} ")]
    assert found, f"no {name} in the Dockerfile"
    return found[-1]


def docker_cmd() -> list[str]:
    """What the container runs: ENTRYPOINT and CMD, both in exec form (so signals reach the server)."""
    cmd = json.loads(_instruction("ENTRYPOINT")) + json.loads(_instruction("CMD"))
    assert isinstance(cmd, list) and all(isinstance(word, str) for word in cmd)
    return cmd


def healthcheck_cmd() -> list[str]:
    text = _instruction("HEALTHCHECK")
    return json.loads(text[text.index("CMD ") + 4 :])


def _replace_option(argv: list[str], option: str, value: str) -> list[str]:
    index = argv.index(option)
    return [*argv[: index + 1], value, *argv[index + 2 :]]


def test_the_dockerfile_is_slim_non_root_exposes_8000_and_checks_health() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.12-slim AS build$", text, re.M), "the wheel is built in a stage"
    assert re.search(r'^RUN pip wheel .*--wheel-dir /wheels "\.\[postgres\]"$', text, re.M), "with its deps"
    assert re.findall(r"^FROM .*", text, re.M)[-1] == "FROM python:3.12-slim"
    assert re.search(r"^RUN pip install --no-index /wheels/\*\.whl", text, re.M), "only those wheels"
    user = _instruction("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and uid != "0", "a numeric, non-root user"
    assert re.search(rf"useradd .*--uid {uid}\b", text)
    assert _instruction("EXPOSE") == "8000"
    assert healthcheck_cmd() == ["atlas-image-mcp", "healthcheck"], "it probes the port the server uses"
    assert "curl" not in _instruction("HEALTHCHECK") and "8000" not in _instruction("HEALTHCHECK")
    assert docker_cmd() == ["atlas-image-mcp", "serve", "--transport", "http", "--host", "0.0.0.0"]
    assert json.loads(_instruction("ENTRYPOINT")) == ["atlas-image-mcp"], (
        "`docker run -i IMAGE serve` is stdio"
    )


def test_the_deploy_files_give_the_images_entry_point_its_arguments() -> None:
    """compose's command and Kubernetes' args replace the image's CMD, after its ENTRYPOINT."""
    import yaml

    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text(encoding="utf-8"))
    deployment = yaml.safe_load((ROOT / "deploy" / "k8s" / "deployment.yaml").read_text(encoding="utf-8"))
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    for argv in (compose["services"]["mcp"]["command"], container["args"]):
        assert json.loads(_instruction("ENTRYPOINT")) == ["atlas-image-mcp"]
        args = build_parser().parse_args(argv)  # a usage error exits the test
        assert args.command == "serve" and args.transport == "http", argv


def _docker_ignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves ``path`` out of the build context: the last matching pattern decides,
    a pattern matches the path or a folder it is in, ``!`` takes a path back in."""
    ignored = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.lstrip("!").rstrip("/").removeprefix("**/")
        anywhere = pattern.lstrip("!").startswith("**/")
        candidates = prefixes + (
            [p for n in range(len(parts)) for p in ["/".join(parts[n:])]] if anywhere else []
        )
        if any(fnmatch.fnmatchcase(candidate, glob) for candidate in candidates):
            ignored = not negate
    return ignored


def test_the_build_context_is_only_what_the_image_is_built_from() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for kept in (
        "pyproject.toml",
        "README.md",
        "src/atlas_image_mcp/cli.py",
        "src/atlas_image_mcp/viewer.html",
    ):
        assert not _docker_ignored(kept, patterns), kept
    left_out = (
        ".venv/bin/python", ".git/config", ".mypy_cache/x.json", "tests/test_cli.py", "atlas.env", ".env",
        "src/atlas_image_mcp/__pycache__/cli.cpython-311.pyc", "dist/atlas_image_mcp-0.1.0.whl",
    )  # fmt: skip
    for path in left_out:
        assert _docker_ignored(path, patterns), path
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE.read_text(encoding="utf-8"), re.M)
    for source in " ".join(copied).split():
        assert not _docker_ignored(source.rstrip("/"), patterns), f"COPY {source} is not in the context"


@pytest.mark.subprocess
def test_the_docker_command_serves_with_a_token_and_its_healthcheck_follows_the_port(tmp_path: Path) -> None:
    port = free_port()  # not 8000: the port is a setting, and the health check probes that one
    argv = _replace_option(docker_cmd(), "--host", "127.0.0.1")
    argv = [str(ENTRY_POINT), *argv[1:], "--offline"]
    env = child_env(tmp_path, ATLAS_MCP_AUTH_TOKEN=TOKEN, ATLAS_MCP_PORT=str(port))
    probe = [str(ENTRY_POINT), *healthcheck_cmd()[1:]]
    with serve_process(argv, env, port):
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        assert httpx.post(f"{base}/mcp", json={}, timeout=5).status_code == 400
        healthy = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=20)
        assert healthy.returncode == 0, healthy.stderr
    failing = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=20)
    assert failing.returncode == 1, "it fails once nothing listens"
    assert f"no answer from http://127.0.0.1:{port}/healthz" in failing.stderr


def test_the_docs_never_generate_the_token_inline_and_keep_it_in_an_env_file() -> None:
    for page in (DOCKERFILE, ROOT / "docs" / "hosting.md"):
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"-e\s+ATLAS_MCP_AUTH_TOKEN=\S*\$\(", text), f"{page.name}: a token nobody sees"
        assert "--env-file atlas.env" in text and "-p 127.0.0.1:8000:8000" in text, page.name
        assert "grep ATLAS_MCP_AUTH_TOKEN atlas.env" in text, f"{page.name}: say how to read the token"


@pytest.mark.subprocess
def test_the_unchanged_docker_command_refuses_to_start_without_authentication(tmp_path: Path) -> None:
    argv = [str(ENTRY_POINT), *docker_cmd()[1:]]
    proc = subprocess.run(argv, env=child_env(tmp_path), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, shlex.join(argv) + "\n" + proc.stderr
    assert "refusing to serve on 0.0.0.0" in proc.stderr and "ATLAS_MCP_AUTH_TOKEN" in proc.stderr
    assert "Authorization: Bearer <token>)" in proc.stderr, "redaction ate the placeholder"
    assert "Uvicorn running" not in proc.stderr


# --- the small stumbles of a first hour --------------------------------------------------------


def test_http_options_with_the_stdio_transport_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["serve", "--transport", "stdio", "--host", "0.0.0.0"])
    assert stop.value.code == 2
    assert "--host applies only to --transport http" in capsys.readouterr().err


@pytest.mark.subprocess
def test_serve_with_a_host_and_no_transport_serves_http(tmp_path: Path) -> None:
    port = free_port()
    argv = [str(ENTRY_POINT), "serve", "--host", "127.0.0.1", "--port", str(port), "--offline"]
    with serve_process(argv, child_env(tmp_path), port):
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200


@pytest.mark.subprocess
def test_a_busy_port_is_a_clear_error_before_any_line_claims_the_server_runs(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        argv = [str(ENTRY_POINT), "serve", "--transport", "http", "--port", str(port), "--offline"]
        proc = subprocess.run(argv, env=child_env(tmp_path), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert f"cannot listen on 127.0.0.1:{port}: the port is already in use" in proc.stderr
    assert "--port" in proc.stderr and "Errno" not in proc.stderr
    assert " on http://" not in proc.stderr and "Uvicorn running" not in proc.stderr


def test_generate_help_names_the_folder_it_really_uses(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(["generate", "--help"], capsys)
    assert f"else{default_output_dir()})" in text.replace(" ", "")  # argparse wraps at hyphens


@pytest.mark.subprocess
def test_the_generate_command_gives_terminal_advice(tmp_path: Path) -> None:
    """A missing key and a dry run each say what to do in a terminal, not in an MCP client."""
    env = child_env(tmp_path)
    no_key = subprocess.run(
        [str(ENTRY_POINT), "generate", "fox"], env=env, capture_output=True, text=True, timeout=60
    )
    dry = subprocess.run(
        [str(ENTRY_POINT), "generate", "fox", "--dry-run"],
        env={**env, "ATLAS_MCP_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert no_key.returncode == 1
    assert "Set ATLASCLOUD_API_KEY in this shell" in no_key.stderr and "--offline" in no_key.stderr
    assert "client" not in no_key.stderr
    assert dry.returncode == 0, dry.stderr
    assert "Run the same command without --dry-run to generate." in dry.stderr
    assert "generate_image" not in dry.stderr


def _png(path: Path, colour: tuple[int, int, int] = (200, 60, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (320, 240), colour).save(path, format="PNG")
    return path


@pytest.mark.subprocess
def test_generate_takes_a_picture_by_relative_and_home_paths_from_the_terminal(tmp_path: Path) -> None:
    """Image-to-image and inpainting from a terminal: the paths as a shell passes them (no expansion of
    a quoted ~), relative to the working directory, and a folder given with ~ as well."""
    env = child_env(tmp_path)
    home = Path(env["HOME"])
    work = tmp_path / "work"
    _png(work / "fox.png")
    _png(home / "masks" / "sky.png", (255, 255, 255))
    argv = [str(ENTRY_POINT), "generate", "--offline", "a fox at dusk", "--image", "fox.png",
            "--mask-image", "~/masks/sky.png", "--strength", "0.6", "--output-dir", "~/made"]  # fmt: skip
    proc = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    [saved] = proc.stdout.split()
    assert Path(saved).parent == home / "made" and Path(saved).is_file()
    assert "Source 1:" in proc.stderr and "Source 2:" in proc.stderr, "both pictures were sent"
    missing = subprocess.run(
        [str(ENTRY_POINT), "generate", "--offline", "a fox", "--image", "nope.png"],
        cwd=work, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert missing.returncode == 1
    assert f"No file at '{work / 'nope.png'}'" in missing.stderr


def _read_until(fd: int, wanted: bytes, timeout: float) -> bytes:
    """What a file descriptor gives until ``wanted`` appears (or ``timeout`` seconds pass)."""
    seen = b""
    deadline = time.monotonic() + timeout
    while wanted not in seen and (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        seen += chunk
    return seen


@pytest.mark.subprocess
def test_run_by_hand_in_a_terminal_it_says_a_client_starts_it_and_how_to_try_it(tmp_path: Path) -> None:
    import pty

    leader, follower = pty.openpty()
    err_read, err_write = os.pipe()
    proc = subprocess.Popen(
        [str(ENTRY_POINT)], env=child_env(tmp_path), stdin=follower, stdout=subprocess.PIPE,
        stderr=err_write, close_fds=True,
    )  # fmt: skip
    os.close(follower)
    os.close(err_write)
    try:
        said = _read_until(err_read, b"generate --offline", timeout=30).decode()
    finally:
        os.close(leader)  # the terminal goes away: stdin ends, and so does the server
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            out, _ = proc.communicate(timeout=10)
        os.close(err_read)
    assert "an MCP client (Claude Desktop, Claude Code, Cursor, VS Code, ...) starts it" in said
    assert 'atlas-image-mcp generate --offline "a red fox in the snow"' in said
    assert out == b"", "stdout is the protocol: nothing else is written there"


@pytest.mark.subprocess
def test_started_by_a_client_it_says_nothing_about_terminals(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(ENTRY_POINT)], env=child_env(tmp_path), input="", capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0 and proc.stdout == ""
    assert "starts it" not in proc.stderr
