"""Tool parameters, each declared once: name, type, bounds, default and description.

The argument models below are the single source for

* the tools' input schemas (:func:`tool_signature` gives a tool function the model's fields as its
  signature, which is what the SDK builds the schema from),
* the request models (:class:`GenerationRequest` is the generation part of ``generate_image``'s
  arguments; its fields become the wire body through :mod:`atlas_image_mcp.flux`),
* the command line (``atlas-image-mcp generate`` derives its flags from the same fields).

Constructing a model with a bad value raises :class:`~atlas_image_mcp.errors.InvalidParameterError`
with one plain sentence per problem, in the same words as the server's own checks.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import constants as C
from .errors import InvalidParameterError
from .validation import bounds_of, field_problem

__all__ = [
    "DEFAULT_MODEL",
    "Arguments",
    "CallOptions",
    "GenerateImageArguments",
    "GenerationParams",
    "GenerationRequest",
    "tool_signature",
]

DEFAULT_MODEL = "black-forest-labs/flux-schnell"
MAX_DATA_CHARS = 70 * 1024 * 1024  # base64 of the 50 MB default upload limit, with room

_F = TypeVar("_F", bound=Callable[..., Any])


class Arguments(BaseModel):
    """Base of argument models: unknown names refused, bad values reported in plain words."""

    model_config = ConfigDict(extra="forbid")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise _plain(type(self), err, data) from None


def _plain(model: type[BaseModel], err: ValidationError, given: dict[str, Any]) -> InvalidParameterError:
    """One :class:`InvalidParameterError` naming the first bad parameter, with a sentence for each."""
    sentences: list[str] = []
    first = ""
    for problem in err.errors():
        name = str(problem["loc"][0]) if problem["loc"] else "arguments"
        first = first or name
        info = model.model_fields.get(name)
        bounds = bounds_of(info) if info is not None else None
        value = given.get(name, problem.get("input"))
        if bounds is not None and problem["type"] in _OUT_OF_RANGE:
            sentences.append(f"{_show(value)} is out of range; allowed: {bounds}.")
        else:
            sentences.append(f"{field_problem(problem)}.")
    message = sentences[0] if len(sentences) == 1 else " ".join(sentences)
    return InvalidParameterError(first, message)


_OUT_OF_RANGE = frozenset(
    {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number"}
)


def _show(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# --- generate_image -----------------------------------------------------------------------------

Prompt = Annotated[
    str,
    Field(
        min_length=1, max_length=C.MAX_PROMPT_CHARS, description="What to draw, in plain words. Be specific."
    ),
]
ModelId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=C.MAX_MODEL_ID_CHARS,
        description="Model id: 'black-forest-labs/flux-schnell' (fast, $0.003) or "
        "'black-forest-labs/flux-dev' "
        "(higher quality, $0.012). Other Atlas image model ids are passed through.",
    ),
]


class GenerationParams(Arguments):
    """The picture ``generate_image`` asks for (friendly names; see :mod:`atlas_image_mcp.flux`)."""

    prompt: Prompt
    model: ModelId = DEFAULT_MODEL
    width: Annotated[
        int | None,
        Field(
            ge=64, le=4096, description="Width in pixels (default 1024; FLUX schnell 256-1536, dev 512-1536)."
        ),
    ] = None
    height: Annotated[
        int | None,
        Field(
            ge=64,
            le=4096,
            description="Height in pixels (default 1024; FLUX schnell 256-1536, dev 512-1536).",
        ),
    ] = None
    aspect_ratio: Annotated[
        str | None,
        Field(
            max_length=16,
            pattern=r"^\s*\d+(\.\d+)?\s*[:/x]\s*\d+(\.\d+)?\s*$",
            description="Instead of width/height: a ratio like '16:9', '1:1' or '2:3', drawn at about one "
            "megapixel.",
        ),
    ] = None
    num_images: Annotated[
        int, Field(ge=1, le=C.MAX_NUM_IMAGES, description="How many pictures (1-4), each billed.")
    ] = 1
    seed: Annotated[
        int | None,
        Field(ge=-1, le=C.SEED_MAX, description="Seed for a reproducible picture; -1 or empty = random."),
    ] = None
    steps: Annotated[
        int | None,
        Field(ge=1, le=50, description="Inference steps (flux-dev only, default 28; ignored by schnell)."),
    ] = None
    guidance_scale: Annotated[
        float | None,
        Field(ge=0, le=20, allow_inf_nan=False, description="Prompt adherence (flux-dev only, default 3.5)."),
    ] = None
    image: Annotated[
        str | None,
        Field(
            max_length=MAX_DATA_CHARS,
            description="Image-to-image: URL of a starting picture (use upload_media for a local file).",
        ),
    ] = None
    mask_image: Annotated[
        str | None,
        Field(
            max_length=MAX_DATA_CHARS,
            description="Inpainting: URL of a mask (white = repaint, black = keep); needs image.",
        ),
    ] = None
    strength: Annotated[
        float | None,
        Field(
            ge=0,
            le=1,
            allow_inf_nan=False,
            description="Image-to-image: how far to move from image (0-1, default 0.8).",
        ),
    ] = None
    enable_safety_checker: Annotated[bool | None, Field(description="Atlas safety checker (default on).")] = (
        None
    )


class GenerationRequest(GenerationParams):
    """A generation as the client sends it: the tool's parameters plus two knobs tools do not expose.

    ``enable_sync_mode`` asks Atlas to answer the submit only when done; ``extra`` carries
    parameters of other catalogue models as they are.
    """

    enable_sync_mode: bool | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


ReturnImage = Annotated[
    C.ImageMode | None,
    Field(
        description="Picture inside the result: 'thumbnail' (at most 512 px, the default unless "
        "ATLAS_MCP_IMAGE_MODE says otherwise), 'full' (original, up to 1 MB of base64), or 'none'."
    ),
]


class CallOptions(Arguments):
    """How ``generate_image`` runs and answers (not sent to Atlas)."""

    wait: Annotated[
        bool,
        Field(
            description="Wait for the picture (up to ATLAS_MCP_WAIT_SECONDS, default 45 s). If false, or if "
            "it takes "
            "longer, return the prediction_id to collect with get_prediction."
        ),
    ] = True
    return_image: ReturnImage = None
    save: Annotated[
        bool | None,
        Field(description="Save the pictures to the server's output folder (default on over stdio)."),
    ] = None
    dry_run: Annotated[
        bool, Field(description="Validate and show the exact request body without sending it; costs nothing.")
    ] = False


class GenerateImageArguments(GenerationParams, CallOptions):
    """Everything ``generate_image`` takes."""

    def request(self) -> GenerationRequest:
        return GenerationRequest(**self.model_dump(include=set(GenerationParams.model_fields)))


# --- get_prediction, upload_media, list_models --------------------------------------------------


class GetPredictionArguments(Arguments):
    prediction_id: Annotated[
        str,
        Field(
            min_length=1,
            max_length=C.MAX_PREDICTION_ID_CHARS,
            pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]*$",
            description="The prediction_id returned by generate_image.",
        ),
    ]
    wait_seconds: Annotated[
        float,
        Field(
            ge=0,
            le=C.MAX_WAIT_SECONDS,
            allow_inf_nan=False,
            description="Wait up to this long for it to finish (capped by ATLAS_MCP_WAIT_SECONDS). 0 = just "
            "look.",
        ),
    ] = 0
    return_image: ReturnImage = None


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


class ShowGalleryArguments(Arguments):
    limit: Annotated[
        int,
        Field(
            ge=1,
            le=C.GALLERY_MAX_PICTURES,
            description="Show at most this many pictures of this session, newest first.",
        ),
    ] = C.GALLERY_PICTURES


# --- tool signatures ----------------------------------------------------------------------------


def tool_signature(model: type[Arguments]) -> Callable[[_F], _F]:
    """Give a tool function ``fn(ctx, **arguments)`` the fields of ``model`` as its signature.

    The SDK builds a tool's input schema from its function's signature; this makes that
    signature the model's, so the schema, the validation and the request model are one
    declaration. The function receives the validated fields as keyword arguments.
    """

    def decorate(fn: _F) -> _F:
        signature = inspect.signature(fn, eval_str=True)
        context = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        fields = [
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=Annotated[info.annotation, info],
                default=inspect.Parameter.empty
                if info.is_required()
                else info.get_default(call_default_factory=True),
            )
            for name, info in model.model_fields.items()
        ]
        fn.__signature__ = signature.replace(parameters=[*context, *fields])  # type: ignore[attr-defined]
        return fn

    return decorate
