"""The page's CLIPDraw tab without the page: two models draw the same prompt with strokes, in turn.

Each slot runs :func:`~clipag_plugin.synthesis.strokes.draw_iter` with its model's drawing preset
(:func:`~clipag_plugin.synthesis.strokes.draw_preset_for`: the notebook's settings for full-size
CLIPs, a smaller canvas with fewer, wider strokes for the mini models), the page's knobs on top:
strokes, steps, seed and the augmentation trick on or off. At the end each slot has the drawing
as PNG and SVG, an animation of the run, the settings as JSON and, for the mini models, the
world judge's reading.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

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

__all__ = ["DrawRequest", "draw_side_by_side", "MAX_STROKES"]

MAX_STROKES = 1024


@dataclass(frozen=True)
class DrawRequest:
    """One model's drawing: the model and the knobs the tab shows (None: the model's drawing preset)."""

    model: str
    strokes: Optional[int] = None
    steps: Optional[int] = None
    seed: int = 0
    tricks: Optional[bool] = None  # the augmentation trick: on, off, or the preset's

    def config(self):
        """The :class:`~clipag_plugin.synthesis.strokes.DrawConfig` of this request."""
        from ..synthesis.strokes import DRAW_PRESETS, draw_preset_for, with_options

        return with_options(DRAW_PRESETS[draw_preset_for(self.model)], paths=self.strokes, steps=self.steps,
                            seed=self.seed, augment=self.tricks)


def _check(request: DrawRequest, caps: Caps, choices: Sequence[str]) -> None:
    check_model_and_steps(request.model, request.steps, caps, choices)
    if request.strokes is not None and not 1 <= int(request.strokes) <= MAX_STROKES:
        raise UiInputError(f"Strokes {request.strokes} is out of range: choose 1 to {MAX_STROKES}.")
    if request.config().canvas > caps.max_size:
        raise UiInputError(f"{request.model} draws on a {request.config().canvas} px canvas, above this server's "
                           f"{caps.max_size} px limit (clipag ui --max-size).")


def draw_side_by_side(
    prompt: str,
    requests: Sequence[DrawRequest],
    *,
    caps: Caps = Caps(),
    every: int = 10,
    device: Optional[str] = None,
    out_dir: Path,
    stop: Optional[threading.Event] = None,
    choices: Optional[Sequence[str]] = None,
) -> Iterator[list[SlotView]]:
    """Draw ``prompt`` with every slot's model, a frame of each in turn; yield the views after each round.

    Args:
        prompt: what to draw.
        requests: one per slot.
        caps, every, device, out_dir, stop, choices: as :func:`~.slots.paint_side_by_side`.

    Returns:
        An iterator of the slots' views; the last one has every slot ``done``.
    """
    from ..synthesis.api import load_model
    from ..synthesis.strokes import DrawFrame, draw_iter

    if "|" in (prompt or ""):
        raise UiInputError("CLIPDraw takes one prompt; weighted parts ('a:1 | b:-0.3') are for the Generate tab.")
    text, views, notes = prepare_slots(prompt, requests, _check, caps, choices, out_dir)
    configs = [r.config() for r in requests]
    streams = [ending_with_result(draw_iter(text, load_model(r.model, device), c, every=every))
               for r, c in zip(requests, configs, strict=True)]

    def show(i: int, frame: DrawFrame) -> None:
        show_frame(views[i], frame.image, frame.step, frame.total, frame.loss, notes[i])

    def finish(i: int, drawing, last: Optional[DrawFrame]) -> None:
        view = views[i]
        if last is not None:
            scene, image, steps, loss = last.scene, last.image, last.step, last.loss
        else:
            scene, image, steps, loss = drawing.scene, drawing.image, len(drawing.losses), drawing.losses[-1]
        svg = out_dir / f"{view.model.replace('/', '_')}.svg"
        scene.save_svg(svg)
        settings = {"prompt": text, "model": view.model, "app": "clipdraw", "config": dataclasses.asdict(configs[i]),
                    "final_loss": loss}
        close_slot(view, image, out_dir, settings, f"{configs[i].paths} strokes, loss {loss:.4f}", text,
                   notes[i], [str(svg)],
                   stopped_at=steps if last is not None else None)

    yield from run_in_turn(views, streams, DrawFrame, show, finish, stop)
