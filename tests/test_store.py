"""The store through its public API, on SQLite and on a real PostgreSQL (same tests, both engines).

Budgets hold exactly under concurrency (three processes at once, with a negative control that
overspends), a call's several jobs are granted or refused whole, the ledger file of earlier
releases keeps its rows, a store newer than the release is refused, the store going down is
refused at once and recovered from without a restart, and the calls of a replica killed with
SIGKILL are settled by another one. PostgreSQL runs from the distribution's binaries
(tests/servers.py); without them those cases skip with the reason (and fail in CI).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from atlas_image_mcp.errors import LedgerError, StoreUnavailableError
from atlas_image_mcp.redact import redact
from atlas_image_mcp.settings import Settings, SettingsError
from atlas_image_mcp.store import (
    Ask,
    Finding,
    Hold,
    Job,
    Limits,
    OpenCall,
    PictureRecord,
    PoolOptions,
    Refusal,
    Store,
    StoreOptions,
    SweepOptions,
    locate,
    location_of,
    open_store,
)

from .servers import TempPostgres

ROOT = Path(__file__).resolve().parents[1]
CHILD_TIMEOUT = 90.0
GEN = Job("generate_image", "flux-dev", images=1, estimate_micros=50_000, held_micros=50_000)


class Clock:
    """Wall-clock time that the test moves forward by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.sqlite3"
    pg: TempPostgres = request.getfixturevalue("postgres")
    return pg.new_database()


@asynccontextmanager
async def opened(url: str, clock: Any = time.time, **options: Any) -> AsyncIterator[Store]:
    store = await open_store(
        locate(url, default_path=None), StoreOptions(heartbeat=0, **options), clock=clock
    )
    try:
        yield store
    finally:
        await store.close()


def ask(bucket: str = "b", *jobs: Job, **limits: int) -> Ask:
    return Ask(bucket, jobs or (GEN,), Limits(**limits))


# --- reservations ---------------------------------------------------------------------------------


async def test_concurrent_asks_are_held_in_arrival_order_until_a_limit_refuses(store_url: str) -> None:
    async with opened(store_url) as store:
        answers = await asyncio.gather(*(store.spend.reserve(ask(images_per_hour=20)) for _ in range(30)))
        held = [i for i, a in enumerate(answers) if isinstance(a, Hold)]
        assert held == list(range(20))
        refusal = answers[-1]
        assert isinstance(refusal, Refusal)
        assert (refusal.rule, refusal.limit, refusal.used, refusal.requested) == (
            "images_per_hour",
            20,
            20,
            1,
        )
        assert 3590 < refusal.retry_after <= 3600  # the oldest image leaves the hour then
        # another bucket is not affected; the daily budget refuses on its own terms
        other = await store.spend.reserve(ask("other", usd_per_day_micros=120_000))
        assert isinstance(other, Hold)
        money = await store.spend.reserve(ask("other", usd_per_day_micros=120_000))
        assert isinstance(money, Hold)
        over = await store.spend.reserve(ask("other", usd_per_day_micros=120_000))
        assert isinstance(over, Refusal) and over.rule == "usd_per_day"
        assert (over.used, over.requested, over.limit) == (100_000, 50_000, 120_000)
        assert 0 < over.retry_after <= 86_400


async def test_the_jobs_of_one_call_are_held_or_refused_together(store_url: str) -> None:
    four = (GEN, GEN, GEN, GEN)
    async with opened(store_url) as store:
        first = await store.spend.reserve(ask("b", *four, images_per_hour=6))
        assert isinstance(first, Hold) and len(first.ids) == 4 and len(set(first.ids)) == 4
        second = await store.spend.reserve(ask("b", *four, images_per_hour=6))  # 4 + 4 > 6: none of them
        assert isinstance(second, Refusal) and (second.used, second.requested) == (4, 4)
        two = await store.spend.reserve(ask("b", GEN, GEN, images_per_hour=6))  # 4 + 2 fits exactly
        assert isinstance(two, Hold)
        usage = await store.spend.usage("b", 1)
        assert usage.images_last_hour == 6
        assert [row.calls for row in usage.rows] == [6]


