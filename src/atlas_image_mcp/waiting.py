"""Waiting for a job at Atlas within a call: polls, a progress heartbeat, and an early answer on shutdown."""

from __future__ import annotations

import anyio

from .call import Call
from .constants import HEARTBEAT_SECONDS
from .errors import AtlasError
from .models import Prediction
from .render import warm_up_in_background

__all__ = ["wait_for_picture", "wait_for_pictures"]


async def wait_for_picture(
    call: Call, first: Prediction, *, wait: float, total: float, deadline: float
) -> Prediction:
    """``api.wait`` for up to ``wait`` seconds, plus a progress heartbeat every second.

    ``total`` is what the progress reports count against (the whole wait of the call, of which
    ``wait`` is what is left). Returns early, with the last state seen, when the server starts
    stopping (see :meth:`Runtime.stop_waiting`), so the call can still answer with its prediction
    id. Over HTTP the heartbeat runs only when the request carries a progress token: a task per
    call that reports to nobody cost ~8% of the server's CPU under load (bench/RESULTS.md).
    """
    latest = {"prediction": first}
    warm_up_in_background()  # the picture code's first use happens while the job runs

    async def on_update(prediction: Prediction) -> None:
        if prediction.status != latest["prediction"].status:
            await call.notify("debug", f"prediction {prediction.id}: {prediction.status}")
        latest["prediction"] = prediction

    async def heartbeat() -> None:
        while True:
            elapsed = call.elapsed
            status = latest["prediction"].status
            await call.progress(
                round(elapsed, 2), total, f"{status} · {elapsed:.1f} s elapsed · prediction {first.id}"
            )
            await anyio.sleep(HEARTBEAT_SECONDS)

    # The error is carried out of the task group by hand: raised inside, it would leave wrapped in
    # an ExceptionGroup that no ``except AtlasError`` catches (the call would crash with no message).
    outcome: list[Prediction | AtlasError] = []
    async with anyio.create_task_group() as tg:

        async def stop_on_shutdown() -> None:
            await call.runtime.stopping.wait()
            tg.cancel_scope.cancel()

        if call.wants_progress:
            tg.start_soon(heartbeat)
        tg.start_soon(stop_on_shutdown)
        try:
            outcome.append(await call.api.wait(first.id, wait, on_update, first=first, deadline=deadline))
        except AtlasError as err:
            outcome.append(err)
        finally:
            tg.cancel_scope.cancel()
    if not outcome:  # the server is stopping
        return latest["prediction"]
    if isinstance(outcome[0], AtlasError):
        raise outcome[0]
    return outcome[0]


async def wait_for_pictures(
    call: Call, firsts: list[Prediction], *, wait: float, deadline: float
) -> list[Prediction | AtlasError]:
    """:func:`wait_for_picture` for the jobs of a batch, in parallel, with one progress report.

    The report counts jobs done of all (each one that ends is reported at once, and a heartbeat
    every second says what the others are doing). Each job's outcome is its last state, or the
    error that ended its wait; when the server starts stopping, every job's last state seen.
    """
    latest: list[Prediction | AtlasError] = list(firsts)
    done = [first.is_terminal for first in firsts]
    warm_up_in_background()

    def state() -> str:
        finished = sum(done)
        running = [
            f"job {n} {item.status}"
            for n, item in enumerate(latest, start=1)
            if not done[n - 1] and isinstance(item, Prediction)
        ]
        text = f"{finished} of {len(latest)} jobs done"
        return text + (f" · {', '.join(running[:3])}" if running else "") + f" · {call.elapsed:.1f} s elapsed"

    async def report() -> None:
        if call.wants_progress:
            await call.progress(sum(done), len(latest), state())

    async def heartbeat() -> None:
        while True:
            await report()
            await anyio.sleep(HEARTBEAT_SECONDS)

    async def one(i: int, first: Prediction) -> None:
        async def on_update(prediction: Prediction) -> None:
            if isinstance(latest[i], Prediction) and prediction.status != latest[i].status:  # type: ignore[union-attr]
                await call.notify("debug", f"prediction {prediction.id}: {prediction.status}")
            latest[i] = prediction

        try:
            latest[i] = await call.api.wait(first.id, wait, on_update, first=first, deadline=deadline)
        except AtlasError as err:
            latest[i] = err
        done[i] = isinstance(latest[i], AtlasError) or latest[i].is_terminal  # type: ignore[union-attr]
        await report()

    async with anyio.create_task_group() as tg:

        async def stop_on_shutdown() -> None:
            await call.runtime.stopping.wait()
            tg.cancel_scope.cancel()

        async def all_jobs() -> None:
            async with anyio.create_task_group() as jobs:
                for i, first in enumerate(firsts):
                    if not first.is_terminal:
                        jobs.start_soon(one, i, first)
            tg.cancel_scope.cancel()

        if call.wants_progress:
            tg.start_soon(heartbeat)
        tg.start_soon(stop_on_shutdown)
        tg.start_soon(all_jobs)
    return latest
