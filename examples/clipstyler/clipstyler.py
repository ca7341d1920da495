"""CLIPStyler (Kwon & Ye, CVPR 2022) on a robust CLIP: style one photo after a text.

A port of the reference ``train_CLIPstyler.py``: a small U-Net (:mod:`stylenet`) is trained on a
single content image so that its output moves, in CLIP space, in the direction of the style text
(patch + global directional losses) while keeping the content (VGG19 features) and staying
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
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import torch
import torch.nn.functional as F

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # `import stylenet` also when this file is imported by path
    sys.path.insert(0, _HERE)

from stylenet import SIDE_MULTIPLE, StyleNet  # noqa: E402

from clipag_plugin import vgg as vgg_lib  # noqa: E402
from clipag_plugin.guidance.directional import (  # noqa: E402
    SOURCE_TEXT,
    PatchTricks,
    apply_patches,
    global_directional_loss,
    patch_directional_loss,
    sample_patch_params,
    text_direction,
)

# The trick switches. clipag_plugin.adapters.clipstyler.patch(level=...) replaces this object.
TRICKS = PatchTricks()

REFERENCE_SIZE = 512
CPU_SIZE = 256  # default without CUDA (CPU, MPS), where 512 px steps are slow
MIN_SIDE, MAX_SIDE = 32, 2048
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
# Photos that ship inside scikit-image (offline demos): name -> function in skimage.data.
DEMO_PHOTOS = (
    "astronaut", "coffee", "chelsea", "cat", "rocket", "camera", "hubble_deep_field", "immunohistochemistry",
    "retina", "logo",
)


@dataclass(frozen=True)
class StyleConfig:
    """Everything the loop reads; the defaults are the reference's."""

    steps: int = 200
    lr: float = 5e-4
    lr_step: int = 100
    lr_gamma: float = 0.5
    num_crops: int = 64
    crop_size: Optional[int] = None  # None: a quarter of the shorter side (128 at 512 px)
    distortion: float = 0.5
    lambda_patch: float = 9000.0
    lambda_dir: float = 500.0
    lambda_content: float = 150.0
    lambda_tv: float = 2e-3
    source_text: str = SOURCE_TEXT
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0 or self.num_crops < 1:
            raise ValueError(f"steps={self.steps}, num_crops={self.num_crops}: need steps >= 0 and num_crops >= 1")


# --- content image -------------------------------------------------------------------------

ImageSource = Union[str, Path, "Any"]


def read_image(source: ImageSource, size_hint: Optional[int] = None):
    """A PIL image from a path, a scikit-image demo name, a PIL image, a numpy array or a tensor.

    ``size_hint``: a large JPEG file is decoded at a reduced scale no smaller than this.
    """
    import numpy as np
    from PIL import Image

    if isinstance(source, Image.Image):
        return source
    if isinstance(source, torch.Tensor):
        t = source.detach().cpu().float()
        t = t[0] if t.ndim == 4 and t.shape[0] == 1 else t
        if t.ndim == 3 and t.shape[0] in (1, 2, 3, 4):
            t = t.permute(1, 2, 0)
        if t.ndim == 3 and t.shape[-1] == 1:
            t = t[..., 0]
        source = (t.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    if isinstance(source, np.ndarray):
        array = source
        if array.dtype != np.uint8:
            array = (np.clip(array.astype(np.float64), 0.0, 1.0) * 255).round().astype(np.uint8)
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (1, 2, 3, 4)):
            raise ValueError(f"image array of shape {array.shape}: expected (H, W), (H, W, 3) or (H, W, 4)")
        return Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array)
    path = Path(str(source)).expanduser()
    if path.is_file():
        try:
            image = Image.open(path)
            if size_hint and image.format == "JPEG":
                image.draft("RGB", (size_hint, size_hint))  # decode big photos at 1/2, 1/4 or 1/8 scale
            image.load()
            return image
        except Image.DecompressionBombError as err:
            raise ValueError(
                f"content image {path} is too large to open safely ({err}); downscale it first "
                f"(e.g. to 2048 px), the style net works at {MAX_SIDE} px at most"
            ) from None
        except OSError as err:
            raise ValueError(f"content image {path} is not a readable image ({err})") from None
    if str(source) in DEMO_PHOTOS:
        import skimage.data

        return Image.fromarray(getattr(skimage.data, str(source))())
    raise FileNotFoundError(
        f"content image {str(source)!r} is neither a file nor a bundled photo; give a path or one of "
        f"{', '.join(DEMO_PHOTOS)} (scikit-image's sample photos, available offline)"
    )


