"""Tool parameters, each declared once: name, type, bounds, default and description.

The argument models below are the single source for

* the tools' input schemas (each tool function takes its model as its one argument, and
  :mod:`atlas_image_mcp.tools.adapter` publishes the model's schema),
* the request models (:class:`GenerationRequest` is the generation part of ``generate_image``'s
  arguments; its fields become the wire body through :mod:`atlas_image_mcp.wire`),
* the command line (``atlas-image-mcp generate`` derives its flags from the same fields).

Constructing a model with a bad value raises :class:`~atlas_image_mcp.errors.InvalidParameterError`
with one plain sentence per problem, in the same words as the server's own checks.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import constants as C
from .catalogue import FRIENDLY_NAMES, MAX_REFERENCES, SIDE_ENVELOPE
from .compat import ArgumentsBase
from .errors import InvalidParameterError
from .settings import env_name
from .validation import bounds_of, field_problem, format_number

__all__ = [
    "Arguments",
    "BatchParams",
    "CallOptions",
    "EditImageArguments",
    "EditParams",
    "ExportImageArguments",
    "GenerateImageArguments",
    "GenerationParams",
    "GenerationRequest",
    "VariationParams",
    "VariationsArguments",
    "NoArguments",
    "PictureRef",
    "SaveOptions",
    "ShapeOptions",
    "plain_error",
]

MAX_DATA_CHARS = 70 * 1024 * 1024  # base64 of the 50 MB default upload limit, with room


class Arguments(ArgumentsBase):
    """Base of argument models: unknown names refused, bad values reported in plain words."""

    model_config = ConfigDict(extra="forbid")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise plain_error(type(self), err, data) from None


def plain_error(model: type[BaseModel], err: ValidationError, given: dict[str, Any]) -> InvalidParameterError:
    """One :class:`InvalidParameterError` with a plain sentence per bad argument, in the words of
    the server's own checks ("Invalid width: 5000 is out of range; allowed: 256 to 1536."); the
    unknown names, if any, in one more sentence that lists the accepted ones."""
    sentences: list[str] = []
    unknown: list[str] = []
    named: list[str] = []
    for problem in err.errors():
        name = str(problem["loc"][0]) if problem["loc"] else "arguments"
        if problem["type"] == "extra_forbidden":
            unknown.append(name)
            continue
        if name in named:  # one sentence per argument (a union reports each of its branches)
            continue
        named.append(name)
        sentences.append(_sentence(model, name, problem, given))
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        shown = [_name(name) + _hint(name, model.model_fields) for name in unknown[:_MAX_NAMES_SHOWN]]
        more = f" and {len(unknown) - _MAX_NAMES_SHOWN} more" if len(unknown) > _MAX_NAMES_SHOWN else ""
        sentences.append(
            f"Unknown argument{plural} {', '.join(shown)}{more}; the accepted arguments are "
            f"{', '.join(model.model_fields)}."
        )
    return InvalidParameterError((named or unknown or ["arguments"])[0], " ".join(sentences), whole=True)


_MAX_NAMES_SHOWN = 10
#: Names other image APIs (and Atlas' own wire format) give to what these tools call otherwise.
_NAMES_ELSEWHERE = {
    "size": "width and height, or aspect_ratio",
    "image_size": "width and height, or aspect_ratio",
    "n": "num_images",
    "num_outputs": "num_images",
    "image_url": "image",
    **FRIENDLY_NAMES,
}


def _hint(name: str, accepted: Collection[str]) -> str:
    """What an unknown ``name`` most likely meant, as " (use ...)", or "" when nothing is close."""
    import difflib  # deferred: ~2 ms of every start-up, for a refusal most sessions never see

    longer = [a for a in accepted if a.startswith(f"{name}_")]  # wait -> wait_seconds, mask -> mask_image
    meant = (
        _NAMES_ELSEWHERE.get(name)
        or (longer[0] if len(longer) == 1 else "")
        or next(iter(difflib.get_close_matches(name, accepted, 1, 0.75)), "")  # a typo: num_image
    )
    return f" (use {meant})" if meant.split(" ", 1)[0] in accepted else ""


def _name(name: str, limit: int = 40) -> str:
    """An argument name as sent, or its escaped, shortened ``repr`` when it is not a plain name."""
    if name.isidentifier() and len(name) <= limit:
        return name
    shown = repr(name)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _sentence(model: type[BaseModel], name: str, problem: Any, given: dict[str, Any]) -> str:
    kind = problem["type"]
    if kind == "missing":
        return f"Missing {name}: it is required."
    info = model.model_fields.get(name)
    bounds = bounds_of(info) if info is not None else None
    value = given.get(name, problem.get("input"))
    if bounds is not None and kind in _OUT_OF_RANGE:
        return f"Invalid {name}: {_show(value)} is out of range; allowed: {bounds}."
    got = "" if kind in _VALUE_NOT_SHOWN else _got(value)
    hint = ""
    if kind == "string_pattern_mismatch" and info is not None and info.description:
        hint = f" ({info.description.rstrip('.')})"  # the description says what the format is
    return f"Invalid {name}: {got}{field_problem(problem)}{hint}."


_OUT_OF_RANGE = frozenset(
    {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number"}
)
_VALUE_NOT_SHOWN = frozenset({"string_too_long", "string_too_short"})


def _show(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _got(value: Any, limit: int = 40) -> str:
    """``"got 'big'; it "``: the value as the caller sent it, cut short."""
    shown = repr(value) if isinstance(value, str) else format_number(value)
    if len(shown) > limit:
        shown = shown[: limit - 3] + "..."
    return f"got {shown}; it "


# --- shared parameter declarations -------------------------------------------------------------

#: How a tool accepts a picture: the forms :mod:`atlas_image_mcp.sources` resolves.
PICTURE_FORMS = (
    "an https URL, a data: URI or base64, a prediction id or atlas-image:// URI from an earlier result, "
    "'last' (this session's latest picture), or (stdio only) an absolute file path"
)

# The bounds of a value, declared once; each field adds its own description (pydantic merges them).
_PromptText = Annotated[str, Field(min_length=1, max_length=C.MAX_PROMPT_CHARS)]
_Side = Annotated[int | None, Field(ge=int(SIDE_ENVELOPE.minimum), le=int(SIDE_ENVELOPE.maximum))]
_PredictionId = Annotated[
    str, Field(min_length=1, max_length=C.MAX_PREDICTION_ID_CHARS, pattern=C.PREDICTION_ID_PATTERN)
]

Prompt = Annotated[_PromptText, Field(description="What to draw, in plain words. Be specific.")]
Width = Annotated[_Side, Field(description="Width in px (default 1024); each model has its own range.")]
Height = Annotated[_Side, Field(description="Height in px (default 1024); each model has its own range.")]
AspectRatio = Annotated[
    str | None,
    Field(
        max_length=16,
        pattern=r"^\s*\d+(\.\d+)?\s*[:/x]\s*\d+(\.\d+)?\s*$",
        description="Instead of width/height: a ratio like '16:9' or '2:3' (about one megapixel).",
    ),
]
NumImages = Annotated[
    int, Field(ge=1, le=C.MAX_NUM_IMAGES, description="How many pictures (1-4), each billed.")
]
Seed = Annotated[
    int | None, Field(ge=-1, le=C.SEED_MAX, description="Seed to reproduce a picture; -1 = random.")
]
PictureRef = Annotated[str, Field(min_length=1, max_length=MAX_DATA_CHARS)]
Mask = Annotated[
    PictureRef | None,
    Field(
        description="Inpainting mask, same size as the picture: white = repaint, black = keep. Same forms."
    ),
]


# --- generate_image -----------------------------------------------------------------------------


class GenerationParams(Arguments):
    """The picture ``generate_image`` asks for (friendly names; see :mod:`atlas_image_mcp.wire`)."""

    prompt: Prompt
    model: Annotated[
        str,
        Field(
            min_length=1,
            max_length=C.MAX_MODEL_ID_CHARS,
            description="Model id (see list_models): 'black-forest-labs/flux-schnell' (fast, default), "
            "'black-forest-labs/flux-dev', 'black-forest-labs/flux-1.1-pro', ...; others from the catalogue.",
        ),
    ] = C.DEFAULT_MODEL
    width: Width = None
    height: Height = None
    aspect_ratio: AspectRatio = None
    num_images: NumImages = 1
    seed: Seed = None
    steps: Annotated[
        int | None, Field(ge=1, le=50, description="Inference steps (dev models; default 28).")
    ] = None
    guidance_scale: Annotated[
        float | None,
        Field(ge=0, le=100, allow_inf_nan=False, description="Prompt adherence (dev, Kontext, Fill models)."),
    ] = None
    image: Annotated[
        PictureRef | None,
        Field(description="Image-to-image starting picture (schnell, dev). Same forms as edit_image."),
    ] = None
    mask_image: Mask = None
    strength: Annotated[
        float | None,
        Field(
            ge=0,
            le=1,
            allow_inf_nan=False,
            description="Image-to-image: how far from image (0-1, default 0.8).",
        ),
    ] = None
    enable_safety_checker: Annotated[bool | None, Field(description="Atlas safety checker (default on).")] = (
        None
    )


class GenerationRequest(GenerationParams):
    """A generation as the client sends it: every parameter a tool may set, plus internal knobs.

    ``images`` carries several references (multi-reference edits); ``output_format`` is the model's
    own file type where it has one (FLUX.2; the plan sets it from the delivered format of
    :class:`AssetOptions`); ``enable_sync_mode`` asks Atlas to answer the submit only when done;
    ``extra`` carries parameters of other catalogue models as
    they are. The prompt may be empty here: models that take none (Redux) are sent without one.
    """

    prompt: Annotated[str, Field(max_length=C.MAX_PROMPT_CHARS)] = ""
    images: list[PictureRef] | None = None
    #: The file type the model itself makes (FLUX.2), set from the delivered format by the plan.
    output_format: Literal["jpeg", "png"] | None = None
    enable_sync_mode: bool | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


ReturnImage = Annotated[
    C.ImageMode | None,
    Field(
        description="Picture in the result: 'thumbnail' (<= 512 px, default), 'full' (up to 1 MB) or 'none'."
    ),
]


Overwrite = Annotated[bool, Field(description="Let save_as replace a file.")]
Fit = Annotated[
    Literal["cover", "contain"] | None,
    Field(description="'cover' crops to the size (default), 'contain' pads."),
]
Background = Annotated[str | None, Field(max_length=32, description="Pad colour ('#fff', 'transparent').")]
Quality = Annotated[int | None, Field(ge=1, le=100, description="JPEG/WebP/AVIF quality.")]


class SaveOptions(Arguments):
    """Where in the workspace a picture tool writes the picture (besides its own copy)."""

    save_as: Annotated[
        str | None,
        Field(
            max_length=C.MAX_PATH_CHARS,
            description="Also write it into the workspace, e.g. 'assets/hero.webp' (format from the "
            "extension; -1, -2... for several).",
        ),
    ] = None
    overwrite: Overwrite = False


class ShapeOptions(Arguments):
    """The size and format of the file a picture tool delivers."""

    output_size: Annotated[
        str | None,
        Field(
            max_length=16,
            description="Exact size delivered, e.g. '1200x630'.",
        ),
    ] = None
    fit: Fit = None
    background: Background = None
    output_format: Annotated[
        Literal["png", "jpeg", "webp", "avif"] | None,
        Field(description="File type delivered (default: save_as's extension)."),
    ] = None
    quality: Quality = None


class _RunOptions(Arguments):
    wait: Annotated[
        bool,
        Field(
            description=f"Wait for the picture (up to {env_name('wait_seconds')}, default 45 s); else, or "
            "when it takes longer, return the prediction_id for get_prediction."
        ),
    ] = True
    return_image: ReturnImage = None
    save: Annotated[bool | None, Field(description="Save the pictures (default on over stdio).")] = None
    dry_run: Annotated[
        bool, Field(description="Validate and show the exact request body and cost; send nothing.")
    ] = False
    max_cost_usd: Annotated[
        float | None,
        Field(
            ge=0,
            le=C.MAX_COST_USD,
            allow_inf_nan=False,
            description="Most this call may cost (USD), as the person agreed: a call estimated above it is "
            "refused; it confirms a costly call where the person cannot be asked.",
        ),
    ] = None


class CallOptions(SaveOptions, _RunOptions):  # fields: _RunOptions's first, then SaveOptions'
    """How a picture tool runs and answers (not sent to Atlas), and where it writes the picture."""


class BatchParams(Arguments):
    """Several jobs in one ``generate_image`` call, to compare."""

    prompts: Annotated[
        list[_PromptText] | None,
        Field(
            min_length=1,
            max_length=C.MAX_BATCH - 1,
            description="More prompts, run beside prompt as one batch to compare.",
        ),
    ] = None
    count: Annotated[
        int,
        Field(
            ge=1,
            le=C.MAX_BATCH,
            description=f"Runs per prompt with distinct seeds (at most {C.MAX_BATCH} jobs).",
        ),
    ] = 1


class GenerateImageArguments(
    ShapeOptions, CallOptions, BatchParams, GenerationParams
):  # fields: GenerationParams's first, then BatchParams', CallOptions', ShapeOptions'
    """Everything ``generate_image`` takes."""

    def request(self) -> GenerationRequest:
        """The generation part; values left at their defaults stay unset (they were not asked for)."""
        return GenerationRequest(
            **self.model_dump(include=set(GenerationParams.model_fields), exclude_defaults=True)
        )


# --- edit_image and generate_variations ---------------------------------------------------------


class EditParams(Arguments):
    """What ``edit_image`` asks for."""

    prompt: Annotated[
        _PromptText,
        Field(description="The change, in plain words ('make the sky stormy', 'put the logo on the mug')."),
    ]
    image: Annotated[PictureRef | None, Field(description=f"The picture to change: {PICTURE_FORMS}.")] = None
    images: Annotated[
        list[PictureRef] | None,
        Field(
            min_length=1,
            max_length=MAX_REFERENCES,
            description="Several reference pictures to combine (same forms), for multi-reference models.",
        ),
    ] = None
    mask_image: Mask = None
    model: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=C.MAX_MODEL_ID_CHARS,
            description="Edit model (see list_models). Default: a FLUX Kontext edit model; with mask_image "
            "the "
            "inpainting model; with several images a multi-reference model.",
        ),
    ] = None
    seed: Seed = None
    num_images: NumImages = 1
    width: Width = None
    height: Height = None
    aspect_ratio: AspectRatio = None


class EditImageArguments(ShapeOptions, CallOptions, EditParams):  # EditParams's, CallOptions', ShapeOptions'
    """Everything ``edit_image`` takes."""


class VariationParams(Arguments):
    """What ``generate_variations`` asks for."""

    prediction_id: Annotated[
        _PredictionId,
        Field(description="The earlier job to vary (a prediction_id from generate_image or edit_image)."),
    ]
    count: Annotated[
        int, Field(ge=1, le=C.MAX_NUM_IMAGES, description="How many variations (1-4), each billed.")
    ] = 2


class VariationsArguments(CallOptions, VariationParams):  # fields: VariationParams's first, then CallOptions'
    """Everything ``generate_variations`` takes."""


# --- get_prediction, upload_media, list_models --------------------------------------------------


class PredictionParams(Arguments):
    prediction_id: Annotated[
        _PredictionId,
        Field(description="The prediction_id returned by generate_image, edit_image or generate_variations."),
    ]
    wait_seconds: Annotated[
        float,
        Field(
            ge=0,
            le=C.MAX_WAIT_SECONDS,
            allow_inf_nan=False,
            description="Wait up to this long for it to finish "
            f"(capped by {env_name('wait_seconds')}); 0 = look.",
        ),
    ] = 0
    return_image: ReturnImage = None


class GetPredictionArguments(SaveOptions, PredictionParams):  # fields: PredictionParams's first
    """Everything ``get_prediction`` takes."""


class UploadMediaArguments(Arguments):
    file_path: Annotated[
        str | None, Field(max_length=C.MAX_PATH_CHARS, description="Absolute path of a local file to upload.")
    ] = None
    data: Annotated[
        str | None,
        Field(
            max_length=MAX_DATA_CHARS, description="Instead of file_path: the file as base64 or a data: URI."
        ),
    ] = None
    filename: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=C.MAX_FILENAME_CHARS,
            description="File name with extension (e.g. photo.png), for data.",
        ),
    ] = None


class ListModelsArguments(Arguments):
    query: Annotated[
        str | None, Field(max_length=200, description="Filter by words in the id, name or description.")
    ] = None


class GetUsageArguments(Arguments):
    days: Annotated[
        int,
        Field(ge=1, le=C.USAGE_MAX_DAYS, description="How many UTC days back, today included."),
    ] = C.USAGE_DAYS


class ShowGalleryArguments(Arguments):
    limit: Annotated[
        int,
        Field(
            ge=1,
            le=C.GALLERY_MAX_PICTURES,
            description="Show at most this many pictures of this session, newest first.",
        ),
    ] = C.GALLERY_PICTURES


class ExportImageArguments(Arguments):
    """Everything ``export_image`` takes."""

    image: Annotated[
        PictureRef,
        Field(description="The picture: 'last', a prediction id or URI, a URL, base64, (stdio) a file path."),
    ]
    sizes: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=24)]],
        Field(
            min_length=1,
            max_length=C.MAX_EXPORTS,
            description="'favicon' (.ico, 180 and 512 px PNGs), 'og' (1200x630) or 'WxH'; '.webp' after one "
            "sets its format.",
        ),
    ]
    save_as: Annotated[
        str,
        Field(
            min_length=1,
            max_length=C.MAX_PATH_CHARS,
            description="Base path in the workspace, e.g. 'public/logo.png' (makes logo-WxH.png beside it).",
        ),
    ]
    overwrite: Overwrite = False
    fit: Fit = None
    background: Background = None
    quality: Quality = None


class NoArguments(Arguments):
    """What a tool that takes no arguments takes."""
