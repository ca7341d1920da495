"""What the web page does, without the web page: check a request, paint two models side by side.

:func:`paint_side_by_side` runs one :func:`~clipag_plugin.synthesis.api.generate_iter` per model
slot, a step of each in turn (so both pictures grow together on one device), and yields
:class:`SlotView` snapshots; the page only draws them. At the end each slot has its best image as
a PNG, an animation of the run (GIF; MP4 too when imageio-ffmpeg is installed), the resolved
settings as JSON and, for the mini models, the world judge's reading. Every bad request raises
:class:`UiInputError` with a sentence for the page, before anything heavy runs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import torch

from ..synthesis.models import MINI_MODELS

__all__ = ["Caps", "SlotRequest", "SlotView", "UiInputError", "check_prompt", "model_choices", "baseline_of",
           "model_label", "paint_side_by_side", "run_in_turn", "write_animation", "judge_reading", "as_pil",
           "check_model_and_steps", "prepare_slots", "ending_with_result", "close_slot", "show_frame",
           "vocabulary_note", "MINI_MODELS"]

logger = logging.getLogger("clipag_plugin.ui")

PARAMS = ("preset", "pixels", "multires")


class UiInputError(ValueError):
    """A request the page cannot run; the message is shown to the user as it is."""


@dataclass(frozen=True)
class Caps:
    """Limits the server enforces whatever the page sends.

    Args:
        max_size: largest image side in pixels.
        max_steps: most optimization steps per run.
        max_upload_mb: largest uploaded photo, in megabytes.
        max_upload_pixels: most pixels of an uploaded photo (checked before it is decoded).
    """

    max_size: int = 512
    max_steps: int = 500
    max_upload_mb: float = 20.0
    max_upload_pixels: int = 50_000_000


@dataclass(frozen=True)
class SlotRequest:
    """One model's run: the model and the knobs the page shows (None: the model's preset)."""

    model: str
    param: str = "preset"
    steps: Optional[int] = None
    seed: int = 0
    size: Optional[int] = None
    views: Optional[int] = None
    augment: Optional[bool] = None

    def options(self) -> dict[str, Any]:
        """The :func:`~clipag_plugin.synthesis.api.generate_iter` keywords this request sets."""
        given: dict[str, Any] = {}
        if self.param != "preset":
            given["param"] = self.param
        if self.steps is not None:
            given["steps"] = int(self.steps)
        if self.size is not None:
            given["size"] = int(self.size)
        if self.views is not None:
            given["views"] = int(self.views)
        if self.augment is not None:
            given["augment"] = bool(self.augment)
        return given


@dataclass
class SlotView:
    """What the page shows for one slot at one moment."""

    model: str
    status: str
    image: Any = None  # PIL image: the current frame while running, the best image at the end
    done: bool = False
    png: Optional[str] = None
    animation: Optional[str] = None
    files: list = field(default_factory=list)  # further downloads: the MP4, a drawing's SVG
    settings: Optional[dict] = None
    reading: str = ""
    frames: list = field(default_factory=list, repr=False)


def model_label(name: str) -> str:
    """``"mini: robust, preset mini"`` for the model menus."""
    from ..registry import REGISTRY

    entry = REGISTRY[name]
    return f"{name}: {'robust' if entry.robust else 'plain CLIP'}, preset {entry.preset}"


def model_choices(online: Optional[bool] = None) -> list[str]:
    """The registry models a run can load now: shipped or cached ones, and every one when online.

    Args:
        online: whether downloads are possible (None: the package's offline switches decide).

    Returns:
        Registry names, shipped and cached first.
    """
    from .. import hub
    from ..cli.models import is_cached
    from ..registry import REGISTRY

    if online is None:
        online = not hub.is_offline()
    ready = [name for name, entry in REGISTRY.items() if is_cached(entry)]
    return ready + ([name for name in REGISTRY if name not in ready] if online else [])


def baseline_of(name: str) -> Optional[str]:
    """The plain CLIP a robust model was fine-tuned from, when the registry has it (None otherwise)."""
    from ..registry import REGISTRY

    entry = REGISTRY.get(name)
    if entry is None or not entry.robust:
        return None
    if entry.finetuned_from in REGISTRY:
        return entry.finetuned_from
    org = "openai" if entry.finetuned_from.startswith("OpenAI") else "laion2b" if "LAION" in entry.finetuned_from \
        else None
    for candidate in REGISTRY.values():
        if (not candidate.robust and org and candidate.name.startswith(org + "-")
                and candidate.architecture.replace("-quickgelu", "") == entry.architecture):
            return candidate.name
    return None


def check_prompt(prompt: Optional[str]) -> str:
    """The prompt, stripped; :class:`UiInputError` when it is empty or only pushes away."""
    from ..guidance.prompts import parse_prompts

    text = (prompt or "").strip()
    if not text:
        raise UiInputError("Type a prompt first, e.g. 'a red circle on the left, blue background'.")
    try:
        prompts = parse_prompts(text)
    except ValueError as err:
        raise UiInputError(f"The prompt could not be read: {err}") from None
    if not any(p.weight > 0 for p in prompts):
        raise UiInputError("Every part of the prompt has a negative weight; add one part to paint towards, "
                           "e.g. 'a red circle:1 | blurry:-0.3'.")
    return text


def vocabulary_note(prompt: str, model: str) -> str:
    """For the mini models, a sentence naming the prompt's words they never saw ('' otherwise)."""
    from ..guidance.prompts import parse_prompts
    from ..synthesis.models import vocabulary_note as note

    return note(" ".join(p.text for p in parse_prompts(prompt)), model)


def check_model_and_steps(model: str, steps: Optional[int], caps: Caps, choices: Sequence[str]) -> None:
    """:class:`UiInputError` for a model that cannot be loaded here or steps outside the server's limit."""
    if model not in choices:
        raise UiInputError(f"Model {model!r} is not available here (offline and not cached). Available: "
                           f"{', '.join(choices) or 'none'}. Download it first with `clipag download {model}`.")
    if steps is not None and not 1 <= int(steps) <= caps.max_steps:
        raise UiInputError(f"Steps {steps} is out of range: this server runs 1 to {caps.max_steps} "
                           f"(clipag ui --max-steps sets the limit).")


def _check_request(request: SlotRequest, caps: Caps, choices: Sequence[str]) -> None:
    from ..synthesis.api import MIN_SIZE

    check_model_and_steps(request.model, request.steps, caps, choices)
    if request.param not in PARAMS:
        raise UiInputError(f"Parametrization {request.param!r} is unknown; choose {', '.join(PARAMS)}.")
    if request.size is not None and not MIN_SIZE <= int(request.size) <= caps.max_size:
        raise UiInputError(f"Size {request.size} px is out of range: this server paints {MIN_SIZE} to "
                           f"{caps.max_size} px (clipag ui --max-size sets the limit).")
    if request.views is not None and not 1 <= int(request.views) <= 64:
        raise UiInputError(f"Views {request.views} is out of range: choose 1 to 64.")


def judge_reading(image01: torch.Tensor, prompt: str) -> str:
    """The mini world judge's reading of one picture ``(3, H, W)``, and whether it matches the prompt."""
    from ..mini import judge, world

    model = _judge()
    with torch.no_grad():
        logits = model.eval()(image01[None].float().clamp(0, 1))
    parts, probs = {}, []
    for attribute in judge.ATTRIBUTES:
        p = logits[attribute].softmax(-1)[0]
        parts[attribute] = judge.CLASSES[attribute][int(p.argmax())]
        probs.append(float(p.max()))
    text = (f"judge reads: a {parts['colour']} {parts['shape']} {world.POSITION_PHRASES[parts['position']]}, "
            f"{parts['background']} background (confidence {sum(probs) / len(probs):.2f})")
    try:
        asked = world.parse_caption(prompt.strip())
    except ValueError:
        return text
    hits = [a for a in judge.ATTRIBUTES if parts[a] == asked[a]]
    return f"{text}; matches {len(hits)} of 4 asked ({', '.join(hits) or 'none'})"


_JUDGE: dict = {}


def _judge():
    if "judge" not in _JUDGE:
        from ..mini.judge import load_judge

        _JUDGE["judge"] = load_judge()
    return _JUDGE["judge"]


def as_pil(image: torch.Tensor):
    """A ``(3, H, W)`` tensor in [0, 1] as a PIL image."""
    from torchvision.transforms.functional import to_pil_image

    return to_pil_image(image.detach().float().clamp(0, 1).cpu())


def show_frame(view: SlotView, image01: torch.Tensor, step: int, total: int, loss: float, note: str = "") -> None:
    """Draw a running slot's frame: the picture, kept for the animation, and ``step s/N, loss L``."""
    view.image = as_pil(image01)
    view.frames.append(view.image)
    view.status = f"{view.model}: step {step}/{total}, loss {loss:.4g}" + (f"\n\n{note}" if note else "")


def close_slot(view: SlotView, image01: torch.Tensor, out_dir: Path, settings: dict, summary: str,
               judge_prompt: str, note: str = "", extra_files: Sequence[str] = (),
               stopped_at: Optional[int] = None) -> None:
    """End an app's slot: its picture as PNG, the animation of its frames, the settings as JSON
    (with ``stopped_at_step``), the status line ``"<model>: done; <summary>"`` (or ``stopped at step
    N``) with the judge's reading (mini models) and the vocabulary note."""
    slug = view.model.replace("/", "_")
    view.image = as_pil(image01)
    view.png = str(out_dir / f"{slug}.png")
    view.image.save(view.png)
    view.animation, video = write_animation(view.frames + [view.image], out_dir / slug)
    view.files += [p for p in (video, *extra_files) if p]
    view.settings = {**settings, "stopped_at_step": stopped_at}
    (out_dir / f"{slug}.json").write_text(json.dumps(view.settings, indent=2, default=str))
    ended = f"stopped at step {stopped_at}" if stopped_at is not None else "done"
    view.status = f"{view.model}: {ended}; {summary}"
    if view.model in MINI_MODELS:
        view.reading = judge_reading(image01, judge_prompt)
        view.status += f"\n\n{view.reading}"
    if note:
        view.status += f"\n\n{note}"
    view.done = True


def write_animation(frames: list, stem: Path) -> tuple[str, Optional[str]]:
    """``stem.gif`` of ``frames`` (PIL images, enlarged to at least 256 px with sharp pixels), and
    ``stem.mp4`` too when imageio-ffmpeg is installed; returns both paths (the MP4's or None)."""
    import importlib.util

    from PIL import Image

    size = max(frames[-1].size[0], 256)
    big = [f.resize((size, size), Image.NEAREST) for f in frames]
    # a fast palette per frame: PIL's default (median cut) costs more than the run's frames themselves
    palettes = [f.quantize(colors=255, method=Image.Quantize.FASTOCTREE) for f in big]
    gif = stem.parent / (stem.name + ".gif")
    palettes[0].save(gif, save_all=True, append_images=palettes[1:], duration=120, loop=0)
    if importlib.util.find_spec("imageio_ffmpeg") is None:
        return str(gif), None
    import imageio.v3 as iio
    import numpy as np

    mp4 = stem.parent / (stem.name + ".mp4")
    iio.imwrite(mp4, np.stack([np.asarray(f.convert("RGB")) for f in big]), fps=8)
    return str(gif), str(mp4)


def paint_side_by_side(
    prompt: str,
    requests: Sequence[SlotRequest],
    *,
    caps: Caps = Caps(),
    every: int = 10,
    device: Optional[str] = None,
    out_dir: Path,
    stop: Optional[threading.Event] = None,
    choices: Optional[Sequence[str]] = None,
) -> Iterator[list[SlotView]]:
    """Paint ``prompt`` with every slot's model, a frame of each in turn; yield the views after each round.

    Args:
        prompt: the text (``"a:1 | b:-0.3"`` syntax).
        requests: one per slot.
        caps: the server's limits.
        every: steps between frames.
        device: where the models run (None: the best available).
        out_dir: where each run's files go.
        stop: set it to end every slot after its current step, keeping the best images so far.
        choices: the models allowed (default: :func:`model_choices`).

    Returns:
        An iterator of the slots' views; the last one has every slot ``done``.
    """
    from ..synthesis.api import generate_iter
    from ..synthesis.loop import GenerationFrame

    text, views, notes = prepare_slots(prompt, requests, _check_request, caps, choices, out_dir)
    streams = [generate_iter(text, r.model, every=every, seeds=r.seed, device=device, **r.options())
               for r in requests]

    def show(i: int, frame: GenerationFrame) -> None:
        show_frame(views[i], frame.images[0], frame.step, frame.total, float(frame.loss[0]), notes[i])

    def finish(i: int, result, last: Optional[GenerationFrame]) -> None:
        stopped = last is not None
        _finish(views[i], last.result if stopped else result, text, out_dir, notes[i],
                stopped_at=last.step if stopped else None)

    started = time.perf_counter()
    yield from run_in_turn(views, streams, GenerationFrame, show, finish, stop)
    logger.info("ui: %s painted in %.1f s", ", ".join(r.model for r in requests), time.perf_counter() - started)


def prepare_slots(prompt: str, requests: Sequence[Any], check: Any, caps: Caps, choices: Optional[Sequence[str]],
                  out_dir: Path) -> tuple[str, list[SlotView], list[str]]:
    """Check the prompt and every request (``check(request, caps, allowed_models)``) before anything
    heavy runs; return the prompt text, a waiting view per slot and each slot's vocabulary note."""
    text = check_prompt(prompt)
    allowed = list(choices) if choices is not None else model_choices()
    for request in requests:
        check(request, caps, allowed)
    out_dir.mkdir(parents=True, exist_ok=True)
    return text, [SlotView(r.model, "waiting") for r in requests], [vocabulary_note(text, r.model) for r in requests]


def ending_with_result(stream):
    """A loop written as a generator (frames, then its result as the return value) as one that
    yields the result as its last item, the form :func:`run_in_turn` reads."""
    result = yield from stream
    yield result


def run_in_turn(views: list[SlotView], streams: list, frame_type: type, show, finish,
                stop: Optional[threading.Event]) -> Iterator[list[SlotView]]:
    """Advance every slot's stream by one item in turn and yield the views after each round.

    A stream yields frames (instances of ``frame_type``) and ends with its result as its last item.
    ``show(i, frame)`` draws a frame into slot ``i``; ``finish(i, result, None)`` ends a slot with
    its result, ``finish(i, None, last_frame)`` ends it early after ``stop`` is set. Settings a
    model rejects (a ``ValueError`` from its stream) become a :class:`UiInputError`.
    """
    last: list = [None] * len(streams)
    try:
        while not all(v.done for v in views):
            for i, (stream, view) in enumerate(zip(streams, views, strict=True)):
                if view.done:
                    continue
                if stop is not None and stop.is_set() and last[i] is not None:
                    stream.close()
                    finish(i, None, last[i])
                    continue
                try:
                    item = next(stream)
                except ValueError as err:  # a setting the model rejects, e.g. a size
                    raise UiInputError(f"{view.model}: {err}") from None
                if isinstance(item, frame_type):
                    last[i] = item
                    show(i, item)
                else:
                    finish(i, item, None)
            yield views  # once per round: every slot has moved by one frame
    finally:
        for stream in streams:
            stream.close()


def _finish(view: SlotView, result, prompt: str, out_dir: Path, note: str, stopped_at: Optional[int]) -> None:
    """End a generation slot: its best image, the animation, the settings, the status line."""
    step, loss = int(result.step[0]), float(result.loss[0])
    settings = {"prompt": prompt, "model": view.model, "preset": result.preset, "seeds": result.seeds,
                "config": dataclasses.asdict(result.config), "best_loss": loss, "best_step": step}
    close_slot(view, result.images[0], out_dir, settings, f"best image from step {step}, loss {loss:.4f}", prompt,
               note, stopped_at=stopped_at)
