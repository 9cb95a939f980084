"""Node-side test tools: the MCP Inspector CLI, the MCP conformance suite (two versions), the
MCP bundle CLI (mcpb), mcp-remote, the Claude Code CLI (claude) and oidc-provider (the OpenID
provider of the sign-in tests).

They come from the npm registry; the Node ones need Node >= 22, which ``scripts/npm-tools.sh``
installs into a cache folder next to pinned copies of the tools. This module
runs that script once per test session and hands back the commands to run them.
It knows nothing about this project's server.

    from npm_tools import require_tools   # or: from tests.npm_tools import ...

    tools = require_tools()                # skips (or fails, see below) when unavailable
    subprocess.run(tools.inspector_cmd(sys.executable, "-m", "pkg", "--method", "tools/list"),
                   env=tools.env, capture_output=True, text=True, timeout=60)
    subprocess.run(tools.conformance_cmd("server", "--url", url, "--scenario", "ping"),
                   env=tools.env, capture_output=True, text=True, timeout=120)
    subprocess.run(tools.conformance_next_cmd("server", "--url", url, "--scenario", "tasks-lifecycle"), ...)

``conformance_cmd`` runs the suite 0.1.16 (the handshake-era generic scenarios),
``conformance_next_cmd`` 0.2.0-alpha.12 (the 2026-07-28 scenarios and the tasks
extension's ``tasks-*`` scenarios); both are pinned in ``scripts/npm-tools/package.json``.
``mcpb_cmd``, ``mcp_remote_cmd`` and ``claude_cmd`` run the other three;
``mcp_remote_client_cmd`` runs mcp-remote's client (connects, lists the tools, exits), and
``node_modules`` is where ``tests/oidc_provider.mjs`` imports oidc-provider from.

In CI (``CI=true``, which CI services set) or with ``ATLAS_NPM_TOOLS_REQUIRED=1``, "tools
unavailable" is a failure instead of a skip. ``ATLAS_NPM_CACHE`` moves the cache folder.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
INSTALL_SCRIPT = REPO_ROOT / "scripts" / "npm-tools.sh"
INSTALL_TIMEOUT_S = 900.0

_INSPECTOR_JS = "tools/node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js"
_CONFORMANCE_JS = "tools/node_modules/@modelcontextprotocol/conformance/dist/index.js"
_CONFORMANCE_NEXT_JS = "tools/node_modules/conformance-next/dist/index.js"
_MCPB_MODULE = "tools/node_modules/@anthropic-ai/mcpb"
_MCP_REMOTE_JS = "tools/node_modules/mcp-remote/dist/proxy.js"
_MCP_REMOTE_CLIENT_JS = "tools/node_modules/mcp-remote/dist/client.js"
_OIDC_PROVIDER_JS = "tools/node_modules/oidc-provider/lib/index.js"
_MODE_FLAGS = ("--cli", "--web", "--tui")


@dataclass(frozen=True)
class NpmTools:
    """Where the installed tools are and how to run them under Node 22."""

    cache_dir: Path
    node: Path
    inspector_js: Path
    conformance_js: Path
    conformance_next_js: Path
    mcpb_module: Path
    mcp_remote_js: Path
    claude: Path
    env: dict[str, str] = field(repr=False)

    def inspector_cmd(self, *args: str | os.PathLike[str]) -> list[str]:
        """``node <inspector launcher> --cli *args``.

        ``--cli`` is added unless ``args`` starts with a mode flag (mode flags must come
        first). Put the target (server command or URL) *before* ``--tool-arg``/``--header``
        etc.: those options are variadic and swallow the words after them.
        """
        rest = [os.fspath(a) for a in args]
        if not rest or rest[0] not in _MODE_FLAGS:
            rest.insert(0, "--cli")
        return [str(self.node), str(self.inspector_js), *rest]

    def conformance_cmd(self, *args: str | os.PathLike[str]) -> list[str]:
        """``node <conformance cli> *args``, e.g. ``("server", "--url", url, "--scenario", "ping")``."""
        return [str(self.node), str(self.conformance_js), *(os.fspath(a) for a in args)]

    def conformance_next_cmd(self, *args: str | os.PathLike[str]) -> list[str]:
        """The same with the suite 0.2.0-alpha.12 (2026-07-28 and the tasks extension)."""
        return [str(self.node), str(self.conformance_next_js), *(os.fspath(a) for a in args)]

    def mcpb_cmd(self, *args: str | os.PathLike[str]) -> list[str]:
        """``node <mcpb cli> *args``, e.g. ``("validate", "manifest.json")``."""
        cli = self.mcpb_module / "dist" / "cli" / "cli.js"
        return [str(self.node), str(cli), *(os.fspath(a) for a in args)]

    def mcp_remote_cmd(self, *args: str | os.PathLike[str]) -> list[str]:
        """``node <mcp-remote> *args``: a stdio MCP server that forwards to a URL."""
        return [str(self.node), str(self.mcp_remote_js), *(os.fspath(a) for a in args)]

    def mcp_remote_client_cmd(self, *args: str | os.PathLike[str]) -> list[str]:
        """``node <mcp-remote's client> *args``: connects to a server URL, prints its tools, exits."""
        return [str(self.node), str(self.cache_dir / _MCP_REMOTE_CLIENT_JS), *(os.fspath(a) for a in args)]

    @property
    def node_modules(self) -> Path:
        """The installed packages (oidc-provider among them), for scripts that import them by path."""
        return self.cache_dir / "tools" / "node_modules"

    def claude_cmd(self, *args: str | os.PathLike[str]) -> list[str]:
        """``claude *args`` (the Claude Code program of this platform)."""
        return [str(self.claude), *(os.fspath(a) for a in args)]


