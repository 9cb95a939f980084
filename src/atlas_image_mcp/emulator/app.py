"""The emulator's HTTP routes, answering like the Atlas Cloud API (docs/atlas-api.md).

Routes (all JSON unless noted; ``auth`` = ``Authorization: Bearer <key>`` required):

- ``POST /api/v1/model/generateImage`` (auth; also ``generateVideo`` / ``generateAudio``)
- ``GET  /api/v1/model/prediction/{id}[/]`` and ``/api/v1/model/result/{id}[/]`` (auth)
- ``POST /api/v1/model/uploadMedia`` (auth, multipart part ``file``)
- ``GET  /api/v1/model/history`` (auth), ``GET /public/v1/balance`` (auth, not enveloped)
- ``GET  /api/v1/models`` (no auth)
- ``GET  /outputs/{id}/{n}.jpeg`` (``.png`` when ``output_format`` asked for it),
  ``/media/{id}/{filename}`` (files, no auth)
- ``GET  /model/schema/{slug}.json``, ``/model/readme/{slug}.md``, ``/model/avatar/{slug}.png`` (no auth)

The emulator's ``middleware`` (if any) stands in front of all of them.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import re
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlsplit

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .core import EmulatorCore
from .drawing import (
    banner_height,
    banner_text,
    banner_top_after,
    picture_size,
    render_avatar_png,
    render_edit,
    render_picture,
)
from .payloads import (
    error_response,
    ok_response,
    prediction_data,
    prediction_response,
    submit_data,
)
from .served_models import (
    catalogue_entry,
    readme_text,
    schema_document,
)
from .store import EmulatedPrediction
from .validation import (
    DEFAULT_SIDE,
    OUTPUT_FORMATS,
    Submission,
    SubmissionError,
    clamp_side,
    validate_submission,
)

__all__ = ["EmulatorApp", "build_app"]

logger = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]

_OUTPUT_NAME_RE = re.compile(r"^(\d+)\.([a-z]+)$")
_HISTORY_MAX_PAGE_SIZE = 50
_MAX_SOURCE_DEPTH = 4
_EDIT_CACHE = 64  # an edit of an edit of ...: drawn from the emulator's own outputs


class EmulatorApp(Starlette):
    """The Starlette app behind :attr:`Emulator.app`, behind the emulator's middleware if it has one."""

    def __init__(
        self,
        emulator: EmulatorCore,
        routes: list[BaseRoute],
        middleware: Callable[[ASGIApp], ASGIApp] | None = None,
    ) -> None:
        super().__init__(routes=routes, exception_handlers={HTTPException: _http_error})
        self.router.redirect_slashes = False
        self.emulator = emulator
        routed: ASGIApp = super().__call__
        self._front = routed if middleware is None else middleware(routed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._front(scope, receive, send)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: "not found", 405: "method not allowed"}.get(exc.status_code, str(exc.detail))
    return error_response(exc.status_code, message, headers=exc.headers)


def build_app(emulator: EmulatorCore, middleware: Callable[[ASGIApp], ASGIApp] | None = None) -> EmulatorApp:
    return EmulatorApp(emulator, Api(emulator).routes(), middleware)


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _requires_auth(
    handler: Callable[[Api, Request], Awaitable[Response]],
) -> Callable[[Api, Request], Awaitable[Response]]:
    @functools.wraps(handler)
    async def checked(self: Api, request: Request) -> Response:
        if not self.emulator.is_authorized(request.headers.get("authorization")):
            return error_response(401, "Invalid or expired API key")
        return await handler(self, request)

    return checked


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body(), parse_constant=_reject_constant)
    except ValueError:  # includes JSONDecodeError and UnicodeDecodeError
        raise SubmissionError("invalid JSON body") from None
    if not isinstance(body, dict):
        raise SubmissionError("request body must be a JSON object")
    return body