def to_rgb(image, label: str = "content image"):
    """Convert any PIL mode to RGB; transparency is composited over white. Warns about what it did."""
    from PIL import Image

    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        warnings.warn(f"{label} has an alpha channel ({image.mode}); composited over white", stacklevel=3)
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("L", "1", "I", "I;16", "F"):
        warnings.warn(f"{label} is grayscale ({image.mode}); repeated to 3 channels", stacklevel=3)
        if image.mode in ("I", "I;16", "F"):
            import numpy as np

            array = np.asarray(image, dtype=np.float64)
            span = float(array.max() - array.min()) or 1.0
            image = Image.fromarray(((array - array.min()) / span * 255).round().astype("uint8"))
        return image.convert("RGB")
    warnings.warn(f"{label} is in mode {image.mode}; converted to RGB", stacklevel=3)
    return image.convert("RGB")


def content_shape(width: int, height: int, size: int, keep_aspect: bool = False) -> tuple[int, int]:
    """``(H, W)`` the image is resized to: ``size`` x ``size`` (as the reference), or the longer
    side = ``size`` with the aspect kept. Sides are rounded down to multiples of 8, with a warning."""
    if not isinstance(size, int) or isinstance(size, bool):
        raise ValueError(f"size must be an integer number of pixels, got {size!r}")
    if size > MAX_SIDE:
        raise ValueError(
            f"size {size} px is too large: the style net and VGG19 run at full resolution (memory grows with "
            f"the square of the side); use --size {MAX_SIDE} or less (the reference uses {REFERENCE_SIZE})"
        )
    if size < MIN_SIDE:
        raise ValueError(f"size {size} px is too small; use at least {MIN_SIDE} (VGG19 pools the image 4 times)")
    if keep_aspect:
        scale = size / max(width, height)
        sides = (max(MIN_SIDE, round(height * scale)), max(MIN_SIDE, round(width * scale)))
    else:
        sides = (size, size)
    rounded = tuple(s - s % SIDE_MULTIPLE for s in sides)
    if rounded != sides:
        warnings.warn(
            f"image sides {sides[1]}x{sides[0]} are not multiples of {SIDE_MULTIPLE} (the style net halves them "
            f"three times); resizing to {rounded[1]}x{rounded[0]}",
            stacklevel=2,
        )
    return rounded  # type: ignore[return-value]


def load_content(source: ImageSource, size: int, keep_aspect: bool = False) -> torch.Tensor:
    """The content image as a ``(1, 3, H, W)`` tensor in [0, 1], sides multiples of 8."""
    import numpy as np
    from PIL import Image

    image = to_rgb(read_image(source, size_hint=size))
    height, width = content_shape(image.width, image.height, size, keep_aspect)
    if image.width < 8 or image.height < 8:
        raise ValueError(f"content image is only {image.width}x{image.height} px; give a real photo")
    if (image.width, image.height) != (width, height):
        image = image.resize((width, height), Image.BICUBIC, reducing_gap=3.0)
    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


# --- losses ---------------------------------------------------------------------------------


def clip_normalize(image: torch.Tensor, clip_model) -> torch.Tensor:
    """Resize (bicubic) to the model's input resolution and apply CLIP's mean/std."""
    size = clip_model.visual.input_resolution
    if image.shape[-2:] != (size, size):
        image = F.interpolate(image, size=(size, size), mode="bicubic", align_corners=False)
    mean = getattr(clip_model, "image_mean", None)
    std = getattr(clip_model, "image_std", None)
    mean = (mean if mean is not None else torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1)).to(image)
    std = (std if std is not None else torch.tensor(OPENAI_STD).view(1, 3, 1, 1)).to(image)
    return (image - mean) / std


