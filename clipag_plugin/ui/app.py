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
from .latents import DEFAULT_STEPS, LatentRequest, vqgan_side_by_side, vqgan_status
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
from .styling import LEVEL_CHOICES, StyleRequest, style_side_by_side

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


STYLE_INTRO = """CLIPStyler (Kwon & Ye 2022): a small network learns to repaint your photo so that, in the CLIP's
space, it moves from the photo towards the style text, while a VGG19 keeps its content (for the mini
models a seeded random one, so the tab works offline). The trick
level switches the reference's patch tricks off one at a time (a: no perspective warp, b: also no
threshold rejection, c: the global loss only). The mini models know only their world's words: give
them a colour, e.g. 'green background', and a picture of their world (the first example)."""


VQGAN_INTRO = """VQGAN+CLIP (Crowson 2021): a pretrained VQGAN decodes a grid of latent codes into the picture, and
the codes are stepped until the CLIP reads the prompt. The reference looks through 32 augmented
cutouts per step (the trick); with it off, each step scores the whole picture once, as it is."""


def _readable_uploads(image: gr.Image) -> gr.Image:
    """``image`` with unreadable uploads as a message in the page, not a server error. (An instance
    wrapper: a ``gr.Image`` subclass would make Gradio write a ``.pyi`` stub beside this module.)"""
    from PIL import Image

    preprocess = image.preprocess

    def checked(payload):
        try:
            return preprocess(payload)
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise gr.Error(f"The content photo is not an image this server can read ({err}); upload a PNG, JPEG "
                           f"or WebP of at most {Image.MAX_IMAGE_PIXELS // 1_000_000} megapixels.",
                           print_exception=False) from None

    image.preprocess = checked
    return image


def _example_photos(folder: Path) -> list[str]:
    """Content photos that work offline: a picture of the mini world, and two of scikit-image's samples."""
    import skimage.data
    from PIL import Image

    from ..mini import world

    folder.mkdir(parents=True, exist_ok=True)
    scene = world.render_clean([world.caption_index(0, 0, 0, 2)], seed=0)[0]  # a red circle on the left, blue
    photos = {"mini-world-red-circle.png": Image.fromarray((scene.permute(1, 2, 0) * 255).round().byte().numpy()),
              "astronaut.png": Image.fromarray(skimage.data.astronaut()).resize((256, 256)),
              "coffee.png": Image.fromarray(skimage.data.coffee()).resize((300, 200))}
    for name, image in photos.items():
        image.save(folder / name)
    return [str(folder / name) for name in photos]


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
    vqgans, vqgan_message = vqgan_status()

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

    def clipstyler(style: str, content: Optional[str], model_a: str, model_b: str, level: str = "preset",
                   steps: Optional[float] = None, size: Optional[float] = None, seed: Optional[float] = 0,
                   request: gr.Request = None):
        requests = [StyleRequest(m, level or "preset", _number(steps), _number(size), _number(seed) or 0)
                    for m in (model_a, model_b)]
        yield from streamed(style_side_by_side(style, content, requests, caps=caps, every=every, device=device,
                                               out_dir=root / uuid.uuid4().hex[:12], stop=stop_event(request),
                                               choices=choices))

    def vqgan_clip(prompt: str, vqgan: str, model_a: str, model_b: str, steps: Optional[float] = DEFAULT_STEPS,
                   size: Optional[float] = None, seed: Optional[float] = 0, tricks: str = "off",
                   request: gr.Request = None):
        requests = [LatentRequest(m, _number(steps), _number(size), _number(seed) or 0, tricks == "on")
                    for m in (model_a, model_b)]
        yield from streamed(vqgan_side_by_side(prompt, vqgan, requests, caps=caps, every=every, device=device,
                                               out_dir=root / uuid.uuid4().hex[:12], stop=stop_event(request),
                                               choices=choices, vqgans=vqgans))

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
        with gr.Tab("CLIPStyler"):
            gr.Markdown(STYLE_INTRO)
            photos = _example_photos(root / "examples")
            with gr.Row():
                with gr.Column(scale=1):
                    photo = _readable_uploads(gr.Image(
                        value=photos[0], type="filepath", sources=["upload", "clipboard"],
                        label=f"Content photo (at most {caps.max_upload_mb:g} MB)", height=240,
                        elem_id="style-content"))
                    gr.Examples([[p] for p in photos], inputs=[photo], label="Offline examples")
                with gr.Column(scale=2):
                    style_text = gr.Textbox(label="Style text", value="green background", elem_id="style-text",
                                            placeholder="oil painting, fire, watercolor (mini: 'green background')")
                    style_a, style_b = models_row("style-")
                    with gr.Row():
                        level = gr.Radio(list(LEVEL_CHOICES), value="preset", label="Trick level")
                        style_steps = gr.Number(value=None, label=f"Steps (1-{caps.max_steps}; blank: the preset)",
                                                precision=0)
                        style_size = gr.Number(value=None, label=f"Size px (32-{caps.max_size}; blank: the preset)",
                                               precision=0)
                        style_seed = gr.Number(value=0, label="Seed", precision=0)
            style_run = buttons("style-", "Stylize")
            style_slots = slot_outputs("style-", "the run (GIF / MP4)")
            style_run.click(clipstyler, inputs=[style_text, photo, style_a, style_b, level, style_steps, style_size,
                                                style_seed],
                            outputs=style_slots, api_name="clipstyler", concurrency_limit=1, concurrency_id="device")
        with gr.Tab("VQGAN+CLIP"):
            gr.Markdown(VQGAN_INTRO)
            if not vqgans:
                gr.Markdown(f"**Not available here.** {vqgan_message}", elem_id="vqgan-missing")
            else:
                vq_prompt = gr.Textbox(label="Prompt", value="a red circle on the left, blue background",
                                       elem_id="vqgan-prompt")
                with gr.Row():
                    vq_name = gr.Dropdown(vqgans, value=vqgans[0], label="VQGAN")
                    vq_a, vq_b = models_row("vqgan-")
                with gr.Row():
                    vq_steps = gr.Number(value=DEFAULT_STEPS, label=f"Steps (1-{caps.max_steps})", precision=0)
                    vq_size = gr.Number(value=None, label=f"Size px (64-{caps.max_size}; blank: 512 on a GPU, "
                                                          f"256 otherwise)", precision=0)
                    vq_seed = gr.Number(value=0, label="Seed", precision=0)
                    vq_tricks = gr.Radio(["off", "on"], value="off", label="Cutout trick")
                vq_run = buttons("vqgan-", "Generate")
                vq_slots = slot_outputs("vqgan-", "the run (GIF / MP4)")
                vq_run.click(vqgan_clip, inputs=[vq_prompt, vq_name, vq_a, vq_b, vq_steps, vq_size, vq_seed, vq_tricks],
                             outputs=vq_slots, api_name="vqgan_clip", concurrency_limit=1, concurrency_id="device")
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
