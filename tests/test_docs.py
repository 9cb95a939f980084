"""The docs stay true to the code: the configuration table is the settings' own declarations, and
every page the README links to exists."""

from __future__ import annotations

import re
from pathlib import Path

from atlas_image_mcp.settings import ENV_VARS

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CONFIGURATION = ROOT / "docs" / "configuration.md"
_ROW = re.compile(r"^\|\s*`(ATLAS[A-Z_]*)`\s*\|\s*([^|]*?)\s*\|")


def _configuration_rows() -> dict[str, str]:
    text = CONFIGURATION.read_text(encoding="utf-8")
    section = text.split("# Configuration", 1)[1].split("\n# ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = _ROW.match(line)
        if match:
            rows[match.group(1)] = match.group(2).replace("`", "").strip()
    return rows


def test_the_configuration_page_lists_every_setting_once_with_its_declared_default() -> None:
    rows = _configuration_rows()
    assert list(rows) == list(ENV_VARS), "docs/configuration.md and settings.py list different variables"
    for name, var in ENV_VARS.items():
        assert rows[name] == var.shown_default, (
            f"{name}: docs/configuration.md says {rows[name]!r}, code {var.shown_default!r}"
        )


_LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


def test_every_relative_link_of_the_readme_and_docs_points_at_a_file_that_exists() -> None:
    broken = []
    for page in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        for target, _ in _LINK.findall(page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert broken == []


def test_the_tests_readme_says_where_every_module_is_tested() -> None:
    text = (ROOT / "tests" / "README.md").read_text(encoding="utf-8")
    table = text.split("## Where each module is tested", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`([\w/]+\.py|emulator/)`", table))
    package = ROOT / "src" / "atlas_image_mcp"
    modules = {str(p.relative_to(package)) for p in package.rglob("*.py") if "emulator" not in p.parts}
    missing = sorted(m for m in modules if m not in listed)
    assert missing == [], f"tests/README.md does not say where these are tested: {missing}"


def test_ci_runs_the_readmes_commands_as_written_there() -> None:
    """.ci/run reads the README's commands from README.md (so it cannot run a variant of them), runs
    every command of its two set-up sections (the fast loop too), and runs them with no virtual
    environment activated and no variable of its own."""
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    readme = README.read_text(encoding="utf-8")
    sections = re.search(r"^README_SECTIONS=\((.*)\)$", script, re.M)
    assert sections is not None
    headings = re.findall(r'"([^"]+)"', sections.group(1))
    assert headings == ["Try it (no key, no network)", "Run the tests"]
    for heading in headings:
        section = readme.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
        blocks = re.findall(r"```sh\n(.*?)\n```", section, re.S)
        assert blocks and blocks[0].startswith("python3 -m venv .venv && "), heading
        assert all(block.startswith(".venv/bin/") for block in blocks[1:]), heading  # the venv made above
    code = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("#"))
    assert "activate" not in code, "an activated venv would hide a command that needs one"
    assert not re.search(r"^\s*export ", code, re.M), "the tests must pass without variables CI adds"
