"""VQGAN+CLIP's cutouts: many views of one image, each as CLIP sees it.

Four modes, named as in the reference CLI's ``--cut_method``:

* ``"original"`` - ``cutn`` random square crops, side ``rand ** cut_pow`` between the model's
  input size and the image's short side, resized to the input size, clamped with gradient;
* ``"updated"``  - the same crops, then kornia flip, colour jitter, sharpness, affine, perspective;
* ``"latest"``   - the whole image pooled to the input size ((avg + max) / 2) ``cutn`` times,
  then kornia affine, perspective, colour jitter, erasing;
* ``"none"``     - one cutout: the whole image resized to the input size (the trick switched off).

``updated`` and ``latest`` add Gaussian noise with a per-cutout scale drawn from U(0, 0.1).
Every random choice is drawn by a ``sample_*`` function (from a ``torch.Generator`` where one is
given) and used by a pure ``apply_*`` function, so a set of cutouts can be replayed exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CUTOUT_MODES",
    "AUGMENT_SETS",
    "DEFAULT_NOISE",
    "DEFAULT_AUGMENT",
    "clamp_with_grad",
    "CropParams",
    "CutoutParams",
    "sample_crops",
    "apply_crops",
    "pooled_cutouts",
    "whole_cutout",
    "resize_square",
    "build_augmentations",
    "sample_augment_params",
    "apply_augmentations",
    "sample_noise",
    "Cutouts",
]

CUTOUT_MODES = ("original", "updated", "latest", "none")
AUGMENT_SETS = ("updated", "latest")
# Largest per-cutout noise scale of each mode (the reference's ``noise_fac``).
DEFAULT_NOISE = {"original": 0.0, "updated": 0.1, "latest": 0.1, "none": 0.0}
# The kornia augmentation set each mode uses by default.
DEFAULT_AUGMENT = {"original": None, "updated": "updated", "latest": "latest", "none": None}


class _ClampWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        ctx.lo, ctx.hi = lo, hi
        ctx.save_for_backward(x)
        return x.clamp(lo, hi)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (x,) = ctx.saved_tensors
        # Pass the gradient unless it would push an out-of-range value further out.
        keep = grad_out * (x - x.clamp(ctx.lo, ctx.hi)) >= 0
        return grad_out * keep, None, None


def clamp_with_grad(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """``x.clamp(lo, hi)`` whose gradient still flows where it pulls ``x`` back into range."""
    return _ClampWithGrad.apply(x, lo, hi)


def resize_square(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``(B, C, H, W)`` to ``size x size`` (bicubic, antialiased when shrinking)."""
    if image.shape[-2:] == (size, size):
        return image
    return F.interpolate(image, size=(size, size), mode="bicubic", align_corners=False, antialias=True)


@dataclass(frozen=True)
class CropParams:
    """Square crops: side lengths and top-left corners, one per cutout (int64 tensors)."""

    sizes: torch.Tensor
    offsets_y: torch.Tensor
    offsets_x: torch.Tensor


def sample_crops(side_y: int, side_x: int, cut_size: int, cutn: int, cut_pow: float = 1.0,
                 generator: Optional[torch.Generator] = None) -> CropParams:
    """Draw ``cutn`` squares inside an ``side_y x side_x`` image, side ``u ** cut_pow`` of the way
    from ``min(side, cut_size)`` to the short side (``u ~ U(0, 1)``)."""
    if cutn < 1:
        raise ValueError(f"cutn must be at least 1, got {cutn}")
    max_size = min(side_y, side_x)
    min_size = min(side_y, side_x, cut_size)
    u = torch.rand(cutn, generator=generator)
    sizes = (u.pow(cut_pow) * (max_size - min_size) + min_size).long()
    oy = (torch.rand(cutn, generator=generator) * (side_y - sizes + 1)).long()
    ox = (torch.rand(cutn, generator=generator) * (side_x - sizes + 1)).long()
    return CropParams(sizes, oy, ox)


