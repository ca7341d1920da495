#!/usr/bin/env python
"""VQGAN+CLIP: optimize VQGAN latents until CLIP sees the prompt (a port of the reference CLI).

Katherine Crowson's method as packaged by nerdyrodent/VQGAN-CLIP's ``generate.py``, run on
clipag's robust CLIP: ``import clip`` is swapped for clipag (``--openai-clip`` keeps OpenAI's).

    python examples/vqgan_clip/vqgan_clip.py "a red circle" --steps 5
    python examples/vqgan_clip/vqgan_clip.py -p "a fox:1 | blurry:-0.5" -cutm original -o fox.png --gif fox.gif
    python examples/vqgan_clip/vqgan_clip.py "a lighthouse" --no-trick     # one whole-image cutout

Defaults are the reference's: 512 px (256 on CPU), Adam lr 0.1, 500 steps, ViT-B/32,
vqgan_imagenet_f16_16384, 32 cutouts of the "latest" kind, cut_pow 1. Offline, CLIP falls back
to clipag's embedded "mini" model (with a warning); a missing VQGAN is an error unless
``--random-vqgan`` allows an UNTRAINED random VQGAN (smoke runs only; its pictures are noise).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch

try:
    with warnings.catch_warnings():  # clip-anytorch imports pkg_resources, which warns on every import
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        import clip  # OpenAI's package; main() swaps it for clipag unless --openai-clip
except ImportError:  # OpenAI's clip is not installed: clipag is the drop-in
    import clipag as clip

from clipag_plugin import vqgan as vq
from clipag_plugin.guidance.cutouts import CUTOUT_MODES, Cutouts
from clipag_plugin.guidance.prompts import parse_prompts
from clipag_plugin.synthesis.latents import LatentConfig, LatentTargets, text_targets, vqgan_clip_iter

# OpenAI CLIP's normalization, as the reference hard-codes it (the adapter swaps in the model's own).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def normalize(image01: torch.Tensor) -> torch.Tensor:
    """CLIP's input normalization of images in [0, 1]."""
    mean = torch.tensor(CLIP_MEAN, device=image01.device, dtype=image01.dtype).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=image01.device, dtype=image01.dtype).view(1, 3, 1, 1)
    return (image01 - mean) / std


def make_cutouts(cut_method: str, cut_size: int, cutn: int, cut_pow: float = 1.0) -> Cutouts:
    """The reference's ``MakeCutouts*`` classes, chosen by ``--cut_method``."""
    return Cutouts(cut_size, cutn, cut_pow, mode=cut_method)


