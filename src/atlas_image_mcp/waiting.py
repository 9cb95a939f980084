"""Waiting for a job at Atlas within a call: polls, a progress heartbeat, and an early answer on shutdown."""

from __future__ import annotations

import anyio

from .call import Call
from .constants import HEARTBEAT_SECONDS
from .errors import AtlasError
from .models import Prediction
from .render import warm_up_in_background

__all__ = ["wait_for_picture"]


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
