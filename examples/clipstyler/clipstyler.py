"""CLIPStyler (Kwon & Ye, CVPR 2022) on a robust CLIP: style one photo after a text.

A port of the reference ``train_CLIPstyler.py`` (the loop is :mod:`clipag_plugin.synthesis.styling`):
a small U-Net is trained on a single content image so that its output moves, in CLIP space, in
the direction of the style text (patch + global directional losses) while keeping the content (VGG19 features) and staying
smooth (total variation). It is written the way the original is used (``import clip``,
``clip.load``); ``main`` lets :mod:`clipag_plugin.adapters.clipstyler` stand clipag in for
``clip``, so the robust CLIPAG model guides it, and the embedded "mini" model is used offline.

    python examples/clipstyler/clipstyler.py --content astronaut --style "oil painting" --steps 3 --size 64

Defaults are the reference's: 512 px, 200 steps, Adam lr 5e-4 halved every 100 steps, 64 crops
of 128 px (a quarter of the side) each through a random perspective, threshold 0.7, loss
9000 x patch + 500 x global + 150 x content + 2e-3 x TV. Without CUDA the default size is 256 px.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import torch

from clipag_plugin import vgg as vgg_lib
from clipag_plugin.guidance.directional import PatchTricks, sample_patch_params  # noqa: F401
from clipag_plugin.synthesis.content import (  # noqa: F401  (the reference's pieces, under its names)
    DEMO_PHOTOS,
    MAX_SIDE,
    MIN_SIDE,
    REFERENCE_SIZE,
    content_shape,
    load_content,
    read_image,
    to_rgb,
)
from clipag_plugin.synthesis.stylenet import StyleNet
from clipag_plugin.synthesis.styling import (  # noqa: F401
    StyleConfig,
    Targets,
    clip_normalize,
    crop_side,
    encode,
    finish_image,
    prepare_targets,
    step_losses,
    total_variation,
    weighted_total,
)
from clipag_plugin.synthesis.styling import stylize as stylize_run

# The trick switches. clipag_plugin.adapters.clipstyler.patch(level=...) replaces this object.
TRICKS = PatchTricks()

CPU_SIZE = 256  # default without CUDA (CPU, MPS), where 512 px steps are slow


def stylize(
    content: torch.Tensor,
    style_text: str,
    clip_model,
    tokenize: Callable[[Sequence[str]], torch.Tensor],
    vgg,
    config: StyleConfig = StyleConfig(),
    tricks: Optional[PatchTricks] = None,
    progress: Optional[bool] = None,
    style_net: Optional[StyleNet] = None,
    targets: Optional[Targets] = None,
) -> tuple[torch.Tensor, list[dict[str, float]], StyleNet]:
    """Train a StyleNet on ``content`` ``(1, 3, H, W)`` in [0, 1]; return (image, loss history, net).

    ``tricks`` defaults to the module's :data:`TRICKS` (what the adapter switches); ``targets``
    (from :func:`prepare_targets`) can be passed to reuse them across runs.
    """
    from clipag_plugin.progress import StepProgress

    bar = StepProgress(config.steps, f"stylizing '{style_text}'", progress)  # bar on a terminal, else log lines
    result = stylize_run(content, style_text, clip_model, vgg, config, tokenize=tokenize,
                         tricks=tricks if tricks is not None else TRICKS, style_net=style_net, targets=targets,
                         on_step=lambda frame: bar.update(total=frame.loss, patch=frame.losses["patch"]))
    bar.close()
    return result.image, result.history, result.net


def save_png(image: torch.Tensor, path: Union[str, Path]) -> Path:
    """Write a ``(1, 3, H, W)`` [0, 1] tensor as PNG."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    array = (image[0].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    Image.fromarray(array).save(path)
    return path


