"""Collecting a finished job's pictures: download, check, save and prepare them for the answer.

Upstream decides nothing unbounded here: outputs beyond the number asked for are ignored, and each
call has a byte budget, a pixel cap per picture and a deadline (see :mod:`atlas_image_mcp.fetch`).
Whatever happens to one picture, the others and the paid job's answer stand: a picture that cannot
be downloaded, is not a whole picture, is too large or cannot be saved gets a note saying what
failed.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from .asset_plan import AssetPlan
from .assets import extension_of, make_asset
from .call import Call
from .constants import IMAGE_URI, MAX_BASE64_CHARS, ImageMode
from .errors import AtlasError
from .fetch import Budget, remove_download
from .models import Prediction
from .pictures import PictureError, examine
from .render import AssetFile, OutputImage, ShownPicture, inline_images, shown_url
from .storage import extension_for, find_saved, output_path, place_atomic, save_atomic
from .workspace import write_confined

__all__ = ["Collected", "collect", "picture_bytes"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Collected:
    """The outputs of a job as the answer lists them, their picture blocks, and notes about them."""

    outputs: list[OutputImage]
    blocks: list[Any]
    notes: list[str]


@dataclass(frozen=True)
class _Picture:
    """One output collected: what to show, its saved copy, the file delivered, and what went wrong with it."""

    shown: ShownPicture
    #: The picture as Atlas made it: its saved copy, size and type.
    path: str | None
    width: int
    height: int
    mime_type: str
    file: AssetFile | None = None
    problem: str | None = None


class _Collector:
    """Fetches, checks and saves the outputs of one prediction, within one call's limits."""

    def __init__(
        self, call: Call, prediction: Prediction, *, save: bool, mode: ImageMode, asset: AssetPlan | None
    ) -> None:
        self.call = call
        self.prediction = prediction
        self.save = save
        self.mode = mode
        self.asset = asset

    async def picture(self, index: int, url: str, scratch: Path, budget: Budget) -> _Picture:
        """Output ``index`` (1-based), checked; its saved path, and the file delivered for it."""
        settings = self.call.runtime.settings
        pid = self.prediction.id
        folder = self.call.outputs.folder
        found = find_saved(folder, pid, index) if self.save else None
        if found is not None:
            path, fresh = found, False
        else:
            target = folder if self.save else scratch
            download = await self.call.api.download(
                url, folder=target, max_bytes=settings.max_download_bytes, budget=budget
            )
            path, fresh = download.path, True
        show = self.mode != "none"
        remade = self.asset is not None and self.asset.remakes
        try:
            async with self.call.runtime.decodes:
                checked = await anyio.to_thread.run_sync(
                    lambda: examine(
                        path, max_pixels=settings.max_pixels, decode=self.save, preview=show and not remade
                    )
                )
        except PictureError:
            if fresh:
                await remove_download(path)
            raise
        saved: Path | None = found
        if self.save and fresh:
            try:
                saved = await place_atomic(
                    path, output_path(folder, pid, index, extension_for(checked.mime_type, ""))
                )
            except AtlasError:
                await remove_download(path)
                raise
        original = b""
        try:
            delivered, file, problem = await self._deliver(index, saved or path)
            if delivered is None and self.mode == "full" and checked.size * 4 // 3 <= MAX_BASE64_CHARS:
                original = await anyio.Path(saved or path).read_bytes()
        finally:
            if saved is None:
                await remove_download(path)
        preview = (
            ShownPicture(
                data=checked.preview,
                mime_type=checked.preview_mime,
                width=checked.preview_width,
                height=checked.preview_height,
            )
            if checked.preview is not None
            else None
        )
        shown = delivered or ShownPicture(
            original, checked.mime_type, checked.width, checked.height, preview=preview
        )
        kept = str(saved.resolve()) if saved is not None else None
        return _Picture(shown, kept, checked.width, checked.height, checked.mime_type, file, problem)

    async def _deliver(
        self, index: int, source: Path
    ) -> tuple[ShownPicture | None, AssetFile | None, str | None]:
        """Make and write the file asked for output ``index``: what to show of it (when it was remade),
        the file, and what went wrong (the original and the paid job's answer stand either way)."""
        plan = self.asset
        target = plan.target(index) if plan is not None else None
        if plan is None or (target is None and not plan.remakes):
            return None, None, None
        settings = self.call.runtime.settings
        try:
            async with self.call.runtime.decodes:
                asset = await anyio.to_thread.run_sync(
                    lambda: make_asset(source, plan.spec, max_pixels=settings.max_pixels)
                )
        except PictureError as err:
            return None, None, f"The picture {err}, so it was not remade or written."
        shown = ShownPicture(asset.data, asset.mime_type, asset.width, asset.height) if plan.remakes else None
        try:
            if target is not None:
                written = await anyio.to_thread.run_sync(write_confined, target, asset.data)
                relative = target.relative
            elif self.save:
                name = output_path(
                    self.call.outputs.folder, self.prediction.id, index, extension_of(asset.format)
                )
                name = name.with_name(f"{name.stem}-{asset.width}x{asset.height}{name.suffix}")
                written, relative = await save_atomic(name, asset.data), name.name
            else:
                return shown, None, None
        except AtlasError as err:
            return shown, None, err.message
        file = AssetFile(
            path=str(written),
            relative=relative,
            width=asset.width,
            height=asset.height,
        )
        return shown, file, None