def encode(clip_model, image01: torch.Tensor) -> torch.Tensor:
    """Unnormalized float image features of [0, 1] images."""
    return clip_model.encode_image(clip_normalize(image01, clip_model)).float()


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Sum of the L2 norms of horizontal, vertical and both diagonal differences (the reference's prior)."""
    diffs = (
        image[..., :, :-1] - image[..., :, 1:],
        image[..., :-1, :] - image[..., 1:, :],
        image[..., 1:, :-1] - image[..., :-1, 1:],
        image[..., :-1, :-1] - image[..., 1:, 1:],
    )
    return sum(d.norm() for d in diffs)


@dataclass
class Targets:
    """What the losses compare against, computed once from the content image and the text."""

    content_features: dict
    source_features: torch.Tensor
    text_dir: torch.Tensor


@torch.no_grad()
def prepare_targets(content, style_text, clip_model, tokenize, vgg, config: StyleConfig) -> Targets:
    """VGG features and CLIP embedding of the content image; the text direction source -> style."""
    return Targets(
        content_features=vgg_lib.vgg_features(vgg, content),
        source_features=encode(clip_model, content),
        text_dir=text_direction(clip_model, tokenize, style_text, config.source_text),
    )


def crop_side(height: int, width: int, config: StyleConfig) -> int:
    """Patch side: ``config.crop_size``, or a quarter of the shorter side (the reference's 128 at 512)."""
    side = config.crop_size or max(8, min(height, width) * 128 // REFERENCE_SIZE)
    if side > min(height, width):
        raise ValueError(f"crop size {side} is larger than the image ({width}x{height}); lower --crop-size")
    return side


def step_losses(
    target: torch.Tensor,
    targets: Targets,
    clip_model,
    vgg,
    config: StyleConfig,
    tricks: PatchTricks,
    generator: torch.Generator,
) -> dict[str, torch.Tensor]:
    """The four unweighted loss terms of one stylized image ``target``."""
    losses = {
        "content": vgg_lib.content_loss(vgg_lib.vgg_features(vgg, target), targets.content_features),
        "global": global_directional_loss(encode(clip_model, target), targets.source_features, targets.text_dir),
        "tv": total_variation(target),
        "patch": target.new_zeros(()),
    }
    if tricks.patch_loss:
        height, width = target.shape[-2:]
        params = sample_patch_params(
            height, width, config.num_crops, crop_side(height, width, config), config.distortion,
            perspective=tricks.perspective, generator=generator,
        )
        patches = apply_patches(target, params, clip_model.visual.input_resolution)
        losses["patch"] = patch_directional_loss(
            encode(clip_model, patches), targets.source_features, targets.text_dir, tricks.threshold
        )
    return losses


def weighted_total(losses: dict[str, torch.Tensor], config: StyleConfig) -> torch.Tensor:
    """``9000 x patch + 500 x global + 150 x content + 2e-3 x TV`` (with the config's weights)."""
    return (
        config.lambda_patch * losses["patch"]
        + config.lambda_dir * losses["global"]
        + config.lambda_content * losses["content"]
        + config.lambda_tv * losses["tv"]
    )


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

    tricks = tricks if tricks is not None else TRICKS
    device = content.device
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)  # patches: CPU generator, same on any device
    net = (style_net or StyleNet()).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step, gamma=config.lr_gamma)
    targets = targets or prepare_targets(content, style_text, clip_model, tokenize, vgg, config)
    history: list[dict[str, float]] = []
    bar = StepProgress(config.steps, f"stylizing '{style_text}'", progress)  # bar on a terminal, else log lines
    for _ in range(config.steps):
        target = net(content)  # stylize the content image
        losses = step_losses(target, targets, clip_model, vgg, config, tricks, generator)  # four loss terms
        total = weighted_total(losses, config)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        scheduler.step()  # lr x0.5 every 100 steps
        history.append({"total": total.item(), **{k: v.item() for k, v in losses.items()}})
        bar.update(total=history[-1]["total"], patch=history[-1]["patch"])
    bar.close()
    with torch.no_grad():
        image = net(content)
    return image, history, net


def finish_image(image: torch.Tensor) -> torch.Tensor:
    """The reference's output step: clamp to [0, 1], contrast x1.5, then stretch to [0, 1]."""
    from torchvision.transforms.functional import adjust_contrast

    out = adjust_contrast(image.detach().float().clamp(0, 1), 1.5)
    lo, hi = out.amin(), out.amax()
    return (out - lo) / (hi - lo).clamp_min(1e-5)


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
