"""What a picture call will cost, and the person's go-ahead before an expensive one is sent.

Every picture tool (generate_image, edit_image, generate_variations) has two parameters the
assistant never sees, filled by the SDK's resolvers before the tool body runs. That is one code
path for both protocol eras: on a handshake-era session (2025-06-18, 2025-11-25) the question is an
``elicitation/create`` request sent during the call; on 2026-07-28 the call answers
``input_required`` with the question, and the client calls again with the answer (the SDK carries
it, sealed, in ``requestState``).

* ``plan`` (:func:`plan_resolver`): the job the call asks for (built by the tool's own planner), its
  model row, how many pictures and the estimate: the model's price x pictures (or its flat price per
  run), None when no price is known.
* ``confirmation`` (:func:`confirm_resolver`): whether it may be sent. Nothing is asked for a dry run,
  with no threshold, or for an estimate at or below ``ATLAS_MCP_CONFIRM_ABOVE_USD``. Above it, and for
  an unknown price while a threshold is set (it could be anything), the person is asked. A client
  that cannot ask (no elicitation, or no channel for it) is answered, without sending anything, with
  the cost and how to confirm: the call again with ``max_cost_usd`` at least the estimate. Budget
  refusals, a missing key and a ``max_cost_usd`` below the estimate are raised here, before anyone is
  asked.

With MCP tasks the resolvers run before the tool body, so the question is asked (and answered)
before Atlas is called and before the call becomes a task.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal

from mcp.server.mcpserver import (
    AcceptedElicitation,
    CancelledElicitation,
    DeclinedElicitation,
    Elicit,
    ElicitationResult,
    Resolve,
)
from mcp_types import CallToolResult
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, Field

from ..catalogue import ModelSpec
from ..errors import AtlasError, InvalidParameterError, usd
from ..params import Arguments
from ..render import GenerationResult
from ..wire import prepare_request
from .results import ToolContext, fail, price_text, runtime_of, tool_result

if TYPE_CHECKING:
    from .jobs import Job

__all__ = [
    "Confirmation",
    "CostConfirmation",
    "Plan",
    "Verdict",
    "can_ask",
    "confirm_resolver",
    "cost_words",
    "not_sent",
    "plan_resolver",
]

#: Where an input picture goes while a call is only being priced (the price does not depend on it).
_PLACEHOLDER = "https://pricing.placeholder/picture.png"


class CostConfirmation(BaseModel):
    """What the person is asked (the form of the elicitation)."""

    confirm: bool = Field(
        default=True, title="Send it", description="Send this job to Atlas Cloud and pay for it"
    )


@dataclass(frozen=True)
class Plan:
    """What a picture call will send, and what it is expected to cost."""

    job: Job
    spec: ModelSpec | None
    model: str
    images: int
    estimate: Decimal | None

    @property
    def cap(self) -> Decimal | None:
        """The caller's max_cost_usd, exactly as given."""
        value = self.job.options.max_cost_usd
        return Decimal(str(value)) if value is not None else None


@dataclass(frozen=True)
class Verdict:
    """The confirmation resolver's own answer when it asked nobody."""

    send: bool
    why: Literal["dry_run", "no_threshold", "within_threshold", "max_cost", "cannot_ask"]


#: What the tool body receives: a :class:`Verdict` or the person's :class:`CostConfirmation` when
#: accepted (``data``), or the person's decline or cancel.
Confirmation = ElicitationResult[CostConfirmation]
#: A tool's own planner: its arguments -> the job and (when it already looked it up) the model row.
Planner = Callable[[ToolContext, dict[str, Any]], Awaitable[tuple["Job", ModelSpec | None]]]


# --- the two resolvers ------------------------------------------------------------------------------


def plan_resolver(arguments: type[Arguments], planner: Planner) -> Callable[..., Awaitable[Plan]]:
    """The ``plan`` resolver of a tool taking ``arguments``: it receives them all, by name."""

    async def plan(ctx: ToolContext, **given: Any) -> Plan:
        from .jobs import model_spec  # jobs imports this module: read at call time

        try:
            if not given.get("dry_run"):
                runtime_of(ctx).api(ctx.headers)  # no key: say so before anything is read
            job, spec = await planner(ctx, given)
            spec = spec or await model_spec(ctx, job.request.model)
            pictures: dict[str, Any] = {
                name: _PLACEHOLDER for name in ("image", "mask_image") if getattr(job.request, name)
            }
            if job.request.images:
                pictures["images"] = [_PLACEHOLDER] * len(job.request.images)
            prepared = prepare_request(job.request.model_copy(update=pictures), spec)
        except AtlasError as err:
            raise fail(err) from err
        estimate = spec.estimate(prepared.num_images) if spec is not None else None
        return Plan(job, spec, prepared.model, prepared.num_images, estimate)

    ctx = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=ToolContext)
    fields = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY) for name in arguments.model_fields]
    plan.__signature__ = inspect.Signature([ctx, *fields], return_annotation=Plan)  # type: ignore[attr-defined]
    plan.__annotations__ = {"ctx": ToolContext, "return": Plan}
    return plan


