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


# --- layers -------------------------------------------------------------------------------------


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The package's modules ``path`` imports (type-only imports included)."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("atlas_image_mcp")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            elif node.module and node.module.startswith("atlas_image_mcp"):
                target = node.module
            else:
                continue
            found.add(target)
            found |= {f"{target}.{alias.name}" for alias in node.names}  # `from . import compat`
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in SRC.rglob("*.py")}
    return {name: _imports(path) & set(modules) - {name} for name, path in modules.items()}


def test_no_module_imports_itself_back_through_others() -> None:
    graph = _graph()
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in trail:
                cycles.append(trail[trail.index(nxt) :] + [nxt])
            elif nxt not in done:
                visit(nxt, [*trail, nxt])
        done.add(node)

    done: set[str] = set()
    for start in sorted(graph):
        if start not in done:
            visit(start, [start])
    assert cycles == []


def test_only_the_server_assembly_imports_the_tools() -> None:
    tools = "atlas_image_mcp.tools"
    importers = {
        name
        for name, imported in _graph().items()
        if not name.startswith(tools) and any(m == tools or m.startswith(f"{tools}.") for m in imported)
    }
    assert importers == {"atlas_image_mcp.server"}


def test_the_atlas_client_knows_no_tool_parameters_nor_the_wire_mapping() -> None:
    imported = _graph()["atlas_image_mcp.client"]
    assert not imported & {"atlas_image_mcp.params", "atlas_image_mcp.wire", "atlas_image_mcp.tools"}


def test_no_function_outside_the_emulator_takes_more_than_eight_named_parameters() -> None:
    crowded = []
    for path in SRC.rglob("*.py"):
        if "emulator" in path.relative_to(SRC).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                names = [
                    p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs) if p.arg not in ("self", "cls")
                ]
                if len(names) > 8:
                    crowded.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({len(names)})")
    assert crowded == []


#: Imported only by the paths that use them: pictures, the HTTP stack, sign-in, the emulator,
#: PostgreSQL (a start over stdio, the common one, pays for none of them).
_NOT_ON_STDIO = (
    "PIL",
    "aiohttp",
    "jwt",
    "psycopg",
    "atlas_image_mcp.http",
    "atlas_image_mcp.auth.service",
    "atlas_image_mcp.emulator",
)


def test_a_server_over_stdio_imports_nothing_it_does_not_use() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from atlas_image_mcp.settings import Settings\n"
        "from atlas_image_mcp.runtime import Runtime\n"
        "from atlas_image_mcp.server import make_server\n"
        "make_server(Runtime.create(Settings(api_key='k' * 24)))\n"
        f"print(sorted({{m.split('.')[0] if m.split('.')[0] != 'atlas_image_mcp' else m "
        f"for m in sys.modules}} & set({_NOT_ON_STDIO!r})))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