def default_size() -> int:
    """The reference's default side: 512 px on a GPU, 256 px on the CPU."""
    return 512 if torch.cuda.is_available() else 256


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Image generation using VQGAN+CLIP (on clipag's robust CLIP)")
    p.add_argument("text", nargs="*", help="text prompts (joined with '|'); same as -p")
    p.add_argument("-p", "--prompts", default=None, help="text prompts 'text:weight:stop | ...'")
    p.add_argument("-ip", "--image_prompts", default=None, help="image prompts 'path:weight:stop | ...'")
    p.add_argument("-i", "--iterations", "--steps", type=int, default=500, dest="steps", help="optimization steps")
    p.add_argument("-se", "--save_every", type=int, default=50, help="write the image every N steps")
    p.add_argument("-s", "--size", nargs=2, type=int, default=None, metavar=("W", "H"),
                   help="image size (default 512 512; 256 256 on CPU)")
    p.add_argument("-ii", "--init_image", default=None, help="start from this image instead of random codes")
    p.add_argument("-iw", "--init_weight", type=float, default=0.0, help="pull towards the initial latents")
    p.add_argument("-m", "--clip_model", default="ViT-B/32", help="CLIP model name or path")
    p.add_argument("--vqgan", default=vq.DEFAULT_VQGAN,
                   help=f"VQGAN name ({', '.join(vq.VQGAN_REGISTRY)}, hf-hub:org/repo, a folder, or 'random')")
    p.add_argument("-conf", "--vqgan_config", default=None, help="local VQGAN config YAML (with -ckpt)")
    p.add_argument("-ckpt", "--vqgan_checkpoint", default=None, help="local VQGAN checkpoint (with -conf)")
    p.add_argument("--random-vqgan", action="store_true",
                   help="if the VQGAN weights are unavailable, use an UNTRAINED random VQGAN (smoke runs only)")
    p.add_argument("-lr", "--learning_rate", type=float, default=0.1, help="Adam learning rate")
    p.add_argument("-cutm", "--cut_method", choices=CUTOUT_MODES, default="latest", help="cutout method")
    p.add_argument("-cuts", "--num_cuts", type=int, default=32, dest="cutn", help="number of cutouts")
    p.add_argument("-cutp", "--cut_power", type=float, default=1.0, dest="cut_pow", help="cutout size power")
    p.add_argument("-sd", "--seed", type=int, default=None, help="random seed")
    p.add_argument("-o", "--output", default="output.png", help="output PNG")
    p.add_argument("--gif", default=None, help="also write the optimization as an animated GIF")
    p.add_argument("-vid", "--video", action="store_true", help="write every step as steps/NNNN.png")
    p.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    p.add_argument("--openai-clip", action="store_true", help="use the installed OpenAI clip, not clipag")
    p.add_argument("--no-trick", action="store_true",
                   help="switch the cutout trick off (one whole-image cutout, no augmentation, no noise)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


@dataclass
class Run:
    """What a run produced: the per-step losses and the written files."""

    losses: list[float] = field(default_factory=list)
    output: Optional[Path] = None
    gif: Optional[Path] = None
    vqgan: str = ""
    clip_model: str = ""


def load_vqgan_model(args: argparse.Namespace, device: torch.device) -> torch.nn.Module:
    """The VQGAN named by the flags; the random one only when asked for."""
    if args.vqgan == "random":
        return _random_vqgan(device)
    try:
        return vq.load_vqgan(args.vqgan, device=device, vqgan_config=args.vqgan_config,
                             vqgan_checkpoint=args.vqgan_checkpoint)
    except OSError as err:
        if not args.random_vqgan:
            raise SystemExit(
                f"VQGAN {args.vqgan!r} is not available: {str(err).splitlines()[0]}\n"
                f"Download it on a connected machine (python -m clipag_plugin.vqgan download {args.vqgan}), "
                f"pass -conf/-ckpt, or add --random-vqgan for an untrained smoke-test VQGAN."
            ) from err
        return _random_vqgan(device)


def _random_vqgan(device: torch.device) -> torch.nn.Module:
    warnings.warn(
        "USING AN UNTRAINED RANDOM VQGAN (clipag_plugin.vqgan.TINY_CONFIG): the pictures will be noise; "
        "this is for smoke tests only.", stacklevel=2,
    )
    return vq.random_vqgan().to(device)


def read_image(path: str, size: tuple[int, int]) -> torch.Tensor:
    """An image file as a ``(1, 3, H, W)`` tensor in [0, 1], resized to ``size`` (W, H)."""
    import numpy as np
    from PIL import Image

    image = Image.open(path).convert("RGB").resize(size, Image.LANCZOS)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float().div(255).unsqueeze(0)


def to_pil(image01: torch.Tensor):
    from PIL import Image

    array = image01[0].detach().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array)


def save_png(image01: torch.Tensor, path: Path, comment: str) -> None:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("comment", comment)
    to_pil(image01).save(path, pnginfo=info)


def run(args: argparse.Namespace) -> Run:
    """The reference's optimization loop; returns the per-step losses and the output paths."""
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    seed = torch.seed() if args.seed is None else args.seed
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    text = " | ".join(t for t in (" ".join(args.text), args.prompts or "") if t.strip())
    prompts = parse_prompts(text) if text else []
    image_prompts = parse_prompts(args.image_prompts) if args.image_prompts else []
    if not prompts and not image_prompts:
        raise SystemExit("give a text prompt (e.g. \"a red circle\") or --image_prompts")

    model = load_vqgan_model(args, device)
    perceptor = clip.load(args.clip_model, jit=False)[0].eval().requires_grad_(False).to(device)
    cut_size = perceptor.visual.input_resolution
    f = vq.downsample_factor(model)
    make = make_cutouts(args.cut_method, cut_size, args.cutn, cut_pow=args.cut_pow)
    width, height = args.size or (default_size(), default_size())
    toks_x, toks_y = width // f, height // f
    side_x, side_y = toks_x * f, toks_y * f
    print(f"Using device: {device}; seed {seed}; {side_x}x{side_y} px; CLIP {getattr(clip, 'last_loaded', None) or args.clip_model}; "
          f"cutouts {make.extra_repr()}")

    # targets: text embeddings and image-prompt cutout embeddings, one weight and stop per row
    targets = text_targets(prompts, perceptor, clip.tokenize) if prompts else None
    for prompt in image_prompts:
        image = read_image(prompt.text, (side_x, side_y)).to(device)
        e = perceptor.encode_image(normalize(make(image, generator=generator))).float().detach()
        rows = LatentTargets(e, [prompt.weight / e.shape[0]] * e.shape[0], [prompt.stop] * e.shape[0])  # mean
        targets = rows if targets is None else targets + rows
    # z: random codebook entries, or the encoding of the initial image
    init = vq.encode_latents(model, read_image(args.init_image, (side_x, side_y)).to(device)) \
        if args.init_image else None
    config = LatentConfig(width=side_x, height=side_y, steps=args.steps, lr=args.learning_rate,
                          cut_method=args.cut_method, cutn=args.cutn, cut_pow=args.cut_pow,
                          init_weight=args.init_weight, seed=seed)

    result = Run(vqgan=args.vqgan, clip_model=str(getattr(clip, "last_loaded", None) or args.clip_model))
    result.output = Path(args.output)
    frames = []
    steps_dir = Path("steps")
    if args.video:
        steps_dir.mkdir(exist_ok=True)
    from clipag_plugin.progress import StepProgress

    # a bar on a terminal; elsewhere a log line at every save
    bar = StepProgress(args.steps + 1, "vqgan+clip", False if args.quiet else None, every=args.save_every)
    # the module's make_cutouts and normalize (what the adapter switches) make and normalize the views
    for frame in vqgan_clip_iter(targets, perceptor, model, config, cutouts=make, normalize=normalize,
                                 init_latents=init, generator=generator):
        out = frame.image[None]
        result.losses.append(frame.loss)
        bar.update(loss=frame.loss)
        if frame.step % args.save_every == 0 or frame.step == args.steps:
            save_png(out, result.output, text or args.image_prompts)
        if args.video:
            to_pil(out).save(steps_dir / f"{frame.step:04d}.png")
        if args.gif:
            frames.append(to_pil(out))

    bar.close()
    if args.gif and frames:
        result.gif = Path(args.gif)
        frames[0].save(result.gif, save_all=True, append_images=frames[1:], duration=max(20, 4000 // len(frames)), loop=0)
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    from clipag_plugin.progress import log_to_stderr

    args = build_parser().parse_args(argv)
    log_to_stderr(args.quiet)  # the model choice and, off a terminal, the step lines
    if args.openai_clip:
        run(args)
        return 0
    from clipag_plugin.adapters import vqgan_clip as adapter

    trick_off = bool(args.no_trick)
    with adapter.patch(sys.modules[__name__], single_cutout=trick_off, no_augment=trick_off, no_noise=trick_off):
        run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
