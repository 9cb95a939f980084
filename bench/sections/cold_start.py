"""Section: cold start, from spawn to the ``tools/list`` answer, this server beside the official one."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import atlas_image_mcp
from bench import jsonrpc, official
from bench.procs import clean_env
from bench.progress import log
from bench.report import Context, Row, Section
from bench.servers import SERVER_COMMAND
from bench.stats import median, ms
from bench.stdio import RawStdio

OURS = "atlas-image-mcp (python -m atlas_image_mcp)"
NPX = f"{official.NPX_PACKAGE} (npx -y {official.NPX_PACKAGE})"
LOCAL = f"{official.NPX_PACKAGE} (node dist/index.js, no npx)"
SDK_IMPORT = "python -c 'import mcp.server.mcpserver' (SDK import only, reference)"
SDK_IMPORT_CODE = "import mcp.server.mcpserver, sys; sys.stdout.write('ready\\n'); sys.stdout.flush()"

#: Groups of the import-time profile, each with the top-level packages whose imports count for it.
IMPORT_GROUPS = {
    "MCP SDK (mcp, mcp_types)": ("mcp", "mcp_types"),
    "pydantic": ("pydantic", "pydantic_core", "annotated_types", "typing_extensions", "typing_inspection"),
    "httpx/httpcore": ("httpx", "httpcore", "h11", "certifi", "idna", "sniffio"),
    "anyio": ("anyio",),
    "starlette/uvicorn/sse (imported by the SDK)": ("starlette", "uvicorn", "sse_starlette"),
    "other libraries the SDK imports (auth, opentelemetry, httpx2, multipart)": (
        "jwt",
        "cryptography",
        "opentelemetry",
        "httpx2",
        "python_multipart",
        "multipart",
    ),
    "httpx's CLI extras when installed (click, pygments, rich)": ("click", "pygments", "rich"),
    "atlas_image_mcp (this package)": ("atlas_image_mcp",),
    "Pillow": ("PIL",),
}
IMPORT_GROUP_OF = {package: group for group, packages in IMPORT_GROUPS.items() for package in packages}

Command = tuple[list[str], dict[str, str]]  # argv, environment


@dataclass
class ColdStart:
    times: dict[str, list[float]]  # seconds per run, per server
    notes: list[str] = field(default_factory=list)


def compile_package() -> Path:
    """Compile the package's modules to .pyc, as installing its wheel does.

    This machine exports PYTHONDONTWRITEBYTECODE=1, so an editable install would compile every
    module of ours again at each start; a user's ``pip install`` compiles them once.
    """
    package = Path(atlas_image_mcp.__file__).parent
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=False, env=clean_env())
    return package


def official_candidates(notes: list[str]) -> dict[str, Command]:
    """The official server through npx, and straight from npx's cache with node; fetched first."""
    command = official.npx_command()
    if command is None:
        notes.append("npx not found: the official server was not measured")
        return {}
    env = official.official_env()
    log(f"pre-fetching {official.NPX_PACKAGE} with npx (not timed)")
    pre = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, timeout=300, env=env)
    if pre.returncode != 0:
        notes.append(
            f"npx pre-fetch failed (exit {pre.returncode}): {pre.stderr.decode(errors='replace')[-300:]}"
        )
        return {}
    found = {NPX: (command, env)}
    package_json = official.npx_package_json()
    if package_json is not None:
        notes.append(official.cache_note(package_json))
        entry = package_json.parent / "dist" / "index.js"
        node = shutil.which("node")
        if entry.exists() and node:
            found[LOCAL] = ([node, str(entry)], env)
    return found


def spawn_time(cmd: list[str], env: dict[str, str]) -> float:
    """Seconds from spawn to the ``tools/list`` answer (the SDK import: to its ``ready`` line)."""
    if "-c" in cmd:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        proc.stdout.readline()
        ready = time.monotonic() - started
        proc.wait(30)
        return ready
    with RawStdio(cmd, env) as server:
        return server.handshake() - server.started


def cold_start(runs: int, with_npx: bool, warm_up: bool = True) -> ColdStart:
    """Times from spawn to the tools/list answer, ours and the official server's, interleaved."""
    result = ColdStart(times={})
    candidates: dict[str, Command] = {OURS: (SERVER_COMMAND, clean_env())}
    if with_npx:
        candidates.update(official_candidates(result.notes))
    if warm_up:
        candidates[SDK_IMPORT] = ([sys.executable, "-c", SDK_IMPORT_CODE], clean_env())
        for cmd, env in candidates.values():  # warm-up: page cache, .pyc, npx cache
            spawn_time(cmd, env)
    result.times = {name: [] for name in candidates}
    for _ in range(runs):
        for name, (cmd, env) in candidates.items():  # interleaved, so drift hits all alike
            result.times[name].append(spawn_time(cmd, env))
    return result


