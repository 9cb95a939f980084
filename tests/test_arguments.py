"""Tool arguments through a real MCP client: plain sentences for every mistake, unknown names refused,
published bounds equal to what the models accept, and a lean tool list.

The checks that loop over ``tools/list`` hold for every tool the server lists, including tools added
later: they read the names, bounds and required fields from the published schemas.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest

from atlas_image_mcp.catalogue import BUILT_IN

from .conftest import text_of

GENERATE = "/api/v1/model/generateImage"
PYDANTIC_WORDS = ("pydantic", "validation error", "type=", "input_value", "Input should", "For further")
#: Characters of ``tools/list`` (compact JSON) per tool, on average: the budget the listing must keep.
TOOL_LIST_BUDGET = 2500


async def listed(connect: Any) -> dict[str, Any]:
    async with connect() as client:
        return {tool.name: tool for tool in (await client.list_tools()).tools}


def assert_plain(text: str) -> None:
    for word in PYDANTIC_WORDS:
        assert word not in text, f"pydantic wording {word!r} in: {text}"


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({}, "Missing prompt: it is required."),
        ({"prompt": ""}, "Invalid prompt: must not be empty."),
        ({"prompt": "fox", "width": 10000}, "Invalid width: 10000 is out of range; allowed: 256 to 2048."),
        ({"prompt": "fox", "num_images": 5}, "Invalid num_images: 5 is out of range; allowed: 1 to 4."),
        ({"prompt": "fox", "width": "big"}, "Invalid width: got 'big'; it must be a whole number."),
        (
            {"prompt": "fox", "return_image": "huge"},
            "Invalid return_image: got 'huge'; it must be one of 'thumbnail', 'full' or 'none'.",
        ),
        (
            {"prompt": "", "num_images": 0, "seed": -5},
            "Invalid prompt: must not be empty. Invalid num_images: 0 is out of range; allowed: 1 to 4. "
            "Invalid seed: -5 is out of range; allowed: -1 to 2147483647.",
        ),
    ],
)
async def test_a_schema_violation_is_one_plain_sentence_per_argument(connect, emulator, arguments, expected):
    async with connect() as client:
        result = await client.call_tool("generate_image", arguments)
    assert result.is_error is True
    assert text_of(result) == f"Error executing tool generate_image: {expected}"
    assert emulator.count("POST", GENERATE) == 0


async def test_a_guessed_argument_name_fails_the_call_naming_it_and_the_accepted_ones(connect, emulator):
    async with connect() as client:
        result = await client.call_tool("generate_image", {"prompt": "fox", "size": "512x512"})
        schema = next(t for t in (await client.list_tools()).tools if t.name == "generate_image").input_schema
    text = text_of(result)
    assert (
        result.is_error is True and "Unknown argument size (use width and height, or aspect_ratio);" in text
    )
    assert all(name in text for name in schema["properties"]), text
    assert emulator.count("POST", GENERATE) == 0, "nothing is generated (or billed) for a refused call"
    assert_plain(text)


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        ("generate_image", {"n": 2}, "n (use num_images)"),  # another API's name
        ("generate_image", {"num_inference_steps": 4}, "num_inference_steps (use steps)"),  # Atlas' wire name
        ("generate_image", {"num_image": 2}, "num_image (use num_images)"),  # a typo
        ("generate_image", {"guidance": 3}, "guidance (use guidance_scale)"),  # a shortened name
        ("generate_image", {"negative_prompt": "x"}, "negative_prompt;"),  # nothing close: no guess
        ("get_prediction", {"wait": 5}, "wait (use wait_seconds)"),
        ("get_prediction", {"size": "512x512"}, "size;"),  # a pointer only to what this tool takes
    ],
)
async def test_an_unknown_name_points_to_the_one_it_most_likely_meant(connect, tool, arguments, expected):
    required = {"generate_image": {"prompt": "fox"}, "get_prediction": {"prediction_id": "abc"}}[tool]
    async with connect() as client:
        result = await client.call_tool(tool, {**required, **arguments})
    assert result.is_error is True and f"Unknown argument {expected}" in text_of(result), text_of(result)


async def test_every_tool_refuses_unknown_names_and_says_which_it_accepts(connect):
    tools = await listed(connect)
    async with connect() as client:
        for name, tool in tools.items():
            assert tool.input_schema.get("additionalProperties") is False, name
            result = await client.call_tool(name, {"bogus": 1, "N": 2})
            text = text_of(result)
            assert result.is_error is True, name
            assert "Unknown arguments bogus, N;" in text, text
            assert all(prop in text for prop in tool.input_schema["properties"]), text


def _bounded(tools: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for name, tool in tools.items():
        for prop, schema in tool.input_schema["properties"].items():
            if "minimum" in schema and "maximum" in schema:
                out.append((name, prop, schema))
    return out


async def test_every_published_bound_is_exactly_what_the_tool_accepts(connect):
    """Each edge passes the argument check; one step beyond it is refused with the published range.

    (A model may still refuse an edge with its own, narrower range: width 2048 is in the published
    range because some models take it, and flux-schnell then answers with its 256 to 1536.)
    """
    tools = await listed(connect)
    assert _bounded(tools), "no bounded parameter found"
    async with connect() as client:
        for name, prop, schema in _bounded(tools):
            props = tools[name].input_schema["properties"]
            base = {"prompt": "fox"} if "prompt" in props else {}
            base |= {"dry_run": True} if "dry_run" in props else {}
            base |= {"prediction_id": "0" * 32} if "prediction_id" in props else {}
            step = 1 if "integer" in schema["type"] else 0.5
            low, high = schema["minimum"], schema["maximum"]
            allowed = f"allowed: {_number(low)} to {_number(high)}."
            for edge in (low, high):
                result = await client.call_tool(name, {**base, prop: edge})
                assert allowed not in text_of(result), (name, prop, edge, text_of(result))
            for outside in (low - step, high + step):
                result = await client.call_tool(name, {**base, prop: outside})
                expected = f"Invalid {prop}: {_number(outside)} is out of range; {allowed}"
                assert result.is_error and expected in text_of(result), (name, prop, text_of(result))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


async def test_width_and_height_publish_the_widest_side_range_of_the_model_table(connect):
    schema = (await listed(connect))["generate_image"].input_schema["properties"]
    assert schema["width"]["type"] == ["integer", "null"]
    sides = [spec.side for spec in BUILT_IN if spec.side is not None]
    for prop in ("width", "height"):
        assert schema[prop]["minimum"] == min(side.minimum for side in sides)
        assert schema[prop]["maximum"] == max(side.maximum for side in sides)


def _titles(node: Any, where: str = "") -> list[str]:
    """Paths of schema ``title`` keys (a property *named* title is not one)."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "title" and isinstance(value, str):
                found.append(where)
            if key == "properties" and isinstance(value, dict):
                found += [p for n, sub in value.items() for p in _titles(sub, f"{where}.{n}")]
            elif key not in ("enum", "required", "default"):
                found += _titles(value, f"{where}/{key}")
    elif isinstance(node, list):
        found += [p for item in node for p in _titles(item, where)]
    return found