async def test_a_price_unknown_under_a_daily_budget_is_refused_and_check_holds_nothing(
    store_url: str,
) -> None:
    unknown = Job("generate_image", "new-model", images=1, estimate_micros=None, held_micros=None)
    async with opened(store_url) as store:
        refused = await store.spend.reserve(ask("b", unknown, usd_per_day_micros=1_000_000))
        assert isinstance(refused, Refusal) and refused.rule == "price_unknown"
        assert isinstance(await store.spend.reserve(ask("b", unknown)), Hold)  # no budget: fine
        for _ in range(3):
            assert await store.spend.check(ask("b", images_per_hour=2)) is None  # 1 + 1 <= 2, holds nothing
        assert (await store.spend.usage("b", 1)).images_last_hour == 1
        assert isinstance(await store.spend.check(ask("b", GEN, GEN, images_per_hour=2)), Refusal)


async def test_a_call_goes_from_sending_to_submitted_to_settled_and_a_release_only_drops_sending(
    store_url: str,
) -> None:
    async with opened(store_url) as store:
        kept = await store.spend.reserve(ask("b"))
        dropped = await store.spend.reserve(ask("b"))
        assert isinstance(kept, Hold) and isinstance(dropped, Hold)
        assert await store.spend.submitted(kept.ids[0], "pred-1")
        await store.spend.release(kept)  # it reached Atlas: a release must not drop it
        await store.spend.release(dropped)
        usage = await store.spend.usage("b", 1)
        assert [(c.prediction_id, c.charged, c.micros) for c in usage.largest] == [("pred-1", False, 50_000)]
        assert await store.spend.settle("b", "pred-1", 31_000) == 50_000  # the estimate comes back
        assert await store.spend.settle("elsewhere", "pred-1", 1) is None  # another bucket's: unknown
        usage = await store.spend.usage("b", 1)
        assert [(c.charged, c.micros) for c in usage.largest] == [(True, 31_000)]
        assert usage.spent_today_micros == 31_000 and usage.rows[0].estimated == 0


async def test_a_bucket_s_own_limits_replace_the_server_s(store_url: str) -> None:
    async with opened(store_url) as store:
        await store.spend.set_limits("vip", Limits(images_per_hour=3))
        answers = [await store.spend.reserve(ask("vip", images_per_hour=1)) for _ in range(4)]
        assert [isinstance(a, Hold) for a in answers] == [True, True, True, False]
        assert (await store.spend.usage("vip", 1, Limits(images_per_hour=1))).limits.images_per_hour == 3
        await store.spend.set_limits("vip", Limits())  # back to the server's
        assert isinstance(await store.spend.reserve(ask("vip", images_per_hour=9)), Hold)


async def test_a_bucket_s_own_limits_hold_where_the_server_sets_none(store_url: str) -> None:
    """With no limit anywhere the use so far is not even summed; a bucket's own limit still counts it."""
    async with opened(store_url) as store:
        assert all([isinstance(await store.spend.reserve(ask("vip")), Hold) for _ in range(3)])
        await store.spend.set_limits("vip", Limits(images_per_hour=4))
        answers = [await store.spend.reserve(ask("vip")) for _ in range(2)]
        assert [isinstance(a, Hold) for a in answers] == [True, False]


async def test_a_hold_whose_caller_gave_up_is_released(store_url: str) -> None:
    async with opened(store_url) as store:
        caller = asyncio.ensure_future(store.spend.reserve(ask("b", images_per_hour=1)))
        await asyncio.sleep(0)  # the ask is queued; the caller now waits for its answer ...
        caller.cancel()  # ... and gives up before it comes
        await store.spend.drained()
        assert caller.cancelled()
        assert (await store.spend.usage("b", 1)).rows == []  # nothing will be sent: nothing is held
        assert isinstance(await store.spend.reserve(ask("b", images_per_hour=1)), Hold)


# --- several processes at once --------------------------------------------------------------------


