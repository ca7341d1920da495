"""The pixel-optimization loop of generator-free text-to-image (the CLIPAG notebook's recipe).

Every knob lives in :class:`GenerateConfig` (the CLI reads its defaults from there). The loop
itself is a list of steps; the math is in :mod:`clipag_plugin.guidance` and
:mod:`.threshold`.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Sequence

import torch

from ..guidance.losses import cosine_similarity, view_crop_loss
from ..guidance.views import (
    NO_AUGMENT,
    ViewConfig,
    apply_crops,
    apply_views,
    crop_size_for,
    sample_crop_params,
    sample_view_params,
)
from .threshold import dynamic_threshold

__all__ = [
    "GenerateConfig",
    "Guide",
    "GenerationResult",
    "NonFiniteLossWarning",
    "frozen",
    "clip_grad_per_image",
    "l2_step_",
    "guide_losses",
    "optimize",
]


OPTIMIZERS = ("adamw", "l2")


@dataclass(frozen=True)
class GenerateConfig:
    """All options of a generation; defaults are the official notebook's."""

    steps: int = 100
    lr: float = 0.0175  # AdamW learning rate; with optimizer="l2" the L2 length of every step
    optimizer: str = "adamw"  # or "l2": normalized gradient descent (robust-model synthesis)
    weight_decay: float = 0.01  # AdamW only
    grad_clip: float = 0.001  # max gradient norm per image (AdamW only)
    views: int = 32  # augmented full views per step (V)
    crops: int = 32  # random crops per step (P)
    augment: bool = True  # colour/translation/resize/cutout/noise on views (and noise on crops)
    view_weight: float = 1.0
    crop_weight: float = 5.0
    crop_size: Optional[int] = None  # None: 128 at 224 px, scaled with the image side
    noise_std: float = 0.01
    threshold: Optional[float] = 0.95  # dynamic-threshold quantile; None: plain clamp to [0, 1]
    distance: str = "cosine"  # or "spherical" (VQGAN+CLIP's squared spherical distance)
    size: Optional[int] = None  # None: the (first) model's input_resolution
    init: str = "gmm"  # gmm | noise | gray | image
    init_image: Optional[str] = None
    gmm_path: Optional[str] = None  # None: the GMM shipped in the package
    gmm_candidates: int = 1000
    save_every: int = 0  # keep a frame every K steps (0: none)
    truncate: bool = False  # cut prompts longer than the context length instead of failing

    def __post_init__(self) -> None:
        checks = [
            (self.steps >= 1, f"steps={self.steps}: need at least 1"),
            (self.lr > 0, f"lr={self.lr}: must be > 0"),
            (self.optimizer in OPTIMIZERS, f"optimizer={self.optimizer!r}: choose one of {OPTIMIZERS}"),
            (self.weight_decay >= 0, f"weight_decay={self.weight_decay}: must be >= 0"),
            (self.grad_clip > 0, f"grad_clip={self.grad_clip}: must be > 0"),
            (self.views >= 0 and self.crops >= 0, f"views={self.views}, crops={self.crops}: must be >= 0"),
            (self.views + self.crops >= 1, "views=0 and crops=0 leave nothing to score; use --views 1 --crops 0"),
            (self.noise_std >= 0, f"noise_std={self.noise_std}: must be >= 0"),
            (self.threshold is None or 0 < self.threshold <= 1, f"threshold={self.threshold}: expected 0 < p <= 1"),
            (self.gmm_candidates >= 1, f"gmm_candidates={self.gmm_candidates}: need at least 1"),
            (self.save_every >= 0, f"save_every={self.save_every}: must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def view_config(self) -> ViewConfig:
        """The augmentations of the full views (none when ``augment`` is off)."""
        return ViewConfig(noise_std=self.noise_std) if self.augment else NO_AUGMENT

    def effective_views(self) -> int:
        """Views per step: identical views are pointless, so 1 when augmentation is off."""
        return min(self.views, 1) if not self.augment else self.views


@dataclass
class Guide:
    """One model and its (unit-norm) prompt embeddings."""

    model: torch.nn.Module
    texts: torch.Tensor  # (T, D)
    weights: torch.Tensor  # (T,)
    stops: Optional[torch.Tensor]  # (T,) or None
    name: str = ""


@dataclass
class GenerationResult:
    """What a generation returns: the best images and how the run went."""

    images: torch.Tensor  # (B, 3, S, S) in [0, 1], the lowest-loss image per seed
    loss: torch.Tensor  # (B,) best loss
    cosine: torch.Tensor  # (B,) mean cosine to the positive prompts at the best step
    step: torch.Tensor  # (B,) step of the best image (0 = the initial image)
    history: list[dict] = field(default_factory=list)  # per step: loss and cosine per image
    frames: list[tuple[int, torch.Tensor]] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    prompts: list = field(default_factory=list)
    nan_step: Optional[int] = None  # step at which the loss stopped being finite, if it did
    config: Optional[GenerateConfig] = None

    def to_pil(self) -> list:
        """The best images as PIL images (one per seed)."""
        from torchvision.transforms.functional import to_pil_image

        return [to_pil_image(img.detach().float().clamp(0, 1).cpu()) for img in self.images]


class NonFiniteLossWarning(RuntimeWarning):
    """The loss became NaN/inf; the loop stopped and kept the best image so far."""


@contextlib.contextmanager
def frozen(modules: Sequence[torch.nn.Module]) -> Iterator[None]:
    """Turn off ``requires_grad`` on the models' parameters for the loop; restore it after."""
    params = [p for m in modules for p in m.parameters()]
    saved = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, saved, strict=True):
            p.requires_grad_(flag)


def clip_grad_per_image(grad: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Scale each image's gradient to norm <= ``max_norm`` (``torch.nn.utils.clip_grad_norm_`` per image)."""
    norms = grad.flatten(1).norm(dim=1).view(-1, *([1] * (grad.dim() - 1)))
    return grad * (max_norm / (norms + 1e-6)).clamp(max=1.0)


@torch.no_grad()
def l2_step_(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], length: float) -> None:
    """Move each image (row of every tensor in ``params``) by ``length`` in L2 against its gradient.

    The norm is taken per image over all the tensors together; a zero gradient leaves the image.
    This is the update of image synthesis with robust classifiers (Santurkar et al. 2019): unlike
    Adam it keeps the gradient's spatial structure, which is what a robust model makes meaningful.
    """
    norms = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads]).sum(0).sqrt()
    scale = length / norms.clamp_min(1e-12)
    for p, g in zip(params, grads, strict=True):
        p.sub_(g * scale.view(-1, *([1] * (g.dim() - 1))))


