"""The Claude Desktop bundle (.mcpb), built with the official mcpb CLI and validated by it.

    python scripts/mcpb_bundle.py OUT_DIR [--wheel WHEEL] [--mcpb COMMAND]

1. The wheel: the one given, or one built from this checkout (``uv build``).
2. A folder holding what the host needs: ``manifest.json`` (made here: the version, the server's own
   tools, the settings a person chooses in Claude Desktop), ``pyproject.toml`` (depends on exactly
   that wheel, inside the bundle), ``uv.lock`` (``uv lock``: every dependency pinned, for every
   platform and supported Python), ``src/server.py`` (starts the stdio server) and ``.mcpbignore``.
3. ``mcpb validate`` and ``mcpb pack``. Prints the bundle's path and its sha256 (what a
   ``registryType: "mcpb"`` entry of server.json would carry as ``fileSha256``).

The bundle is of server type ``uv``: Claude Desktop installs its dependencies with its own uv and
runs it with a Python it manages, so nobody installs Python, uv or pip, and the compiled
dependencies (pydantic-core, pillow, ...) come for each platform from PyPI. ``--mcpb`` defaults to
the pinned CLI of ``scripts/npm-tools.sh``. docs/distribution.md says more.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "packaging" / "mcpb"
NAME = "atlas-image-mcp"
#: The bundle format: 0.4 is 0.3 plus server type "uv".
MANIFEST_VERSION = "0.4"
#: Each choice a person makes in Claude Desktop, the setting it sets, and how it is asked. Every one
#: has a default: a key with none would reach the server as the literal text "${user_config.key}".
USER_CONFIG: dict[str, tuple[str, dict[str, Any]]] = {
    "atlas_api_key": (
        "api_key",
        {
            "type": "string",
            "title": "Atlas Cloud API key",
            "description": "From atlascloud.ai, Console > API keys; kept in the system's keychain. "
            "Not needed in offline mode.",
            "sensitive": True,
            "required": False,
            "default": "",
        },
    ),
    "offline": (
        "offline",
        {
            "type": "boolean",
            "title": "Offline mode (no key, no cost)",
            "description": "Use the built-in emulator of the Atlas API instead of Atlas Cloud: real pictures "
            "of the requested size with your prompt written on them, nothing sent, nothing billed.",
            "required": False,
            "default": False,
        },
    ),
    "output_dir": (
        "output_dir",
        {
            "type": "directory",
            "title": "Save pictures in",
            "description": "Leave empty for the Pictures folder (~/Pictures/atlas-image-mcp).",
            "required": False,
            "default": "",
        },
    ),
    "budget_usd_per_day": (
        "budget_usd_per_day",
        {
            "type": "string",
            "title": "Daily budget (USD)",
            "description": "The most this key may spend per UTC day, such as 2.50. Empty: no limit.",
            "required": False,
            "default": "",
        },
    ),
    "confirm_above_usd": (
        "confirm_above_usd",
        {
            "type": "string",
            "title": "Ask before calls above (USD)",
            "description": "Ask before a call estimated above this amount, such as 0.10. Empty: never ask.",
            "required": False,
            "default": "",
        },
    ),
}


def _tools() -> list[dict[str, str]]:
    """The server's own tools (name and first sentence), as its tools/list answers."""
    import anyio
    from mcp import Client

    from atlas_image_mcp.runtime import Runtime
    from atlas_image_mcp.server import make_server
    from atlas_image_mcp.settings import Settings

    async def listed() -> list[dict[str, str]]:
        runtime = Runtime.create(Settings(), offline=True)
        try:
            async with Client(make_server(runtime)) as client:
                tools = (await client.list_tools()).tools
        finally:
            await runtime.aclose()
        return [
            {"name": t.name, "description": (t.description or "").split(". ")[0].rstrip(".")} for t in tools
        ]

    return anyio.run(listed)