def contend(url: str, *extra: str, processes: int = 3, calls: int = 20) -> list[dict[str, Any]]:
    """``processes`` replicas (each migrating the store at start) reserve ``calls`` each, all at once."""
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.store_contender", url, str(calls), *extra],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(processes)
    ]
    try:
        for child in children:  # each has opened (and migrated) the store
            assert child.stdout is not None
            line = child.stdout.readline()
            assert line.strip() == "ready", child.communicate(timeout=CHILD_TIMEOUT)[1]
        for child in children:  # now all together
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = [child.communicate(timeout=CHILD_TIMEOUT) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait(CHILD_TIMEOUT)
    for child, (_, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]


async def test_sixty_concurrent_reservations_from_three_processes_hold_exactly_twenty(store_url: str) -> None:
    results = contend(store_url)
    assert [r["errors"] for r in results] == [[], [], []]
    assert sum(r["held"] for r in results) == 20
    assert sum(r["refused"] for r in results) == 40
    async with opened(store_url) as store:
        usage = await store.spend.usage("shared", 1)
        assert usage.spent_today_micros == 1_000_000 and usage.rows[0].calls == 20
        assert store.ready().schema == 1  # three processes migrated it at once, once


async def test_without_the_bucket_lock_the_same_contest_overspends(
    postgres: TempPostgres, tmp_path: Path
) -> None:
    """The negative control: the test above can fail. (On SQLite the file's write lock serialises
    the transactions anyway, so this runs on PostgreSQL.)"""
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    url = postgres.new_database()
    results = contend(url, "unlocked", str(barrier), "3")
    assert [r["errors"] for r in results] == [[], [], []]
    assert sum(r["held"] for r in results) > 20


# --- the schema ---------------------------------------------------------------------------------

#: The ledger file as earlier releases wrote it (PRAGMA user_version = 1).
LEGACY = """
CREATE TABLE calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT, bucket TEXT NOT NULL, started REAL NOT NULL, day TEXT NOT NULL,
    tool TEXT NOT NULL, model TEXT NOT NULL, images INTEGER NOT NULL, estimate INTEGER, reserved INTEGER,
    charged INTEGER, prediction_id TEXT
);
CREATE INDEX calls_by_bucket ON calls (bucket, started);
PRAGMA user_version = 1;
"""


async def test_the_ledger_file_of_earlier_releases_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "state" / "ledger.sqlite3"
    path.parent.mkdir()
    now = time.time()
    day = time.strftime("%Y-%m-%d", time.gmtime(now))
    with sqlite3.connect(path) as conn:
        conn.executescript(LEGACY)
        conn.executemany(
            "INSERT INTO calls (bucket, started, day, tool, model, images, estimate, reserved, charged, "
            "prediction_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                ("k1", now - 60, day, "generate_image", "flux-dev", 2, 50_000, 50_000, 42_000, "p-old-1"),
                ("k1", now - 30, day, "edit_image", "flux-kontext", 1, 40_000, 40_000, None, "p-old-2"),
                ("k2", now - 10, day, "generate_image", "flux-schnell", 1, 3_000, 3_000, None, None),
            ],
        )
    conn.close()
    settings = Settings(state_dir=path.parent)
    async with opened(f"sqlite:///{path}") as store:
        assert location_of(settings).path == path  # the default place is that very file
        usage = await store.spend.usage("k1", 1)
        assert usage.spent_today_micros == 42_000 + 40_000 and usage.images_last_hour == 3
        assert {(c.prediction_id, c.charged) for c in usage.largest} == {
            ("p-old-1", True),
            ("p-old-2", False),
        }
        # limits count the old rows, and a late charge still settles an old call
        refused = await store.spend.reserve(ask("k1", images_per_hour=3))
        assert isinstance(refused, Refusal) and refused.used == 3
        assert await store.spend.settle("k1", "p-old-2", 35_000) == 40_000
        assert (await store.spend.usage("k2", 1)).spent_today_micros == 3_000
    with sqlite3.connect(path) as conn:  # earlier releases refuse the file from now on (user_version > 1)
        assert conn.execute("PRAGMA user_version").fetchone() == (2,)
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'calls'").fetchall() == []
    conn.close()
    async with opened(f"sqlite:///{path}") as store:  # opening again changes nothing
        assert (await store.spend.usage("k1", 1)).spent_today_micros == 42_000 + 35_000


async def test_a_store_written_by_a_newer_release_is_refused(store_url: str) -> None:
    async with opened(store_url) as store:
        await store.db.run(lambda tx: tx.execute("INSERT INTO schema_migrations VALUES (99, 0)"))
    with pytest.raises(LedgerError, match="newer than this release"):
        await open_store(locate(store_url, default_path=None), StoreOptions(heartbeat=0))


# --- what replicas share ------------------------------------------------------------------------


