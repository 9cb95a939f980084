"""prepare_request: friendly parameters -> the flat body Atlas expects, with range checks."""

from __future__ import annotations

import pytest

from atlas_image_mcp.catalogue import builtin_spec
from atlas_image_mcp.errors import InvalidParameterError
from atlas_image_mcp.params import GenerationRequest
from atlas_image_mcp.wire import prepare_request

SCHNELL = "black-forest-labs/flux-schnell"
DEV = "black-forest-labs/flux-dev"


def prepare(**fields):
    fields.setdefault("prompt", "a red fox in snow")
    prepared = prepare_request(GenerationRequest(**fields))
    return prepared.with_pictures([slot.ref for slot in prepared.pictures])  # the references as the URLs


def test_the_default_request_is_a_one_megapixel_schnell_body():
    prepared = prepare()

    # no size asked: the model's own default (1024*1024) applies, and nothing unasked is sent
    assert prepared.body == {"model": SCHNELL, "prompt": "a red fox in snow", "num_images": 1}
    assert (prepared.width, prepared.height) == (1024, 1024)
    assert prepared.model == SCHNELL
    assert prepared.ignored == ()


def test_width_and_height_become_size_w_star_h():
    prepared = prepare(width=768, height=1344)

    assert prepared.body["size"] == "768*1344"
    assert "width" not in prepared.body
    assert "height" not in prepared.body


def test_the_prompt_is_trimmed():
    assert prepare(prompt="  a fox \n").body["prompt"] == "a fox"


@pytest.mark.parametrize("model", [SCHNELL, DEV])
@pytest.mark.parametrize(
    "ratio", ["16:9", "9:16", "1:1", "3:2", "2:3", "4:3", "21:9", "16/9", "16x9", " 16 : 9 "]
)
def test_an_aspect_ratio_gives_about_one_megapixel_in_multiples_of_16_within_the_model_range(model, ratio):
    prepared = prepare(model=model, aspect_ratio=ratio)
    side = builtin_spec(model).side
    w, h = prepared.width, prepared.height
    rw, rh = (float(x) for x in ratio.replace("/", ":").replace("x", ":").split(":"))

    assert prepared.body["size"] == f"{w}*{h}"
    assert w % 16 == 0 and h % 16 == 0
    assert side.minimum <= w <= side.maximum
    assert side.minimum <= h <= side.maximum
    assert 0.85 * 1024 * 1024 <= w * h <= 1.1 * 1024 * 1024
    assert w / h == pytest.approx(rw / rh, rel=0.03)
    assert "aspect_ratio" not in prepared.body


def test_16_by_9_is_1360_by_768():
    prepared = prepare(aspect_ratio="16:9")

    assert (prepared.width, prepared.height) == (1360, 768)


@pytest.mark.parametrize("model", [SCHNELL, DEV])
@pytest.mark.parametrize("ratio", ["4:1", "1:4", "3:1", "1:3"])
def test_an_extreme_aspect_ratio_is_clamped_into_the_model_range(model, ratio):
    prepared = prepare(model=model, aspect_ratio=ratio)
    side = builtin_spec(model).side

    for value in (prepared.width, prepared.height):
        assert side.minimum <= value <= side.maximum
        assert value % 16 == 0


@pytest.mark.parametrize("ratio", ["wide", "16:0", "0:9", "5:1", "1:5", "16:9:1", ""])
def test_a_malformed_or_too_extreme_aspect_ratio_is_refused(ratio):
    with pytest.raises(InvalidParameterError) as info:
        prepare(aspect_ratio=ratio or "   ")

    assert info.value.parameter == "aspect_ratio"


@pytest.mark.parametrize("size", [{"width": 1024}, {"height": 768}, {"width": 1024, "height": 768}])
def test_aspect_ratio_together_with_width_or_height_is_refused(size):
    with pytest.raises(InvalidParameterError) as info:
        prepare(aspect_ratio="16:9", **size)

    assert info.value.parameter == "aspect_ratio"
    assert "not both" in str(info.value)


@pytest.mark.parametrize(
    ("fields", "parameter", "allowed"),
    [
        ({"width": 2048}, "width", "256 to 1536"),
        ({"width": 128}, "width", "256 to 2048"),  # below every model: the published bound
        ({"height": 1600}, "height", "256 to 1536"),
        ({"model": DEV, "width": 384}, "width", "512 to 1536"),
        ({"num_images": 5}, "num_images", "1 to 4"),
        ({"num_images": 0}, "num_images", "1 to 4"),
        ({"seed": -2}, "seed", "-1 to 2147483647"),
        ({"seed": 2**31}, "seed", "-1 to 2147483647"),
        ({"strength": 1.5, "image": "https://x.test/a.png"}, "strength", "0 to 1"),
        ({"model": DEV, "steps": 51}, "steps", "1 to 50"),
        ({"model": DEV, "steps": 0}, "steps", "1 to 50"),
        ({"model": DEV, "guidance_scale": 25.0}, "guidance_scale", "0 to 20"),
        ({"model": DEV, "guidance_scale": float("nan")}, "guidance_scale", "0 to 100"),
        ({"model": "acme/other", "width": 5000}, "width", "256 to 2048"),
        # the published bound of steps holds for every model (before 0.2 a request built in code for
        # an unknown model accepted up to 100, which no tool call could reach)
        ({"model": "acme/other", "steps": 101}, "steps", "1 to 50"),
    ],
)
def test_an_out_of_range_value_names_the_parameter_and_the_allowed_range(fields, parameter, allowed):
    with pytest.raises(InvalidParameterError) as info:
        prepare(**fields)

    assert info.value.parameter == parameter
    assert f"allowed: {allowed}" in str(info.value) or f"between {allowed}" in str(info.value)
    assert str(info.value).startswith(f"Invalid {parameter}:")