class Api:
    """Route handlers; state lives on the :class:`~.core.EmulatorCore`."""

    def __init__(self, emulator: EmulatorCore) -> None:
        self.emulator = emulator
        self._edits: OrderedDict[tuple[str, int], bytes] = OrderedDict()  # drawn edits, like a CDN cache

    def routes(self) -> list[BaseRoute]:
        prediction_paths = [
            f"/api/v1/model/{kind}/{{prediction_id}}{slash}"
            for kind in ("prediction", "result")
            for slash in ("", "/")
        ]
        return [
            *(
                Route(f"/api/v1/model/generate{kind}", self._submit_endpoint(kind), methods=["POST"])
                for kind in ("Image", "Video", "Audio")
            ),
            *(Route(path, self.poll, methods=["GET"]) for path in prediction_paths),
            Route("/api/v1/model/uploadMedia", self.upload, methods=["POST"]),
            Route("/api/v1/model/history", self.history, methods=["GET"]),
            Route("/api/v1/models", self.models, methods=["GET"]),
            Route("/public/v1/balance", self.balance, methods=["GET"]),
            Route("/outputs/{prediction_id}/{name}", self.output_file, methods=["GET"]),
            Route("/media/{media_id}/{filename}", self.media_file, methods=["GET"]),
            Route("/model/schema/{name}", self.schema, methods=["GET"]),
            Route("/model/readme/{name}", self.readme, methods=["GET"]),
            Route("/model/avatar/{name}", self.avatar, methods=["GET"]),
        ]

    # -- submit ---------------------------------------------------------------------------------

    def _submit_endpoint(self, kind: str) -> Endpoint:
        async def submit(request: Request) -> Response:
            if not self.emulator.is_authorized(request.headers.get("authorization")):
                return error_response(401, "Invalid or expired API key")
            try:
                return await self._submit(request, kind)
            except SubmissionError as exc:
                logger.info("submit rejected: %s", exc)
                return error_response(400, str(exc))

        return submit

    async def _submit(self, request: Request, kind: str) -> Response:
        body = await _json_object(request)
        if "model" not in body:
            raise SubmissionError("model is required")
        spec = self.emulator.find_model(body["model"])
        if spec is None:
            raise SubmissionError("model not found")
        if spec.type != kind:
            hint = "use the LLM API" if spec.type == "Text" else f"use generate{spec.type}"
            raise SubmissionError(f"model type mismatch: {spec.id} is a {spec.type} model, {hint}")
        if kind != "Image":
            raise SubmissionError(f"the emulator does not generate {kind.lower()}")
        submission = validate_submission(body, spec)
        size = await self._output_size(submission)
        prediction = self.emulator.create_prediction(spec, submission, size)
        if submission.sync_mode:
            return await self._finish_sync(request, prediction)
        return ok_response(submit_data(prediction, _base_url(request), self.emulator.timeline))

    async def _output_size(self, submission: Submission) -> tuple[int, int]:
        """The size asked for; an edit without one keeps its (first) input picture's size."""
        if submission.width is not None and submission.height is not None:
            return submission.width, submission.height
        size: tuple[int, int] | None = None
        if submission.images:
            output = self._source_output(submission.images[0])
            if output is not None:  # drawn at its prediction's size: no need to draw it here
                size = output[0].width, output[0].height
            elif (data := await self._source_bytes(submission.images[0])) is not None:
                size = picture_size(data)
        if size is None:
            return DEFAULT_SIDE, DEFAULT_SIDE
        return clamp_side(size[0]), clamp_side(size[1])

    def _source_output(self, url: str) -> tuple[EmulatedPrediction, int] | None:
        """The prediction and output index an input URL names, when it is one of the emulator's outputs."""
        parts = urlsplit(url).path.strip("/").split("/")
        if len(parts) == 3 and parts[0] == "outputs":
            source = self.emulator.predictions.get(parts[1])
            index = _output_index(source, parts[2])
            if source is not None and index is not None:
                return source, index
        return None

    async def _source_bytes(self, url: str, depth: int = 0) -> bytes | None:
        """An input picture, when it is one of the emulator's outputs or uploads (it fetches nothing else)."""
        output = self._source_output(url)
        if output is not None:
            return await self._render(output[0], output[1], depth + 1) if depth < _MAX_SOURCE_DEPTH else None
        parts = urlsplit(url).path.strip("/").split("/")
        if len(parts) == 3 and parts[0] == "media":
            media = self.emulator.media.get(parts[1])
            return media.content if media is not None else None
        return None

    async def _render(self, prediction: EmulatedPrediction, index: int, depth: int = 0) -> bytes:
        """One output picture: drawn from the prompt, or from the inputs for edits and variations."""
        if not prediction.sources:
            return await anyio.to_thread.run_sync(
                render_picture,
                prediction.display_prompt,
                prediction.seed,
                prediction.width,
                prediction.height,
                prediction.model,
                index,
                prediction.output_format,
            )
        cached = self._edits.get((prediction.id, index))
        if cached is not None:
            return cached
        sources = [await self._source_bytes(url, depth) for url in prediction.sources]
        mask = await self._source_bytes(prediction.mask, depth) if prediction.mask else None
        image = await anyio.to_thread.run_sync(
            render_edit,
            sources,
            mask,
            prediction.display_prompt,
            prediction.seed,
            prediction.width,
            prediction.height,
            prediction.model,
            prediction.kind,
            index,
            prediction.output_format,
            self._banner_top(prediction),
        )
        self._edits[(prediction.id, index)] = image
        while len(self._edits) > _EDIT_CACHE:
            self._edits.popitem(last=False)
        return image

    def _banner_top(self, prediction: EmulatedPrediction, depth: int = 0) -> int:
        """The row where an edit's banner starts: below the banners its one source carries already
        (an edit of an edit shows both instructions), in this picture's rows."""
        output = self._source_output(prediction.sources[0]) if len(prediction.sources) == 1 else None
        if output is None or depth >= _MAX_SOURCE_DEPTH:
            return 0
        source = output[0]
        rows = 0
        if source.sources:  # the source is an edit too: its banner is under its own source's
            text = banner_text(source.kind, source.display_prompt)
            rows = self._banner_top(source, depth + 1) + banner_height(source.width, source.height, text)
        return banner_top_after(rows, (source.width, source.height), (prediction.width, prediction.height))

    async def _finish_sync(self, request: Request, prediction: EmulatedPrediction) -> Response:
        """``enable_sync_mode``: wait out the remaining latency, answer with the final prediction."""
        await anyio.sleep(max(0.0, prediction.done_at - self.emulator.clock()))
        now = self.emulator.clock()
        prediction.finish_by(now)
        return await self._prediction_answer(request, prediction, now)

    # -- poll -----------------------------------------------------------------------------------

    @_requires_auth
    async def poll(self, request: Request) -> Response:
        prediction = self.emulator.predictions.get(request.path_params["prediction_id"])
        now = self.emulator.clock()
        if prediction is None or not prediction.is_visible(now):
            return error_response(404, "prediction not found")
        return await self._prediction_answer(request, prediction, now)

    async def _prediction_answer(
        self, request: Request, prediction: EmulatedPrediction, now: float
    ) -> Response:
        base = _base_url(request)
        outputs = await self._outputs(prediction, base, now)
        data = prediction_data(prediction, now=now, base=base, clock=self.emulator.timeline, outputs=outputs)
        return prediction_response(prediction, data, now)

    async def _outputs(self, prediction: EmulatedPrediction, base: str, now: float) -> list[str] | None:
        if not prediction.has_outputs(now):
            return None
        if not prediction.base64_output:
            return _output_urls(prediction, base)
        media_type = OUTPUT_FORMATS[prediction.output_format][1]
        images = [await self._render(prediction, i) for i in range(prediction.num_images)]
        return [f"data:{media_type};base64,{base64.b64encode(image).decode('ascii')}" for image in images]

    # -- files ----------------------------------------------------------------------------------

    async def output_file(self, request: Request) -> Response:
        prediction = self.emulator.predictions.get(request.path_params["prediction_id"])
        index = _output_index(prediction, request.path_params["name"])
        if prediction is None or index is None or not prediction.has_outputs(self.emulator.clock()):
            return error_response(404, "file not found")
        image = await self._render(prediction, index)
        media_type = OUTPUT_FORMATS[prediction.output_format][1]
        return Response(image, media_type=media_type, headers={"cache-control": "public, max-age=86400"})

    async def media_file(self, request: Request) -> Response:
        media = self.emulator.media.get(request.path_params["media_id"])
        if media is None or media.filename != request.path_params["filename"]:
            return error_response(404, "file not found")
        return Response(media.content, media_type=media.content_type)

    @_requires_auth
    async def upload(self, request: Request) -> Response:
        async with request.form() as form:
            part = form.get("file")
            if not isinstance(part, UploadFile):
                return error_response(400, "file is required")
            content = await part.read()
            filename = part.filename
        if not content:
            return error_response(400, "file is empty")
        media = self.emulator.media.add(filename or "", content)
        logger.info("upload %s (%d bytes) stored as %s", media.filename, len(content), media.id)
        url = f"{_base_url(request)}/media/{media.id}/{quote(media.filename)}"
        data = {"type": media.kind, "download_url": url, "filename": media.filename, "size": len(content)}
        return ok_response(data, message="success")

    # -- catalogue and account ------------------------------------------------------------------

    async def models(self, request: Request) -> Response:
        base = _base_url(request)
        return ok_response([catalogue_entry(spec, base) for spec in self.emulator.models])

    async def schema(self, request: Request) -> Response:
        name = request.path_params["name"]
        spec = (
            self.emulator.find_model_by_slug(name.removesuffix(".json")) if name.endswith(".json") else None
        )
        if spec is None or spec.input_properties is None:
            return error_response(404, "schema not found")
        return JSONResponse(schema_document(spec, _base_url(request)))

    async def readme(self, request: Request) -> Response:
        name = request.path_params["name"]
        spec = self.emulator.find_model_by_slug(name.removesuffix(".md")) if name.endswith(".md") else None
        if spec is None:
            return error_response(404, "readme not found")
        return PlainTextResponse(readme_text(spec), media_type="text/markdown; charset=utf-8")

    async def avatar(self, request: Request) -> Response:
        name = request.path_params["name"]
        spec = self.emulator.find_model_by_slug(name.removesuffix(".png")) if name.endswith(".png") else None
        if spec is None:
            return error_response(404, "file not found")
        return Response(render_avatar_png(spec.id), media_type="image/png")

    @_requires_auth
    async def history(self, request: Request) -> Response:
        page, size = _page_params(request)
        items = [
            p for p in self.emulator.store.newest_first() if _history_match(p, request, self.emulator.clock())
        ]
        base = _base_url(request)
        chosen = items[(page - 1) * size : page * size]
        data = {
            "items": [self._history_item(p, base) for p in chosen],
            "pageNo": page,
            "pageSize": size,
            "total": len(items),
        }
        return ok_response(data)

    def _history_item(self, prediction: EmulatedPrediction, base: str) -> dict[str, Any]:
        """One history row; output URLs are given even for base64 predictions."""
        now = self.emulator.clock()
        outputs = _output_urls(prediction, base) if prediction.has_outputs(now) else None
        result = prediction_data(
            prediction, now=now, base=base, clock=self.emulator.timeline, outputs=outputs
        )
        return {
            "ID": prediction.id,
            "createdAt": int(self.emulator.timeline.wall(prediction.submitted_at)),
            "model": prediction.model,
            "requestBody": json.dumps(prediction.params),
            "result": result,
            "status": result["status"],
        }

    @_requires_auth
    async def balance(self, request: Request) -> Response:
        def money(value: str) -> dict[str, str]:
            return {"value": value, "currency": "usd"}

        left = f"{self.emulator.balance():.6f}"

        return JSONResponse(
            {
                "object": "balance",
                "scope": "self",
                "account": {"id": "acct_emulator", "name": "Atlas emulator", "type": "personal"},
                "available": money(left),
                "cash": money(left),
                "bonus": money("0.000000"),
                "frozen": money("0.000000"),
                "request_id": uuid.uuid4().hex,
            }
        )


