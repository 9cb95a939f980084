"""Real servers from the distribution for the tests: a throwaway PostgreSQL, and HAProxy in front of
replicas.

    with TempPostgres() as pg:            # initdb + postgres from Debian's binaries, as our child
        pg.url                            # postgresql://atlas:PASSWORD@127.0.0.1:PORT/atlas
        pg.new_database()                 # a fresh database (its URL) for one test
        pg.stop(); pg.start(); pg.kill()  # the store down, back, crashed

    with Balancer([port1, port2, port3]) as lb:   # HAProxy, round robin, on a free loopback port
        lb.url

Both run as foreground children of the test process (never through ``pg_ctl`` or a daemon mode):
a child that dies is reaped at once, so a crashed postmaster's pid cannot block the next start.
PostgreSQL refuses to run as root: as root its processes run as the ``postgres`` account (else
``nobody``), through ``subprocess``'s ``user=``/``group=``, in a folder made with ``mkdtemp`` (not
under pytest's own temporary tree, which only root may enter). Every start and stop is bounded.

When the binaries (or the Python driver) are missing, the fixtures skip with the reason, except
with ``ATLAS_SERVERS_REQUIRED=1`` or in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from .http_helpers import free_port

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
_REQUIRED_ENV = "ATLAS_SERVERS_REQUIRED"
#: Where a non-root Debian user's PATH does not look, but the distribution puts daemons.
_SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")


#: Read when the tests are collected: the suite's autouse fixture clears ATLAS* variables per test.
#: CI services set CI=true, which requires them too.
_REQUIRED = any(
    os.environ.get(name, "").strip().lower() in ("1", "true", "yes") for name in (_REQUIRED_ENV, "CI")
)


def servers_required() -> bool:
    return _REQUIRED


def unavailable(reason: str) -> None:
    """Skip the test for ``reason``, or fail it when the servers are required (CI)."""
    if servers_required():
        pytest.fail(f"{reason} ({_REQUIRED_ENV} or CI is set: these tests must run here)")
    pytest.skip(reason)


def find_program(name: str) -> str | None:
    """A program on PATH or in the sbin folders (HAProxy lives in /usr/sbin on Debian)."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), *_SBIN]))


def _run_as() -> dict[str, Any]:
    """subprocess arguments that drop root for PostgreSQL (it refuses to run as root)."""
    if os.geteuid() != 0:
        return {}
    for name in ("postgres", "nobody"):
        try:
            account = pwd.getpwnam(name)
        except KeyError:
            continue
        return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    raise RuntimeError("running as root, and neither a postgres nor a nobody account exists")


def postgres_bindir() -> Path | None:
    """``$PG_BINDIR``, else the newest ``/usr/lib/postgresql/*/bin`` (Debian), else ``initdb`` on PATH."""
    given = os.environ.get("PG_BINDIR")
    if given:
        return Path(given)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def postgres_missing() -> str | None:
    """Why a throwaway PostgreSQL cannot run here (None: it can)."""
    bindir = postgres_bindir()
    if bindir is None or not (bindir / "postgres").exists():
        return "PostgreSQL's server binaries are not installed (apt-get install postgresql)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return 'the PostgreSQL driver is not installed (pip install "atlas-image-mcp[postgres]")'
    return None