# --- command line ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    d = StyleConfig()
    p = argparse.ArgumentParser(
        prog="clipstyler.py", description="CLIPStyler on a robust CLIP: style a photo after a text."
    )
    p.add_argument("--content", required=True, help=f"content image: a file, or one of {', '.join(DEMO_PHOTOS)}")
    p.add_argument("--style", required=True, help="style text, e.g. 'oil painting', 'fire'")
    p.add_argument("--steps", type=int, default=d.steps, help=f"optimization steps (default {d.steps})")
    p.add_argument("--size", type=int, default=None,
                   help=f"side in px, multiple of 8 (default {REFERENCE_SIZE}; {CPU_SIZE} without CUDA)")
    p.add_argument("--keep-aspect", action="store_true", help="longer side = --size instead of a square image")
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    p.add_argument("--model", default="ViT-B/32",
                   help="clipag model name or path (default ViT-B/32 = CLIPAG; offline: the embedded 'mini')")
    p.add_argument("--no-augment", action="store_true", help="no perspective warp on the patches (adapter level a)")
    p.add_argument("--level", choices=("full", "a", "b", "c"), default=None,
                   help="switch the patch tricks off: a no warp, b also no threshold, c global loss only")
    p.add_argument("--crops", type=int, default=d.num_crops, help=f"patches per step (default {d.num_crops})")
    p.add_argument("--crop-size", type=int, default=None, help="patch side in px (default: a quarter of the side)")
    p.add_argument("--lr", type=float, default=d.lr, help=f"Adam learning rate (default {d.lr})")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the network init and the patches")
    p.add_argument("--random-vgg", action="store_true",
                   help="use a RANDOM VGG stand-in when the VGG19 weights are not cached (content loss is then "
                        "not perceptual; for offline demos only)")
    p.add_argument("--out", default=None, help="output PNG (default: <content>_<style>.png)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:60] or "image"


def load_vgg(device: torch.device, allow_random: bool):
    """The pretrained VGG19 features; offline without weights: an error, or the labelled random stand-in."""
    try:
        return vgg_lib.load_vgg19_features(device)
    except OSError as err:
        if not allow_random:
            raise OSError(f"{err} Or pass --random-vgg to run with a random, non-perceptual stand-in.") from err
        print("WARNING: VGG19 weights unavailable; using a RANDOM VGG stand-in (the content loss is not "
              "perceptual, results are for demonstration only).", file=sys.stderr)
        return vgg_lib.random_vgg19_features(device=device)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from clipag_plugin.adapters import clipstyler as adapter

    from clipag_plugin.progress import log_to_stderr

    log_to_stderr(args.no_progress)

    from clipag_plugin.loading import default_device

    device = torch.device(args.device or default_device())
    size = args.size or (REFERENCE_SIZE if device.type == "cuda" else CPU_SIZE)
    if args.size is None and device.type != "cuda":
        print(f"note: running on {device.type}; default size {size} px (the reference uses {REFERENCE_SIZE})")
    level = args.level or ("a" if args.no_augment else "full")
    config = StyleConfig(steps=args.steps, lr=args.lr, num_crops=args.crops, crop_size=args.crop_size,
                         seed=args.seed)
    try:
        content = load_content(args.content, size, keep_aspect=args.keep_aspect).to(device)
        with adapter.patch(level=level, modules=[sys.modules[__name__]]):
            import clip  # clipag, standing in for OpenAI's package

            vgg = load_vgg(device, args.random_vgg)  # first: fails fast when the weights are missing
            clip_model, _preprocess = clip.load(args.model, device, jit=False)
            used_model = getattr(clip, "last_loaded", None) or args.model
            image, history, _ = stylize(content, args.style, clip_model.float(), clip.tokenize, vgg, config,
                                        progress=False if args.no_progress else None)
            tricks = TRICKS
    except (OSError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out or f"{_slug(Path(str(args.content)).stem)}_{_slug(args.style)}.png")
    save_png(finish_image(image), out)
    record = {
        "content": str(args.content), "style": args.style, "size": list(content.shape[-2:]), "device": str(device),
        "model": used_model, "vgg": "RANDOM stand-in" if getattr(vgg, "is_random_stand_in", False) else "vgg19",
        "level": level, "tricks": asdict(tricks), "config": asdict(config),
        "final_losses": history[-1] if history else None,
    }
    out.with_suffix(".json").write_text(json.dumps(record, indent=2))
    final = f"total {history[-1]['total']:.2f}" if history else "no steps"
    print(f"saved {out} ({final}; model {used_model}; level {level})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
