"""Cubic Bezier curves as pure functions: evaluate, and flatten into short line pieces."""

from __future__ import annotations

import torch

__all__ = ["cubic_point", "flatten_counts", "flatten_cubics"]


def cubic_point(ctrl: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Points of cubic Beziers ``ctrl`` ``(..., 4, 2)`` at parameters ``t`` (broadcast to ``...``).

    Args:
        ctrl: ``(..., 4, 2)`` control points.
        t: parameters in [0, 1].

    Returns:
        ``(..., 2)`` points; differentiable in ``ctrl`` (and ``t``).
    """
    t = t.unsqueeze(-1)
    s = 1.0 - t
    p0, p1, p2, p3 = ctrl.unbind(-2)
    return (s * s * s) * p0 + (3.0 * s * s * t) * p1 + (3.0 * s * t * t) * p2 + (t * t * t) * p3


@torch.no_grad()
def flatten_counts(ctrl: torch.Tensor, tolerance: float = 0.1, max_pieces: int = 64) -> torch.Tensor:
    """How many equal-parameter line pieces keep each curve within ``tolerance`` pixels.

    ``ctrl`` is ``(B, S, 4, 2)``; the count is shared by the batch (the largest one wins), so the
    result is ``(S,)`` ints in ``[1, max_pieces]``. A chord over a parameter step ``h`` strays at
    most ``h**2 / 8 * max|B''|`` from the curve, and ``|B''| <= 6 * max second difference``.
    """
    if tolerance <= 0:
        raise ValueError(f"tolerance must be > 0 pixels, got {tolerance}")
    d1 = ctrl[..., 0, :] - 2 * ctrl[..., 1, :] + ctrl[..., 2, :]
    d2 = ctrl[..., 1, :] - 2 * ctrl[..., 2, :] + ctrl[..., 3, :]
    dd = torch.maximum(d1.norm(dim=-1), d2.norm(dim=-1)).amax(dim=0)  # (S,)
    counts = torch.ceil(torch.sqrt(0.75 * dd / tolerance))
    return counts.clamp_(1, max_pieces).long()


def flatten_cubics(ctrl: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split curve ``s`` of ``ctrl`` ``(B, S, 4, 2)`` into ``counts[s]`` line pieces.

    Returns ``(starts, ends, piece_curve)``: ``(B, L, 2)`` piece end points (differentiable in
    ``ctrl``) and ``(L,)`` the curve each piece belongs to, with ``L = counts.sum()``.
    """
    device = ctrl.device
    counts = counts.to(device)
    n_curves = counts.shape[0]
    curve_of_point = torch.repeat_interleave(torch.arange(n_curves, device=device), counts + 1)
    first_point = torch.cumsum(counts + 1, 0) - (counts + 1)
    step = torch.arange(curve_of_point.shape[0], device=device) - first_point[curve_of_point]
    t = step.to(ctrl.dtype) / counts[curve_of_point].to(ctrl.dtype)
    points = cubic_point(ctrl[:, curve_of_point], t)  # (B, M, 2)
    # Every point but the last of its curve starts a piece.
    is_start = step < counts[curve_of_point]
    start_index = torch.nonzero(is_start).squeeze(1)
    return points[:, start_index], points[:, start_index + 1], curve_of_point[start_index]
