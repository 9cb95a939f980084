"""What a picture call asks for, and what it will send and cost: the :class:`Job` and its :class:`Plan`.

``generate_image``, ``edit_image`` and ``generate_variations`` each turn their arguments into a
:class:`Job` (a :class:`~atlas_image_mcp.params.GenerationRequest` in friendly names, how to run it,
and notes for the answer). :func:`plan` looks up the model's row, prepares the exact request once
(:func:`~atlas_image_mcp.wire.prepare_request`) and prices it: the model's price x pictures (or its
flat price per run), None when no price is known. The same preparation is confirmed, resolved and
sent.

The file the call delivers (:func:`~atlas_image_mcp.asset_plan.asset_spec`) shapes the request:
``generate_image`` with an ``output_size`` and no size of its own asks the model for the nearest
size it makes at that ratio (``size``, or the nearest ``aspect_ratio``); a model that makes its own
file type (FLUX.2's ``output_format``) is asked for the delivered one when it can make it, else for
PNG (lossless, converted here).

A batch (:func:`batch_plan`) is one plan for several jobs: its estimate and pictures are the sum of
its jobs', so it is confirmed and reserved once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from ..asset_plan import asset_spec
from ..assets import AssetSpec
from ..call import Call
from ..catalogue import UNKNOWN_PRICE_PER_IMAGE, ModelSpec
from ..errors import InvalidParameterError
from ..params import CallOptions, GenerationRequest
from ..prepared import PreparedRequest
from ..wire import nearest_size, prepare_request, ratio_text

__all__ = ["Job", "Plan", "batch_plan", "model_spec", "plan"]


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
    #: What to make of each picture (save_as, output_size, output_format), if anything.
    asset: AssetSpec | None = None
    #: A batch: the plan of each of its jobs (this plan is then their sum); empty for one job.
    batch: tuple[Plan, ...] = ()

    @property
    def model(self) -> str:
        return self.prepared.model

    @property
    def images(self) -> int:
        if self.batch:
            return sum(p.prepared.num_images for p in self.batch)
        return self.prepared.num_images

    @property
    def runs(self) -> int:
        """Jobs sent to Atlas: one, or a batch's."""
        return len(self.batch) or 1

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
    asset = asset_spec(job.options)
    job = _shaped(job, spec, asset)
    prepared = prepare_request(job.request, spec)
    estimate = spec.estimate(prepared.num_images) if spec is not None else None
    return Plan(job, spec, prepared, estimate, asset)


def batch_plan(plans: list[Plan]) -> Plan:
    """One plan for a batch of jobs (the first job's, with the sum of their estimates)."""
    first = plans[0]
    estimates = [p.estimate for p in plans]
    total = None if any(e is None for e in estimates) else sum((e for e in estimates if e), Decimal(0))
    return replace(first, estimate=total, batch=tuple(plans))


def _shaped(job: Job, spec: ModelSpec | None, asset: AssetSpec | None) -> Job:
    """The job's request asking the model for what the delivered file needs (see the module doc)."""
    if asset is None or spec is None:
        return job
    request, notes = job.request, list(job.notes)
    own_format = spec.params.get("output_format")
    if (
        asset.format is not None
        and own_format is not None
        and own_format.choices
        and not request.output_format
    ):
        wire = asset.format if asset.format in own_format.choices else "png"
        if wire in own_format.choices:
            request = request.model_copy(update={"output_format": wire})
    unsized = request.width is None and request.height is None and request.aspect_ratio is None
    if asset.size is not None and job.tool == "generate_image" and unsized:
        width, height = asset.size
        if spec.sizing == "size":
            asked = nearest_size(width, height, spec.side)
            request = request.model_copy(update={"width": asked[0], "height": asked[1]})
            made = f"{asked[0]}x{asked[1]}"
        elif spec.sizing == "aspect_ratio":
            request = request.model_copy(update={"aspect_ratio": ratio_text(width, height)})
            made = "its nearest aspect ratio"
        else:
            made = "its own size"
        verb = "cropped" if asset.fit == "cover" else "fitted"
        notes.append(f"Asked {spec.id} for {made}, then {verb} to {width}x{height} here.")
    return replace(job, request=request, notes=tuple(notes))
