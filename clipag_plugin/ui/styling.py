"""The page's CLIPStyler tab without the page: two models style the same photo after a text, in turn.

Each slot runs :func:`~clipag_plugin.synthesis.styling.stylize_iter` with its model's styling
preset (:func:`~clipag_plugin.synthesis.styling.style_preset_for`: the reference's settings for
full-size CLIPs; a 64 px image and an offline content network for the mini models), the page's
knobs on top: the trick level, steps, size and seed. The uploaded photo is checked (file size,
pixel count, readability) before it is decoded. At the end each slot has the stylized image as
PNG, an animation of the run, the settings as JSON and, for the mini models, the world judge's
reading.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from .slots import (
    Caps,
    SlotView,
    UiInputError,
    check_model_and_steps,
    close_slot,
    ending_with_result,
    prepare_slots,
    run_in_turn,
    show_frame,
)

__all__ = ["StyleRequest", "style_side_by_side", "check_upload", "LEVEL_CHOICES"]

LEVEL_CHOICES = ("preset", "full", "a", "b", "c")
_CONTENT_NETS: dict = {}


@dataclass(frozen=True)
class StyleRequest:
    """One model's stylization: the model and the knobs the tab shows (None: the model's styling preset).

    ``level`` switches CLIPStyler's patch tricks: ``full`` (all on), ``a`` (no perspective warp),
    ``b`` (also no threshold rejection), ``c`` (global loss only), or ``preset``.
    """

    model: str
    level: str = "preset"
    steps: Optional[int] = None
    size: Optional[int] = None
    seed: int = 0

    def config(self):
        """The :class:`~clipag_plugin.synthesis.styling.StyleConfig` of this request."""
        from ..guidance.directional import patch_tricks_for
        from ..synthesis.styling import STYLE_PRESETS, style_preset_for, with_options

        tricks = None if self.level in (None, "preset") else patch_tricks_for(self.level)
        return with_options(STYLE_PRESETS[style_preset_for(self.model)], steps=self.steps, size=self.size,
                            seed=self.seed, tricks=tricks)


def _check(request: StyleRequest, caps: Caps, choices: Sequence[str]) -> None:
    from ..synthesis.content import MIN_SIDE

    check_model_and_steps(request.model, request.steps, caps, choices)
    if request.level not in LEVEL_CHOICES:
        raise UiInputError(f"Level {request.level!r} is unknown; choose {', '.join(LEVEL_CHOICES)} "
                           f"(a: no perspective warp, b: also no threshold rejection, c: global loss only).")
    size = request.config().size
    if not MIN_SIDE <= size <= caps.max_size:
        which = "Size" if request.size is not None else f"{request.model}'s styling preset works at"
        raise UiInputError(f"{which} {size} px is out of range: this server styles {MIN_SIDE} to {caps.max_size} px "
                           f"(clipag ui --max-size sets the limit).")


def check_upload(path: Any, caps: Caps) -> Path:
    """The uploaded photo's path after checking its file size, pixel count and format, without decoding it.

    Raises:
        UiInputError: no photo, a file over ``caps.max_upload_mb``, more than ``caps.max_upload_pixels``
            pixels, or not an image PIL can read.
    """
    from PIL import Image

    if path is None or (isinstance(path, str) and not path.strip()):
        raise UiInputError("Upload a content photo first (or pick one of the examples under the upload box).")
    file = Path(str(path))
    if not file.is_file():
        raise UiInputError(f"The content photo {file.name!r} did not arrive; upload it again.")
    megabytes = file.stat().st_size / 2**20
    if megabytes > caps.max_upload_mb:
        raise UiInputError(f"The content photo is {megabytes:.1f} MB; this server takes at most "
                           f"{caps.max_upload_mb:g} MB (clipag ui --max-upload-mb). Downscale it first.")
    try:
        with Image.open(file) as image:  # reads the header only
            width, height = image.size
    except (OSError, Image.DecompressionBombError) as err:
        raise UiInputError(f"The content photo is not an image this server can read ({err}); "
                           f"upload a PNG, JPEG or WebP.") from None
    if width * height > caps.max_upload_pixels:
        raise UiInputError(f"The content photo is {width}x{height} px ({width * height / 1e6:.0f} megapixels); this "
                           f"server takes at most {caps.max_upload_pixels / 1e6:g} megapixels. Downscale it first.")
    return file


def _content_net(config, device):
    from ..synthesis.styling import content_network

    key = (config.content_net, str(device))
    if key not in _CONTENT_NETS:
        try:
            _CONTENT_NETS[key] = content_network(config, device)
        except OSError as err:
            raise UiInputError(f"CLIPStyler keeps the photo's content with VGG19, whose weights are not here: {err}") \
                from None
    return _CONTENT_NETS[key]


def _load_content(file: Path, size: int, device):
    import warnings

    from ..synthesis.content import load_content

    try:
        with warnings.catch_warnings():  # grayscale / alpha / rounding notes: the page shows the result instead
            warnings.simplefilter("ignore", UserWarning)
            return load_content(file, size).to(device)
    except (OSError, ValueError) as err:
        raise UiInputError(f"The content photo could not be used: {err}") from None


def style_side_by_side(
    style: str,
    content: Any,
    requests: Sequence[StyleRequest],
    *,
    caps: Caps = Caps(),
    every: int = 10,
    device: Optional[str] = None,
    out_dir: Path,
    stop: Optional[threading.Event] = None,
    choices: Optional[Sequence[str]] = None,
) -> Iterator[list[SlotView]]:
    """Style the photo ``content`` after ``style`` with every slot's model, a frame of each in turn.

    Args:
        style: the style text, e.g. ``"oil painting"`` (``"green background"`` for the mini models).
        content: the photo's path (as the page uploads it).
        requests: one per slot.
        caps, every, device, out_dir, stop, choices: as :func:`~.slots.paint_side_by_side`.

    Returns:
        An iterator of the slots' views; the last one has every slot ``done``.
    """
    from ..loading import default_device
    from ..synthesis.api import load_model
    from ..synthesis.styling import StyleFrame, finish_image, stylize_iter

    if "|" in (style or ""):
        raise UiInputError("CLIPStyler takes one style text; weighted parts ('a:1 | b:-0.3') are for the "
                           "Generate tab.")
    file = check_upload(content, caps)
    text, views, notes = prepare_slots(style, requests, _check, caps, choices, out_dir)
    where = device or default_device()
    configs = [r.config() for r in requests]
    nets = [_content_net(c, where) for c in configs]
    photos = [_load_content(file, c.size, where) for c in configs]
    streams = [ending_with_result(stylize_iter(photo, text, load_model(r.model, device), net, c, every=every))
               for r, c, net, photo in zip(requests, configs, nets, photos, strict=True)]

    def show(i: int, frame: StyleFrame) -> None:
        show_frame(views[i], finish_image(frame.image[None])[0], frame.step, frame.total, frame.loss, notes[i])

    def finish(i: int, result, last: Optional[StyleFrame]) -> None:
        view = views[i]
        image = finish_image(result.image)[0] if last is None else finish_image(last.image[None])[0]
        history = result.history if last is None else None
        steps = len(history) if history is not None else last.step
        loss = history[-1]["total"] if history else (last.loss if last is not None else float("nan"))
        settings = {"style": text, "content": file.name, "model": view.model, "app": "clipstyler",
                    "config": dataclasses.asdict(configs[i]),
                    "vgg": "RANDOM stand-in" if configs[i].content_net != "vgg19" else "vgg19",
                    "final_loss": loss}
        close_slot(view, image, out_dir, settings, f"{configs[i].size} px, loss {loss:.2f}", text, notes[i],
                   stopped_at=steps if last is not None else None)

    yield from run_in_turn(views, streams, StyleFrame, show, finish, stop)
