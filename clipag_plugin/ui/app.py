"""The Gradio page: a prompt, two model slots side by side, live frames, downloads.

The page is a thin layer over :mod:`.slots`: the handlers turn the widgets' values into
:class:`~.slots.SlotRequest` objects, stream :func:`~.slots.paint_side_by_side`, and map a
:class:`~.slots.UiInputError` (or any error of a run) to a message in the page. Gradio's queue
runs one generation at a time per server (one device); the others see their place in the queue.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any, Optional

import gradio as gr

from .drawing import DrawRequest, draw_side_by_side
from .slots import (
    PARAMS,
    Caps,
    SlotRequest,
    UiInputError,
    baseline_of,
    model_choices,
    model_label,
    paint_side_by_side,
)

__all__ = ["build_app", "OUTPUTS_PER_SLOT"]

logger = logging.getLogger("clipag_plugin.ui")
OUTPUTS_PER_SLOT = 5  # image, status, PNG, animation, settings
_STOPS: dict[str, threading.Event] = {}

INTRO = """# clipag: watch a robust CLIP paint
Both slots optimize the same picture for your prompt, with no generator and no augmentation
tricks: only the image encoder differs. A robust (CLIPAG) encoder has perceptually aligned
gradients and paints the prompt; a plain CLIP finds noise that scores well. The `mini` models are
tiny and ship inside the package: they know only their world's words (colours, circle, square,
triangle, cross, left/right/top/bottom/center, background)."""


DRAW_INTRO = """CLIPDraw (Frans et al. 2021): random strokes moved, widened and recoloured until the CLIP
reads the prompt in them. With the augmentation trick off, each step scores the drawing once, as
it is. Each model draws with its own drawing preset (the notebook's 256 thin strokes on 224 px for
full-size CLIPs; fewer, wider strokes on 96 px for the mini models); the SVG of the strokes comes
with the PNG."""


def _stop_for(request: Any) -> threading.Event:
    """The Stop button's event of the visitor behind ``request`` (Gradio's per-visitor hash)."""
    return _STOPS.setdefault(getattr(request, "session_hash", None) or "local", threading.Event())


def _number(value: Any) -> Optional[int]:
    if value is None or value == "":
        return None
    return int(value)


def build_app(*, device: Optional[str] = None, caps: Caps = Caps(), every: int = 10,
              out_dir: Optional[Path] = None, online: Optional[bool] = None) -> gr.Blocks:
    """The page as a ``gradio.Blocks``; call ``.queue().launch(...)`` on it, or let ``clipag ui`` do so.

    Args:
        device: where the models run (None: the best available).
        caps: the server-side limits on size, steps and uploads.
        every: steps between the frames the page shows.
        out_dir: where each run's files go (default: a temporary folder).
        online: whether models that are not cached may be downloaded (None: the offline switches decide).

    Returns:
        The app.
    """
    choices = model_choices(online)
    if not choices:
        raise RuntimeError("no model is available: the shipped mini models are missing and nothing is cached; "
                           "reinstall clipag-plugin or run `clipag download ViT-B/32`")
    first = "mini" if "mini" in choices else choices[0]
    second = baseline_of(first) if baseline_of(first) in choices else next((c for c in choices if c != first), first)
    root = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="clipag-ui-"))
    labelled = [(model_label(name), name) for name in choices]

    def streamed(views_iter):
        """The page's outputs for each round of views; bad input and failed runs become a message."""
        try:
            for views_now in views_iter:
                yield _outputs(views_now)
        except UiInputError as err:
            raise gr.Error(str(err), print_exception=False) from None
        except (ValueError, RuntimeError, OSError) as err:
            logger.exception("ui: the run failed")
            raise gr.Error(f"The run failed: {err}", print_exception=False) from None

    def stop_event(request) -> threading.Event:
        stop = _stop_for(request)
        stop.clear()
        return stop

    def generate(prompt: str, model_a: str, model_b: str, param: str = "preset", steps: Optional[float] = None,
                 seed: Optional[float] = 0, size: Optional[float] = None, views: Optional[float] = None,
                 augment: str = "preset", request: gr.Request = None):
        aug = None if augment in (None, "preset") else augment == "on"
        requests = [SlotRequest(m, param or "preset", _number(steps), _number(seed) or 0, _number(size),
                                _number(views), aug) for m in (model_a, model_b)]
        yield from streamed(paint_side_by_side(prompt, requests, caps=caps, every=every, device=device,
                                               out_dir=root / uuid.uuid4().hex[:12], stop=stop_event(request),
                                               choices=choices))

    def clipdraw(prompt: str, model_a: str, model_b: str, strokes: Optional[float] = None,
                 steps: Optional[float] = None, seed: Optional[float] = 0, tricks: str = "off",
                 request: gr.Request = None):
        on = None if tricks in (None, "preset") else tricks == "on"
        requests = [DrawRequest(m, _number(strokes), _number(steps), _number(seed) or 0, on) for m in (model_a, model_b)]
        yield from streamed(draw_side_by_side(prompt, requests, caps=caps, every=every, device=device,
                                              out_dir=root / uuid.uuid4().hex[:12], stop=stop_event(request),
                                              choices=choices))

    def request_stop(request: gr.Request = None) -> None:
        _stop_for(request).set()

    def models_row(prefix: str):
        with gr.Row():
            a = gr.Dropdown(labelled, value=first, label="Left model", elem_id=f"{prefix}model-a",
                            allow_custom_value=True)
            b = gr.Dropdown(labelled, value=second, label="Right model", elem_id=f"{prefix}model-b",
                            allow_custom_value=True)
        return a, b

    def buttons(prefix: str, label: str):
        with gr.Row():
            go = gr.Button(label, variant="primary", elem_id=f"{prefix}generate")
            halt = gr.Button("Stop", variant="stop", elem_id=f"{prefix}stop")
        halt.click(request_stop, inputs=None, outputs=None, queue=False, api_name=False)
        return go

    def slot_outputs(prefix: str, files_label: str) -> list:
        slots = []
        with gr.Row():
            for side in ("a", "b"):
                with gr.Column():
                    slots += [gr.Image(label="picture", type="pil", format="png", interactive=False,
                                       elem_id=f"{prefix}image-{side}", height=320),
                              gr.Markdown(elem_id=f"{prefix}status-{side}"),
                              gr.File(label="best image (PNG)", interactive=False),
                              gr.File(label=files_label, interactive=False, file_count="multiple"),
                              gr.JSON(label="resolved settings")]
        return slots

    with gr.Blocks(title="clipag: robust CLIP paints", analytics_enabled=False) as app:  # offline-safe
        gr.Markdown(INTRO)
        with gr.Tab("Generate"):
            prompt = gr.Textbox(label="Prompt", value="a red circle on the left, blue background",
                                placeholder="a red circle on the left, blue background  (weights: 'a:1 | b:-0.3')",
                                elem_id="prompt")
            model_a, model_b = models_row("")
            with gr.Accordion("Settings (blank: the model's preset)", open=False):
                with gr.Row():
                    param = gr.Dropdown(list(PARAMS), value="preset", label="Parametrization")
                    steps = gr.Number(value=None, label=f"Steps (1-{caps.max_steps})", precision=0)
                    seed = gr.Number(value=0, label="Seed", precision=0)
                    size = gr.Number(value=None, label=f"Size px (16-{caps.max_size})", precision=0)
                    views = gr.Number(value=None, label="Views per step", precision=0)
                    augment = gr.Radio(["preset", "on", "off"], value="preset", label="Augmentation")
            run = buttons("", "Generate")
            slots = slot_outputs("", "the run (GIF / MP4)")
            inputs = [prompt, model_a, model_b, param, steps, seed, size, views, augment]
            run.click(generate, inputs=inputs, outputs=slots, api_name="generate", concurrency_limit=1,
                      concurrency_id="device")
            prompt.submit(generate, inputs=inputs, outputs=slots, api_name=False, concurrency_limit=1,
                          concurrency_id="device")
        with gr.Tab("CLIPDraw"):
            gr.Markdown(DRAW_INTRO)
            draw_prompt = gr.Textbox(label="Prompt", value="a red circle on the left, blue background",
                                     elem_id="draw-prompt")
            draw_a, draw_b = models_row("draw-")
            with gr.Row():
                strokes = gr.Number(value=None, label="Strokes (blank: the model's drawing preset)", precision=0)
                draw_steps = gr.Number(value=None, label=f"Steps (1-{caps.max_steps}; blank: the preset)",
                                       precision=0)
                draw_seed = gr.Number(value=0, label="Seed", precision=0)
                tricks = gr.Radio(["off", "on", "preset"], value="off", label="Augmentation trick")
            draw_run = buttons("draw-", "Draw")
            draw_slots = slot_outputs("draw-", "the run (GIF) and the strokes (SVG)")
            draw_run.click(clipdraw, inputs=[draw_prompt, draw_a, draw_b, strokes, draw_steps, draw_seed, tricks],
                           outputs=draw_slots, api_name="clipdraw", concurrency_limit=1, concurrency_id="device")
    return app


DISPLAY_PX = 288  # small pictures (the mini models paint 96 px) are shown enlarged, pixels kept sharp


def _shown(image):
    if image is None or max(image.size) >= DISPLAY_PX:
        return image
    from PIL import Image

    scale = -(-DISPLAY_PX // max(image.size))
    return image.resize((image.size[0] * scale, image.size[1] * scale), Image.NEAREST)


def _outputs(views) -> list:
    out: list = []
    for view in views:
        files = [p for p in (view.animation, *view.files) if p]
        out += [_shown(view.image), view.status, view.png, files or None, view.settings]
    return out
