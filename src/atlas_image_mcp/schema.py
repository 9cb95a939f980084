"""Lean JSON Schemas for ``tools/list``: the same rules, fewer characters.

Every conversation that has the server connected pays for its tool list, so the schemas pydantic
generates are trimmed of what tells a client nothing, without changing what they accept:

* pydantic's automatic ``title`` keys ("Prompt" for ``prompt``; a property *named* ``title`` stays);
* ``"default": null`` (an optional property that is absent is already "not given");
* ``anyOf: [{"type": T, ...}, {"type": "null"}]`` (pydantic's ``T | None``) written as
  ``{"type": [T, "null"], ...}``, the same rule in JSON Schema's short form;
* in an output schema, every ``default`` (a result always carries its values) and every
  ``description``: an output schema is read by programs (to validate and parse
  ``structuredContent``), while an assistant reads the result's text layer and the tool's
  description, so its words would be paid for in every conversation and read by no one;
* ``$ref`` into ``$defs`` inlined where the definition is used once and refers to nothing (again
  until none is left, so a nested chain of small models is inlined whole), so a small nested model
  costs its properties only.

Pure functions on plain dicts; nothing here knows about MCP.
"""

from __future__ import annotations

import copy
import json
from typing import Any

__all__ = ["compact_schema"]

_DEFS_PREFIX = "#/$defs/"


def compact_schema(schema: dict[str, Any], *, output: bool = False) -> dict[str, Any]:
    """A trimmed copy of ``schema`` (an input schema, or with ``output`` an output schema)."""
    out = copy.deepcopy(schema)
    while (inlined := _inline_single_use_refs(out)) != out:  # a definition may use one inlined just now
        out = inlined
    _trim(out, output)
    return out


def _trim(node: Any, output: bool) -> None:
    """Trim one schema object and its subschemas in place."""
    if isinstance(node, list):
        for item in node:
            _trim(item, output)
        return
    if not isinstance(node, dict):
        return
    _nullable_as_type_list(node)
    if isinstance(node.get("title"), str):
        del node["title"]
    if "default" in node and (output or node["default"] is None):
        del node["default"]
    if output and isinstance(node.get("description"), str):
        del node["description"]
    for key, value in node.items():
        if key in ("properties", "$defs", "patternProperties"):  # maps of name -> schema
            if isinstance(value, dict):
                for sub in value.values():
                    _trim(sub, output)
        elif key in ("enum", "const", "examples", "required", "default"):  # values, not schemas
            continue
        else:
            _trim(value, output)


def _nullable_as_type_list(node: dict[str, Any]) -> None:
    """``{"anyOf": [{"type": "integer", "maximum": 4}, {"type": "null"}]}`` -> ``{"type": ["integer",
    "null"], "maximum": 4}`` (an ``enum`` gains ``null`` too); other unions are left as they are."""
    variants = node.get("anyOf")
    if not (isinstance(variants, list) and len(variants) == 2 and {"type": "null"} in variants):
        return
    [kept] = [v for v in variants if v != {"type": "null"}]
    if (
        not isinstance(kept, dict)
        or not isinstance(kept.get("type"), str)
        or set(kept) & set(node) - {"anyOf"}
    ):
        return
    del node["anyOf"]
    node.update(kept)
    node["type"] = [kept["type"], "null"]
    if isinstance(node.get("enum"), list):
        node["enum"] = [*node["enum"], None]


def _inline_single_use_refs(schema: dict[str, Any]) -> dict[str, Any]:
    defs = schema.get("$defs")
    if not isinstance(defs, dict):
        return schema
    text = json.dumps(schema)
    inlinable = {
        name
        for name, definition in defs.items()
        if text.count(json.dumps(_DEFS_PREFIX + name)) == 1 and "$ref" not in json.dumps(definition)
    }
    if not inlinable:
        return schema

    def replace(node: Any) -> Any:
        if isinstance(node, list):
            return [replace(item) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.removeprefix(_DEFS_PREFIX) in inlinable:
            siblings = {k: replace(v) for k, v in node.items() if k != "$ref"}
            return {**defs[ref.removeprefix(_DEFS_PREFIX)], **siblings}
        return {k: (v if k == "$defs" else replace(v)) for k, v in node.items()}

    out: dict[str, Any] = replace(schema)
    # a definition kept may itself use one that is inlined
    left = {name: replace(d) for name, d in defs.items() if name not in inlinable}
    if left:
        out["$defs"] = left
    else:
        out.pop("$defs", None)
    return out