def apply_crops(image: torch.Tensor, params: CropParams, cut_size: int) -> torch.Tensor:
    """Cut the squares out of ``image`` ``(B, C, H, W)`` and resize each to ``cut_size``;
    returns ``(cutn * B, C, cut_size, cut_size)`` ordered cutout-major (as the reference)."""
    cutouts = []
    for size, oy, ox in zip(params.sizes.tolist(), params.offsets_y.tolist(), params.offsets_x.tolist(), strict=True):
        if oy + size > image.shape[-2] or ox + size > image.shape[-1]:
            raise ValueError(
                f"crop {size}px at ({oy}, {ox}) does not fit an image of {tuple(image.shape[-2:])}; "
                f"sample the crops for this image's size"
            )
        cutouts.append(resize_square(image[:, :, oy:oy + size, ox:ox + size], cut_size))
    return torch.cat(cutouts, dim=0)


def pooled_cutouts(image: torch.Tensor, cut_size: int, cutn: int) -> torch.Tensor:
    """The whole image pooled to ``cut_size`` as ``(avg + max) / 2``, repeated ``cutn`` times."""
    pooled = (F.adaptive_avg_pool2d(image, cut_size) + F.adaptive_max_pool2d(image, cut_size)) / 2
    return pooled.repeat(cutn, 1, 1, 1)


def whole_cutout(image: torch.Tensor, cut_size: int) -> torch.Tensor:
    """One cutout per image: the whole image resized to ``cut_size``."""
    return resize_square(image, cut_size)


def build_augmentations(name: Optional[str]) -> nn.ModuleList:
    """The reference's kornia augmentations for ``name`` (``"updated"`` or ``"latest"``); empty for None."""
    if name is None:
        return nn.ModuleList()
    import kornia.augmentation as K

    if name == "updated":
        return nn.ModuleList([
            K.RandomHorizontalFlip(p=0.5),
            K.ColorJitter(hue=0.01, saturation=0.01, p=0.7),
            K.RandomSharpness(0.3, p=0.4),
            K.RandomAffine(degrees=30, translate=0.1, p=0.8, padding_mode="border"),
            K.RandomPerspective(0.2, p=0.4),
        ])
    if name == "latest":  # the reference's default augment list: Af, Pe, Ji, Er
        return nn.ModuleList([
            K.RandomAffine(degrees=15, translate=0.1, shear=5, p=0.7, padding_mode="zeros", keepdim=True),
            K.RandomPerspective(distortion_scale=0.7, p=0.7),
            K.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1, hue=0.1, p=0.7),
            K.RandomErasing(scale=(0.1, 0.4), ratio=(0.3, 1 / 0.3), same_on_batch=True, p=0.7),
        ])
    raise ValueError(f"unknown augmentation set {name!r}; choose one of {AUGMENT_SETS} or None")


def sample_augment_params(augs: Sequence[nn.Module], batch_shape: torch.Size,
                          generator: Optional[torch.Generator] = None) -> list[dict[str, Any]]:
    """Draw every augmentation's parameters for a batch of ``batch_shape``.

    kornia samples from the global RNG; with a ``generator`` that RNG is seeded from it inside
    ``fork_rng``, so the draw is reproducible and the global state is left untouched.
    """
    if not augs:
        return []
    if generator is None:
        return [aug.forward_parameters(batch_shape) for aug in augs]
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return [aug.forward_parameters(batch_shape) for aug in augs]


def apply_augmentations(batch: torch.Tensor, augs: Sequence[nn.Module],
                        params: Sequence[dict[str, Any]]) -> torch.Tensor:
    """Apply ``augs`` in order with the given parameters (differentiable w.r.t. ``batch``)."""
    if len(augs) != len(params):
        raise ValueError(f"{len(augs)} augmentations but {len(params)} parameter sets")
    for aug, p in zip(augs, params, strict=True):
        batch = aug(batch, params=p)
    return batch