def guide_losses(
    images: torch.Tensor, view_batch: torch.Tensor, n_views: int, n_crops: int, guides: Sequence[Guide],
    config: GenerateConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss per image summed over the ensemble, and the mean cosine to the positive prompts.

    ``view_batch`` holds, per image, its ``n_views`` views then its ``n_crops`` crops. Each
    model's encoder is called exactly once.
    """
    b = images.shape[0]
    total = images.new_zeros(b)
    cosines = []
    for guide in guides:
        emb = guide.model.encode_pixels(view_batch).float()
        emb = emb.view(b, n_views + n_crops, emb.shape[-1])
        views = emb[:, :n_views].reshape(b * n_views, emb.shape[-1])
        crops = emb[:, n_views:].reshape(b * n_crops, emb.shape[-1])
        total = total + view_crop_loss(
            views, crops, guide.texts, guide.weights, guide.stops,
            config.view_weight, config.crop_weight, config.distance, groups=b,
        )
        positive = guide.weights > 0
        if bool(positive.any()):
            seen = views if n_views else crops
            cos = cosine_similarity(seen.detach(), guide.texts[positive]).view(b, -1).mean(dim=1)
            cosines.append(cos)
    cosine = torch.stack(cosines).mean(0) if cosines else images.new_full((b,), float("nan"))
    return total, cosine


def _sample_batch(
    images: torch.Tensor, generators: Sequence[torch.Generator], config: GenerateConfig, crop: int
) -> tuple[torch.Tensor, int, int]:
    """Draw this step's views and crops for every image and apply them -> (B * (V + P), 3, S, S)."""
    size = images.shape[-1]
    n_views, n_crops = config.effective_views(), config.crops
    view_cfg = config.view_config()
    crop_noise = config.noise_std if config.augment else 0.0
    per_image = []
    for i, gen in enumerate(generators):
        parts = []
        if n_views:
            parts.append(apply_views(images, sample_view_params(n_views, size, gen, view_cfg, source=i)))
        if n_crops:
            parts.append(apply_crops(images, sample_crop_params(n_crops, size, crop, gen, crop_noise, source=i)))
        per_image.append(torch.cat(parts) if len(parts) > 1 else parts[0])
    return torch.cat(per_image), n_views, n_crops


def optimize(
    init: torch.Tensor,
    guides: Sequence[Guide],
    config: GenerateConfig,
    generators: Sequence[torch.Generator],
    progress: bool = True,
    callback: Optional[Callable[[int, torch.Tensor, torch.Tensor], None]] = None,
) -> GenerationResult:
    """Optimize ``init`` ``(B, 3, S, S)`` toward the guides' prompts; return the lowest-loss images.

    ``generators[i]`` drives image ``i``'s views, so a seed's result does not depend on the batch.
    """
    from tqdm.auto import tqdm

    if len(generators) != init.shape[0]:
        raise ValueError(f"{len(generators)} generators for a batch of {init.shape[0]} images")
    size = init.shape[-1]
    crop = config.crop_size or crop_size_for(size)
    if not 0 < crop <= size:
        raise ValueError(f"crop_size={crop} must be between 1 and the image size {size}")
    pixels = init.detach().clone().float().requires_grad_(True)
    optimizer = (torch.optim.AdamW([pixels], lr=config.lr, weight_decay=config.weight_decay)
                 if config.optimizer == "adamw" else None)
    b = init.shape[0]
    best = pixels.detach().cpu().clone()
    best_loss = torch.full((b,), math.inf)
    best_cos = torch.full((b,), math.nan)
    best_step = torch.zeros(b, dtype=torch.long)
    result = GenerationResult(best, best_loss, best_cos, best_step, config=config)
    bar = tqdm(range(config.steps), desc="generate", disable=not progress, leave=False)
    with frozen([g.model for g in guides]):
        for step in bar:
            # 1. views and crops of the current image, then the loss of every model
            batch, n_views, n_crops = _sample_batch(pixels, generators, config, crop)
            loss, cosine = guide_losses(pixels, batch, n_views, n_crops, guides, config)
            detached = loss.detach().cpu()
            # 2. stop on NaN/inf, keeping the best image so far
            if not bool(torch.isfinite(detached).all()):
                result.nan_step = step
                warnings.warn(
                    f"loss became non-finite at step {step}; stopped and kept the best image so far "
                    f"(from step {int(best_step.min())}). Try a lower --lr.",
                    NonFiniteLossWarning,
                    stacklevel=2,
                )
                break
            # 3. remember the lowest-loss image of each seed (the loss belongs to the pixels before the update)
            better = detached < best_loss
            if bool(better.any()):
                best[better] = pixels.detach().cpu()[better]
                best_loss[better] = detached[better]
                best_cos[better] = cosine.detach().cpu()[better].float()
                best_step[better] = step
            result.history.append({"step": step, "loss": detached.tolist(), "cosine": cosine.detach().cpu().tolist()})
            # 4. gradient step: AdamW with per-image norm clipping, or a fixed-length L2 step
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
                loss.sum().backward()
                pixels.grad = clip_grad_per_image(pixels.grad, config.grad_clip)
                optimizer.step()
            else:
                l2_step_([pixels], torch.autograd.grad(loss.sum(), [pixels]), config.lr)
            # 5. back into [0, 1]: dynamic thresholding (or a plain clamp)
            with torch.no_grad():
                pixels.copy_(dynamic_threshold(pixels, config.threshold) if config.threshold else pixels.clamp(0, 1))
            if config.save_every and (step + 1) % config.save_every == 0:
                result.frames.append((step + 1, pixels.detach().cpu().clone()))
            if callback is not None:
                callback(step, pixels.detach(), detached)
            bar.set_postfix(loss=f"{float(detached.mean()):.4f}", cos=f"{float(cosine.mean()):.4f}")
    bar.close()
    return result