class TempPostgres:
    """A PostgreSQL cluster in a temporary folder, on a free loopback port, thrown away at the end.

    Tuned for tests (no fsync: a crash of the machine loses it, which does not matter here).
    """

    def __init__(self) -> None:
        bindir = postgres_bindir()
        assert bindir is not None, postgres_missing()
        self.bin = bindir
        self.user = "atlas"
        self.database = "atlas"
        self.password = secrets.token_urlsafe(18)
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="atlas-pg-"))  # short: the socket path must stay < 107 bytes
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._as = _run_as()
        if self._as:
            os.chown(self.root, self._as["user"], self._as["group"])
        os.chmod(self.root, 0o700)

    # --- addresses ----------------------------------------------------------------------------

    def url_of(self, database: str) -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    @property
    def url(self) -> str:
        """TCP with a password (scram-sha-256), as a real deployment connects."""
        return self.url_of(self.database)

    def new_database(self, name: str | None = None) -> str:
        """A new, empty database for one test; its URL."""
        import psycopg

        name = name or "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url_of("postgres"), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_of(name)

    # --- life cycle ---------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        return {**os.environ, "LC_ALL": "C", "TZ": "UTC"}

    def initdb(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if self._as:
            os.chown(pwfile, self._as["user"], self._as["group"])
        subprocess.run(
            [str(self.bin / "initdb"), "-D", str(self.data), "-U", self.user, f"--pwfile={pwfile}",
             "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync",
             "--no-instructions"],
            cwd=self.root, check=True, capture_output=True, timeout=120, env=self._env(), **self._as,
        )  # fmt: skip
        pwfile.unlink()
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "wal_level": "minimal",
            "max_wal_senders": "0",
            "shared_buffers": "32MB",
            "max_connections": "200",
            "log_min_messages": "warning",
        }
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n" + "".join(f"{key} = {value}\n" for key, value in settings.items()))

    def start(self) -> None:
        """Run the postmaster as our child and wait (bounded) until it accepts connections."""
        assert not self.running(), "already running"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(self.bin / "postgres"), "-D", str(self.data)],
                cwd=self.root, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self._env(), start_new_session=True, **self._as,
            )  # fmt: skip
        pidfile = self.data / "postmaster.pid"
        deadline = time.monotonic() + START_TIMEOUT
        while True:  # what `pg_ctl -w` waits for: line 8 of postmaster.pid says "ready"
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}:\n{self._log_tail()}")
            try:
                lines = pidfile.read_text().splitlines()
            except FileNotFoundError:
                lines = []
            if len(lines) >= 8 and lines[0] == str(self.proc.pid) and lines[7].strip() == "ready":
                return
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"postgres was not ready within {START_TIMEOUT:g} s:\n{self._log_tail()}")
            time.sleep(0.01)

    def stop(self) -> None:
        """A fast shutdown (SIGINT: open transactions are rolled back, clients disconnected)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def kill(self) -> None:
        """A crash (SIGKILL); the next start recovers from the WAL."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)
        self.proc = None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # immediate shutdown
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None
        shutil.rmtree(self.root, ignore_errors=True)

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def __enter__(self) -> TempPostgres:
        try:
            self.initdb()
            self.start()
            self.new_database(self.database)
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def postgres_or_skip() -> Iterator[TempPostgres]:
    """The body of a PostgreSQL fixture: skip (or fail in CI) when it cannot run here."""
    reason = postgres_missing()
    if reason:
        unavailable(reason)
    with TempPostgres() as pg:
        yield pg


@pytest.fixture(scope="session")
def postgres() -> Iterator[TempPostgres]:
    """One PostgreSQL for the session (tests take a database each with ``new_database``)."""
    yield from postgres_or_skip()


@pytest.fixture
def own_postgres() -> Iterator[TempPostgres]:
    """A PostgreSQL for this test alone (it may stop, kill or restart it)."""
    yield from postgres_or_skip()


# --- HAProxy ------------------------------------------------------------------------------------

#: Learn each 2025-era session's id from the replica's answer (Mcp-Session-Id), then send that
#: session's requests to the replica that holds it. Requests without the header: round robin.
STICKY_SESSIONS = """\
    stick-table type string len 64 size 100k expire 30m
    stick store-response res.hdr(mcp-session-id)
    stick on req.hdr(mcp-session-id)
"""


