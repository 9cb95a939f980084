"""The MCP Registry entry: server.json is what the package declares, valid against the registry's
schema (the pinned copy, offline) and acceptable to the checks the registry makes when publishing."""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from atlas_image_mcp import __version__
from atlas_image_mcp.settings import ENV_VARS, Settings

ROOT = Path(__file__).resolve().parents[1]
SERVER_JSON = ROOT / "server.json"
SCHEMA = ROOT / "packaging" / "registry" / "server.schema.json"
PROVENANCE = ROOT / "packaging" / "registry" / "README.md"


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


registry = _script("registry")


def entry() -> dict[str, Any]:
    return dict(json.loads(SERVER_JSON.read_text(encoding="utf-8")))


def schema() -> dict[str, Any]:
    return dict(json.loads(SCHEMA.read_text(encoding="utf-8")))


def test_server_json_is_what_the_package_declares() -> None:
    assert SERVER_JSON.read_text(encoding="utf-8") == registry.rendered(), (
        "run python scripts/registry.py --write"
    )


def test_the_version_is_the_packages_and_every_package_lists_every_setting() -> None:
    doc = entry()
    assert doc["version"] == __version__
    pypi, oci = doc["packages"]
    assert (pypi["registryType"], pypi["identifier"], pypi["version"]) == (
        "pypi",
        "atlas-image-mcp",
        __version__,
    )
    assert pypi["runtimeHint"] == "uvx" and pypi["transport"] == {"type": "stdio"}
    assert oci["registryType"] == "oci" and oci["identifier"].endswith(f"/atlas-image-mcp:{__version__}")
    for package in (pypi, oci):
        variables = {var["name"]: var for var in package["environmentVariables"]}
        assert list(variables) == list(ENV_VARS)
        for name, var in variables.items():
            assert var["description"] == ENV_VARS[name].description
            assert var.get("isSecret", False) is ENV_VARS[name].secret, name
    secrets = {name for name, var in ENV_VARS.items() if var.secret}
    assert {"ATLASCLOUD_API_KEY", "ATLAS_MCP_AUTH_TOKEN", "ATLAS_MCP_TASK_SECRET"} <= secrets


def test_every_default_and_choice_is_a_value_the_server_takes_as_that_setting() -> None:
    for var in entry()["packages"][0]["environmentVariables"]:
        field = ENV_VARS[var["name"]].field
        values = [var["default"]] if "default" in var else []
        for value in values:
            assert (
                getattr(Settings.from_env({var["name"]: value}), field)
                == Settings.model_fields[field].default
            )
        for choice in var.get("choices", []):
            Settings.from_env({var["name"]: choice})


def test_the_hosted_example_asks_for_the_servers_token_as_a_secret_header() -> None:
    http, sse = entry()["remotes"]
    assert (http["type"], http["url"], sse["type"], sse["url"]) == (
        "streamable-http", "https://{host}/mcp", "sse", "https://{host}/sse"
    )  # fmt: skip
    for remote in (http, sse):
        authorization = next(h for h in remote["headers"] if h["name"] == "Authorization")
        assert authorization["isSecret"] is True and authorization["value"] == "Bearer {token}"


def test_the_pinned_schema_is_the_registrys_2025_12_11_schema_byte_for_byte() -> None:
    data = SCHEMA.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert f"sha256 `{digest}`" in PROVENANCE.read_text(encoding="utf-8"), "the provenance names this file"
    assert json.loads(data)["$id"] == registry.SCHEMA_URL == entry()["$schema"]


def test_server_json_is_valid_and_publishable() -> None:
    assert registry.check() == []


def test_the_owner_is_written_in_one_place_and_everything_else_follows_it() -> None:
    name = entry()["name"]
    owner = re.fullmatch(r"io\.github\.([A-Za-z0-9-]+)/atlas-image-mcp", name)
    assert owner is not None
    repository = f"https://github.com/{owner.group(1)}/atlas-image-mcp"
    assert entry()["repository"]["url"] == repository == registry.repository_url()
    assert f"<!-- mcp-name: {name} -->" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert f'io.modelcontextprotocol.server.name="{name}"' in (ROOT / "Dockerfile").read_text(
        encoding="utf-8"
    )
    assert entry()["packages"][1]["identifier"].startswith(f"ghcr.io/{owner.group(1).lower()}/")


def _broken(change: Any) -> list[str]:
    doc = copy.deepcopy(entry())
    change(doc)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return list(registry.problems(doc, schema(), readme, (ROOT / "Dockerfile").read_text(encoding="utf-8")))


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (lambda d: d["packages"][0].update(version="latest"), "latest"),
        (lambda d: d["packages"][0].update(version="^0.1.0"), "'latest' or a range"),
        (lambda d: d.update(description="x" * 101), "is too long"),
        (lambda d: d.update(name="atlas-image-mcp"), "grammar"),
        (
            lambda d: d["packages"][0]["environmentVariables"][0].update(isSecrett=True),
            "unknown field 'isSecrett'",
        ),
        (lambda d: d["remotes"][0].update(url="http://localhost:8000/mcp"), "must be https and not a local"),
        (lambda d: d["remotes"][0].update(url="https://{place}/mcp"), "undeclared variables ['place']"),
        (lambda d: d["packages"][1].update(version="0.1.0"), "carries its version in the image tag"),
        (lambda d: d["repository"].update(url="https://gitlab.com/x/y"), "not a GitHub repository URL"),
        (
            lambda d: d.update(name="io.github.someone-else/atlas-image-mcp"),
            "lacks the PyPI ownership marker",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_what_the_registry_would_refuse_is_found(change: Any, said: str) -> None:
    assert any(said in problem for problem in _broken(change)), _broken(change)


def test_the_readme_marker_must_end_where_the_name_ends() -> None:
    name = "io.github.OWNER/atlas-image-mcp"
    assert registry.readme_declares(f"<!-- mcp-name: {name} -->", name)
    assert registry.readme_declares(f"mcp-name: {name}\n", name)
    assert not registry.readme_declares(f"mcp-name: {name}.", name)
    assert not registry.readme_declares(f"mcp-name: {name}-extra", name)
