"""The command line: ``--help`` is complete, and the Dockerfile's command works outside a container."""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from atlas_image_mcp.cli import build_parser, main
from atlas_image_mcp.settings import ENV_VARS, default_output_dir

from .http_helpers import ENTRY_POINT, child_env, free_port, serve_process

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
TOKEN = "tok-docker-cmd-0123456789"


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines


@pytest.mark.parametrize("argv", [["--help"], ["serve", "--help"]], ids=" ".join)
def test_help_lists_every_environment_variable(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(argv, capsys)
    for name, var in ENV_VARS.items():
        assert f"{name} {' '.join(var.description.split())}" in text, name


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
    cmd = json.loads(_instruction("CMD"))  # exec form, so signals reach the server
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
    assert re.search(r"^FROM python:3\.12-slim\b", text, re.M)
    assert re.search(r'^RUN pip install "?\.', text, re.M)
    user = _instruction("USER")
    assert user not in ("root", "0") and re.search(rf"useradd .*\b{user}\b", text)
    assert _instruction("EXPOSE") == "8000"
    check = healthcheck_cmd()
    assert (
        check[:2] == ["python", "-c"]
        and "http://127.0.0.1:8000/healthz" in check[2]
        and "curl" not in _instruction("HEALTHCHECK")
    )
    assert docker_cmd() == [
        "atlas-image-mcp",
        "serve",
        "--transport",
        "http",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
    ]


@pytest.mark.subprocess
def test_the_docker_command_serves_with_a_token_and_its_healthcheck_passes(tmp_path: Path) -> None:
    port = free_port()
    cmd = docker_cmd()
    argv = _replace_option(_replace_option(cmd, "--host", "127.0.0.1"), "--port", str(port))
    argv = [str(ENTRY_POINT), *argv[1:], "--offline"]
    env = child_env(tmp_path, ATLAS_MCP_AUTH_TOKEN=TOKEN)
    with serve_process(argv, env, port):
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        assert httpx.post(f"{base}/mcp", json={}, timeout=5).status_code == 400
        probe = healthcheck_cmd()
        probe = [sys.executable, probe[1], probe[2].replace("127.0.0.1:8000", f"127.0.0.1:{port}")]
        assert subprocess.run(probe, capture_output=True, timeout=20).returncode == 0
    failing = subprocess.run(probe, capture_output=True, timeout=20)  # and it fails once nothing listens
    assert failing.returncode != 0


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