_state: dict[str, Any] = {}


def default_cache_dir() -> Path:
    env = os.environ.get("ATLAS_NPM_CACHE")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "atlas-image-mcp" / "npm-tools"


def ensure_tools(cache_dir: str | os.PathLike[str] | None = None) -> NpmTools | None:
    """Install (or find) the tools; ``None`` when they cannot be had.

    Runs ``scripts/npm-tools.sh`` at most once per process and caches the outcome;
    the reason for a ``None`` is in :func:`unavailable_reason` and is also written to
    stderr. A warm cache costs a few milliseconds; a cold install about 15 s.
    """
    if "result" in _state:
        return _state["result"]
    tools: NpmTools | None = None
    reason: str | None = None
    target = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        proc = subprocess.run(
            ["bash", str(INSTALL_SCRIPT), str(target)],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        reason = f"cannot run {INSTALL_SCRIPT}: {exc}"
    except subprocess.TimeoutExpired:
        reason = f"{INSTALL_SCRIPT.name} did not finish within {INSTALL_TIMEOUT_S:.0f}s"
    else:
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            err = proc.stderr.strip().splitlines()
            tail = " | ".join([ln for ln in err if "ERROR:" in ln] or err[-4:])
            what = "npm registry unreachable" if proc.returncode == 3 else f"exit {proc.returncode}"
            reason = f"Node test tools unavailable ({what}): {tail or 'no output'}"
        else:
            tools = _tools_from_cache(Path(lines[-1]))
            if tools is None:
                reason = f"{INSTALL_SCRIPT.name} reported {lines[-1]} but the tools are not there"
    if reason:
        sys.stderr.write(f"npm_tools: {reason}\n")
    _state["result"] = tools
    _state["reason"] = reason
    return tools


def unavailable_reason() -> str | None:
    """Why the last :func:`ensure_tools` returned ``None`` (``None`` if it did not)."""
    return _state.get("reason")


def require_tools() -> NpmTools:
    """:func:`ensure_tools` for tests: skip with the reason when unavailable.

    In CI (``CI=true``) or with ``ATLAS_NPM_TOOLS_REQUIRED`` set to a true value it fails instead
    of skipping.
    """
    import pytest

    tools = ensure_tools()
    if tools is None:
        reason = unavailable_reason() or "Node test tools unavailable"
        flags = (os.environ.get("ATLAS_NPM_TOOLS_REQUIRED", ""), os.environ.get("CI", ""))
        if any(flag.strip().lower() in ("1", "true", "yes") for flag in flags):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return tools


def _tools_from_cache(cache_dir: Path) -> NpmTools | None:
    bin_dir = cache_dir / "bin"
    node = bin_dir / "node"
    inspector_js = cache_dir / _INSPECTOR_JS
    conformance_js = cache_dir / _CONFORMANCE_JS
    conformance_next_js = cache_dir / _CONFORMANCE_NEXT_JS
    mcpb_module = cache_dir / _MCPB_MODULE
    mcp_remote_js = cache_dir / _MCP_REMOTE_JS
    claude = bin_dir / "claude"
    if not (
        node.exists()
        and inspector_js.is_file()
        and conformance_js.is_file()
        and conformance_next_js.is_file()
        and (mcpb_module / "dist" / "index.js").is_file()
        and mcp_remote_js.is_file()
        and (cache_dir / _MCP_REMOTE_CLIENT_JS).is_file()
        and (cache_dir / _OIDC_PROVIDER_JS).is_file()
        and claude.is_file()
    ):
        return None
    env = dict(os.environ)
    # Node 22 first, so anything the tools spawn as `node` is Node 22 too.
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])
    # Keep the inspector's state (OAuth store etc.) out of $HOME/.mcp-inspector.
    env["MCP_STORAGE_DIR"] = str(cache_dir / "inspector-storage")
    env["NO_COLOR"] = "1"
    return NpmTools(
        cache_dir=cache_dir,
        node=node,
        inspector_js=inspector_js,
        conformance_js=conformance_js,
        conformance_next_js=conformance_next_js,
        mcpb_module=mcpb_module,
        mcp_remote_js=mcp_remote_js,
        claude=claude,
        env=env,
    )


