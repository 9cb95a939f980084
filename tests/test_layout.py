"""The shape of the code: names come from their declaration, layers import one way.

These read the source, not the running server: they fail when a change writes a setting's name as
a literal outside ``settings.py``, or makes a lower layer import a higher one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import atlas_image_mcp

SRC = Path(atlas_image_mcp.__file__).parent
_NAME_PREFIXES = ("ATLAS_MCP_", "ATLASCLOUD_")


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of the string constants that are docstrings (module, class, function)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _setting_literals(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _docstrings(tree)
    return [
        f"{path.relative_to(SRC)}:{node.lineno}: {node.value[:60]!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in skip
        and any(prefix in node.value for prefix in _NAME_PREFIXES)
    ]


def test_no_setting_is_named_by_a_literal_outside_settings() -> None:
    offenders = [
        line
        for path in sorted(SRC.rglob("*.py"))
        if path.name != "settings.py" or path.parent != SRC
        for line in _setting_literals(path)
    ]
    assert offenders == [], "name settings with settings.env_name(field):\n" + "\n".join(offenders)


def test_the_literal_check_sees_f_strings_and_skips_docstrings(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""Mentions ATLAS_MCP_WAIT_SECONDS in a docstring."""\n'
        'x = f"set ATLAS_MCP_WAIT_SECONDS to {1}"\n'
        'def f():\n    """ATLASCLOUD_API_KEY here too."""\n    return "ATLASCLOUD_API_KEY"\n',
        encoding="utf-8",
    )
    global SRC
    saved, SRC = SRC, tmp_path
    try:
        found = _setting_literals(sample)
    finally:
        SRC = saved
    assert [line.split(":")[1] for line in found] == ["2", "5"]