async def test_the_tool_list_is_lean_but_keeps_output_schemas_and_describes_every_parameter(connect):
    async with connect() as client:
        result = await client.list_tools()
    tools = [tool.model_dump(by_alias=True, mode="json", exclude_none=True) for tool in result.tools]
    size = len(json.dumps(tools, separators=(",", ":")))
    assert size / len(tools) <= TOOL_LIST_BUDGET, f"tools/list is {size} characters for {len(tools)} tools"
    for tool in tools:
        assert tool["outputSchema"]["type"] == "object", tool["name"]
        assert not _titles(tool["inputSchema"]) and not _titles(tool["outputSchema"]), tool["name"]
        assert "$ref" not in json.dumps(tool), tool["name"]
        for prop, schema in tool["inputSchema"]["properties"].items():
            assert schema.get("description"), f"{tool['name']}.{prop} has no description"


async def test_results_match_the_lean_output_schemas(connect):
    async with connect() as client:
        schemas = {tool.name: tool.output_schema for tool in (await client.list_tools()).tools}
        done = await client.call_tool("generate_image", {"prompt": "fox", "return_image": "none"})
        dry = await client.call_tool("generate_image", {"prompt": "fox", "dry_run": True})
        models = await client.call_tool("list_models", {})
    for result, name in ((done, "generate_image"), (dry, "generate_image"), (models, "list_models")):
        assert result.is_error is False, text_of(result)
        jsonschema.validate(result.structured_content, schemas[name])


async def test_a_json_list_in_a_string_is_still_parsed_as_the_sdk_does(connect):
    """The argument check sees the arguments as the SDK will (JSON text for non-text fields decoded)."""
    async with connect() as client:
        result = await client.call_tool("generate_image", {"prompt": "fox", "num_images": "[1]"})
    assert result.is_error is True
    assert re.search(r"Invalid num_images: got \[1\]; it must be a whole number\.", text_of(result))
