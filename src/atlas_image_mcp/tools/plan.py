"""What a picture call asks for, and what it will send and cost: the :class:`Job` and its :class:`Plan`.

``generate_image``, ``edit_image`` and ``generate_variations`` each turn their arguments into a
:class:`Job` (a :class:`~atlas_image_mcp.params.GenerationRequest` in friendly names, how to run it,
and notes for the answer). :func:`plan` looks up the model's row, prepares the exact request once
(:func:`~atlas_image_mcp.wire.prepare_request`) and prices it: the model's price x pictures (or its
flat price per run), None when no price is known. The same preparation is confirmed, resolved and
sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ..call import Call
from ..catalogue import UNKNOWN_PRICE_PER_IMAGE, ModelSpec
from ..errors import InvalidParameterError
from ..params import CallOptions, GenerationRequest
from ..prepared import PreparedRequest
from ..wire import prepare_request

__all__ = ["Job", "Plan", "model_spec", "plan"]


@dataclass(frozen=True)
class Job:
    """What a tool asks for: the request (in friendly names), how to run it, and notes for the result."""

    tool: str
    request: GenerationRequest
    options: CallOptions
    notes: tuple[str, ...] = ()
    #: The model's row, when the tool already looked it up.
    spec: ModelSpec | None = None


@dataclass(frozen=True)
class Plan:
    """A job as it will be sent, and what it is expected to cost."""

    job: Job
    spec: ModelSpec | None
    prepared: PreparedRequest
    estimate: Decimal | None

    @property
    def model(self) -> str:
        return self.prepared.model

    @property
    def images(self) -> int:
        return self.prepared.num_images

    @property
    def cap(self) -> Decimal | None:
        """The caller's max_cost_usd, exactly as given."""
        value = self.job.options.max_cost_usd
        return Decimal(str(value)) if value is not None else None

    @property
    def held(self) -> Decimal | None:
        """What the call is held at against the daily budget until Atlas reports the charge.

        The estimate; for an unknown price the caller's max_cost_usd, but never less than
        :data:`~atlas_image_mcp.catalogue.UNKNOWN_PRICE_PER_IMAGE` a picture (a small bound must not
        let an unknown price slip under the budget); None: unknown and unbounded.
        """
        if self.estimate is not None:
            return self.estimate
        cap = self.cap
        if cap is None:
            return None
        return max(cap, UNKNOWN_PRICE_PER_IMAGE * self.images)


async def model_spec(call: Call, model: str) -> ModelSpec | None:
    """The model's row (live schema when readable); a model the live catalogue does not list is an error."""
    runtime = call.runtime
    spec = await runtime.catalogue.spec(model, runtime.client)  # public data: no key needed
    if spec is None and runtime.catalogue.listed(model) is False:
        close = runtime.catalogue.closest(model)
        meant = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise InvalidParameterError(
            "model",
            f"{model!r} is not in the Atlas model catalogue.{meant} Call list_models to see the image "
            "models and their ids.",
        )
    return spec


async def plan(call: Call, job: Job) -> Plan:
    """Look up the job's model, prepare its request (once) and price it."""
    spec = job.spec or await model_spec(call, job.request.model)
    prepared = prepare_request(job.request, spec)
    estimate = spec.estimate(prepared.num_images) if spec is not None else None
    return Plan(job, spec, prepared, estimate)
