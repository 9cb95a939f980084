"""What a picture call will cost, and the person's go-ahead before an expensive one is sent.

:func:`confirm` decides, for a planned job (:mod:`.plan`), whether it may be sent. Nothing is asked
for a dry run, with no threshold, or for an estimate at or below ``ATLAS_MCP_CONFIRM_ABOVE_USD``.
Above it, and for an unknown price while a threshold is set (it could be anything), the person is
asked. A client that cannot ask (no elicitation, or no channel for it) is answered, without sending
anything, with the cost and how to confirm: the call again with ``max_cost_usd`` at least the
estimate. Budget refusals and a ``max_cost_usd`` below the estimate are raised before anyone is asked.

One code path for both protocol eras (:func:`atlas_image_mcp.compat.ask`): on a handshake-era
session (2025-06-18, 2025-11-25) the question is an ``elicitation/create`` request sent during the
call; on 2026-07-28 the call answers ``input_required`` with the question, and the client calls
again with the answer (the SDK carries it, sealed, in ``requestState``). With MCP tasks the question
is asked (and answered) before Atlas is called and before the call becomes a task.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from mcp.server.mcpserver import (
    AcceptedElicitation,
    CancelledElicitation,
    DeclinedElicitation,
    Elicit,
    ElicitationResult,
)
from mcp_types import CallToolResult, InputRequiredResult
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, Field

from .. import compat
from ..call import Call
from ..catalogue import UNKNOWN_PRICE_PER_IMAGE
from ..errors import BudgetError, InvalidParameterError, usd
from ..render import GenerationResult, price_text, tool_result
from .plan import Plan

__all__ = [
    "Confirmation",
    "CostConfirmation",
    "Verdict",
    "can_ask",
    "confirm",
    "cost_words",
    "go_ahead",
    "held_explained",
    "not_sent",
]


class CostConfirmation(BaseModel):
    """What the person is asked (the form of the elicitation)."""

    confirm: bool = Field(
        default=True, title="Send it", description="Send this job to Atlas Cloud and pay for it"
    )


@dataclass(frozen=True)
class Verdict:
    """The confirmation's own answer when it asked nobody."""

    send: bool
    why: Literal["dry_run", "no_threshold", "within_threshold", "max_cost", "cannot_ask"]


#: The go-ahead: this server's own :class:`Verdict` when it asked nobody; else the person's answer
#: (:class:`CostConfirmation` as the accepted ``data``; the cannot-ask verdict arrives that way too),
#: or their decline or cancel.
Confirmation = Verdict | ElicitationResult[Any]


async def confirm(call: Call, plan: Plan) -> Confirmation | InputRequiredResult:
    """Whether ``plan`` may be sent, asking the person where needed (see the module docstring).

    On 2026-07-28 a question comes back as the ``InputRequiredResult`` the call answers with.
    """
    if plan.job.options.dry_run:
        return Verdict(True, "dry_run")
    runtime = call.runtime
    cap = plan.cap
    if cap is not None and plan.estimate is not None and plan.estimate > cap:
        raise InvalidParameterError(
            "max_cost_usd",
            f"this call is estimated at {usd(plan.estimate)} ({cost_words(plan)}), above the "
            f"{usd(cap)} it may cost, so nothing was sent. Ask for fewer pictures or a cheaper "
            "model, or ask the person whether they accept the higher cost.",
        )
    if cap is not None and cap <= 0 and plan.estimate is None:
        raise InvalidParameterError(
            "max_cost_usd",
            f"is {usd(cap)}, but this call costs money ({cost_words(plan)}). Nothing was sent or billed. "
            "Leave max_cost_usd out, or set it to the most the person agreed to pay for this call.",
        )
    with held_explained(plan):
        await runtime.ledger.check(call.caller.bucket, plan.images, plan.held, plan.model)
    threshold = runtime.confirm_above
    if threshold is None:
        return Verdict(True, "no_threshold")
    if plan.estimate is not None and plan.estimate <= threshold:
        return Verdict(True, "within_threshold")

    async def confirm_cost() -> Verdict | Elicit[CostConfirmation]:
        if can_ask(call):
            return Elicit(_question(plan, threshold), CostConfirmation)
        if cap is not None and (plan.estimate is not None or not call.runtime.remote):
            # at least the estimate (checked above); for an unknown price, only where the person runs
            # the server for themselves: over HTTP a bound the client chose is nobody's go-ahead
            return Verdict(True, "max_cost")
        return Verdict(False, "cannot_ask")

    return await compat.ask(call.ctx, confirm_cost)


@contextmanager
def held_explained(plan: Plan) -> Iterator[None]:
    """Say, in a budget refusal, why a call whose price is unknown is held at the amount it is."""
    try:
        yield
    except BudgetError as err:
        held = plan.held
        if plan.estimate is None and held is not None:
            err.extend_message(
                f"The price of {plan.model} is not known, so the call is held at {usd(held)} until Atlas "
                f"reports the charge: max_cost_usd, but at least {usd(UNKNOWN_PRICE_PER_IMAGE)} a picture "
                "(the most a picture of any priced model costs)."
            )
        raise


def can_ask(call: Call) -> bool:
    """Whether the person can be asked in this call: the client does form elicitation, and can be reached.

    On 2026-07-28 the question rides the call's answer (``input_required``); before that it is a
    request to the client during the call, which stateless HTTP and JSON-only answers cannot carry.
    """
    ctx = call.ctx
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
    jobs = f" in {plan.runs} jobs" if plan.runs > 1 else ""
    if spec is None or spec.price is None:
        return f"no price is known for {plan.model}"
    if spec.price_unit != "image":
        runs = f"{plan.runs} runs x " if plan.runs > 1 else ""
        return f"{runs}{usd(spec.price)} per run of {plan.model}"
    pictures = "1 picture" if plan.images == 1 else f"{plan.images} pictures"
    return f"{pictures} x {usd(spec.price)} with {plan.model}{jobs}"


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


async def go_ahead(call: Call, plan: Plan) -> CallToolResult | InputRequiredResult | None:
    """:func:`confirm`, then :func:`not_sent`: the call's answer while it may not be sent (a question
    for the person on 2026-07-28, a decline, no confirmation); None: send it."""
    confirmation = await confirm(call, plan)
    if isinstance(confirmation, InputRequiredResult):
        return confirmation
    return not_sent(call, plan, confirmation)


# --- the answer when nothing is sent -----------------------------------------------------------------


def not_sent(call: Call, plan: Plan, confirmation: Confirmation) -> CallToolResult | None:
    """The call's answer when it may not be sent (declined, or not confirmed); None: send it."""
    outcome: object = confirmation.data if isinstance(confirmation, AcceptedElicitation) else confirmation
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
        threshold = call.runtime.confirm_above
        above = f"above {usd(threshold)} " if threshold is not None else ""
        confirm = (
            f"max_cost_usd={price_text(plan.estimate)} (or more)"
            if plan.estimate is not None
            else "max_cost_usd set to the most the person will pay for it"
        )
        if plan.estimate is None and call.runtime.remote:
            next_step = (
                f"Not sent: this call would cost {cost}. This server confirms calls {above}with the person "
                "first, and this client cannot ask them (it does not support elicitation here); with the "
                "price unknown, nothing else can stand in for their answer. Nothing was sent or billed. "
                "Choose a model whose price is known (list_models shows them), or use a client that can "
                "ask the person."
            )
            return _not_sent_result(plan, "confirmation_required", next_step)
        status = "confirmation_required"
        if call.runtime.place == "cli":  # the generate command: the person is at the terminal
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
