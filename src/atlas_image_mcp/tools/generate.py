"""``generate_image``: from a sentence to a saved picture in one call."""

from __future__ import annotations

from typing import Annotated

from ..call import Call
from ..params import GenerateImageArguments
from ..render import BatchResult
from .batch import is_batch, run_batch
from .jobs import JobAnswer, run_job
from .plan import Job

__all__ = ["generate_image"]


async def generate_image(call: Call, args: GenerateImageArguments) -> Annotated[JobAnswer, BatchResult]:
    """Generate pictures with FLUX on Atlas Cloud and return them in one call (URL, saved path, preview)."""
    if is_batch(args):
        return await run_batch(call, args)
    return await run_job(call, args, _job)


async def _job(call: Call, args: GenerateImageArguments) -> Job:
    return Job("generate_image", args.request(), args)
