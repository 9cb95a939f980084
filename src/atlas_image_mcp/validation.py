"""Pydantic validation problems in plain words, for settings and tool arguments alike.

:func:`field_problem` turns one entry of ``ValidationError.errors()`` into the end of a sentence
that follows the name of what was wrong ("must be between 1 and 4"), never pydantic's own text
with its links and type names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic.fields import FieldInfo

__all__ = ["bounds_of", "field_problem", "format_number"]


def format_number(value: Any) -> str:
    """Whole numbers in full (2147483647, not 2.14748e+09), others compactly."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(int(value)) if float(value).is_integer() else f"{value:g}"
    return str(value)


def bounds_of(info: FieldInfo) -> str | None:
    """``"1 to 4"`` for a field declared with both a lower and an upper bound, else None."""
    low = high = None
    for item in info.metadata:
        low = getattr(item, "ge", None) if getattr(item, "ge", None) is not None else low
        low = getattr(item, "gt", None) if getattr(item, "gt", None) is not None else low
        high = getattr(item, "le", None) if getattr(item, "le", None) is not None else high
        high = getattr(item, "lt", None) if getattr(item, "lt", None) is not None else high
    if low is None or high is None:
        return None
    return f"{format_number(low)} to {format_number(high)}"


def field_problem(error: Mapping[str, Any]) -> str:
    """What is wrong with one value, as the end of a sentence ("must be a whole number")."""
    kind = str(error.get("type", ""))
    ctx = error.get("ctx") or {}
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        words = {
            "greater_than": "greater than",
            "greater_than_equal": "at least",
            "less_than": "less than",
            "less_than_equal": "at most",
        }[kind]
        limit = next(iter(ctx.values()), "")
        return f"must be {words} {format_number(limit)}"
    if kind in ("int_parsing", "int_from_float", "int_type"):
        return "must be a whole number"
    if kind in ("float_parsing", "float_type", "finite_number", "decimal_parsing", "decimal_type"):
        return "must be a finite number"
    if kind in ("bool_parsing", "bool_type"):
        return "must be 1 or 0 (true or false)"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', 'the allowed values')}"
    if kind in ("string_too_short",):
        return (
            "must not be empty"
            if ctx.get("min_length") == 1
            else f"needs at least {ctx['min_length']} characters"
        )
    if kind == "string_too_long":
        return f"is too long (at most {format_number(ctx.get('max_length'))} characters)"
    if kind == "string_pattern_mismatch":
        return "has the wrong format"
    if kind in ("string_type",):
        return "must be text"
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known parameter"
    if kind == "value_error":
        message = str(error.get("msg", ""))
        return message.removeprefix("Value error, ") or "is not valid"
    return str(error.get("msg", "is not valid")).lower()
