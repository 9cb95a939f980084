"""The MCP Registry entry (server.json): made from the project's own declarations, and checked.

    python scripts/registry.py          # check: server.json is current, valid, publishable (exit 1 if not)
    python scripts/registry.py --write  # write server.json, the README's mcp-name marker and the
                                        # Dockerfile's registry label from pyproject.toml and the package

One place names the owner: ``[project.urls] Repository`` in pyproject.toml
(``https://github.com/OWNER/atlas-image-mcp``). The registry name is ``io.github.<owner>/atlas-image-mcp``
(the registry's GitHub login grants that namespace to the owner, spelled as GitHub spells it), the
container image is ``ghcr.io/<owner>/atlas-image-mcp``. Change the URL there, run ``--write``, commit.

Where each part comes from: the version from ``atlas_image_mcp.__version__`` (the one place it is
defined); every environment variable, its description, default and whether it is secret from
``atlas_image_mcp.settings`` (``setting(...)`` declarations); the format from the setting's type.
The checks are the registry's JSON schema (``packaging/registry/server.schema.json``, a pinned copy,
validated offline) and the checks the registry makes when publishing that a schema cannot express
(docs/distribution.md lists them).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from decimal import Decimal
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
SERVER_JSON = ROOT / "server.json"
SCHEMA_FILE = ROOT / "packaging" / "registry" / "server.schema.json"
SCHEMA_URL = "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"
PACKAGE = "atlas-image-mcp"
TITLE = "Atlas Image (FLUX)"
DESCRIPTION = "Create and edit pictures with FLUX models (schnell, dev, pro, Kontext, FLUX.2) on Atlas Cloud"

_REPOSITORY = re.compile(
    r'^Repository\s*=\s*"(https://github\.com/([A-Za-z0-9-]+)/([A-Za-z0-9._-]+))"\s*$', re.M
)
_MARKER = re.compile(r"^<!-- mcp-name: (\S+) -->$", re.M)
_LABEL_NAME = "io.modelcontextprotocol.server.name"


# --- what the entry is made of ------------------------------------------------------------------------


def repository_url() -> str:
    """``[project.urls] Repository`` of pyproject.toml: the one place the owner is written."""
    found = _REPOSITORY.search((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    if found is None:
        raise SystemExit('pyproject.toml needs [project.urls] Repository = "https://github.com/OWNER/REPO"')
    return found.group(1)


def owner() -> str:
    return urlsplit(repository_url()).path.strip("/").split("/")[0]


def server_name() -> str:
    return f"io.github.{owner()}/{PACKAGE}"


def image() -> str:
    """The container image, as ghcr.io spells it (lower case)."""
    from atlas_image_mcp import __version__

    return f"ghcr.io/{owner().lower()}/{PACKAGE}:{__version__}"


def _format(annotation: Any) -> str:
    """The registry's input format of a setting: boolean, number, filepath or string."""
    kinds = [
        a for a in (get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,))
    ]
    kinds = [k for k in kinds if k is not type(None)]
    if any(get_origin(k) is Literal for k in kinds) and len(kinds) > 1:
        return "string"  # an amount or a word (ATLAS_MCP_CONFIRM_ABOVE_USD: 0.25 or off)
    if kinds == [bool]:
        return "boolean"
    if kinds and all(k in (int, float, Decimal) for k in kinds):
        return "number"
    if kinds == [Path]:
        return "filepath"
    return "string"


def environment_variable(env: str) -> dict[str, Any]:
    """One setting as the registry describes an environment variable."""
    from atlas_image_mcp.settings import ENV_VARS, Settings

    var = ENV_VARS[env]
    field = Settings.model_fields[var.field]
    entry: dict[str, Any] = {"name": env, "description": var.description}
    kind = _format(field.annotation)
    if kind != "string":
        entry["format"] = kind
    # a default only when the one the docs show is a value the variable takes and means the default
    # ("(none)", "unlimited", "~/Pictures/..." are words about a default, not values)
    if field.default is not None:
        try:
            same = getattr(Settings(**{var.field: var.shown_default}), var.field) == field.default
        except ValueError:
            same = False
        if same:
            entry["default"] = (
                {"1": "true", "0": "false"}[var.shown_default] if kind == "boolean" else var.shown_default
            )
    choices = (
        [a for a in get_args(field.annotation) if isinstance(a, str)]
        if get_origin(field.annotation) is Literal
        else []
    )
    if choices:
        entry["choices"] = choices
    if var.secret:
        entry["isSecret"] = True
    return entry


