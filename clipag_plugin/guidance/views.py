"""Differentiable views of an image batch: DiffAugment-style augmentations and random crops.

Every transform is split in two, as kornia does: ``sample_*`` draws the parameters from a
``torch.Generator`` (always on the CPU, so runs are reproducible on any device) and ``apply_*`` is a
pure, differentiable function of ``(images, params)``. A view can therefore be replayed, switched
off (identity parameters) or tested on its own.

Augmentations follow DiffAugment (Zhao et al. 2020): colour (brightness, saturation, contrast),
translation (up to 1/8 of the side, zero padded), cutout (a square of half the side set to zero),
plus a random resize (zoom in or out about the centre) and N(0, sigma^2) pixel noise.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "ViewConfig",
    "ViewParams",
    "CropParams",
    "NO_AUGMENT",
    "sample_view_params",
    "identity_view_params",
    "apply_color",
    "apply_affine",
    "apply_cutout",
    "apply_noise",
    "apply_views",
    "crop_size_for",
    "sample_crop_params",
    "apply_crops",
    "cat_params",
]


@dataclass(frozen=True)
class ViewConfig:
    """Which augmentations a view uses and how strong they are (defaults: the CLIPAG notebook)."""

    color: bool = True
    translation: float = 0.125  # max shift as a fraction of the side; 0 switches it off
    resize: tuple[float, float] = (0.8, 1.2)  # zoom range; (1, 1) switches it off
    cutout: float = 0.5  # side of the zeroed square as a fraction of the image side; 0: off
    noise_std: float = 0.01  # std of the added Gaussian pixel noise; 0: off

    def __post_init__(self) -> None:
        if not 0.0 <= self.translation < 1.0:
            raise ValueError(f"translation={self.translation}: expected a fraction in [0, 1)")
        lo, hi = self.resize
        if not 0.0 < lo <= hi:
            raise ValueError(f"resize={self.resize}: expected 0 < low <= high, e.g. (0.8, 1.2)")
        if not 0.0 <= self.cutout < 1.0:
            raise ValueError(f"cutout={self.cutout}: expected a fraction in [0, 1)")
        if self.noise_std < 0:
            raise ValueError(f"noise_std={self.noise_std}: expected >= 0")


NO_AUGMENT = ViewConfig(color=False, translation=0.0, resize=(1.0, 1.0), cutout=0.0, noise_std=0.0)


@dataclass(frozen=True)
class ViewParams:
    """Parameters of ``n`` views; ``source[i]`` is the image view ``i`` is made from."""

    source: torch.Tensor  # (n,) long
    brightness: torch.Tensor  # (n,) added, 0 = identity
    saturation: torch.Tensor  # (n,) factor, 1 = identity
    contrast: torch.Tensor  # (n,) factor, 1 = identity
    shift: torch.Tensor  # (n, 2) (x, y) as fractions of the side, 0 = identity
    scale: torch.Tensor  # (n,) zoom factor, 1 = identity
    cutout_center: torch.Tensor  # (n, 2) (x, y) in [0, 1]
    cutout_size: float  # fraction of the side, 0 = identity
    noise: Optional[torch.Tensor]  # (n, 3, H, W) or None

    def __len__(self) -> int:
        return int(self.source.shape[0])


@dataclass(frozen=True)
class CropParams:
    """``n`` square crops of side ``size`` at pixel offsets ``(y, x)``, from image ``source[i]``."""

    source: torch.Tensor  # (n,) long
    offsets: torch.Tensor  # (n, 2) long, (y, x) of the top-left corner
    size: int
    noise: Optional[torch.Tensor]  # (n, 3, out, out) or None

    def __len__(self) -> int:
        return int(self.source.shape[0])


def _uniform(n: int, lo: float, hi: float, generator: torch.Generator, shape: Sequence[int] = ()) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand((n, *shape), generator=generator, dtype=torch.float64)


def identity_view_params(n: int, source: int = 0) -> ViewParams:
    """Parameters that leave ``n`` copies of image ``source`` unchanged."""
    z = torch.zeros(n, dtype=torch.float64)
    return ViewParams(
        source=torch.full((n,), source, dtype=torch.long),
        brightness=z.clone(),
        saturation=z + 1,
        contrast=z + 1,
        shift=torch.zeros(n, 2, dtype=torch.float64),
        scale=z + 1,
        cutout_center=torch.full((n, 2), 0.5, dtype=torch.float64),
        cutout_size=0.0,
        noise=None,
    )


def sample_view_params(
    n: int, size: int, generator: torch.Generator, config: ViewConfig = ViewConfig(), source: int = 0
) -> ViewParams:
    """Draw the parameters of ``n`` views of image ``source`` (a ``size`` x ``size`` image).

    Draws happen in a fixed order whatever is switched off, so turning one augmentation off does
    not change the others' random numbers.
    """
    if n < 0:
        raise ValueError(f"number of views must be >= 0, got {n}")
    params = identity_view_params(n, source)
    brightness = _uniform(n, -0.5, 0.5, generator)
    saturation = _uniform(n, 0.0, 2.0, generator)
    contrast = _uniform(n, 0.5, 1.5, generator)
    shift = _uniform(n, -1.0, 1.0, generator, (2,))
    scale = _uniform(n, *config.resize, generator)
    center = _uniform(n, 0.0, 1.0, generator, (2,))
    if config.color:
        params = replace(params, brightness=brightness, saturation=saturation, contrast=contrast)
    if config.translation > 0:
        # whole pixels, as DiffAugment: the shift is a multiple of 1/size
        pixels = torch.round(shift * config.translation * size)
        params = replace(params, shift=pixels / size)
    if config.resize != (1.0, 1.0):
        params = replace(params, scale=scale)
    if config.cutout > 0:
        params = replace(params, cutout_center=center, cutout_size=float(config.cutout))
    if config.noise_std > 0:
        noise = torch.randn((n, 3, size, size), generator=generator) * config.noise_std
        params = replace(params, noise=noise)
    return params


def _col(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.to(device=like.device, dtype=like.dtype).view(-1, 1, 1, 1)


def apply_color(x: torch.Tensor, brightness: torch.Tensor, saturation: torch.Tensor, contrast: torch.Tensor) -> torch.Tensor:
    """DiffAugment colour: add brightness, scale saturation about the grey level, then contrast about the mean."""
    x = x + _col(brightness, x)
    gray = x.mean(dim=1, keepdim=True)
    x = (x - gray) * _col(saturation, x) + gray
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _col(contrast, x) + mean


def apply_affine(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Zoom by ``scale`` about the centre, then move by ``shift`` (fractions of the side); zero padding.

    A shift of ``k / side`` moves the content by exactly ``k`` pixels (``x`` right, ``y`` down).
    """
    n = x.shape[0]
    shift = shift.to(device=x.device, dtype=x.dtype)
    inv = 1.0 / scale.to(device=x.device, dtype=x.dtype)
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = inv
    theta[:, 1, 1] = inv
    # output coordinate p samples input at (p - 2 * shift) / scale (normalized coordinates span 2)
    theta[:, :, 2] = -2.0 * shift * inv[:, None]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def cutout_mask(center: torch.Tensor, size: float, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """(n, 1, H, W) mask: 0 inside the square of side ``size`` (fraction) centred at ``center``, else 1."""
    half_h, half_w = int(size * height + 0.5) // 2, int(size * width + 0.5) // 2
    cy = (center[:, 1] * height).long().to(like.device)
    cx = (center[:, 0] * width).long().to(like.device)
    ys = torch.arange(height, device=like.device)
    xs = torch.arange(width, device=like.device)
    in_y = (ys[None, :] >= (cy - half_h)[:, None]) & (ys[None, :] < (cy + half_h)[:, None])
    in_x = (xs[None, :] >= (cx - half_w)[:, None]) & (xs[None, :] < (cx + half_w)[:, None])
    inside = in_y[:, :, None] & in_x[:, None, :]
    return (~inside).to(like.dtype)[:, None]


def apply_cutout(x: torch.Tensor, center: torch.Tensor, size: float) -> torch.Tensor:
    """Set a square of side ``size`` (fraction of the side) around ``center`` to zero."""
    if size <= 0:
        return x
    return x * cutout_mask(center, size, x.shape[-2], x.shape[-1], x)


def apply_noise(x: torch.Tensor, noise: Optional[torch.Tensor]) -> torch.Tensor:
    """Add pre-drawn noise (``None``: identity)."""
    return x if noise is None else x + noise.to(device=x.device, dtype=x.dtype)


def apply_views(images: torch.Tensor, params: ViewParams) -> torch.Tensor:
    """``(B, 3, H, W)`` images -> ``(n, 3, H, W)`` augmented views (differentiable in ``images``)."""
    x = images[params.source.to(images.device)]
    # identity parameters skip their op, so a view without augmentation is exactly the image
    if bool(params.brightness.any()) or bool((params.saturation != 1).any()) or bool((params.contrast != 1).any()):
        x = apply_color(x, params.brightness, params.saturation, params.contrast)
    if bool(params.shift.any()) or bool((params.scale != 1).any()):
        x = apply_affine(x, params.shift, params.scale)
    x = apply_cutout(x, params.cutout_center, params.cutout_size)
    return apply_noise(x, params.noise)


def crop_size_for(size: int, reference_crop: int = 128, reference_size: int = 224) -> int:
    """Crop side at image side ``size``: 128 at 224, scaled proportionally (at least 1)."""
    return max(1, min(size, round(size * reference_crop / reference_size)))


def sample_crop_params(
    n: int, size: int, crop: int, generator: torch.Generator, noise_std: float = 0.0, out_size: Optional[int] = None,
    source: int = 0,
) -> CropParams:
    """Draw ``n`` crop positions of side ``crop`` inside a ``size`` image (and their noise)."""
    if not 0 < crop <= size:
        raise ValueError(f"crop side {crop} must be between 1 and the image side {size}")
    offsets = torch.randint(0, size - crop + 1, (n, 2), generator=generator)
    out = out_size or size
    noise = torch.randn((n, 3, out, out), generator=generator) * noise_std if noise_std > 0 else None
    return CropParams(torch.full((n,), source, dtype=torch.long), offsets, int(crop), noise)


def apply_crops(images: torch.Tensor, params: CropParams, out_size: Optional[int] = None) -> torch.Tensor:
    """Cut the crops and resize them (bilinear) to ``out_size`` (default: the image side), plus noise."""
    c = params.size
    out = out_size or images.shape[-1]
    if len(params) == 0:
        return images.new_zeros(0, images.shape[1], out, out)
    pieces = [
        images[int(s), :, int(oy) : int(oy) + c, int(ox) : int(ox) + c]
        for s, (oy, ox) in zip(params.source.tolist(), params.offsets.tolist(), strict=True)
    ]
    crops = torch.stack(pieces)
    if c != out:
        crops = F.interpolate(crops, size=(out, out), mode="bilinear", align_corners=False)
    return apply_noise(crops, params.noise)


def cat_params(items: Sequence):
    """Concatenate several ``ViewParams`` (or ``CropParams``) into one."""
    first = items[0]
    if len(items) == 1:
        return first
    values = {}
    for f in fields(first):
        parts = [getattr(p, f.name) for p in items]
        if isinstance(parts[0], torch.Tensor):
            values[f.name] = torch.cat(parts)
        elif f.name == "noise":
            values[f.name] = None if all(p is None for p in parts) else torch.cat(parts)
        else:
            if len(set(parts)) != 1:
                raise ValueError(f"cannot concatenate params with different {f.name}: {parts}")
            values[f.name] = parts[0]
    return type(first)(**values)
