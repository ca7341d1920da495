"""CLIPDraw: text to drawing by optimizing vector strokes against CLIP (Frans, Soros & Witkowski, 2021).

A port of the reference notebook ("Curve Optimizer" cell), written the way the notebook uses CLIP:
``import clip`` and ``clip.load("ViT-B/32")``. Run as a script it draws with clipag's CLIPAG model
(through ``clipag_plugin.adapters.clipdraw``; offline it falls back to the embedded mini model); the
strokes are rendered by clipag's pure-PyTorch rasterizer, so pydiffvg is not needed.

    python examples/clipdraw/clipdraw.py "a red circle" --steps 20
    python examples/clipdraw/clipdraw.py "Watercolor painting of an underwater submarine." --no-augment

The adapter switches the module-level hooks ``clip``, ``USE_AUGMENT`` and ``USE_NORMALIZED_CLIP``
(``NUM_AUGS`` sets how many copies the augmentation trick makes); see docs/adapters.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

try:
    with warnings.catch_warnings():  # clip-anytorch imports pkg_resources, which warns on every import
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        import clip  # OpenAI's CLIP, exactly as in the notebook (the adapter swaps it for clipag)
except ImportError:  # not installed: the one-line swap does the same
    import clipag as clip

from clipag_plugin.progress import StepProgress, log_to_stderr
from clipag_plugin.synthesis.strokes import (  # noqa: F401  (the notebook's pieces, under its names)
    DrawConfig,
    Drawing,
    augment,
    clip_input,
    draw,
    drawing_loss,
    init_curves,
)

# --- hooks that clipag_plugin.adapters.clipdraw.patch() switches ------------------------------
NUM_AUGS = 4  # augmented copies per step (the notebook's augmentation trick)
USE_AUGMENT = True  # False: one un-augmented copy per step (what CLIPAG's aligned gradients allow)
# The notebook left this False ("we don't normalize images before passing into CLIP, but really
# you should"). CLIP, and CLIPAG's robust fine-tuning, saw normalized pixels: without it the
# drawing is scored off the model's input distribution, and CLIPAG's gradients are aligned only
# around the inputs it was trained on. So it is on here; --no-normalize restores the notebook.
USE_NORMALIZED_CLIP = True

# --- the notebook's defaults -------------------------------------------------------------------
NUM_PATHS = 256
NUM_ITER = 1000
CANVAS = 224
MAX_WIDTH = 50.0
NEG_WEIGHT = 0.3
NEG_PROMPTS = ("A badly drawn sketch.", "Many ugly, messy drawings.")


def clipdraw(
    prompt: str,
    model,
    *,
    num_iter: int = NUM_ITER,
    num_paths: int = NUM_PATHS,
    canvas: int = CANVAS,
    seed: int = 0,
    device="cpu",
    neg_prompts: Sequence[str] = (),
    neg_weight: float = NEG_WEIGHT,
    augment_images: Optional[bool] = None,
    normalize: Optional[bool] = None,
    backend: str = "auto",
    on_step: Optional[Callable[[int, torch.Tensor, float], None]] = None,
    progress: Optional[bool] = None,
) -> Drawing:
    """Optimize ``num_paths`` strokes so that CLIP ``model`` matches the drawing to ``prompt``.

    ``augment_images``/``normalize`` default to the module's ``USE_AUGMENT``/``USE_NORMALIZED_CLIP``,
    and the copies per step to ``NUM_AUGS``, read when called (the switches the adapter sets).
    ``on_step(t, image, loss)`` is called after every step (frames, logging).
    """
    config = DrawConfig(
        paths=num_paths, steps=num_iter, canvas=canvas, seed=seed, max_width=MAX_WIDTH, copies=NUM_AUGS,
        augment=USE_AUGMENT if augment_images is None else augment_images,
        normalize=USE_NORMALIZED_CLIP if normalize is None else normalize,
        neg_prompts=tuple(neg_prompts), neg_weight=neg_weight,
    )
    bar = StepProgress(num_iter, "clipdraw", progress)  # a bar on a terminal, a log line every 25 steps elsewhere

    def step(t: int, image: torch.Tensor, loss: float) -> None:
        bar.update(loss=loss)
        if on_step is not None:
            on_step(t, image, loss)

    try:
        return draw(prompt, model, config, device=device, tokenize=clip.tokenize, backend=backend, on_step=step)
    finally:
        bar.close()


# --- command line ---------------------------------------------------------------------------------
def _to_pil(image: torch.Tensor):
    from PIL import Image

    array = (image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype("uint8")
    return Image.fromarray(array)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clipdraw", description="CLIPDraw: draw a text prompt with vector strokes.")
    p.add_argument("prompt", help="what to draw, e.g. 'Watercolor painting of an underwater submarine.'")
    p.add_argument("--steps", type=int, default=NUM_ITER, help=f"optimization steps (default {NUM_ITER})")
    p.add_argument("--paths", type=int, default=NUM_PATHS, help=f"number of strokes (default {NUM_PATHS})")
    p.add_argument("--canvas", type=int, default=CANVAS, help=f"canvas side in pixels (default {CANVAS})")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    p.add_argument("--model", default="ViT-B/32", help="model name for clip.load (default ViT-B/32)")
    p.add_argument("--clip", choices=("clipag", "openai"), default="clipag",
                   help="clipag: swap `clip` for clipag via the adapter (default); openai: the installed OpenAI clip")
    p.add_argument("--no-augment", action="store_true",
                   help=f"one un-augmented copy per step instead of {NUM_AUGS} augmented ones")
    p.add_argument("--no-normalize", action="store_true",
                   help="feed raw [0,1] pixels to CLIP, as the notebook did. Normalization is on by default: "
                        "CLIP and CLIPAG were trained on normalized inputs, and the notebook's authors say it should be")
    p.add_argument("--negative", action="store_true",
                   help=f"use the notebook's negative prompts {list(NEG_PROMPTS)} (weight {NEG_WEIGHT})")
    p.add_argument("--neg-prompt", action="append", default=[], help="an extra negative prompt (repeatable)")
    p.add_argument("--backend", choices=("auto", "torch", "diffvg"), default="auto", help="stroke rasterizer")
    p.add_argument("--output", "-o", default="clipdraw.png", help="PNG path; the SVG goes beside it")
    p.add_argument("--frames", default=None, help="folder for a PNG every --frame-every steps")
    p.add_argument("--frame-every", type=int, default=5, help="steps between frames (default 5, as the notebook)")
    p.add_argument("--gif", default=None, help="also write the frames as an animated GIF here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    log_to_stderr(args.quiet)  # the model choice and, off a terminal, the step lines
    if args.steps < 1 or args.paths < 1 or args.canvas < 8 or args.frame_every < 1:
        raise SystemExit("clipdraw: --steps, --paths and --frame-every must be >= 1, --canvas >= 8")
    this = sys.modules[__name__]
    if args.clip == "clipag":
        from clipag_plugin.adapters.clipdraw import patch

        # Only the module swap: augmentation and normalization stay as the flags say.
        with patch(augment=None, normalize=None, app=this):
            return _run(args)
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    from clipag_plugin.loading import default_device

    device = torch.device(args.device or default_device())
    model, _preprocess = clip.load(args.model, device, jit=False)
    used = getattr(clip, "last_loaded", None) or args.model
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    frames: list = []
    frame_dir = Path(args.frames) if args.frames else None
    if frame_dir:
        frame_dir.mkdir(parents=True, exist_ok=True)

    def on_step(t: int, image: torch.Tensor, loss: float) -> None:
        if (frame_dir or args.gif) and t % args.frame_every == 0:
            pil = _to_pil(image)
            if frame_dir:
                pil.save(frame_dir / f"iter_{t // args.frame_every:04d}.png")
            if args.gif:
                frames.append(pil)

    negatives = list(NEG_PROMPTS if args.negative else ()) + list(args.neg_prompt)
    drawing = clipdraw(
        args.prompt, model, num_iter=args.steps, num_paths=args.paths, canvas=args.canvas, seed=args.seed,
        device=device, neg_prompts=negatives, augment_images=False if args.no_augment else None,
        normalize=False if args.no_normalize else None, backend=args.backend, on_step=on_step,
        progress=False if args.quiet else None,
    )
    _to_pil(drawing.image).save(out)
    drawing.scene.save_svg(out.with_suffix(".svg"))
    if args.gif and frames:
        frames.append(_to_pil(drawing.image))
        frames[0].save(args.gif, save_all=True, append_images=frames[1:], duration=80, loop=0)
    config = {k: v for k, v in vars(args).items()}
    config.update(model_used=used, augment=USE_AUGMENT and not args.no_augment,
                  normalize=USE_NORMALIZED_CLIP and not args.no_normalize, final_loss=drawing.losses[-1])
    out.with_suffix(".json").write_text(json.dumps(config, indent=2))
    print(f"clipdraw: model {used}, final loss {drawing.losses[-1]:.4f}; wrote {out}, {out.with_suffix('.svg')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
