"""Clients this project did not write: the official MCP Inspector CLI and the MCP conformance suite.

Both run under Node 22 from ``scripts/npm-tools.sh`` (see ``tests/npm_tools.py``); without npm
they are skipped with the reason (or fail, with ``ATLAS_NPM_TOOLS_REQUIRED=1``). The suite runs in
two versions: 0.1.16 for the handshake-era generic scenarios, 0.2.0-alpha.12 for the 2026-07-28
generic scenarios (both against the real server, each with its baseline of expected failures) and
for the ten ``tasks-*`` scenarios of the tasks extension (against ``tests/tasks_fixture.py``, the
suite's fixture tools on the product's tasks extension; every one must pass).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from atlas_image_mcp.http import create_http_app
from atlas_image_mcp.runtime import Runtime
from atlas_image_mcp.settings import Settings

from .conftest import TOOL_NAMES
from .http_helpers import serve_app
from .npm_tools import (
    NpmTools,
    load_conformance_checks,
    parse_conformance_summary,
    parse_single_scenario,
    require_tools,
    scenario_failed,
)
from .tasks_fixture import fixture_app

pytestmark = [pytest.mark.npm, pytest.mark.timeout(90)]

EXPECTED_FAILURES = Path(__file__).with_name("conformance-expected-failures.yml")
EXPECTED_FAILURES_2026 = Path(__file__).with_name("conformance-2026-expected-failures.yml")
GENERIC_SCENARIOS = (
    "server-initialize",
    "ping",
    "logging-set-level",
    "tools-list",
    "tools-call-error",
    "server-sse-multiple-streams",
    "dns-rebinding-protection",
    "resources-list",
    "prompts-list",
)
# 2026-07-28 scenarios of the 0.2.0-alpha.12 suite that must pass against the real server (all of
# server-stateless but the checks listed in EXPECTED_FAILURES_2026 with their reasons).
GENERIC_SCENARIOS_2026 = (
    "tools-list",
    "tools-call-error",
    "server-sse-multiple-streams",
    "resources-list",
    "sep-2164-resource-not-found",
    "prompts-list",
    "dns-rebinding-protection",
    "caching",
    "http-header-validation",
    "input-required-result-unsupported-methods",
    "input-required-result-ignore-extra-params",
)
# The tasks extension's scenarios (0.2.0-alpha.12). They run without --spec-version: an extension
# scenario is not on the spec timeline, and the suite skips it when a version is given.
# tasks-status-notifications has a single check, which the suite itself skips (pending its
# subscriptions/listen rewrite): it passes with nothing to check.
TASKS_SCENARIOS = (
    "tasks-lifecycle",
    "tasks-capability-negotiation",
    "tasks-wire-fields",
    "tasks-request-state-removal",
    "tasks-mrtr-input",
    "tasks-request-headers",
    "tasks-dispatch-and-envelope",
    "tasks-status-notifications",
    "tasks-required-task-error",
    "tasks-mrtr-composition",
)
SERVER = [sys.executable, "-m", "atlas_image_mcp", "--offline"]


@pytest.fixture(scope="module")
def tools() -> NpmTools:
    return require_tools()


@pytest.fixture(scope="module")
def offline_base() -> Iterator[str]:
    """``serve --transport http --offline`` as an app on 127.0.0.1."""
    runtime = Runtime.create(Settings(wait_seconds=20), offline=True, remote=True, emulator_latency=0.2)
    with serve_app(create_http_app(runtime)) as base:
        yield base


@pytest.fixture(scope="module")
def fixture_base() -> Iterator[str]:
    """The tasks fixture server (tests/tasks_fixture.py) on 127.0.0.1."""
    with serve_app(fixture_app()) as base:
        yield base


def _env(tools: NpmTools, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in tools.env.items() if not k.startswith(("ATLAS", "ATLASCLOUD"))}
    env["HOME"] = str(tmp_path / "home")
    return env


def inspect(tools: NpmTools, tmp_path: Path, *args: str, timeout: float = 45) -> dict[str, Any]:
    """Run the Inspector CLI with ``--format json`` and return its one JSON object."""
    env = _env(tools, tmp_path)
    cmd = tools.inspector_cmd(*args)
    proc = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 0, (
        f"inspector exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    )
    return json.loads(proc.stdout)


def _generate_args(prompt: str) -> list[str]:
    # the target comes first; --tool-arg is variadic and must come last
    return ["--method", "tools/call", "--tool-name", "generate_image", "--format", "json",
            "--tool-arg", f"prompt={prompt}", "width=512", "height=512", "return_image=none"]  # fmt: skip


def test_inspector_lists_tools_and_generates_a_picture_over_stdio(tools: NpmTools, tmp_path: Path) -> None:
    out = tmp_path / "pictures"
    listed = inspect(tools, tmp_path, *SERVER, "--method", "tools/list", "--format", "json")
    assert {tool["name"] for tool in listed["result"]["tools"]} == TOOL_NAMES
    called = inspect(
        tools, tmp_path, *SERVER, "-e", f"ATLAS_MCP_OUTPUT_DIR={out}", *_generate_args("a red fox")
    )
    result = called["result"]
    assert result["isError"] is False, result
    data = result["structuredContent"]
    assert data["status"] == "completed" and (data["outputs"][0]["width"], data["outputs"][0]["height"]) == (
        512,
        512,
    )
    saved = Path(data["outputs"][0]["path"])
    assert saved.parent == out and saved.is_file()
    assert data["prediction_id"] in result["content"][0]["text"]


@pytest.mark.parametrize("path", ["/mcp", "/sse"])
def test_inspector_lists_tools_and_generates_a_picture_over_http(
    tools: NpmTools, tmp_path: Path, offline_base: str, path: str
) -> None:
    listed = inspect(tools, tmp_path, f"{offline_base}{path}", "--method", "tools/list", "--format", "json")
    assert {tool["name"] for tool in listed["result"]["tools"]} == TOOL_NAMES
    called = inspect(tools, tmp_path, f"{offline_base}{path}", *_generate_args(f"a fox over {path}"))
    result = called["result"]
    assert result["isError"] is False, result
    data = result["structuredContent"]
    assert data["status"] == "completed" and data["outputs"][0]["path"] is None  # no saving over HTTP
    assert re.match(r"^[0-9a-f]{32}$", data["prediction_id"])


def test_conformance_suite_passes_every_generic_scenario(
    tools: NpmTools, tmp_path: Path, offline_base: str
) -> None:
    results = tmp_path / "conformance"
    cmd = tools.conformance_cmd(
        "server", "--url", f"{offline_base}/mcp", "--expected-failures", EXPECTED_FAILURES, "-o", results
    )
    env = _env(tools, tmp_path)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=75, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, (
        f"conformance exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    )
    summary = parse_conformance_summary(proc.stdout)
    checks = load_conformance_checks(results)
    for scenario in GENERIC_SCENARIOS:
        assert scenario in checks, f"{scenario} did not run"
        assert not scenario_failed(checks[scenario]), (scenario, checks[scenario])
        passed, failed = summary[scenario]
        assert passed >= 1 and failed == 0, (scenario, summary[scenario])
    listed = set(re.findall(r"^\s+-\s+([\w-]+)", EXPECTED_FAILURES.read_text(encoding="utf-8"), re.M))
    assert listed and not listed & set(GENERIC_SCENARIOS)
    assert listed <= set(checks), f"listed but never run: {sorted(listed - set(checks))}"


def test_conformance_next_passes_the_2026_generic_scenarios_against_the_real_server(
    tools: NpmTools, tmp_path: Path, offline_base: str
) -> None:
    results = tmp_path / "conformance-2026"
    cmd = tools.conformance_next_cmd(
        "server", "--url", f"{offline_base}/mcp", "--suite", "all", "--spec-version", "2026-07-28",
        "--expected-failures", EXPECTED_FAILURES_2026, "-o", results,
    )  # fmt: skip
    env = _env(tools, tmp_path)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=80, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, (
        f"conformance exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    )
    checks = load_conformance_checks(results)
    assert not any(name.startswith("tasks-") for name in checks)  # extensions are not on the timeline
    for scenario in (*GENERIC_SCENARIOS_2026, "server-stateless"):
        assert scenario in checks, f"{scenario} did not run"
    for scenario in GENERIC_SCENARIOS_2026:
        assert not scenario_failed(checks[scenario]), (scenario, checks[scenario])
    stateless = {check["id"]: check["status"] for check in checks["server-stateless"]}
    assert stateless["sep-2575-server-implements-discover"] == "SUCCESS", stateless
    assert sum(status == "SUCCESS" for status in stateless.values()) >= 20, stateless


@pytest.mark.parametrize("scenario", TASKS_SCENARIOS)
def test_conformance_next_passes_every_tasks_scenario_against_the_fixture_server(
    tools: NpmTools, tmp_path: Path, fixture_base: str, scenario: str
) -> None:
    results = tmp_path / "conformance-tasks"
    cmd = tools.conformance_next_cmd(
        "server", "--url", f"{fixture_base}/mcp", "--scenario", scenario, "-o", results
    )
    env = _env(tools, tmp_path)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, (
        f"{scenario} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    )
    assert "SKIPPED" not in proc.stdout.split("Checks:")[0], proc.stdout[-2000:]  # it ran, not skipped whole
    checks = load_conformance_checks(results)[scenario]
    assert not scenario_failed(checks), checks
    passed, total, failed, warnings = parse_single_scenario(proc.stdout) or (0, -1, -1, -1)
    assert (failed, warnings) == (0, 0) and passed == total, proc.stdout[-2000:]
    if scenario == "tasks-status-notifications":
        assert [c["status"] for c in checks] == ["SKIPPED"], checks  # the suite's own pending check
    else:
        assert passed >= 2 and any(
            c["id"] == "wire-schema-valid" and c["status"] == "SUCCESS" for c in checks
        )
