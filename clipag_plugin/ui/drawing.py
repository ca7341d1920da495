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
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

from .slots import (
    MINI_MODELS,
    Caps,
    SlotView,
    UiInputError,
    as_pil,
    check_model_and_steps,
    judge_reading,
    prepare_slots,
    run_in_turn,
    write_animation,
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


def _ending_with_result(stream):
    drawing = yield from stream
    yield drawing


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
        caps: the server's limits.
        every: steps between frames.
        device: where the models run (None: the best available).
        out_dir: where each drawing's files go.
        stop: a ``threading.Event``; set, every slot ends after its current frame with its strokes so far.
        choices: the models allowed (default: :func:`~.slots.model_choices`).

    Returns:
        An iterator of the slots' views; the last one has every slot ``done``.
    """
    from ..synthesis.api import load_model
    from ..synthesis.strokes import DrawFrame, draw_iter

    if "|" in (prompt or ""):
        raise UiInputError("CLIPDraw takes one prompt; weighted parts ('a:1 | b:-0.3') are for the Generate tab.")
    text, views, notes = prepare_slots(prompt, requests, _check, caps, choices, out_dir)
    configs = [r.config() for r in requests]
    streams = [_ending_with_result(draw_iter(text, load_model(r.model, device), c, every=every))
               for r, c in zip(requests, configs, strict=True)]

    def show(i: int, frame: DrawFrame) -> None:
        view = views[i]
        view.image = as_pil(frame.image)
        view.frames.append(view.image)
        view.status = (f"{view.model}: step {frame.step}/{frame.total}, loss {frame.loss:.4f}"
                       + (f"\n\n{notes[i]}" if notes[i] else ""))

    def finish(i: int, drawing, last: Optional[DrawFrame]) -> None:
        view = views[i]
        if last is not None:
            scene, image, steps, loss = last.scene, last.image, last.step, last.loss
        else:
            scene, image, steps, loss = drawing.scene, drawing.image, len(drawing.losses), drawing.losses[-1]
        slug = view.model.replace("/", "_")
        view.image = as_pil(image)
        view.png = str(out_dir / f"{slug}.png")
        view.image.save(view.png)
        svg = out_dir / f"{slug}.svg"
        scene.save_svg(svg)
        view.animation, video = write_animation(view.frames + [view.image], out_dir / slug)
        view.files += [p for p in (video,) if p]
        view.files.append(str(svg))
        view.settings = {"prompt": text, "model": view.model, "app": "clipdraw",
                         "config": dataclasses.asdict(configs[i]), "final_loss": loss,
                         "stopped_at_step": steps if last is not None else None}
        (out_dir / f"{slug}.json").write_text(json.dumps(view.settings, indent=2, default=str))
        ended = f"stopped at step {steps}" if last is not None else "done"
        view.status = f"{view.model}: {ended}; {configs[i].paths} strokes, loss {loss:.4f}"
        if view.model in MINI_MODELS:
            view.reading = judge_reading(image, text)
            view.status += f"\n\n{view.reading}"
        if notes[i]:
            view.status += f"\n\n{notes[i]}"
        view.done = True

    yield from run_in_turn(views, streams, DrawFrame, show, finish, stop)