def haproxy_config(
    port: int, replicas: Sequence[int], *, sticky: bool = True, health: str = "/healthz"
) -> str:
    """A loopback balancer: round robin over ``replicas`` (ports); see docs/replicas.md."""
    servers = "".join(
        f"    server r{i} 127.0.0.1:{p} check inter 1s fall 1 rise 1\n" for i, p in enumerate(replicas, 1)
    )
    return (
        "global\n"
        "    maxconn 2000\n"
        "    hard-stop-after 5s\n"
        "defaults\n"
        "    mode http\n"
        "    timeout connect 2s\n"
        "    timeout client 1h\n"
        "    timeout server 1h\n"
        "    timeout tunnel 1h\n"
        "    timeout http-request 10s\n"
        "    option http-no-delay\n"
        "frontend mcp\n"
        f"    bind 127.0.0.1:{port}\n"
        "    default_backend replicas\n"
        "backend replicas\n"
        "    balance roundrobin\n"
        f"    option httpchk GET {health}\n"
        "    http-check expect status 200\n"
        "    option redispatch\n"
        "    retries 2\n" + (STICKY_SESSIONS if sticky else "") + servers
    )


def haproxy_missing() -> str | None:
    return None if find_program("haproxy") else "HAProxy is not installed (apt-get install haproxy)"


class Balancer:
    """HAProxy in the foreground (``-db``) as our child, on a free loopback port."""

    def __init__(self, replicas: Sequence[int], *, sticky: bool = True, health: str = "/healthz") -> None:
        program = find_program("haproxy")
        assert program is not None, haproxy_missing()
        self.program = program
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="atlas-lb-"))
        self.config = self.root / "haproxy.cfg"
        self.config.write_text(haproxy_config(self.port, replicas, sticky=sticky, health=health))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        check = subprocess.run([self.program, "-c", "-q", "-f", str(self.config)], capture_output=True,
                               timeout=STOP_TIMEOUT)  # fmt: skip
        assert check.returncode == 0, check.stderr.decode(errors="replace")
        with open(self.root / "haproxy.log", "wb") as log:
            self.proc = subprocess.Popen(
                [self.program, "-db", "-f", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_listening(self.port, self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: a hard stop, open streams are cut
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        self.proc = None

    def __enter__(self) -> Balancer:
        try:
            self.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def wait_listening(port: int, proc: subprocess.Popen[Any], timeout: float = START_TIMEOUT) -> None:
    """Poll (bounded) until 127.0.0.1:``port`` accepts a connection; fail fast if ``proc`` exits."""
    import socket

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listened on port {port} within {timeout:g} s") from None
            time.sleep(0.02)


@contextmanager
def replica_processes(
    argv: Callable[[int, int], Sequence[str]],
    count: int,
    env: Callable[[int], Mapping[str, str]] | None = None,
    logs: Path | None = None,
) -> Iterator[list[tuple[int, subprocess.Popen[bytes]]]]:
    """``count`` server processes, the i-th (from 1) started as ``argv(i, port)`` on a free port
    with the environment ``env(i)`` (default: this one); yields (port, process) once each listens,
    and stops them all afterwards (bounded). ``logs``: a folder for each one's output (``r<i>.log``;
    else it is dropped)."""
    started: list[tuple[int, subprocess.Popen[bytes]]] = []
    try:
        for i in range(1, count + 1):
            port = free_port()
            out: Any = subprocess.DEVNULL
            if logs is not None:
                out = open(logs / f"r{i}.log", "wb")  # noqa: SIM115 - the child holds it; closed below
            try:
                proc = subprocess.Popen(
                    list(argv(i, port)),
                    cwd=Path(__file__).resolve().parents[1],
                    env=dict(os.environ if env is None else env(i)),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT if logs is not None else subprocess.DEVNULL,
                    start_new_session=True,
                )
            finally:
                if logs is not None:
                    out.close()
            started.append((port, proc))
        for port, proc in started:
            wait_listening(port, proc)
        yield started
    finally:
        for _, proc in started:
            if proc.poll() is None:
                proc.terminate()
        for _, proc in started:
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