async def test_an_owner_s_pictures_merge_stay_bounded_and_stay_its_own(store_url: str) -> None:
    async with opened(store_url, pictures_per_owner=3) as store:
        pics = store.pictures
        await pics.record(
            "alice", PictureRecord("p1", "generate_image", 1_000, model="flux-dev", prompt="a cat")
        )
        assert await pics.last("alice") is None  # no picture yet
        await pics.record("alice", PictureRecord("p1", "get_prediction", 9_000, outputs=("https://x/1.png",),
                                                 paths=(None,), status="completed"))  # fmt: skip
        merged = await pics.find("alice", "p1")
        assert merged is not None
        assert (merged.tool, merged.created_ms, merged.prompt, merged.outputs, merged.status) == (
            "generate_image",
            1_000,
            "a cat",
            ("https://x/1.png",),
            "completed",
        )
        for n in (2, 3, 4):
            await pics.record(
                "alice", PictureRecord(f"p{n}", "edit_image", 1_000 + n, sources=("https://s",))
            )
        assert [r.prediction_id for r in await pics.entries("alice")] == ["p4", "p3", "p2"]  # p1 trimmed
        assert await pics.entries("bob") == [] and await pics.find("bob", "p4") is None
        assert (await pics.entries("alice", limit=1))[0].sources == ("https://s",)


async def test_two_replicas_see_one_history_and_one_ledger(store_url: str) -> None:
    async with opened(store_url) as one, opened(store_url) as two:
        assert one.replica != two.replica
        await one.pictures.record("s1", PictureRecord("p9", "generate_image", 5, outputs=("https://o",)))
        last = await two.pictures.last("s1")
        assert last is not None and last.prediction_id == "p9"
        assert isinstance(await one.spend.reserve(ask("b", images_per_hour=1)), Hold)
        assert isinstance(await two.spend.reserve(ask("b", images_per_hour=1)), Refusal)
        assert sorted(await one.replicas.alive()) == sorted([one.replica, two.replica])


async def test_linked_keys_are_kept_sealed_and_task_state_stays_with_its_owner(store_url: str) -> None:
    clock = Clock()
    async with opened(store_url, clock) as store:
        await store.keys.put("user-1", "sealed-blob-1", "digest-1")
        await store.keys.put("user-1", "sealed-blob-2", "digest-2")  # replaced
        key = await store.keys.get("user-1")
        assert key is not None and (key.sealed, key.digest) == ("sealed-blob-2", "digest-2")
        assert await store.keys.subjects_of("digest-2") == ["user-1"]
        assert await store.keys.remove("user-1") and await store.keys.get("user-1") is None

        assert await store.tasks.put("t1", "alice", '{"step": 1}', ttl=60)
        assert not await store.tasks.put("t1", "mallory", '{"step": 9}', ttl=60)  # not hers
        assert await store.tasks.get("t1", "mallory") is None
        assert await store.tasks.get("t1", "alice") == '{"step": 1}'
        clock.advance(61)
        assert await store.tasks.get("t1", "alice") is None  # expired
        assert await store.tasks.put("t1", "mallory", "{}", ttl=60)  # an expired id may be taken


async def test_sessions_per_owner_are_counted_across_replicas_and_a_dead_one_s_stop_counting(
    store_url: str,
) -> None:
    clock = Clock()
    async with (
        opened(store_url, clock, replica_ttl=30) as one,
        opened(store_url, clock, replica_ttl=30) as two,
    ):
        assert await one.sessions.admit("alice", "s1", limit=2, ttl=300)
        assert await two.sessions.admit("alice", "s2", limit=2, ttl=300)
        assert not await two.sessions.admit("alice", "s3", limit=2, ttl=300)  # two already, across replicas
        assert await one.sessions.admit("alice", "s1", limit=2, ttl=300)  # renewing one is not a third
        await one.sessions.leave("s1")
        assert await two.sessions.admit("alice", "s3", limit=2, ttl=300)
        assert await one.sessions.live("alice") == 2
        clock.advance(31)  # neither renewed its heartbeat: two's sessions (s2, s3) no longer count ...
        await one.upkeep()  # ... once one renews its own
        assert await one.sessions.live("alice") == 0
        assert await one.sessions.admit("alice", "s4", limit=1, ttl=300)


# --- the store goes down and comes back ------------------------------------------------------------


