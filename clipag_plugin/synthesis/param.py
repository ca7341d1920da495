"""Parametrizations: what the generator optimizes, and the pure map from it to an image.

* ``pixels``: the image itself. After each step it is brought back into [0, 1] (dynamic
  thresholding or a clamp), as in the CLIPAG notebook.
* ``multires``: a stack of images at several resolutions (1, 2, 4, ... px up to the image side),
  upsampled bilinearly, summed in logit space around the starting image and mapped to [0, 1] by a
  sigmoid (in the spirit of Direct Ascent Synthesis, Fort & Whitaker 2025). Every level starts at
  zero, so step 0 is exactly the starting image; a gradient step spreads over all scales, and the
  coarse levels (which sum the gradient of many pixels) move first, so flat regions and solid
  shapes appear before texture.

A parametrization is a small object holding its leaf tensors (``tensors``) with a pure
``forward`` (:func:`multires_image` for ``multires``) and a ``project_`` applied after each update.
No library offers this decomposition for arbitrary starts, hence this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from .threshold import dynamic_threshold

__all__ = [
    "PARAMS",
    "LOGIT_EPS",
    "default_levels",
    "check_levels",
    "multires_image",
    "Pixels",
    "MultiRes",
    "make_param",
]

PARAMS = ("pixels", "multires")
LOGIT_EPS = 1e-3  # the start is clamped to [eps, 1 - eps] before its logit, so 0 and 1 stay finite


def default_levels(size: int) -> tuple[int, ...]:
    """``1, 2, 4, ...`` below ``size``, then ``size`` itself: ``(1, 2, 4, 8, 16, 32, 64, 96)`` at 96 px."""
    if size < 1:
        raise ValueError(f"image side {size}: must be >= 1")
    levels, r = [], 1
    while r < size:
        levels.append(r)
        r *= 2
    return (*levels, size)


def check_levels(levels: Sequence[int], size: int) -> tuple[int, ...]:
    """Sorted, distinct levels; a ``ValueError`` naming the valid range when one does not fit ``size``."""
    out = tuple(sorted({int(r) for r in levels}))
    if not out:
        raise ValueError(f"levels is empty; give resolutions between 1 and the image side {size}, e.g. "
                         f"{' '.join(map(str, default_levels(size)))}")
    bad = [r for r in out if not 1 <= r <= size]
    if bad:
        raise ValueError(f"levels {' '.join(map(str, bad))} do not fit a {size} px image: each level must be "
                         f"between 1 and {size} (default: {' '.join(map(str, default_levels(size)))})")
    return out


def multires_image(base_logit: torch.Tensor, levels: Sequence[torch.Tensor]) -> torch.Tensor:
    """``sigmoid(base_logit + sum_k upsample(levels[k]))``: ``(B, 3, S, S)`` in (0, 1).

    ``base_logit`` is the logit of the starting image (held fixed); each level is ``(B, 3, r, r)``
    and is upsampled bilinearly (``align_corners=False``) to the side of ``base_logit``.
    """
    size = base_logit.shape[-2:]
    x = base_logit
    for level in levels:
        x = x + (level if level.shape[-2:] == size else
                 F.interpolate(level, size=size, mode="bilinear", align_corners=False))
    return torch.sigmoid(x)


@dataclass
class Pixels:
    """The image itself is the parameter; ``project_`` brings it back into [0, 1]."""

    pixels: torch.Tensor
    threshold: Optional[float] = None  # dynamic-threshold quantile; None: plain clamp

    name = "pixels"

    def tensors(self) -> list[torch.Tensor]:
        """The leaf tensors the optimizer moves."""
        return [self.pixels]

    def forward(self) -> torch.Tensor:
        """The current image ``(B, 3, S, S)``."""
        return self.pixels

    @torch.no_grad()
    def project_(self) -> None:
        """Back into [0, 1] after an update: dynamic thresholding, or a clamp."""
        if self.threshold:
            self.pixels.copy_(dynamic_threshold(self.pixels, self.threshold))
        else:
            self.pixels.clamp_(0, 1)


@dataclass
class MultiRes:
    """A pyramid of zero-initialized images summed in logit space around the start (see module doc)."""

    base_logit: torch.Tensor
    levels: list[torch.Tensor]

    name = "multires"

    def tensors(self) -> list[torch.Tensor]:
        """The leaf tensors the optimizer moves (one per level, coarsest first)."""
        return self.levels

    def forward(self) -> torch.Tensor:
        """The current image ``(B, 3, S, S)`` in (0, 1)."""
        return multires_image(self.base_logit, self.levels)

    def project_(self) -> None:
        """Nothing to do: the sigmoid keeps every image in range."""


def make_param(
    name: str, init: torch.Tensor, levels: Optional[Sequence[int]] = None, threshold: Optional[float] = None
) -> Pixels | MultiRes:
    """The parametrization ``name`` started at ``init`` ``(B, 3, S, S)`` in [0, 1] (its tensors require grad).

    ``levels``: resolutions of ``multires`` (default :func:`default_levels`); ``threshold``: the
    dynamic-threshold quantile of ``pixels`` (None: clamp).
    """
    if name not in PARAMS:
        raise ValueError(f"param {name!r} is unknown; choose one of {', '.join(PARAMS)}")
    start = init.detach().float()
    if name == "pixels":
        return Pixels(start.clone().requires_grad_(True), threshold)
    size = start.shape[-1]
    if start.shape[-2] != size:
        raise ValueError(f"multires needs a square image, got {tuple(start.shape[-2:])}")
    resolutions = check_levels(levels if levels is not None else default_levels(size), size)
    base = torch.logit(start.clamp(LOGIT_EPS, 1 - LOGIT_EPS))
    b = start.shape[0]
    tensors = [torch.zeros(b, 3, r, r, device=start.device, requires_grad=True) for r in resolutions]
    return MultiRes(base, tensors)
