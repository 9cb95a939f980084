"""One-click install links and ``claude mcp add`` lines, made from mcp-config.example.json.

    python scripts/client_links.py           # check that README.md shows what this makes (exit 1 if not)
    python scripts/client_links.py --write   # write it into README.md, between the two marker lines

The same entries the README shows as JSON become:

* ``claude mcp add`` lines (Claude Code), each the command line form of one entry;
* Cursor and VS Code install links. A link must work for anyone who clicks it, with no path to
  fill in, so the links carry the registry form of the command, ``uvx atlas-image-mcp`` (uv fetches
  the package from PyPI); the rest of the entry (name, env, VS Code's key prompt) is the example's.
  They work from the first release on PyPI.

Link formats (what each client decodes):

* Cursor: ``https://cursor.com/en/install-mcp?name=NAME&config=BASE64`` (the web form of
  ``cursor://anysphere.cursor-deeplink/mcp/install?...``; GitHub shows only https links), where
  BASE64 is the base64 of the server object's JSON (``{"command", "args", "env"}``, no name, no
  ``mcpServers``), percent-encoded;
* VS Code: ``https://vscode.dev/redirect/mcp/install?name=NAME&config=JSON[&inputs=JSON]``, each
  percent-encoded as JavaScript's encodeURIComponent does (the web form of
  ``vscode:mcp/install?JSON``).
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "mcp-config.example.json"
README = ROOT / "README.md"
BEGIN = "<!-- made by scripts/client_links.py from mcp-config.example.json: begin -->"
END = "<!-- made by scripts/client_links.py: end -->"
#: The command every link installs: the package from PyPI, run by uvx.
REGISTRY_COMMAND = {"command": "uvx", "args": ["atlas-image-mcp"]}
#: Example entry -> what its link is called in the README.
LINKS = {
    "cursor": "Add to Cursor",
    "vscode": "Install in VS Code",
    "vscode_offline": "Try it offline in VS Code",
}
#: Example entry -> what its ``claude mcp add`` line is for.
CLAUDE_LINES = {
    "claude_desktop": "with your key",
    "claude_desktop_offline": "offline, no key",
    "claude_desktop_uvx": "run from the clone by uvx",
    "hosted_streamable_http": "a hosted server over streamable HTTP",
    "hosted_sse": "a hosted server over SSE",
}


def examples() -> dict[str, Any]:
    data = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    return {name: value for name, value in data.items() if not name.startswith("_")}


def the_entry(config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The one server of a client configuration: its name and its object."""
    table = config.get("servers") or config["mcpServers"]
    [(name, server)] = table.items()
    return name, dict(server)


def one_click(server: dict[str, Any]) -> dict[str, Any]:
    """The entry as a link installs it: the same, with the registry form of the command."""
    return {**server, **REGISTRY_COMMAND}


def _component(text: str) -> str:
    """JavaScript's encodeURIComponent: everything but A-Z a-z 0-9 - _ . ! ~ * ' ( ) is escaped."""
    return quote(text, safe="-_.!~*'()")


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)  # JSON.stringify's form


def cursor_link(name: str, server: dict[str, Any]) -> str:
    config = base64.b64encode(_compact(server).encode()).decode()
    return f"https://cursor.com/en/install-mcp?name={_component(name)}&config={_component(config)}"


def vscode_link(name: str, server: dict[str, Any], inputs: list[Any] | None = None) -> str:
    link = f"https://vscode.dev/redirect/mcp/install?name={_component(name)}&config={_component(_compact(server))}"
    return link + (f"&inputs={_component(_compact(inputs))}" if inputs else "")


def decode_cursor(link: str) -> tuple[str, dict[str, Any]]:
    """What Cursor reads from a link: the server's name and object."""
    query = parse_qs(urlsplit(link).query, strict_parsing=True)
    return query["name"][0], json.loads(base64.b64decode(query["config"][0], validate=True))


def decode_vscode(link: str) -> tuple[str, dict[str, Any], list[Any] | None]:
    """What VS Code reads from a link: the name, the server object and the inputs to prompt for."""
    query = parse_qs(urlsplit(link).query, strict_parsing=True)
    inputs = json.loads(query["inputs"][0]) if "inputs" in query else None
    return query["name"][0], json.loads(query["config"][0]), inputs


def link_for(example: str) -> str:
    config = examples()[example]
    name, server = the_entry(config)
    if example.startswith("vscode"):
        return vscode_link(name, one_click(server), config.get("inputs"))
    return cursor_link(name, one_click(server))


def _quote(word: str) -> str:
    """A shell word, in double quotes when it needs quoting at all (the form most shells share)."""
    if shlex.quote(word) == word:
        return word
    return f'"{word}"' if not set(word) & set('"$`\\!') else shlex.quote(word)


def claude_add(example: str) -> str:
    """The ``claude mcp add`` line of an entry: the name first (-e and --header take several values,
    so they come after it), then the options, then the command or URL."""
    name, server = the_entry(examples()[example])
    if "url" in server:
        headers = " ".join(f"--header {_quote(f'{k}: {v}')}" for k, v in server.get("headers", {}).items())
        return f"claude mcp add --transport {server['type']} {name} {server['url']} {headers}".rstrip()
    env = " ".join(f"-e {_quote(f'{k}={v}')}" for k, v in server.get("env", {}).items())
    command = " ".join(_quote(word) for word in [server["command"], *server.get("args", [])])
    return f"claude mcp add {name} {env} -- {command}"


def parse_claude_add(line: str) -> tuple[str, dict[str, Any]]:
    """What ``claude mcp add`` makes of a line: the name and the server object it stores."""
    words = shlex.split(line, comments=True)
    assert words[:3] == ["claude", "mcp", "add"], line
    words = words[3:]
    transport = "stdio"
    if words[0] == "--transport":
        transport, words = words[1], words[2:]
    name, words = words[0], words[1:]
    if transport != "stdio":
        url, rest = words[0], words[1:]
        headers = dict(rest[n + 1].split(": ", 1) for n in range(0, len(rest), 2) if rest[n] == "--header")
        return name, {"type": transport, "url": url, "headers": headers}
    split = words.index("--")
    options, command = words[:split], words[split + 1 :]
    env = dict(options[n + 1].split("=", 1) for n in range(0, len(options), 2) if options[n] == "-e")
    return name, {"command": command[0], "args": command[1:], "env": env}


def section() -> str:
    """The part of the README made here."""
    links = " · ".join(f"[{label}]({link_for(example)})" for example, label in LINKS.items())
    lines = [
        BEGIN,
        "",
        f"**One click** (once the package is on PyPI; they install `uvx atlas-image-mcp`): {links}",
        "",
        "**Claude Code**, in a terminal:",
        "",
        "```sh",
        *(f"{claude_add(example)}    # {about}" for example, about in CLAUDE_LINES.items()),
        "```",
        "",
        END,
    ]
    return "\n".join(lines)


_SECTION = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)


def readme_section() -> str | None:
    found = _SECTION.search(README.read_text(encoding="utf-8"))
    return found.group(0) if found else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--write", action="store_true", help="write the section into README.md")
    args = parser.parse_args(argv)
    text = README.read_text(encoding="utf-8")
    if _SECTION.search(text) is None:
        sys.stderr.write(f"README.md has no section between\n{BEGIN}\n{END}\n")
        return 1
    if args.write:
        README.write_text(_SECTION.sub(lambda _: section(), text), encoding="utf-8")
    if readme_section() != section():
        sys.stderr.write("README.md's links are not the ones mcp-config.example.json makes: run --write\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
