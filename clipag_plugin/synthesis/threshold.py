"""Dynamic thresholding (Saharia et al. 2022, Imagen) for images in [0, 1]."""

from __future__ import annotations

import torch

__all__ = ["dynamic_threshold"]


def dynamic_threshold(images: torch.Tensor, p: float = 0.95) -> torch.Tensor:
    """Map ``(B, C, H, W)`` images back into [0, 1] without flattening their contrast.

    In the [-1, 1] range, per image: ``s = max(1, quantile_p(|x|))``, then ``x = clamp(x, -s, s) / s``.
    An image already in [0, 1] is unchanged (``s = 1`` is a plain clamp); one that overshoots is
    rescaled as a whole, so saturated pixels do not pile up at 0 and 1.
    """
    if not 0.0 < p <= 1.0:
        raise ValueError(f"dynamic threshold quantile p={p}: expected 0 < p <= 1 (the notebook uses 0.95)")
    x = images * 2 - 1
    flat = x.abs().reshape(x.shape[0], -1)
    s = torch.quantile(flat, p, dim=1).clamp(min=1.0).view(-1, *([1] * (x.dim() - 1)))
    x = torch.maximum(torch.minimum(x, s), -s) / s
    return (x + 1) / 2
