"""Projected gradient ascent on images in [0, 1] pixel space (L2 or L-infinity balls).

The pieces are pure functions: :func:`sample_start` draws the initial perturbation,
:func:`ascent_step` moves it along the gradient, :func:`project` puts it back into the ball and
the pixel box. :func:`pgd_attack` strings them together for any differentiable ``loss_fn``.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch

__all__ = ["NORMS", "default_eps", "default_step_size", "sample_start", "ascent_step", "project", "pgd_attack"]

NORMS = ("l2", "linf")
REFERENCE_RESOLUTION = 224
REFERENCE_EPS_L2 = 1.5


def _check_norm(norm: str) -> str:
    norm = norm.lower()
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is not supported; choose one of {NORMS}")
    return norm


def default_eps(resolution: int, norm: str = "l2", eps_at_224: Optional[float] = None) -> float:
    """CLIPAG's radius at ``resolution``: L2 eps 1.5 at 224x224, scaled by sqrt(pixel count).

    An L2 ball of radius ``eps`` at 224 px holds perturbations of the same per-pixel size as a
    ball of radius ``eps * resolution / 224`` at ``resolution`` px (sqrt of the pixel-count
    ratio). L-infinity radii are per pixel already, so they are returned unscaled (default 4/255).

    Args:
        resolution: the model's input side in pixels.
        norm: ``"l2"`` or ``"linf"``.
        eps_at_224: the radius at 224 px (default: CLIPAG's 1.5 for L2, 4/255 for L-infinity).

    Returns:
        The radius in [0, 1] pixel units.
    """
    norm = _check_norm(norm)
    if norm == "linf":
        return 4.0 / 255.0 if eps_at_224 is None else float(eps_at_224)
    base = REFERENCE_EPS_L2 if eps_at_224 is None else float(eps_at_224)
    return base * math.sqrt((resolution * resolution) / (REFERENCE_RESOLUTION * REFERENCE_RESOLUTION))


def default_step_size(eps: float, steps: int) -> float:
    """``2.5 * eps / steps`` (Madry et al.'s rule of thumb)."""
    if steps < 1:
        raise ValueError(f"steps={steps}: PGD needs at least one step")
    return 2.5 * eps / steps


def _per_sample_norm(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))


def sample_start(
    shape: torch.Size | tuple[int, ...],
    eps: float,
    norm: str = "l2",
    generator: Optional[torch.Generator] = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """A perturbation drawn uniformly from the ball of radius ``eps`` (per sample, dim 0 = batch)."""
    norm = _check_norm(norm)
    if norm == "linf":
        u = torch.rand(shape, generator=generator, dtype=dtype, device=device)
        return (2 * u - 1) * eps
    direction = torch.randn(shape, generator=generator, dtype=dtype, device=device)
    direction = direction / _per_sample_norm(direction)
    dims = math.prod(shape[1:])
    radius = torch.rand(shape[0], generator=generator, dtype=dtype, device=device) ** (1.0 / dims)
    return direction * (eps * radius).view(-1, *([1] * (len(shape) - 1)))


def ascent_step(delta: torch.Tensor, grad: torch.Tensor, step_size: float, norm: str = "l2") -> torch.Tensor:
    """One steepest-ascent move: ``step_size`` along the gradient, normalized per sample in ``norm``."""
    norm = _check_norm(norm)
    if norm == "linf":
        return delta + step_size * grad.sign()
    return delta + step_size * grad / _per_sample_norm(grad)


def project(delta: torch.Tensor, images01: torch.Tensor, eps: float, norm: str = "l2") -> torch.Tensor:
    """Nearest point (per sample) in the ``eps`` ball, then clipped so ``images01 + delta`` is in [0, 1].

    Clipping to the box after the ball never leaves the ball: it only shrinks coordinates.
    """
    norm = _check_norm(norm)
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        delta = delta * (eps / _per_sample_norm(delta)).clamp(max=1.0)
    return (images01 + delta).clamp(0.0, 1.0) - images01


def pgd_attack(
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    images01: torch.Tensor,
    eps: float,
    steps: int = 3,
    step_size: Optional[float] = None,
    norm: str = "l2",
    random_start: bool = False,
    generator: Optional[torch.Generator] = None,
    noise: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Images in the ``eps`` ball around ``images01`` that (approximately) maximize ``loss_fn``.

    Args:
        loss_fn: maps a batch of [0, 1] images ``(B, C, H, W)`` to a scalar to *maximize*
            (e.g. the CLIP contrastive loss against the batch's captions); must be
            differentiable in its input. Model weights need not require gradients.
        images01: clean images in [0, 1].
        eps: ball radius in [0, 1] pixel units (L2 over the whole image, or per pixel for linf).
        steps: gradient steps (0 returns the clean images, or the random start).
        step_size: defaults to ``2.5 * eps / steps``.
        norm: ``"l2"`` or ``"linf"``.
        random_start: start from a uniform draw in the ball instead of the clean image.
        generator: source of the random start (for reproducible attacks).
        noise: an explicit start perturbation (overrides ``random_start``; used by DDP so that
            every sample gets the same start whatever the number of processes).

    Returns:
        Detached adversarial images, same shape and dtype as ``images01``.
    """
    norm = _check_norm(norm)
    if eps < 0:
        raise ValueError(f"eps={eps} must be >= 0")
    images01 = images01.detach()
    if noise is not None:
        delta = noise.to(images01)
    elif random_start:
        delta = sample_start(images01.shape, eps, norm, generator, images01.dtype, images01.device)
    else:
        delta = torch.zeros_like(images01)
    delta = project(delta, images01, eps, norm)
    if steps > 0:
        step_size = default_step_size(eps, steps) if step_size is None else float(step_size)
    for _ in range(steps):
        delta.requires_grad_(True)
        with torch.enable_grad():
            loss = loss_fn(images01 + delta)
            (grad,) = torch.autograd.grad(loss, delta)
        delta = project(ascent_step(delta.detach(), grad, step_size, norm), images01, eps, norm)
    return (images01 + delta).detach()