def _output_urls(prediction: EmulatedPrediction, base: str) -> list[str]:
    extension = OUTPUT_FORMATS[prediction.output_format][0]
    return [f"{base}/outputs/{prediction.id}/{i}.{extension}" for i in range(prediction.num_images)]


def _output_index(prediction: EmulatedPrediction | None, name: str) -> int | None:
    """The index that ``{n}.{ext}`` names, when ``prediction`` has that output in that format."""
    match = _OUTPUT_NAME_RE.match(name)
    if prediction is None or match is None or match.group(2) != OUTPUT_FORMATS[prediction.output_format][0]:
        return None
    index = int(match.group(1))
    return index if index < prediction.num_images else None


def _int_param(request: Request, name: str, default: int) -> int:
    try:
        return int(request.query_params.get(name, default))
    except ValueError:
        return default


def _page_params(request: Request) -> tuple[int, int]:
    page = max(1, _int_param(request, "no", 1))
    size = min(max(1, _int_param(request, "size", 10)), _HISTORY_MAX_PAGE_SIZE)
    return page, size


def _history_match(prediction: EmulatedPrediction, request: Request, now: float) -> bool:
    query = request.query_params
    if query.get("sessionID") and prediction.id != query["sessionID"]:
        return False
    if query.get("model") and prediction.model != query["model"]:
        return False
    return not (query.get("status") and prediction.status_at(now) != query["status"])