def server_json() -> dict[str, Any]:
    """The whole entry: the PyPI package (uvx), the container image (docker, stdio) and a hosted example."""
    from atlas_image_mcp import __version__
    from atlas_image_mcp.settings import ENV_VARS

    every = [environment_variable(env) for env in ENV_VARS]
    authorization = {
        "name": "Authorization",
        "description": "The server's bearer token (its ATLAS_MCP_AUTH_TOKEN)",
        "isRequired": True,
        "isSecret": True,
        "value": "Bearer {token}",
        "variables": {
            "token": {
                "description": "The server's ATLAS_MCP_AUTH_TOKEN",
                "isRequired": True,
                "isSecret": True,
            }
        },
    }
    user_key = {
        "name": "X-Atlas-Api-Key",
        "description": "Your Atlas Cloud API key, on a server that runs with ATLAS_MCP_USER_KEYS=1",
        "isSecret": True,
    }
    host = {
        "host": {
            "description": "Host name of your atlas-image-mcp deployment",
            "isRequired": True,
            "placeholder": "mcp.example.com",
        }
    }
    return {
        "$schema": SCHEMA_URL,
        "name": server_name(),
        "title": TITLE,
        "description": DESCRIPTION,
        "version": __version__,
        "websiteUrl": repository_url(),
        "repository": {"url": repository_url(), "source": "github"},
        "packages": [
            {
                "registryType": "pypi",
                "registryBaseUrl": "https://pypi.org",
                "identifier": PACKAGE,
                "version": __version__,
                "runtimeHint": "uvx",
                "transport": {"type": "stdio"},
                "environmentVariables": every,
            },
            {
                # docker run -i --rm [-e VAR ...] IMAGE serve: the image's ENTRYPOINT is the command
                "registryType": "oci",
                "identifier": image(),
                "runtimeHint": "docker",
                "transport": {"type": "stdio"},
                "packageArguments": [{"type": "positional", "value": "serve"}],
                "environmentVariables": every,
            },
        ],
        "remotes": [
            {
                "type": "streamable-http",
                "url": "https://{host}/mcp",
                "variables": host,
                "headers": [authorization, user_key],
            },
            {
                "type": "sse",
                "url": "https://{host}/sse",
                "variables": host,
                "headers": [authorization, user_key],
            },
        ],
    }


def rendered() -> str:
    return json.dumps(server_json(), indent=2, ensure_ascii=False) + "\n"


# --- the registry's checks ----------------------------------------------------------------------------

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9.-]*[a-zA-Z0-9]/[a-zA-Z0-9][a-zA-Z0-9._-]*[a-zA-Z0-9]$")
_RANGE = re.compile(r"^\s*(\^|~|>=|<=|>|<|=)|\s-\s|\|\||(^|\.)[xX*](\.|$)")
_GITHUB = re.compile(r"^https?://(www\.)?github\.com/[\w.-]+/[\w.-]+/?$")
_VARIABLE = re.compile(r"\{([^}]+)\}")
_OCI_HOSTS = ("docker.io", "ghcr.io", "quay.io", "mcr.microsoft.com")


def readme_declares(readme: str, name: str) -> bool:
    """``mcp-name: NAME`` followed by something that cannot continue a name (PyPI ownership check)."""
    for match in re.finditer(re.escape(f"mcp-name: {name}"), readme):
        end = match.end()
        if end == len(readme) or not re.match(r"[A-Za-z0-9./_-]", readme[end]):
            return True
    return False


def _schema_names(schema: Any) -> set[str]:
    """Every property name the schema defines anywhere (it allows others, so typos pass it)."""
    names: set[str] = set()
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "properties" and isinstance(value, dict):
                names |= set(value)
            names |= _schema_names(value)
    elif isinstance(schema, list):
        for item in schema:
            names |= _schema_names(item)
    return names


def _keys(doc: Any, where: str = "$") -> list[tuple[str, str]]:
    """(path, key) of every object key in ``doc``, except inside free-form maps (variables, _meta)."""
    found: list[tuple[str, str]] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            found.append((where, key))
            if key == "variables" and isinstance(value, dict):
                for name, variable in value.items():
                    found += _keys(variable, f"{where}.variables.{name}")
            elif key != "_meta":
                found += _keys(value, f"{where}.{key}")
    elif isinstance(doc, list):
        for n, item in enumerate(doc):
            found += _keys(item, f"{where}[{n}]")
    return found