async def test_while_the_store_is_down_paid_calls_are_refused_at_once_and_it_recovers_by_itself(
    own_postgres: TempPostgres,
) -> None:
    url = own_postgres.url
    options = {"retry": 0.05, "retry_max": 0.2, "pool": PoolOptions(pool_timeout=0.5)}
    async with opened(url, **options) as store:
        before = await store.spend.reserve(ask("b"))
        assert isinstance(before, Hold)
        own_postgres.stop()
        with pytest.raises(StoreUnavailableError) as first:
            await store.spend.reserve(ask("b"))  # finds out (within the pool's timeout)
        status = store.ready()
        assert not status.up and status.down_since is not None and status.reason
        with pytest.raises(StoreUnavailableError) as second:  # refused before touching the database
            await store.spend.reserve(ask("b"))
        assert second.value.down_since == first.value.down_since == status.down_since
        with pytest.raises(StoreUnavailableError):
            await store.pictures.last("anyone")
        for err in (first.value, second.value):
            assert own_postgres.password not in str(err) and "nothing was sent" in str(err)
        assert "127.0.0.1" in str(second.value)  # where, without the password

        own_postgres.start()
        await asyncio.wait_for(store.db.wait_up(), 30)
        assert store.ready().up
        after = await store.spend.reserve(ask("b"))
        assert isinstance(after, Hold)
        assert (await store.spend.usage("b", 1)).rows[0].calls == 2  # what was held before still counts


async def test_a_store_unreachable_at_start_opens_down_and_says_so_without_its_password() -> None:
    pytest.importorskip(
        "psycopg", reason='the PostgreSQL driver is not installed ("atlas-image-mcp[postgres]")'
    )
    from .http_helpers import free_port

    url = f"postgresql://atlas:s3cret-Pw-42@127.0.0.1:{free_port()}/atlas"  # nothing listens there
    location = locate(url, default_path=None)
    assert "s3cret-Pw-42" not in location.shown and "s3cret-Pw-42" not in repr(location)
    store = await open_store(
        location, StoreOptions(heartbeat=0, retry=30, pool=PoolOptions(pool_timeout=0.5))
    )
    try:
        assert not store.ready().up and store.ready().schema == 0
        with pytest.raises(StoreUnavailableError) as refused:
            await store.spend.reserve(ask("b"))
        assert "s3cret-Pw-42" not in str(refused.value)
        assert redact(f"connecting to {url}") == "connecting to [redacted]"
        assert "s3cret-Pw-42" not in redact("password=s3cret-Pw-42")
    finally:
        await store.close()


# --- a replica dies mid-call ------------------------------------------------------------------------


@contextmanager
def victim(url: str, ttl: float) -> Iterator[dict[str, Any]]:
    """A replica process that reserved three calls; SIGKILLed as soon as it has said so."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.store_victim", url, str(ttl)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line, child.communicate(timeout=CHILD_TIMEOUT)[1]
        child.kill()
        child.communicate(timeout=CHILD_TIMEOUT)  # reaped, its pipes closed
        yield json.loads(line)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate(timeout=CHILD_TIMEOUT)


class FakeAtlas:
    """The sweeper's lookup: what Atlas knows about each job, by prediction id or body fingerprint."""

    def __init__(self) -> None:
        self.jobs: dict[str, tuple[str, str, int | None]] = {  # fingerprint -> (id, status, charge)
            "body-1": ("pred-1", "done", 30_000),
            "body-2": ("pred-2", "running", None),
        }
        self.asked: list[OpenCall] = []

    async def __call__(self, call: OpenCall) -> Finding:
        self.asked.append(call)
        found = self.jobs.get(call.body_sha256 or "")
        if found is None:
            return Finding("not_sent")
        prediction_id, status, charge = found
        assert call.prediction_id in (None, prediction_id)
        return Finding("done" if status == "done" else "running", prediction_id, charge)