async def picture_bytes(call: Call, prediction: Prediction, index: int) -> bytes:
    """Output ``index`` (1-based) of ``prediction`` as bytes, only once it decodes as a whole picture.

    The saved copy when there is one, else a fresh download (within the download caps and one
    call's time). Raises :class:`AtlasError` or :class:`PictureError`.
    """
    settings = call.runtime.settings
    budget = Budget(bytes_left=settings.max_call_download_bytes, deadline=call.deadline(0.0))
    scratch = Path(await anyio.to_thread.run_sync(tempfile.mkdtemp))
    try:
        found = find_saved(call.outputs.folder, prediction.id, index)
        if found is None:
            download = await call.api.download(
                prediction.outputs[index - 1],
                folder=scratch,
                max_bytes=settings.max_download_bytes,
                budget=budget,
            )
            found = download.path
        path = found
        try:
            async with call.runtime.decodes:
                await anyio.to_thread.run_sync(
                    lambda: examine(path, max_pixels=settings.max_pixels, decode=True, preview=False)
                )
            return await anyio.Path(path).read_bytes()
        finally:
            if path.parent == scratch:
                await remove_download(path)
    finally:
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(scratch, ignore_errors=True))


async def collect(
    call: Call,
    prediction: Prediction,
    *,
    save: bool,
    mode: ImageMode,
    expected: int,
    deadline: float,
    asset: AssetPlan | None = None,
) -> Collected:
    """The outputs (at most ``expected``) with their saved paths and sizes, picture blocks, and notes;
    with ``asset``, each output's file made and written as it says."""
    urls = prediction.outputs[:expected]
    notes: list[str] = []
    if len(prediction.outputs) > expected:
        notes.append(
            f"Atlas returned {len(prediction.outputs)} outputs for {expected} asked; only the first "
            f"{expected} {'is' if expected == 1 else 'are'} used."
        )
    outputs = [
        OutputImage(
            url=shown_url(url, prediction.id, n),
            resource_uri=IMAGE_URI.format(prediction_id=prediction.id, index=n),
        )
        for n, url in enumerate(urls, start=1)
    ]
    if not save and mode == "none" and asset is None:
        # Neither shown nor kept: the URLs are the answer, and nothing is fetched (a download here
        # would cost the caller time and Atlas bandwidth only to report sizes). Reading a picture's
        # resource later fetches and checks it then.
        return Collected(outputs, [], notes + _inline_notes(urls, outputs))
    pictures: list[ShownPicture | None] = [None] * len(urls)
    budget = Budget(bytes_left=call.runtime.settings.max_call_download_bytes, deadline=deadline)
    collector = _Collector(call, prediction, save=save, mode=mode, asset=asset)
    scratch = Path(await anyio.to_thread.run_sync(tempfile.mkdtemp))

    async def one(i: int) -> None:
        n = i + 1
        problem: str | None = None
        with anyio.move_on_after(max(0.0, deadline - call.api.deadline_in(0))) as scope:
            try:
                collected = await collector.picture(n, urls[i], scratch, budget)
            except AtlasError as err:
                problem = err.message
            except PictureError as err:
                problem = f"The picture {err}, so it was not saved or shown."
            except OSError as err:
                problem = f"The picture could not be read back: {err.strerror or err}."
            except Exception as err:  # whatever happens to one picture, the paid job's answer stands
                logger.warning("output %d of %s: %s", n, prediction.id, type(err).__name__, exc_info=True)
                problem = f"The picture could not be collected ({type(err).__name__})."
        if scope.cancelled_caught:
            problem = "The picture was not collected within this call's time."
        if problem is not None:
            notes.append(f"Image {n}: {problem}")
            outputs[i] = outputs[i].model_copy(update={"error": problem})
            return
        pictures[i] = collected.shown
        update: dict[str, Any] = {
            "path": collected.path,
            "width": collected.width,
            "height": collected.height,
            "mime_type": collected.mime_type,
            "file": collected.file,
        }
        if collected.problem is not None:
            notes.append(f"Image {n}: {collected.problem}")
            update["error"] = collected.problem
        outputs[i] = outputs[i].model_copy(update=update)

    try:
        async with anyio.create_task_group() as tg:
            for i in range(len(urls)):
                tg.start_soon(one, i)
        shown = [p for p in pictures if p is not None]
        blocks, image_notes = await anyio.to_thread.run_sync(inline_images, shown, mode)
    finally:
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(scratch, ignore_errors=True))
    return Collected(outputs, blocks, notes + _inline_notes(urls, outputs) + image_notes)


def _inline_notes(urls: list[str], outputs: list[OutputImage]) -> list[str]:
    """Where to read the outputs Atlas sent inline (data: URIs are not repeated in the answer)."""
    return [
        f"Image {n} came inline (a data: URI); it is not repeated here: read it from "
        f"{out.path or out.resource_uri}."
        for n, (url, out) in enumerate(zip(urls, outputs, strict=True), start=1)
        if url.startswith("data:")
    ]