def problems(doc: dict[str, Any], schema: dict[str, Any], readme: str, dockerfile: str | None) -> list[str]:
    """Why the registry would refuse ``doc`` (empty: it would accept it)."""
    from jsonschema import Draft7Validator, FormatChecker

    out = [
        f"schema: {error.json_path}: {error.message}"
        for error in Draft7Validator(schema, format_checker=FormatChecker()).iter_errors(doc)
    ]
    known = _schema_names(schema) | {"$schema"}
    out += [f"{where}: unknown field {key!r}" for where, key in _keys(doc) if key not in known]
    if doc.get("$schema") != SCHEMA_URL:
        out.append(f"$schema must be {SCHEMA_URL}")
    name = str(doc.get("name", ""))
    if not _NAME.match(name) or name.count("/") != 1:
        out.append(f"name {name!r} does not follow the registry's grammar")
    versions = [("version", str(doc.get("version", "")))]
    versions += [
        (f"packages[{n}].version", str(p["version"]))
        for n, p in enumerate(doc.get("packages", []))
        if "version" in p
    ]
    for where, value in versions:
        if value == "latest" or _RANGE.search(value):
            out.append(f"{where} {value!r} is 'latest' or a range")
    if doc.get("websiteUrl") and urlsplit(str(doc["websiteUrl"])).scheme != "https":
        out.append("websiteUrl must be https")
    repository = doc.get("repository") or {}
    if repository.get("source") == "github" and not _GITHUB.match(str(repository.get("url", ""))):
        out.append(f"repository.url {repository.get('url')!r} is not a GitHub repository URL")
    for n, remote in enumerate(doc.get("remotes", [])):
        url = str(remote.get("url", ""))
        host = urlsplit(_VARIABLE.sub("placeholder", url)).hostname or ""
        if (
            not url.startswith("https://")
            or host in ("localhost", "127.0.0.1")
            or host.endswith(".localhost")
        ):
            out.append(f"remotes[{n}].url {url!r} must be https and not a local address")
        undeclared = set(_VARIABLE.findall(url)) - set(remote.get("variables", {}))
        if undeclared:
            out.append(f"remotes[{n}].url uses undeclared variables {sorted(undeclared)}")
        for header in remote.get("headers", []):
            missing = set(_VARIABLE.findall(str(header.get("value", "")))) - set(header.get("variables", {}))
            if missing:
                out.append(
                    f"remotes[{n}] header {header.get('name')} uses undeclared variables {sorted(missing)}"
                )
    for n, package in enumerate(doc.get("packages", [])):
        identifier = str(package.get("identifier", ""))
        if " " in identifier:
            out.append(f"packages[{n}].identifier has spaces")
        transport = package.get("transport", {})
        if transport.get("type") == "stdio" and transport.get("url"):
            out.append(f"packages[{n}].transport: stdio has no url")
        kind = package.get("registryType")
        if kind == "pypi" and not readme_declares(readme, name):
            out.append(f"README.md lacks the PyPI ownership marker <!-- mcp-name: {name} -->")
        if kind == "oci":
            if "version" in package:
                out.append(
                    f"packages[{n}]: an OCI package carries its version in the image tag, not 'version'"
                )
            if identifier.split("/", 1)[0] not in _OCI_HOSTS or ":" not in identifier.rsplit("/", 1)[-1]:
                out.append(f"packages[{n}].identifier {identifier!r} is not registry/namespace/image:tag")
            label = re.search(rf'{re.escape(_LABEL_NAME)}="([^"]*)"', (dockerfile or "").replace("\\\n", " "))
            if dockerfile is not None and (label is None or label.group(1) != name):
                out.append(
                    f'Dockerfile lacks LABEL {_LABEL_NAME}="{name}" (the registry reads it from the image)'
                )
    return out


def check() -> list[str]:
    """Everything wrong with the committed files (empty when server.json is current and publishable)."""
    found: list[str] = []
    current = SERVER_JSON.read_text(encoding="utf-8") if SERVER_JSON.exists() else ""
    if current != rendered():
        found.append("server.json is not what the package declares: run python scripts/registry.py --write")
    doc = json.loads(current) if current else {}
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    return found + problems(doc, schema, readme, dockerfile)


# --- writing ------------------------------------------------------------------------------------------


def write() -> None:
    """server.json, and the two places outside it that must carry the same name."""
    SERVER_JSON.write_text(rendered(), encoding="utf-8")
    name = server_name()
    readme_path = ROOT / "README.md"
    readme = readme_path.read_text(encoding="utf-8")
    if not _MARKER.search(readme):
        raise SystemExit("README.md has no <!-- mcp-name: ... --> line to update")
    readme_path.write_text(_MARKER.sub(f"<!-- mcp-name: {name} -->", readme), encoding="utf-8")
    docker_path = ROOT / "Dockerfile"
    text = docker_path.read_text(encoding="utf-8")
    text = re.sub(rf'{re.escape(_LABEL_NAME)}="[^"]*"', f'{_LABEL_NAME}="{name}"', text)
    text = re.sub(
        r'org\.opencontainers\.image\.source="[^"]*"',
        f'org.opencontainers.image.source="{repository_url()}"',
        text,
    )
    docker_path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "--write", action="store_true", help="write server.json, the README marker, the label"
    )
    args = parser.parse_args(argv)
    if args.write:
        write()
    found = check()
    for problem in found:
        sys.stderr.write(f"server.json: {problem}\n")
    if not found:
        sys.stderr.write(f"server.json: {server_name()} {json.loads(rendered())['version']} is valid\n")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
