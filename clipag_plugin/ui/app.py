"""The Gradio page: a prompt, two model slots side by side, live frames, downloads.

The page is a thin layer over :mod:`.session`: the handlers turn the widgets' values into
:class:`~.session.SlotRequest` objects, stream :func:`~.session.paint_side_by_side`, and map a
:class:`~.session.UiInputError` (or any error of a run) to a message in the page. Gradio's queue
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

from .session import (
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

    def generate(prompt: str, model_a: str, model_b: str, param: str = "preset", steps: Optional[float] = None,
                 seed: Optional[float] = 0, size: Optional[float] = None, views: Optional[float] = None,
                 augment: str = "preset", request: gr.Request = None):
        key = getattr(request, "session_hash", None) or "local"
        stop = _STOPS.setdefault(key, threading.Event())
        stop.clear()
        aug = None if augment in (None, "preset") else augment == "on"
        try:
            requests = [SlotRequest(m, param or "preset", _number(steps), _number(seed) or 0, _number(size),
                                    _number(views), aug) for m in (model_a, model_b)]
            for views_now in paint_side_by_side(prompt, requests, caps=caps, every=every, device=device,
                                                out_dir=root / uuid.uuid4().hex[:12], stop=stop, choices=choices):
                yield _outputs(views_now)
        except UiInputError as err:
            raise gr.Error(str(err), print_exception=False) from None
        except (ValueError, RuntimeError, OSError) as err:
            logger.exception("ui: the run failed")
            raise gr.Error(f"The run failed: {err}", print_exception=False) from None

    def request_stop(request: gr.Request = None) -> None:
        key = getattr(request, "session_hash", None) or "local"
        _STOPS.setdefault(key, threading.Event()).set()

    with gr.Blocks(title="clipag: robust CLIP paints") as app:
        gr.Markdown(INTRO)
        prompt = gr.Textbox(label="Prompt", value="a red circle on the left, blue background",
                            placeholder="a red circle on the left, blue background  (weights: 'a:1 | b:-0.3')",
                            elem_id="prompt")
        with gr.Row():
            model_a = gr.Dropdown(labelled, value=first, label="Left model", elem_id="model-a",
                                  allow_custom_value=True)
            model_b = gr.Dropdown(labelled, value=second, label="Right model", elem_id="model-b",
                                  allow_custom_value=True)
        with gr.Accordion("Settings (blank: the model's preset)", open=False):
            with gr.Row():
                param = gr.Dropdown(list(PARAMS), value="preset", label="Parametrization")
                steps = gr.Number(value=None, label=f"Steps (1-{caps.max_steps})", precision=0)
                seed = gr.Number(value=0, label="Seed", precision=0)
                size = gr.Number(value=None, label=f"Size px (16-{caps.max_size})", precision=0)
                views = gr.Number(value=None, label="Views per step", precision=0)
                augment = gr.Radio(["preset", "on", "off"], value="preset", label="Augmentation")
        with gr.Row():
            run = gr.Button("Generate", variant="primary", elem_id="generate")
            stop_button = gr.Button("Stop", variant="stop", elem_id="stop")
        slots = []
        with gr.Row():
            for side in ("a", "b"):
                with gr.Column():
                    image = gr.Image(label="picture", type="pil", format="png", interactive=False,
                                     elem_id=f"image-{side}", height=320)
                    status = gr.Markdown(elem_id=f"status-{side}")
                    png = gr.File(label="best image (PNG)", interactive=False)
                    animation = gr.File(label="the run (GIF / MP4)", interactive=False, file_count="multiple")
                    settings = gr.JSON(label="resolved settings")
                    slots += [image, status, png, animation, settings]
        run.click(generate, inputs=[prompt, model_a, model_b, param, steps, seed, size, views, augment],
                          outputs=slots, api_name="generate", concurrency_limit=1, concurrency_id="device")
        prompt.submit(generate, inputs=[prompt, model_a, model_b, param, steps, seed, size, views, augment],
                      outputs=slots, api_name=False, concurrency_limit=1, concurrency_id="device")
        stop_button.click(request_stop, inputs=None, outputs=None, queue=False, api_name="stop")
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
        files = [p for p in (view.animation, view.video) if p]
        out += [_shown(view.image), view.status, view.png, files or None, view.settings]
    return out
