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
import random
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

try:
    with warnings.catch_warnings():  # clip-anytorch imports pkg_resources, which warns on every import
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        import clip  # OpenAI's CLIP, exactly as in the notebook (the adapter swaps it for clipag)
except ImportError:  # not installed: the one-line swap does the same
    import clipag as clip

from clipag_plugin.guidance.warp import apply_clipdraw_warp, sample_clipdraw_warp
from clipag_plugin.progress import StepProgress, log_to_stderr
from clipag_plugin.render import StrokeScene, render

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
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class Drawing:
    """What a CLIPDraw run leaves: the strokes, the final picture and the loss per step."""

    scene: StrokeScene
    image: torch.Tensor  # (3, H, W) in [0, 1], over white
    losses: list[float] = field(default_factory=list)


def init_curves(num_paths: int, width: int, height: int, rng: random.Random, device="cpu"):
    """The notebook's random start: 1-3 segments per path, each control point within +-0.05 of
    the previous one (in canvas units), width 1.0, uniform random RGBA."""
    points, widths, colors = [], [], []
    for _ in range(num_paths):
        num_segments = rng.randint(1, 3)
        p0 = (rng.random(), rng.random())
        path = [p0]
        for _ in range(num_segments):
            radius = 0.1
            p1 = (p0[0] + radius * (rng.random() - 0.5), p0[1] + radius * (rng.random() - 0.5))
            p2 = (p1[0] + radius * (rng.random() - 0.5), p1[1] + radius * (rng.random() - 0.5))
            p3 = (p2[0] + radius * (rng.random() - 0.5), p2[1] + radius * (rng.random() - 0.5))
            path += [p1, p2, p3]
            p0 = p3
        pts = torch.tensor(path) * torch.tensor([float(width), float(height)])
        points.append(pts.to(device).requires_grad_())
        widths.append(torch.tensor(1.0, device=device).requires_grad_())
        colors.append(torch.tensor([rng.random() for _ in range(4)], device=device).requires_grad_())
    return points, widths, colors


def clip_input(images: torch.Tensor, model, normalize: bool) -> torch.Tensor:
    """Normalize with the model's own mean/std (OpenAI's for OpenAI's CLIP) when asked."""
    if not normalize:
        return images
    if hasattr(model, "normalize"):  # clipag models know their checkpoint's statistics
        return model.normalize(images)
    mean = torch.tensor(OPENAI_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def augment(image: torch.Tensor, size: int, use_augment: bool, copies: int, generator: torch.Generator) -> torch.Tensor:
    """``copies`` views through RandomPerspective(0.5, white) + RandomResizedCrop(size, 0.7-0.9), or one plain view."""
    if not use_augment:
        if image.shape[-1] != size or image.shape[-2] != size:
            image = F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return image
    params = sample_clipdraw_warp(copies, image.shape[-2], image.shape[-1], generator=generator)
    return apply_clipdraw_warp(image, params, size=size)


def drawing_loss(image_features: torch.Tensor, text_features: torch.Tensor,
                 neg_features: Optional[torch.Tensor] = None, neg_weight: float = NEG_WEIGHT) -> torch.Tensor:
    """Minus the summed cosine to the prompt over the copies (+ ``neg_weight`` x cosine to each negative)."""
    image_features = image_features.float()
    loss = -torch.cosine_similarity(text_features.float(), image_features, dim=1).sum()
    if neg_features is not None:
        for neg in neg_features.float():
            loss = loss + neg_weight * torch.cosine_similarity(neg[None], image_features, dim=1).sum()
    return loss


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

    ``augment_images``/``normalize`` default to the module's ``USE_AUGMENT``/``USE_NORMALIZED_CLIP``.
    ``on_step(t, image, loss)`` is called after every step (frames, logging).
    """

    use_augment = USE_AUGMENT if augment_images is None else augment_images
    use_normalize = USE_NORMALIZED_CLIP if normalize is None else normalize
    size = int(model.visual.input_resolution)
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)

    # Text features, once.
    with torch.no_grad():
        text_features = model.encode_text(clip.tokenize(prompt).to(device))
        neg_features = model.encode_text(clip.tokenize(list(neg_prompts)).to(device)) if neg_prompts else None

    # Random curves and the three optimizers.
    points_vars, width_vars, color_vars = init_curves(num_paths, canvas, canvas, rng, device)
    points_optim = torch.optim.Adam(points_vars, lr=1.0)
    width_optim = torch.optim.Adam(width_vars, lr=0.1)
    color_optim = torch.optim.Adam(color_vars, lr=0.01)

    losses: list[float] = []
    bar = StepProgress(num_iter, "clipdraw", progress)  # a bar on a terminal, a log line every 25 steps elsewhere
    for t in range(num_iter):
        # Anneal the points' learning rate (x0.4 at half way, x0.1 at three quarters).
        if t == int(num_iter * 0.5):
            for g in points_optim.param_groups:
                g["lr"] = 0.4
        if t == int(num_iter * 0.75):
            for g in points_optim.param_groups:
                g["lr"] = 0.1
        for opt in (points_optim, width_optim, color_optim):
            opt.zero_grad()

        # Render over white, augment, encode once, score against the prompt.
        scene = StrokeScene.from_paths(points_vars, width_vars, color_vars, canvas, canvas)
        img = render(scene, backend=backend).unsqueeze(0)
        im_batch = augment(img, size, use_augment, NUM_AUGS, generator)
        image_features = model.encode_image(clip_input(im_batch, model, use_normalize))
        loss = drawing_loss(image_features, text_features, neg_features, neg_weight)

        # Step, then keep widths in [1, 50] and colours in [0, 1].
        loss.backward()
        points_optim.step()
        width_optim.step()
        color_optim.step()
        with torch.no_grad():
            for w in width_vars:
                w.clamp_(1.0, MAX_WIDTH)
            for c in color_vars:
                c.clamp_(0.0, 1.0)

        losses.append(loss.item())
        bar.update(loss=losses[-1])
        if on_step is not None:
            on_step(t, img[0].detach(), losses[-1])

    bar.close()
    with torch.no_grad():
        scene = StrokeScene.from_paths([p.detach() for p in points_vars], [w.detach() for w in width_vars],
                                       [c.detach() for c in color_vars], canvas, canvas)
        image = render(scene, backend=backend)
    return Drawing(scene, image.cpu(), losses)


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
