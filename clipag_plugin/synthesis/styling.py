"""CLIPStyler: style one photo after a text by training a small U-Net against a CLIP (Kwon & Ye 2022).

The reference ``train_CLIPstyler.py`` as a library loop: a :class:`~.stylenet.StyleNet` is trained
on a single content image so that its output moves, in CLIP space, from the photo in the direction
of the style text (patch + global directional losses) while keeping the content (features of a
VGG19) and staying smooth (total variation). The patch tricks (perspective warp, threshold
rejection, the patch loss itself) are one :class:`~clipag_plugin.guidance.directional.PatchTricks`
switch: a robust encoder does without them. :func:`stylize_iter` streams frames (for a page or a
progress display); :func:`stylize` returns the finished :class:`Stylized`. The bundled
``examples/clipstyler/clipstyler.py`` is this loop behind the reference's command line.

Each model gets styling settings of its own, as generation presets do (:data:`STYLE_PRESETS`,
:func:`style_preset_for`): the reference's for the full-size CLIPs; for the mini models a 64 px
image, lighter CLIP losses and a seeded random VGG19 as the content network (their world is flat
shapes, whose edges random filters keep; it runs offline), chosen by measurement with the world's
judge (docs/adapters.md, "Styling presets").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from .. import vgg as vgg_lib
from ..guidance.directional import (
    SOURCE_TEXT,
    PatchTricks,
    apply_patches,
    global_directional_loss,
    patch_directional_loss,
    sample_patch_params,
    text_direction,
)
from ..guidance.templates import IMAGENET_TEMPLATES
from ..preprocess import OPENAI_MEAN, OPENAI_STD
from ..tokenizer import tokenizer_for
from .content import REFERENCE_SIZE
from .stylenet import StyleNet

__all__ = ["StyleConfig", "STYLE_PRESETS", "style_preset_for", "CONTENT_NETS", "content_network", "Targets",
           "Stylized", "StyleFrame", "clip_normalize", "encode", "total_variation", "prepare_targets", "crop_side",
           "step_losses", "weighted_total", "stylize_iter", "stylize", "finish_image", "with_options"]

CONTENT_NETS = ("vgg19", "random-vgg19")


@dataclass(frozen=True)
class StyleConfig:
    """Every setting of a stylization; the defaults are the reference's.

    Args:
        size: working side in pixels (the longer side with ``keep_aspect``), a multiple of 8.
        steps: optimization steps.
        lr, lr_step, lr_gamma: Adam's learning rate, halved (``lr_gamma``) every ``lr_step`` steps.
        num_crops: patches per step for the patch loss.
        crop_size: patch side (None: a quarter of the shorter side, the reference's 128 at 512 px).
        distortion: the perspective warp's strength.
        lambda_patch, lambda_dir, lambda_content, lambda_tv: the loss weights.
        source_text: the text the photo is described by; the style direction starts there.
        templates: average each text over the 79 ImageNet templates (False: the texts as given).
        seed: the network's initialisation and the patches.
        tricks: the patch tricks (the reference: all on).
        content_net: ``"vgg19"`` (ImageNet weights, fetched once) or ``"random-vgg19"`` (seeded, offline).
    """

    size: int = REFERENCE_SIZE
    steps: int = 200
    lr: float = 5e-4
    lr_step: int = 100
    lr_gamma: float = 0.5
    num_crops: int = 64
    crop_size: Optional[int] = None
    distortion: float = 0.5
    lambda_patch: float = 9000.0
    lambda_dir: float = 500.0
    lambda_content: float = 150.0
    lambda_tv: float = 2e-3
    source_text: str = SOURCE_TEXT
    templates: bool = True
    seed: int = 0
    tricks: PatchTricks = field(default_factory=PatchTricks)
    content_net: str = "vgg19"

    def __post_init__(self) -> None:
        if self.steps < 0 or self.num_crops < 1:
            raise ValueError(f"steps={self.steps}, num_crops={self.num_crops}: need steps >= 0 and num_crops >= 1")
        if self.content_net not in CONTENT_NETS:
            raise ValueError(f"content_net={self.content_net!r}: choose one of {', '.join(CONTENT_NETS)}")


# Styling settings per model family; the registry's mini models work at their world's 64 px.
STYLE_PRESETS: dict[str, StyleConfig] = {
    "reference": StyleConfig(),
    "mini": StyleConfig(size=64, steps=100, lr=2e-3, num_crops=16, crop_size=32, lambda_patch=900.0,
                        lambda_dir=50.0, source_text="a picture", tricks=PatchTricks(perspective=False),
                        content_net="random-vgg19"),
}


def style_preset_for(model: Union[str, Any]) -> str:
    """The name of the styling preset for a model (by name, or loaded with a ``name``)."""
    name = model if isinstance(model, str) else getattr(model, "name", "")
    from ..registry import REGISTRY

    entry = REGISTRY.get(name)
    return "mini" if entry is not None and entry.preset == "mini" else "reference"


def with_options(config: StyleConfig, **changes: Any) -> StyleConfig:
    """``config`` with the given fields changed (None values are ignored)."""
    return dataclasses.replace(config, **{k: v for k, v in changes.items() if v is not None})


def content_network(config: StyleConfig, device: Union[str, torch.device] = "cpu") -> torch.nn.Sequential:
    """The content network ``config`` names, frozen on ``device``.

    Raises:
        clipag_plugin.hub.OfflineError: ``"vgg19"`` offline without the weights cached (the
            message names ``python -m clipag_plugin.vgg``).
    """
    if config.content_net == "random-vgg19":
        return vgg_lib.random_vgg19_features(seed=0, device=device)
    return vgg_lib.load_vgg19_features(device)


# --- losses ---------------------------------------------------------------------------------


def clip_normalize(image: torch.Tensor, clip_model: Any) -> torch.Tensor:
    """Resize (bicubic) to the model's input resolution and apply the model's mean/std (OpenAI's by default)."""
    size = clip_model.visual.input_resolution
    if image.shape[-2:] != (size, size):
        image = F.interpolate(image, size=(size, size), mode="bicubic", align_corners=False)
    mean = getattr(clip_model, "image_mean", None)
    std = getattr(clip_model, "image_std", None)
    mean = (mean if mean is not None else torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1)).to(image)
    std = (std if std is not None else torch.tensor(OPENAI_STD).view(1, 3, 1, 1)).to(image)
    return (image - mean) / std


def encode(clip_model: Any, image01: torch.Tensor) -> torch.Tensor:
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
def prepare_targets(content: torch.Tensor, style_text: str, clip_model: Any, tokenize: Optional[Callable],
                    vgg: torch.nn.Module, config: StyleConfig) -> Targets:
    """Content-network features and CLIP embedding of the content image; the text direction source -> style."""
    return Targets(
        content_features=vgg_lib.vgg_features(vgg, content),
        source_features=encode(clip_model, content),
        text_dir=text_direction(clip_model, tokenizer_for(clip_model, tokenize), style_text, config.source_text,
                                IMAGENET_TEMPLATES if config.templates else ("{}",)),
    )


def crop_side(height: int, width: int, config: StyleConfig) -> int:
    """Patch side: ``config.crop_size``, or a quarter of the shorter side (the reference's 128 at 512)."""
    side = config.crop_size or max(8, min(height, width) * 128 // REFERENCE_SIZE)
    if side > min(height, width):
        raise ValueError(f"crop size {side} is larger than the image ({width}x{height}); lower the crop size")
    return side


def step_losses(
    target: torch.Tensor,
    targets: Targets,
    clip_model: Any,
    vgg: torch.nn.Module,
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


@dataclass
class StyleFrame:
    """One step of a running stylization (as :func:`stylize_iter` yields it)."""

    step: int  # updates done
    total: int
    loss: float
    image: torch.Tensor  # (3, H, W) the stylized image this step scored, in [0, 1]
    losses: dict[str, float] = field(default_factory=dict)


@dataclass
class Stylized:
    """What a stylization leaves: the image, the loss terms per step and the trained network."""

    image: torch.Tensor  # (1, 3, H, W) in [0, 1], before :func:`finish_image`
    history: list[dict[str, float]]
    net: StyleNet
    config: StyleConfig


def stylize_iter(
    content: torch.Tensor,
    style_text: str,
    clip_model: Any,
    vgg: torch.nn.Module,
    config: StyleConfig = StyleConfig(),
    *,
    tokenize: Optional[Callable[[Sequence[str]], torch.Tensor]] = None,
    tricks: Optional[PatchTricks] = None,
    every: int = 1,
    style_net: Optional[StyleNet] = None,
    targets: Optional[Targets] = None,
) -> Generator[StyleFrame, None, Stylized]:
    """Train a StyleNet on ``content``: a :class:`StyleFrame` every ``every`` steps (and the last), the
    :class:`Stylized` at the end (``StopIteration.value``; :func:`stylize` collects it). Closing the
    generator stops the run.

    Args:
        content: ``(1, 3, H, W)`` in [0, 1], sides multiples of 8 (:func:`~.content.load_content`).
        style_text: the style, e.g. ``"oil painting"``.
        clip_model: a CLIP with ``encode_image``/``encode_text`` and ``visual.input_resolution``.
        vgg: the content network (:func:`content_network`).
        config: the settings (``config.size`` is not read: ``content`` is already sized).
        tokenize: the text tokenizer (default: clipag's, at the model's context length).
        tricks: the patch tricks (default: ``config.tricks``).
        every: steps between frames.
        style_net: the network to train (default: a fresh :class:`StyleNet` seeded by ``config.seed``).
        targets: from :func:`prepare_targets`, to reuse them across runs.

    Returns:
        A generator of frames whose return value is the result.
    """
    tricks = tricks if tricks is not None else config.tricks
    device = content.device
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)  # patches: CPU generator, same on any device
    net = (style_net or StyleNet()).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step, gamma=config.lr_gamma)
    targets = targets or prepare_targets(content, style_text, clip_model, tokenize, vgg, config)
    history: list[dict[str, float]] = []
    for t in range(config.steps):
        target = net(content)  # stylize the content image
        losses = step_losses(target, targets, clip_model, vgg, config, tricks, generator)  # four loss terms
        total = weighted_total(losses, config)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        scheduler.step()  # lr x0.5 every 100 steps
        history.append({"total": total.item(), **{k: v.item() for k, v in losses.items()}})
        if (t + 1) % max(1, every) == 0 or t + 1 == config.steps:
            yield StyleFrame(t + 1, config.steps, history[-1]["total"], target[0].detach().clamp(0, 1), history[-1])
    with torch.no_grad():
        image = net(content)
    return Stylized(image, history, net, config)


def stylize(content: torch.Tensor, style_text: str, clip_model: Any, vgg: torch.nn.Module,
            config: StyleConfig = StyleConfig(), **options: Any) -> Stylized:
    """:func:`stylize_iter` run to the end.

    Args:
        content: the content image ``(1, 3, H, W)`` in [0, 1].
        style_text: the style.
        clip_model: the CLIP.
        vgg: the content network.
        config: the settings.
        options: the keywords of :func:`stylize_iter`, and ``on_step`` (called with every
            :class:`StyleFrame`).

    Returns:
        The :class:`Stylized`.
    """
    from .loop import run_to_end

    on_step = options.pop("on_step", None)
    return run_to_end(stylize_iter(content, style_text, clip_model, vgg, config, every=1, **options), on_step)


def finish_image(image: torch.Tensor) -> torch.Tensor:
    """The reference's output step: clamp to [0, 1], contrast x1.5, then stretch to [0, 1]."""
    from torchvision.transforms.functional import adjust_contrast

    out = adjust_contrast(image.detach().float().clamp(0, 1), 1.5)
    lo, hi = out.amin(), out.amax()
    return (out - lo) / (hi - lo).clamp_min(1e-5)