async def test_the_calls_of_a_replica_killed_mid_call_are_settled_by_another(store_url: str) -> None:
    ttl = 30.0
    clock = Clock()
    atlas = FakeAtlas()
    sweep = SweepOptions(release_after=120, give_up_after=3600)
    with victim(store_url, ttl) as dead:
        async with opened(store_url, clock, replica_ttl=ttl, sweep=sweep) as store:
            store.watch(atlas)
            assert store.sweeper is not None
            report = await store.sweeper.sweep()  # the victim's heartbeat has not lapsed yet
            assert report.adopted == 0 and atlas.asked == []

            clock.advance(ttl + 1)  # now it has: one round adopts all three and closes what Atlas knows
            report = await store.sweeper.sweep()
            assert (report.adopted, report.settled, report.submitted, report.released) == (3, 1, 1, 0)
            usage = await store.spend.usage("victim", 1)
            calls = {c.prediction_id: c for c in usage.largest}
            assert calls["pred-1"].charged and calls["pred-1"].micros == 30_000
            assert not calls["pred-2"].charged and calls[None].micros == 40_000  # the unsent one still counts

            atlas.jobs["body-2"] = ("pred-2", "done", 0)  # it failed: not billed
            clock.advance(sweep.release_after)  # and the call that never left is released
            report = await store.sweeper.sweep()
            assert (report.adopted, report.settled, report.released) == (0, 1, 1)
            usage = await store.spend.usage("victim", 1)
            assert sorted((c.prediction_id, c.charged, c.micros) for c in usage.largest) == [
                ("pred-1", True, 30_000),
                ("pred-2", True, 0),
            ]
            assert [call.id for call in atlas.asked][:3] == dead["ids"]


async def test_a_dead_replica_s_call_that_cannot_be_looked_up_is_settled_at_its_hold_in_the_end(
    store_url: str,
) -> None:
    clock = Clock()
    sweep = SweepOptions(release_after=60, give_up_after=600)

    async def nobody_answers(call: OpenCall) -> Finding:
        raise ConnectionError("no key to ask with")

    with victim(store_url, 5):
        async with opened(store_url, clock, sweep=sweep) as store:
            store.watch(nobody_answers)
            assert store.sweeper is not None
            clock.advance(6)
            report = await store.sweeper.sweep()
            assert report.adopted == 3 and report.given_up == 0  # kept open, counted at its hold
            clock.advance(600)
            report = await store.sweeper.sweep()
            assert report.given_up == 3
            usage = await store.spend.usage("victim", 1)
            assert usage.spent_today_micros == 3 * 40_000  # counted at what they held: never under-counted
            assert usage.rows[0].estimated == 3  # no charge is known for any of them
            assert (await store.sweeper.sweep()).adopted == 0  # nothing is left open


# --- the setting ---------------------------------------------------------------------------------


def test_the_store_imports_no_database_driver_until_postgresql_is_named(tmp_path: Path) -> None:
    code = (
        "import asyncio, sys\n"
        "from atlas_image_mcp.store import StoreOptions, locate, open_store\n"
        "async def main():\n"
        f"    where = locate('sqlite:///{tmp_path}/s.db', default_path=None)\n"
        "    store = await open_store(where, StoreOptions(heartbeat=0))\n"
        "    await store.close()\n"
        "asyncio.run(main())\n"
        "assert not [m for m in sys.modules if m.startswith('psycopg')], 'psycopg was imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=CHILD_TIMEOUT
    )
    assert result.returncode == 0, result.stderr


def test_the_store_setting_names_sqlite_or_postgresql_and_never_shows_its_password(tmp_path: Path) -> None:
    secret_url = "postgresql://atlas:Very-Secret-9@db.internal:5432/atlas?sslmode=require"
    settings = Settings(database_url=secret_url)
    assert "Very-Secret-9" not in repr(settings)
    location = location_of(settings)
    assert location.engine == "postgresql" and location.shared
    assert location.shown == "postgresql://atlas@db.internal:5432/atlas?sslmode=require"
    assert "Very-Secret-9" in location.secrets()
    with pytest.raises(SettingsError) as bad:
        Settings(database_url="mysql://root:Other-Secret-7@h/db")
    assert "Other-Secret-7" not in str(bad.value) and "postgresql://" in str(bad.value)
    assert location_of(Settings(state_dir=tmp_path)).path == tmp_path / "ledger.sqlite3"
    assert location_of(Settings(state_dir=tmp_path), offline=True).path is None  # in memory
    assert location_of(Settings(database_url=f"sqlite:///{tmp_path}/x.db")).path == tmp_path / "x.db"
    assert location_of(Settings(database_url="sqlite:///:memory:")).path is None
    query = locate("postgresql://u@h/db?password=Query-Secret-1", default_path=None)
    assert "Query-Secret-1" not in query.shown and "Query-Secret-1" in query.secrets()