@pytest.mark.parametrize(
    "fields", [{"width": 256, "height": 1536}, {"model": DEV, "width": 512, "height": 1536}]
)
def test_the_range_edges_are_allowed(fields):
    prepared = prepare(**fields)

    assert prepared.body["size"] == f"{fields['width']}*{fields['height']}"


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t"])
def test_an_empty_prompt_is_refused(prompt):
    with pytest.raises(InvalidParameterError) as info:
        prepare(prompt=prompt)

    assert info.value.parameter == "prompt"
    assert "empty" in str(info.value)


def test_an_overlong_prompt_or_a_nul_is_refused():
    with pytest.raises(InvalidParameterError, match="10000"):
        prepare(prompt="x" * 10_001)
    with pytest.raises(InvalidParameterError, match="NUL"):
        prepare(prompt="a\x00b")


@pytest.mark.parametrize("model", ["", "   ", "black forest", "x" * 201])
def test_a_malformed_model_id_is_refused(model):
    with pytest.raises(InvalidParameterError) as info:
        prepare(model=model)

    assert info.value.parameter == "model"


def test_schnell_ignores_steps_and_guidance_scale_and_reports_them():
    prepared = prepare(model=SCHNELL, steps=30, guidance_scale=7.5)

    for absent in ("steps", "num_inference_steps", "guidance_scale"):
        assert absent not in prepared.body
    assert set(prepared.ignored) == {"steps", "guidance_scale"}


def test_flux_dev_sends_steps_as_num_inference_steps():
    prepared = prepare(model=DEV, steps=20, guidance_scale=4.5, seed=42, num_images=2)

    assert prepared.body == {
        "model": DEV,
        "prompt": "a red fox in snow",
        "num_images": 2,
        "seed": 42,
        "num_inference_steps": 20,
        "guidance_scale": 4.5,
    }
    assert prepared.ignored == ()


def test_flux_dev_ignores_enable_sync_mode_which_schnell_accepts():
    assert prepare(model=SCHNELL, enable_sync_mode=True).body["enable_sync_mode"] is True
    dev = prepare(model=DEV, enable_sync_mode=True)

    assert "enable_sync_mode" not in dev.body
    assert dev.ignored == ("enable_sync_mode",)


def test_an_unknown_model_passes_its_parameters_and_extra_through():
    prepared = prepare(
        model="acme/painter-2",
        steps=12,
        extra={"negative_prompt": "blurry", "style": "ink", "prompt": "override"},
    )

    assert prepared.body["model"] == "acme/painter-2"
    assert prepared.body["negative_prompt"] == "blurry"
    assert prepared.body["style"] == "ink"
    assert prepared.body["num_inference_steps"] == 12
    assert prepared.body["prompt"] == "a red fox in snow"  # extra never overrides a validated field
    assert prepared.ignored == ()


def test_a_flux_model_drops_unknown_extra_keys_but_keeps_accepted_ones():
    prepared = prepare(model=SCHNELL, extra={"enable_base64_output": True, "loras": [{"path": "x"}]})

    assert prepared.body["enable_base64_output"] is True
    assert "loras" not in prepared.body
    assert prepared.ignored == ("loras",)


@pytest.mark.parametrize(
    "image",
    ["https://files.test/a.png", "http://127.0.0.1:8000/a.png", "data:image/png;base64,iVBORw0KGgo="],
)
def test_an_input_image_may_be_an_http_url_or_an_image_data_uri(image):
    prepared = prepare(image=f"  {image} ", strength=0.6)

    assert prepared.body["image"] == image
    assert prepared.body["strength"] == 0.6


@pytest.mark.parametrize(
    "image",
    ["/home/me/photo.png", "photo.png", "file:///tmp/a.png", "data:text/plain;base64,aGk=", "ftp://x/a.png"],
)
@pytest.mark.parametrize("parameter", ["image", "mask_image"])
def test_an_input_image_that_is_not_a_url_or_data_uri_is_refused_with_a_pointer_to_upload_media(
    image, parameter
):
    fields = {parameter: image}
    if parameter == "mask_image":
        fields["image"] = "https://files.test/a.png"
    with pytest.raises(InvalidParameterError) as info:
        prepare(**fields)

    assert info.value.parameter == parameter
    assert "upload_media" in str(info.value)


def test_a_mask_without_an_image_is_refused():
    with pytest.raises(InvalidParameterError) as info:
        prepare(mask_image="https://files.test/mask.png")

    assert info.value.parameter == "mask_image"
    assert "pass image as well" in str(info.value)
