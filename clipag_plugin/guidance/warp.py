"""CLIPDraw's augmentation: a random perspective warp, then a random resized crop (kornia).

Sampling is apart from applying (kornia's habit): ``sample_*`` draw parameters from a
``torch.Generator``; ``apply_*`` are pure, differentiable functions of ``(images, params)``, so a
draw can be replayed, inspected or switched off. The distributions follow torchvision's
``RandomPerspective(distortion_scale, p=1)`` and ``RandomResizedCrop(size, scale, ratio)``, which
the CLIPDraw notebook composes (drawn here in continuous rather than whole pixels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch

__all__ = [
    "PerspectiveParams", "CropParams", "WarpParams",
    "sample_perspective", "apply_perspective",
    "sample_resized_crop", "apply_resized_crop",
    "sample_clipdraw_warp", "apply_clipdraw_warp", "clipdraw_warp",
]

Fill = Union[float, Sequence[float], torch.Tensor]


@dataclass(frozen=True)
class PerspectiveParams:
    """Image corners ``start`` ``(B, 4, 2)`` move to ``end`` (``(x, y)``; TL, TR, BR, BL)."""

    start: torch.Tensor
    end: torch.Tensor


@dataclass(frozen=True)
class CropParams:
    """Crop boxes ``(B, 4, 2)``: corners ``(x, y)`` TL, TR, BR, BL, inclusive pixel coordinates."""

    boxes: torch.Tensor


@dataclass(frozen=True)
class WarpParams:
    """One CLIPDraw augmentation per copy: perspective, then resized crop."""

    perspective: PerspectiveParams
    crop: CropParams


def _corners(height: int, width: int) -> torch.Tensor:
    return torch.tensor([[0.0, 0.0], [width - 1.0, 0.0], [width - 1.0, height - 1.0], [0.0, height - 1.0]])


def sample_perspective(
    batch: int,
    height: int,
    width: int,
    distortion: float = 0.5,
    generator: Optional[torch.Generator] = None,
) -> PerspectiveParams:
    """Move each corner inwards by up to ``distortion`` x half the image side (torchvision's law)."""
    if not 0.0 <= distortion <= 1.0:
        raise ValueError(f"distortion must be in [0, 1], got {distortion}")
    reach = torch.tensor([distortion * (width // 2), distortion * (height // 2)])
    inward = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
    offsets = torch.rand(batch, 4, 2, generator=generator) * reach * inward
    start = _corners(height, width).expand(batch, 4, 2)
    return PerspectiveParams(start.clone(), start + offsets)


def _fill(fill: Fill, like: torch.Tensor) -> torch.Tensor:
    value = torch.as_tensor(fill, dtype=like.dtype, device=like.device).reshape(-1)
    return value.expand(like.shape[1]) if value.numel() == 1 else value


def apply_perspective(images: torch.Tensor, params: PerspectiveParams, fill: Fill = 1.0) -> torch.Tensor:
    """Warp ``images`` ``(B, C, H, W)`` so ``params.start`` lands on ``params.end``; uncovered pixels get ``fill``."""
    from kornia.geometry.transform import get_perspective_transform, warp_perspective

    start = params.start.to(images.device, images.dtype)
    end = params.end.to(images.device, images.dtype)
    if start.shape[0] != images.shape[0]:
        raise ValueError(f"{start.shape[0]} perspective draws for {images.shape[0]} images")
    matrix = get_perspective_transform(start, end)
    return warp_perspective(images, matrix, tuple(images.shape[-2:]), padding_mode="fill",
                            fill_value=_fill(fill, images))


def sample_resized_crop(
    batch: int,
    height: int,
    width: int,
    scale: tuple[float, float] = (0.7, 0.9),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: Optional[torch.Generator] = None,
    tries: int = 10,
) -> CropParams:
    """Boxes covering ``scale`` of the area at aspect ``ratio`` (torchvision: up to ``tries`` draws,
    else the whole image), placed uniformly inside the image."""
    if not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {scale}")
    if not 0 < ratio[0] <= ratio[1]:
        raise ValueError(f"ratio must satisfy 0 < low <= high, got {ratio}")
    area = height * width * (scale[0] + (scale[1] - scale[0]) * torch.rand(batch, tries, generator=generator))
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * torch.rand(batch, tries, generator=generator)
    w = torch.sqrt(area * torch.exp(log_r))
    h = torch.sqrt(area / torch.exp(log_r))
    fits = (w <= width) & (h <= height)
    first = fits.float().argmax(dim=1, keepdim=True)
    any_fit = fits.any(dim=1)
    w = torch.where(any_fit, w.gather(1, first).squeeze(1), torch.tensor(float(width)))
    h = torch.where(any_fit, h.gather(1, first).squeeze(1), torch.tensor(float(height)))
    x0 = torch.rand(batch, generator=generator) * (width - w)
    y0 = torch.rand(batch, generator=generator) * (height - h)
    x1, y1 = x0 + w - 1, y0 + h - 1
    boxes = torch.stack([torch.stack([x0, y0], -1), torch.stack([x1, y0], -1),
                         torch.stack([x1, y1], -1), torch.stack([x0, y1], -1)], 1)
    return CropParams(boxes)


def apply_resized_crop(images: torch.Tensor, params: CropParams, size: Union[int, tuple[int, int]]) -> torch.Tensor:
    """Cut ``params.boxes`` out of ``images`` ``(B, C, H, W)`` and resize them to ``size`` (bilinear)."""
    from kornia.geometry.transform import crop_and_resize

    size = (size, size) if isinstance(size, int) else tuple(size)
    boxes = params.boxes.to(images.device, images.dtype)
    if boxes.shape[0] != images.shape[0]:
        raise ValueError(f"{boxes.shape[0]} crop boxes for {images.shape[0]} images")
    return crop_and_resize(images, boxes, size)


def sample_clipdraw_warp(
    copies: int,
    height: int,
    width: int,
    distortion: float = 0.5,
    scale: tuple[float, float] = (0.7, 0.9),
    generator: Optional[torch.Generator] = None,
) -> WarpParams:
    """Parameters for ``copies`` CLIPDraw augmentations of an ``height`` x ``width`` image."""
    return WarpParams(
        sample_perspective(copies, height, width, distortion, generator),
        sample_resized_crop(copies, height, width, scale, generator=generator),
    )


def apply_clipdraw_warp(image: torch.Tensor, params: WarpParams, size: int = 224, fill: Fill = 1.0) -> torch.Tensor:
    """``(1 or B, C, H, W)`` image -> ``(copies, C, size, size)`` augmented copies (differentiable)."""
    copies = params.crop.boxes.shape[0]
    if image.shape[0] == 1:
        image = image.expand(copies, *image.shape[1:])
    return apply_resized_crop(apply_perspective(image, params.perspective, fill), params.crop, size)


def clipdraw_warp(
    image: torch.Tensor, copies: int = 4, size: int = 224, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """Sample and apply CLIPDraw's augmentation in one go (perspective 0.5 filled white, crop 0.7-0.9)."""
    params = sample_clipdraw_warp(copies, image.shape[-2], image.shape[-1], generator=generator)
    return apply_clipdraw_warp(image, params, size)