def import_profile() -> list[tuple[str, float]]:
    """``python -X importtime`` of the stdio path up to tools/list: self time summed per group."""
    proc = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "atlas_image_mcp"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
        cwd=tempfile.gettempdir(),
    )
    messages = [
        jsonrpc.initialize(1),
        jsonrpc.notification(jsonrpc.INITIALIZED),
        jsonrpc.request(2, "tools/list"),
    ]
    _, err = proc.communicate(b"".join(jsonrpc.line(m) for m in messages), timeout=60)
    totals: defaultdict[str, float] = defaultdict(float)
    for line in err.decode(errors="replace").splitlines():
        entry = _import_line(line)
        if entry is not None:
            totals[_import_group(entry[0])] += entry[1]
    return sorted(totals.items(), key=lambda item: item[1], reverse=True)  # stable, as Counter's


def _import_line(line: str) -> tuple[str, float] | None:
    """(top-level package, self seconds) of one ``-X importtime`` line; None for anything else."""
    if not line.startswith("import time:") or "self [us]" in line:
        return None
    parts = line.split("|")
    try:
        self_us = int(parts[0].split(":")[1])
    except (IndexError, ValueError):
        return None
    return parts[2].strip().split(".")[0], self_us / 1e6


def _import_group(top: str) -> str:
    group = IMPORT_GROUP_OF.get(top)
    if group is not None:
        return group
    return "stdlib" if top in sys.stdlib_module_names or top.startswith("_") else "other third party"


def _method(s: Section, package: Path, runs: int, quick: bool) -> None:
    s.add(
        "Raw JSON-RPC over the child's pipes: `initialize`, `notifications/initialized`, `tools/list`;",
        "time from spawn to the `tools/list` response.",
        f"{'One warm-up each, then ' if not quick else ''}{runs} runs, interleaved.",
        "npx was run once before timing (not timed), so the runs measure a launch from npx's cache, not",
        "a download; npx still resolves the package against the registry on each launch, as it does for",
        "users. The official server starts without a key (it reads it per call); it got a dummy one.",
        f"Our modules were compiled to .pyc first (`python -m compileall {package.name}`), as a",
        "`pip install` of the wheel does: this machine exports PYTHONDONTWRITEBYTECODE=1, under which",
        "an editable install would compile them again at every start (what a user never pays).",
    )
    s.add("")


def _ratios(s: Section, times: dict[str, list[float]]) -> None:
    ours = median(times[OURS])
    if NPX in times:
        theirs = median(times[NPX])
        s.add(f"Ratio ours / npx: **{ours / theirs:.2f}** ({ms(ours)} vs {ms(theirs)}).")
        s.rows.append(
            Row(
                "Cold start to `tools/list` (median)",
                f"{ms(ours)} vs npx {ms(theirs)} (ratio {ours / theirs:.2f})",
                "no slower than `npx -y atlascloud-mcp`",
                ours <= theirs,
            )
        )
    else:
        s.rows.append(Row("Cold start to `tools/list` (median)", ms(ours), "no slower than npx"))
    if LOCAL in times:
        local = median(times[LOCAL])
        s.add(
            "Ratio ours / a local install of the official server (`node dist/index.js`):",
            f"**{ours / local:.2f}**.",
        )
        s.rows.append(
            Row(
                "Cold start vs the official server installed locally (`node dist/index.js`)",
                f"ratio {ours / local:.2f} ({ms(ours)} vs {ms(local)})",
            )
        )
    s.add("")


def _imports(s: Section, imports: list[tuple[str, float]]) -> None:
    total = sum(v for _, v in imports)
    s.add(
        "Where the stdio start-up's imports go (`python -X importtime -m atlas_image_mcp`, self time",
        f"summed per package, {ms(total)} in all; importtime itself inflates these):",
    )
    s.add("")
    s.table(["package", "import time"], [[n, ms(v)] for n, v in imports])


def section(ctx: Context) -> Section:
    s = Section("Cold start (spawn to the `tools/list` answer)")
    package = compile_package()
    cs = cold_start(2 if ctx.quick else 10, with_npx=ctx.npx, warm_up=not ctx.quick)
    imports = [] if ctx.quick else import_profile()
    _method(s, package, len(cs.times[OURS]), ctx.quick)
    s.table(
        ["server", "median", "min", "max"],
        [[n, ms(median(v)), ms(min(v)), ms(max(v))] for n, v in cs.times.items()],
    )
    for note in cs.notes:
        s.add(f"- {note}")
    if cs.notes:
        s.add("")
    _ratios(s, cs.times)
    if imports:
        _imports(s, imports)
    return s