def manifest() -> dict[str, Any]:
    """manifest.json of the bundle."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from registry import DESCRIPTION, TITLE, owner, repository_url

    from atlas_image_mcp import __version__
    from atlas_image_mcp.settings import env_name

    repository = repository_url()
    return {
        "manifest_version": MANIFEST_VERSION,
        "name": NAME,
        "display_name": TITLE,
        "version": __version__,
        "description": DESCRIPTION,
        "long_description": "One tool call goes from a sentence to a visible, saved picture: "
        "generate_image, edit_image (Kontext, Fill, FLUX.2 multi-reference), variations, uploads, balance "
        "and usage. Costs are estimated before anything is sent, a paid request is never sent twice, and "
        "pictures are saved to your Pictures folder. Turn on offline mode to try it with no key: a built-in "
        "emulator draws the pictures.",
        "author": {"name": owner(), "url": repository},
        "repository": {"type": "git", "url": repository},
        "homepage": repository,
        "documentation": f"{repository}#readme",
        "support": f"{repository}/issues",
        "license": "MIT",
        "keywords": ["image-generation", "flux", "atlas-cloud", "kontext", "mcp"],
        "server": {
            "type": "uv",
            "entry_point": "src/server.py",
            "mcp_config": {
                "command": "uv",
                "args": [
                    "run",
                    "--frozen",
                    "--no-dev",
                    "--project",
                    "${__dirname}",
                    "${__dirname}/src/server.py",
                ],
                "env": {
                    env_name(field): f"${{user_config.{key}}}" for key, (field, _) in USER_CONFIG.items()
                },
            },
        },
        "tools": _tools(),
        "user_config": {key: asked for key, (_, asked) in USER_CONFIG.items()},
        "compatibility": {"platforms": ["darwin", "win32", "linux"], "runtimes": {"python": ">=3.10"}},
    }


def _pyproject(wheel: Path, version: str) -> str:
    return f"""# The bundle's own project: the host's uv installs these dependencies into an environment it
# manages, then runs src/server.py. Not a package itself.
[project]
name = "{NAME}-bundle"
version = "{version}"
requires-python = ">=3.10"
dependencies = ["{NAME}=={version}"]

[tool.uv]
package = false

# The wheel inside the bundle (the build that was tested), not a download.
[tool.uv.sources]
{NAME} = {{ path = "wheels/{wheel.name}" }}
"""


def _run(argv: list[str], cwd: Path | None = None, timeout: float = 300) -> None:
    # uv may use any Python it finds (the system's is enough to lock); it never downloads one here
    env = {"UV_PYTHON_DOWNLOADS": "never", **os.environ}
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")


def _uv() -> str:
    from uv import find_uv_bin

    return str(find_uv_bin())


def _default_mcpb() -> list[str]:
    found = subprocess.run(
        ["bash", str(ROOT / "scripts" / "npm-tools.sh")], capture_output=True, text=True, timeout=900
    )
    if found.returncode != 0:
        raise SystemExit(f"the npm tools are not available:\n{found.stderr}")
    return [str(Path(found.stdout.strip().splitlines()[-1]) / "bin" / "mcpb")]


def build(out_dir: Path, *, wheel: Path | None = None, mcpb: list[str] | None = None) -> Path:
    """Build, validate and pack the bundle into ``out_dir``; its path."""
    from atlas_image_mcp import __version__

    mcpb = mcpb or _default_mcpb()
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mcpb-build-") as scratch:
        work = Path(scratch) / NAME
        shutil.copytree(TEMPLATE, work)
        (work / "wheels").mkdir()
        if wheel is None:
            _run([_uv(), "build", "--wheel", "--out-dir", str(work / "wheels"), str(ROOT)])
            [wheel] = sorted((work / "wheels").glob("*.whl"))
        else:
            shutil.copy2(wheel, work / "wheels" / wheel.name)
            wheel = work / "wheels" / wheel.name
        (work / "pyproject.toml").write_text(_pyproject(wheel, __version__), encoding="utf-8")
        (work / "manifest.json").write_text(json.dumps(manifest(), indent=2) + "\n", encoding="utf-8")
        _run([_uv(), "lock", "--quiet"], cwd=work)  # pins every dependency for `uv run --frozen`
        _run([*mcpb, "validate", str(work / "manifest.json")])
        bundle = out_dir / f"{NAME}-{__version__}.mcpb"
        _run([*mcpb, "pack", str(work), str(bundle)])
    return bundle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("out_dir", type=Path, help="folder to write the .mcpb into")
    parser.add_argument(
        "--wheel", type=Path, help="the wheel to bundle (default: build one from this checkout)"
    )
    parser.add_argument("--mcpb", help="the mcpb command (default: the pinned one of scripts/npm-tools.sh)")
    args = parser.parse_args(argv)
    bundle = build(args.out_dir, wheel=args.wheel, mcpb=[args.mcpb] if args.mcpb else None)
    digest = hashlib.sha256(bundle.read_bytes()).hexdigest()
    sys.stdout.write(f"{bundle}\nsha256 {digest}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
