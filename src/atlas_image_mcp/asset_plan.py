"""The file a picture call delivers: where (``save_as`` in the workspace), at what size, in what format.

Read from a tool's :class:`~atlas_image_mcp.params.SaveOptions` (and
:class:`~atlas_image_mcp.params.ShapeOptions` where it takes them) before anything is sent, so a
refusal costs nothing:

* :func:`asset_spec`: the size and fit, the padding colour, the quality, and the format
  (``save_as``'s extension or ``output_format``, which must agree; AVIF only where Pillow writes it);
* :func:`plan_asset`: one :class:`~atlas_image_mcp.workspace.SaveTarget` per picture (``hero.webp``;
  for several, ``hero-1.webp``, ``hero-2.webp``...), each inside the call's workspace and free (or
  ``overwrite``).

The pictures are then made and written by :mod:`atlas_image_mcp.collect` as they are collected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import anyio

from .assets import AssetSpec, Fit, format_of_extension, parse_color, parse_size, writable_formats
from .call import Call
from .errors import InvalidParameterError
from .params import SaveOptions, ShapeOptions
from .settings import env_name
from .workspace import Root, SaveTarget, save_target, target_is_free

__all__ = ["AssetPlan", "asset_spec", "plan_asset"]


@dataclass(frozen=True)
class AssetPlan:
    """What to make of each picture, and where each one goes (``targets``: one per picture, or none)."""

    spec: AssetSpec
    targets: tuple[SaveTarget, ...] = ()

    @property
    def remakes(self) -> bool:
        """Whether the picture is remade here (a size, a format or a quality was asked for)."""
        spec = self.spec
        return spec.size is not None or spec.format is not None or spec.quality is not None

    def target(self, n: int) -> SaveTarget | None:
        """Where picture ``n`` (1-based) goes, if anywhere."""
        return self.targets[n - 1] if 0 < n <= len(self.targets) else None

    def part(self, start: int, count: int) -> AssetPlan:
        """The plan of ``count`` pictures from position ``start`` (a batch's job)."""
        return replace(self, targets=self.targets[start : start + count])

    def state(self) -> dict[str, Any]:
        """What a task id carries of it (see :meth:`from_state`)."""
        spec = self.spec
        out: dict[str, Any] = {"s": list(spec.size) if spec.size else None, "f": spec.fit, "o": spec.format}
        if spec.background is not None:
            out["b"] = list(spec.background)
        if spec.quality is not None:
            out["q"] = spec.quality
        if self.targets:
            root = self.targets[0].root
            out["r"] = [str(root.path), root.origin]
            out["t"] = [list(t.parts) for t in self.targets]
            out["w"] = self.targets[0].overwrite
        return out

    @classmethod
    def from_state(cls, state: Any) -> AssetPlan | None:
        """The plan in a task id's state, or None when it is not one (checked although ids are signed)."""
        if not isinstance(state, Mapping):
            return None
        size, fit, fmt = state.get("s"), state.get("f"), state.get("o")
        background, quality = state.get("b"), state.get("q")
        ok = (
            (size is None or (_ints(size, 2) and all(0 < v <= 16384 for v in size)))
            and fit in ("cover", "contain")
            and (fmt is None or fmt in writable_formats())
            and (background is None or (_ints(background, 4) and all(0 <= v <= 255 for v in background)))
            and (quality is None or (_ints([quality], 1) and 1 <= quality <= 100))
        )
        if not ok:
            return None
        spec = AssetSpec(
            size=(size[0], size[1]) if size else None,
            fit=cast(Fit, fit),
            background=(background[0], background[1], background[2], background[3]) if background else None,
            format=fmt,
            quality=quality,
        )
        targets = _targets_of(state)
        return None if targets is None else cls(spec, targets)


def _ints(value: Any, length: int) -> bool:
    return (
        isinstance(value, list)
        and len(value) == length
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    )


def _targets_of(state: Mapping[str, Any]) -> tuple[SaveTarget, ...] | None:
    listed, root, overwrite = state.get("t"), state.get("r"), state.get("w", False)
    if listed is None:
        return ()
    if not (
        isinstance(listed, list)
        and isinstance(root, list)
        and len(root) == 2
        and isinstance(root[0], str)
        and root[1] in ("client root", "working directory", "output folder")
        and isinstance(overwrite, bool)
        and Path(root[0]).is_absolute()
    ):
        return None
    out: list[SaveTarget] = []
    for parts in listed:
        if not (isinstance(parts, list) and parts and all(_plain_name(p) for p in parts)):
            return None
        out.append(SaveTarget(Root(Path(root[0]), root[1]), tuple(parts), overwrite))
    return tuple(out)


def _plain_name(part: Any) -> bool:
    return isinstance(part, str) and part not in ("", ".", "..") and "/" not in part and "\x00" not in part


def asset_spec(options: SaveOptions) -> AssetSpec | None:
    """What to make of each picture (None: deliver it as Atlas made it); refuses what cannot be made."""
    shape = options if isinstance(options, ShapeOptions) else ShapeOptions()
    if (
        options.save_as is None
        and shape.output_size is None
        and shape.output_format is None
        and shape.quality is None
    ):
        return None
    fmt: str | None = shape.output_format
    if options.save_as is not None:
        name = options.save_as.strip().replace("\\", "/").rsplit("/", 1)[-1]
        if not name:
            raise InvalidParameterError(
                "save_as",
                f"{options.save_as[:80]!r} names a folder: end it with a file name such as 'hero.png'.",
            )
        from_name = format_of_extension(name.rpartition(".")[2]) if "." in name else None
        if from_name is None or from_name not in writable_formats():
            raise InvalidParameterError(
                "save_as",
                f"{name[:80]!r} must end in an extension that names the format: "
                f"{', '.join('.' + f.replace('jpeg', 'jpg') for f in writable_formats())}.",
            )
        if fmt is not None and fmt != from_name:
            raise InvalidParameterError(
                "output_format",
                f"{fmt} does not match save_as ({name[:80]!r} is {from_name}); make them agree, or leave "
                "output_format out.",
            )
        fmt = from_name
    if fmt is not None and fmt not in writable_formats():
        raise InvalidParameterError(
            "output_format", f"{fmt} cannot be written by this server; use {', '.join(writable_formats())}."
        )
    size = None
    if shape.output_size is not None:
        try:
            size = parse_size(shape.output_size)
        except ValueError as err:
            raise InvalidParameterError("output_size", f"{err}.") from None
    background = None
    if shape.background is not None:
        try:
            background = parse_color(shape.background)
        except ValueError as err:
            raise InvalidParameterError("background", f"{err}.") from None
    fit: Fit = shape.fit or "cover"
    return AssetSpec(size=size, fit=fit, background=background, format=fmt, quality=shape.quality)


async def plan_asset(
    call: Call, options: SaveOptions, spec: AssetSpec | None, pictures: int
) -> AssetPlan | None:
    """The plan for ``pictures`` pictures: ``spec`` and, with ``save_as``, where each one goes."""
    if spec is None:
        return None
    if options.save_as is None:
        return AssetPlan(spec)
    base = await workspace_target(call, options.save_as, overwrite=options.overwrite)
    targets = (base,) if pictures == 1 else tuple(base.numbered(n) for n in range(1, pictures + 1))
    for target in targets:
        await anyio.to_thread.run_sync(target_is_free, target)
    return AssetPlan(spec, targets)


async def workspace_target(call: Call, text: str, *, overwrite: bool) -> SaveTarget:
    """``text`` (a ``save_as``) as a place in this call's workspace (refused where no file is written)."""
    if not call.outputs.may_write:
        raise InvalidParameterError(
            "save_as",
            f"this hosted server writes no files ({env_name('output_dir')} is not set where it runs), so "
            "nothing was sent. Leave save_as out: the result carries the picture's URL.",
        )
    workspace = await call.workspace()
    return save_target(text, workspace, overwrite=overwrite, home=_home())


def _home() -> Path | None:
    try:
        return Path.home()
    except (RuntimeError, KeyError):
        return None
