"""``get_balance`` (the Atlas account's credit) and ``get_usage`` (this server's spend, from its ledger)."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated

from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel, Field

from ..call import Call
from ..constants import BILLING_URL
from ..errors import usd, wait_words
from ..models import Balance, Money
from ..params import GetUsageArguments
from ..render import price_text
from ..settings import env_name

__all__ = ["BalanceResult", "UsageResult", "get_balance", "get_usage"]


def _amount(money: Money | None) -> Decimal | None:
    if money is None:
        return None
    try:
        return Decimal(money.value)
    except ArithmeticError:
        return None


def _money_words(money: Money | None) -> str:
    amount = _amount(money)
    if money is None or amount is None:
        return "unknown"
    return usd(amount) if money.currency == "usd" else f"{amount.normalize():f} {money.currency.upper()}"


class BalanceResult(BaseModel):
    """The account's credit, as Atlas' billing API reports it (amounts in ``currency``)."""

    currency: str = Field(description="Currency of the amounts, e.g. usd.")
    available: str | None = Field(default=None, description="What can be spent now.")
    cash: str | None = None
    bonus: str | None = None
    subscription_bonus: str | None = None
    frozen: str | None = Field(default=None, description="Held for jobs in progress.")


def _result(balance: Balance) -> BalanceResult:
    """One currency (the available amount's): an amount in another one is left out, not mixed in."""
    amounts = {
        name: getattr(balance, name)
        for name in ("available", "cash", "bonus", "subscription_bonus", "frozen")
    }
    currency = next(money.currency for money in amounts.values() if money is not None)
    return BalanceResult(
        currency=currency,
        **{
            name: price_text(_amount(money))
            for name, money in amounts.items()
            if money is not None and money.currency == currency
        },
    )


async def get_balance(call: Call) -> Annotated[CallToolResult, BalanceResult]:
    """The Atlas Cloud account's credit: available, cash, bonus and frozen amounts."""
    balance = await call.api.get_balance()
    parts = [
        f"{name} {_money_words(value)}"
        for name, value in (("cash", balance.cash), ("bonus", balance.bonus), ("frozen", balance.frozen))
        if value is not None
    ]
    offline = call.runtime.offline  # the emulator's figures, not an account's
    text = (
        f"{'Emulator' if offline else 'Atlas Cloud'} balance: {_money_words(balance.available)} available"
        + (f" ({', '.join(parts)})." if parts else ".")
    )
    if offline:
        text += (
            " Offline: these are the built-in emulator's made-up figures, not a real Atlas Cloud account; "
            "nothing is charged. What this server would have spent per day and model: get_usage."
        )
    else:
        text += f" Top up at {BILLING_URL}. What this server spent per day and model: get_usage."
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=_result(balance).model_dump(mode="json", exclude_none=True),
    )


class UsageRow(BaseModel):
    day: str = Field(description="UTC day, YYYY-MM-DD.")
    model: str
    calls: int
    images: int
    usd: str = Field(description="Charged, or estimated while Atlas has not reported the charge.")
    estimated_calls: int = Field(description="Calls whose charge is still an estimate.")


class UsageCall(BaseModel):
    started: str = Field(description="When it was sent (UTC, ISO 8601).")
    tool: str
    model: str
    images: int
    usd: str
    charged: bool = Field(description="The amount is what Atlas charged (else the estimate).")
    prediction_id: str | None


class UsageResult(BaseModel):
    """What this server sent with the caller's API key, from its ledger."""

    since: str = Field(description="First UTC day counted.")
    total_usd: str
    images: int
    by_day_and_model: list[UsageRow]
    largest_calls: list[UsageCall]
    spent_today_usd: str
    budget_usd_per_day: str | None = Field(description=f"{env_name('budget_usd_per_day')}; null: none.")
    left_today_usd: str | None
    resets_at: str = Field(description="When the daily budget starts again (next 00:00 UTC).")
    images_last_hour: int
    max_images_per_hour: int | None = Field(description=f"{env_name('max_images_per_hour')}; null: none.")


def _iso(moment: float) -> str:
    return (
        datetime.fromtimestamp(moment, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


async def get_usage(call: Call, args: GetUsageArguments) -> Annotated[CallToolResult, UsageResult]:
    """What this server spent with your key, by day and model, its largest calls, and budget left."""
    runtime = call.runtime
    if call.caller.subject is None:
        _ = call.api  # whose usage: the caller's key (none: say how to set one); a signed-in user's own
    usage = await runtime.ledger.usage(call.caller.bucket, args.days)
    limits = runtime.ledger.limits
    total = sum((row.usd for row in usage.rows), Decimal(0))
    images = sum(row.images for row in usage.rows)
    budget = limits.usd_per_day
    left = max(Decimal(0), budget - usage.spent_today) if budget is not None else None
    resets_at = _iso(usage.resets_at)
    result = UsageResult(
        since=usage.since,
        total_usd=price_text(total) or "0",
        images=images,
        by_day_and_model=[
            UsageRow(
                day=row.day,
                model=row.model,
                calls=row.calls,
                images=row.images,
                usd=price_text(row.usd) or "0",
                estimated_calls=row.estimated,
            )
            for row in usage.rows
        ],
        largest_calls=[
            UsageCall(
                started=_iso(call.started),
                tool=call.tool,
                model=call.model,
                images=call.images,
                usd=price_text(call.usd) or "0",
                charged=call.charged,
                prediction_id=call.prediction_id,
            )
            for call in usage.largest
        ],
        spent_today_usd=price_text(usage.spent_today) or "0",
        budget_usd_per_day=price_text(budget),
        left_today_usd=price_text(left),
        resets_at=resets_at,
        images_last_hour=usage.images_last_hour,
        max_images_per_hour=limits.images_per_hour,
    )
    lines = [
        f"Sent through this server with this API key since {usage.since} (UTC): {usd(total)} for "
        f"{images} image(s) in {sum(row.calls for row in usage.rows)} call(s)."
    ]
    lines += [
        f"{row.day}  {row.model}: {row.images} image(s) in {row.calls} call(s), {usd(row.usd)}"
        + (f" ({row.estimated} not yet charged: estimated)" if row.estimated else "")
        for row in usage.rows
    ]
    if usage.largest:
        lines.append("Largest calls:")
        lines += [
            f"  {usd(call.usd)}{'' if call.charged else ' (estimate)'}  {call.tool} {call.model} "
            f"x{call.images}  {_iso(call.started)}"
            + (f"  prediction {call.prediction_id}" if call.prediction_id else "")
            for call in usage.largest
        ]
    today = f"Today: {usd(usage.spent_today)} spent or reserved"
    if budget is not None and left is not None:
        today += f" of the {usd(budget)} daily budget; {usd(left)} left"
    lines.append(f"{today}; the day resets at 00:00 UTC, in {wait_words(usage.resets_in)}.")
    if limits.images_per_hour is not None:
        lines.append(f"Images in the last hour: {usage.images_last_hour} of {limits.images_per_hour}.")
    if usage.note:
        lines.append(f"Note: {usage.note}, so this counts only since this server started.")
    elif not usage.persistent:
        lines.append(
            "Note: this ledger is kept in memory (offline mode): it counts only since the server started."
        )
    lines.append("Only calls made through this server are counted; get_balance shows the whole account.")
    if call.caller.shared:
        lines.append(
            "Every client of this server uses its one Atlas key, so all of them are one identity here: "
            "this usage (and its prediction ids) is everyone's."
        )
    return CallToolResult(
        content=[TextContent(type="text", text="\n".join(lines))],
        structured_content=result.model_dump(mode="json"),
    )