# --- reading conformance results (format of @modelcontextprotocol/conformance 0.1.x and 0.2.x) ---

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_SUMMARY_LINE = re.compile(r"^([✓✗])\s+(\S+): (\d+) passed, (\d+) failed\s*$")
_SINGLE_LINE = re.compile(r"^Passed: (\d+)/(\d+), (\d+) failed, (\d+) warnings\s*$")


def strip_ansi(text: str) -> str:
    """The suite colours its output unconditionally (NO_COLOR is ignored)."""
    return _ANSI.sub("", text)


def parse_conformance_summary(stdout: str) -> dict[str, tuple[int, int]]:
    """``{scenario: (passed_checks, failed_checks)}`` from a multi-scenario run's
    ``=== SUMMARY ===`` block. WARNING checks are not counted there (see
    :func:`load_conformance_checks` for them). Empty for a ``--scenario`` run."""
    out: dict[str, tuple[int, int]] = {}
    for line in strip_ansi(stdout).splitlines():
        m = _SUMMARY_LINE.match(line.strip())
        if m:
            out[m.group(2)] = (int(m.group(3)), int(m.group(4)))
    return out


def parse_single_scenario(stdout: str) -> tuple[int, int, int, int] | None:
    """``(passed, denominator, failed, warnings)`` from a ``--scenario NAME`` run."""
    for line in strip_ansi(stdout).splitlines():
        m = _SINGLE_LINE.match(line.strip())
        if m:
            return (int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4)))
    return None


def load_conformance_checks(output_dir: str | os.PathLike[str]) -> dict[str, list[dict[str, Any]]]:
    """Checks written by ``server ... -o OUTPUT_DIR``: ``{scenario: [check, ...]}``.

    Each run of a scenario writes ``OUTPUT_DIR/server-<scenario>-<ISO timestamp>/checks.json``
    (a JSON list of checks with ``id``, ``status`` in SUCCESS/FAILURE/WARNING/INFO,
    ``errorMessage``, ``details``); the newest directory per scenario wins.
    """
    ts = re.compile(r"-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$")
    found: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    for path in Path(output_dir).glob("server-*/checks.json"):
        name = path.parent.name
        m = ts.search(name)
        if not m:
            continue
        scenario = name[len("server-") : m.start()]
        stamp = m.group(0)
        if scenario not in found or stamp > found[scenario][0]:
            found[scenario] = (stamp, json.loads(path.read_text(encoding="utf-8")))
    return {scenario: checks for scenario, (_, checks) in sorted(found.items())}


def scenario_failed(checks: list[dict[str, Any]], *, warnings_fail: bool = True) -> bool:
    """The suite's own rule in ``--expected-failures`` mode: FAILURE *or* WARNING fails."""
    bad = {"FAILURE", "WARNING"} if warnings_fail else {"FAILURE"}
    return any(c.get("status") in bad for c in checks)