def confirm_resolver(
    planner: Callable[..., Awaitable[Plan]],
) -> Callable[..., Awaitable[Verdict | Elicit[Any]]]:
    """The ``confirmation`` resolver of the tool whose ``plan`` resolver is ``planner``."""

    async def confirm_cost(ctx: ToolContext, plan: Plan) -> Verdict | Elicit[CostConfirmation]:
        options = plan.job.options
        if options.dry_run:
            return Verdict(True, "dry_run")
        runtime = runtime_of(ctx)
        try:
            cap = plan.cap
            if cap is not None and plan.estimate is not None and plan.estimate > cap:
                raise InvalidParameterError(
                    "max_cost_usd",
                    f"this call is estimated at {usd(plan.estimate)} ({cost_words(plan)}), above the "
                    f"{usd(cap)} it may cost, so nothing was sent. Ask for fewer pictures or a cheaper "
                    "model, or ask the person whether they accept the higher cost.",
                )
            amount = plan.estimate if plan.estimate is not None else cap
            await runtime.ledger.check(runtime.current_key(ctx.headers), plan.images, amount, plan.model)
        except AtlasError as err:
            raise fail(err) from err
        threshold = runtime.confirm_above
        if threshold is None:
            return Verdict(True, "no_threshold")
        if plan.estimate is not None and plan.estimate <= threshold:
            return Verdict(True, "within_threshold")
        if can_ask(ctx):
            return Elicit(_question(plan, threshold), CostConfirmation)
        if (
            cap is not None
        ):  # at least the estimate (checked above), or the person's bound on an unknown price
            return Verdict(True, "max_cost")
        return Verdict(False, "cannot_ask")

    confirm_cost.__annotations__ = {
        "ctx": ToolContext,
        "plan": Annotated[Plan, Resolve(planner)],
        "return": Verdict | Elicit[CostConfirmation],
    }
    return confirm_cost


def can_ask(ctx: ToolContext) -> bool:
    """Whether the person can be asked in this call: the client does form elicitation, and can be reached.

    On 2026-07-28 the question rides the call's answer (``input_required``); before that it is a
    request to the client during the call, which stateless HTTP and JSON-only answers cannot carry.
    """
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    if elicitation is None or (elicitation.form is None and elicitation.url is not None):
        return False
    if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        return True
    return ctx.request_context.session.can_send_request


# --- words -------------------------------------------------------------------------------------------


def cost_words(plan: Plan) -> str:
    """``4 pictures x $0.08 with black-forest-labs/flux-kontext-max``, or why the price is unknown."""
    spec = plan.spec
    if spec is None or spec.price is None:
        return f"no price is known for {plan.model}"
    if spec.price_unit != "image":
        return f"{usd(spec.price)} per run of {plan.model}"
    pictures = "1 picture" if plan.images == 1 else f"{plan.images} pictures"
    return f"{pictures} x {usd(spec.price)} with {plan.model}"


def _question(plan: Plan, threshold: Decimal) -> str:
    """What the person is asked; the same words on every round of one call (the SDK checks that)."""
    tool = plan.job.tool
    if plan.estimate is None:
        cap = plan.cap
        bound = f" The assistant set {usd(cap)} as the most it may cost." if cap is not None else ""
        return (
            f"{tool} would send a job to Atlas Cloud with {plan.model}, whose price this server does not "
            f"know, so its cost cannot be shown before it runs.{bound} Send it and pay what Atlas charges?"
        )
    return (
        f"{tool} would cost about {usd(plan.estimate)} on Atlas Cloud ({cost_words(plan)}), more than the "
        f"{usd(threshold)} this server asks about. Send it and pay for it?"
    )


# --- the answer when nothing is sent -----------------------------------------------------------------


def not_sent(ctx: ToolContext, plan: Plan, confirmation: Confirmation) -> CallToolResult | None:
    """The call's answer when it may not be sent (declined, or not confirmed); None: send it."""
    outcome: object = confirmation.data if isinstance(confirmation, AcceptedElicitation) else None
    if isinstance(outcome, Verdict) and outcome.send:
        return None
    if isinstance(outcome, CostConfirmation) and outcome.confirm:
        return None
    tool = plan.job.tool
    cost = (
        f"about {usd(plan.estimate)} ({cost_words(plan)})"
        if plan.estimate is not None
        else f"an unknown amount ({cost_words(plan)})"
    )
    if isinstance(outcome, Verdict):  # cannot_ask
        threshold = runtime_of(ctx).confirm_above
        above = f"above {usd(threshold)} " if threshold is not None else ""
        confirm = (
            f"max_cost_usd={price_text(plan.estimate)} (or more)"
            if plan.estimate is not None
            else "max_cost_usd set to the most the person will pay for it"
        )
        status = "confirmation_required"
        if runtime_of(ctx).place == "cli":  # the generate command: the person is at the terminal
            flag = (
                f"--max-cost-usd {price_text(plan.estimate)}"
                if plan.estimate is not None
                else "--max-cost-usd"
            )
            next_step = (
                f"Not sent: this call would cost {cost}, and this server confirms calls {above}first. "
                f"Nothing was sent or billed. To go ahead, run the same command with {flag}."
            )
            return _not_sent_result(plan, status, next_step)
        next_step = (
            f"Not sent: this call would cost {cost}. This server confirms calls {above}with the person "
            "first, and this client cannot ask them (it does not support elicitation here). Nothing was sent "
            f"or billed. Tell the person the cost and ask; if they agree, call {tool} again with the same "
            f"arguments and {confirm}."
        )
    else:
        how = "cancelled the question" if isinstance(confirmation, CancelledElicitation) else "declined"
        if not isinstance(confirmation, (DeclinedElicitation, CancelledElicitation)):
            how = "did not confirm"
        status = "declined"
        next_step = (
            f"Not sent: the person {how} this call, which would cost {cost}. Nothing was sent or billed. "
            f"Do not call {tool} again unless the person asks (perhaps for fewer pictures or a cheaper "
            "model)."
        )
    return _not_sent_result(plan, status, next_step)


def _not_sent_result(plan: Plan, status: str, next_step: str) -> CallToolResult:
    result = GenerationResult(
        prediction_id=None,
        status=status,
        model=plan.model,
        prompt=plan.job.request.prompt or None,
        estimated_price=price_text(plan.estimate),
        next_step=next_step,
    )
    return tool_result(result, [], [])