def sample_noise(batch_shape: Sequence[int], max_scale: float, generator: Optional[torch.Generator] = None,
                 device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """Gaussian noise whose std is drawn per cutout from U(0, ``max_scale``)."""
    n = batch_shape[0]
    scales = torch.rand(n, 1, 1, 1, generator=generator) * max_scale
    noise = scales * torch.randn(tuple(batch_shape), generator=generator)
    return noise.to(device=device, dtype=dtype)


@dataclass(frozen=True)
class CutoutParams:
    """Everything random about one call of :class:`Cutouts` (replayable)."""

    crops: Optional[CropParams]
    augment: list
    noise: Optional[torch.Tensor]


class Cutouts(nn.Module):
    """Make CLIP-sized views of an image as VQGAN+CLIP does (see the module docstring).

    Args:
        cut_size: the CLIP model's ``visual.input_resolution``.
        cutn: number of cutouts (``"none"`` always makes one).
        cut_pow: crop-size exponent of ``"original"`` and ``"updated"``.
        mode: one of :data:`CUTOUT_MODES`.
        augment: ``"default"`` (the mode's own set), ``None`` (no kornia augmentation), or one of
            :data:`AUGMENT_SETS`.
        noise: largest per-cutout noise std; ``None`` means the mode's default (:data:`DEFAULT_NOISE`).
    """

    def __init__(self, cut_size: int, cutn: int = 32, cut_pow: float = 1.0, mode: str = "latest",
                 augment: Optional[str] = "default", noise: Optional[float] = None) -> None:
        super().__init__()
        if mode not in CUTOUT_MODES:
            raise ValueError(f"unknown cutout mode {mode!r}; choose one of {', '.join(CUTOUT_MODES)}")
        if cutn < 1:
            raise ValueError(f"cutn must be at least 1, got {cutn}")
        self.cut_size = int(cut_size)
        self.mode = mode
        self.cutn = 1 if mode == "none" else int(cutn)
        self.cut_pow = float(cut_pow)
        self.augment_name = DEFAULT_AUGMENT[mode] if augment == "default" else augment
        self.augs = build_augmentations(self.augment_name)
        self.noise_fac = DEFAULT_NOISE[mode] if noise is None else float(noise)

    def extra_repr(self) -> str:
        return (f"mode={self.mode!r}, cut_size={self.cut_size}, cutn={self.cutn}, cut_pow={self.cut_pow}, "
                f"augment={self.augment_name!r}, noise={self.noise_fac}")

    def sample(self, image_shape: Sequence[int], generator: Optional[torch.Generator] = None) -> CutoutParams:
        """Draw the crops, augmentation parameters and noise for an image of ``image_shape``."""
        b, c, h, w = image_shape
        crops = None
        if self.mode in ("original", "updated"):
            crops = sample_crops(h, w, self.cut_size, self.cutn, self.cut_pow, generator)
        batch_shape = torch.Size((self.cutn * b, c, self.cut_size, self.cut_size))
        augment = sample_augment_params(self.augs, batch_shape, generator)
        noise = sample_noise(batch_shape, self.noise_fac, generator) if self.noise_fac > 0 else None
        return CutoutParams(crops, augment, noise)

    def apply(self, image: torch.Tensor, params: CutoutParams) -> torch.Tensor:
        """The cutouts of ``image`` ``(B, C, H, W)`` under ``params``: ``(cutn * B, C, S, S)``."""
        if self.mode == "none":
            batch = whole_cutout(image, self.cut_size)
        elif self.mode == "latest":
            batch = pooled_cutouts(image, self.cut_size, self.cutn)
        else:
            batch = apply_crops(image, params.crops, self.cut_size)
        batch = apply_augmentations(batch, self.augs, params.augment)
        if params.noise is not None:
            batch = batch + params.noise.to(device=batch.device, dtype=batch.dtype)
        if self.mode == "original":
            batch = clamp_with_grad(batch, 0.0, 1.0)
        return batch

    def forward(self, image: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Sample, then apply."""
        return self.apply(image, self.sample(image.shape, generator))
