"""The model's own samples as negatives: persistent contrastive divergence on ``p(image | caption)``.

Adversarial training shapes the image tower near real images; a picture painted by gradient
ascent from a prior sample travels far from them and can reach a real image's cosine while
showing little of the caption. This term trains on exactly those pictures. A persistent buffer
holds images, each with a target class caption; every micro-step a few of them take more ascent
steps (L2-normalized, as :func:`clipag_plugin.synthesis.loop.l2_step_`) towards their caption's
embedding, and the training loss gets

    weight * (mean cos(sample, its target caption) - mean cos(real image, its caption))

which lowers the cosine the model gives its own pictures and keeps (raises) that of real images:
the gradient of maximum likelihood for an energy model with ``energy = -cos(image, caption)``
(JEM, Grathwohl et al. 2020; persistent buffer with random resets as there). Samples are
re-drawn from the prior with a small probability per visit so the buffer keeps young samples.

Functions of ``(buffer, tensors, callables, generator)``; the training loop owns the buffer and
calls :func:`advance` once per micro-step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .objective import _at_least_fp32

__all__ = ["Prior", "SampleBuffer", "gmm_prior", "new_buffer", "visit", "ascend", "advance", "contrastive_divergence"]

Prior = Callable[[int, torch.Generator], torch.Tensor]
"""``prior(n, generator) -> (n, 3, H, W)`` images in [0, 1] at the model's input size."""


def gmm_prior(name: str | None, size: int, device: torch.device) -> Prior:
    """Samples of a GMM image prior (a file, a named prior such as ``miniworld``, None: the shipped
    photo GMM) upsampled to ``size`` x ``size`` on ``device``."""
    from ..synthesis.gmm import load_gmm
    from ..synthesis.init import gmm_candidates

    gmm = load_gmm(name)
    return lambda n, generator: gmm_candidates(gmm, n, size, generator).to(device)


@dataclass
class SampleBuffer:
    """``images`` (N, 3, H, W) in [0, 1], each painted towards class ``targets[i]`` (an index into
    ``n_classes``); re-drawn samples come from ``prior``."""

    images: torch.Tensor
    targets: torch.Tensor
    n_classes: int
    prior: Prior

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Images and targets on the CPU (for a checkpoint)."""
        return {"images": self.images.detach().cpu(), "targets": self.targets.cpu()}

    def load_state_dict(self, saved: dict[str, torch.Tensor]) -> None:
        self.images.copy_(saved["images"].to(self.images))
        self.targets.copy_(saved["targets"].to(self.targets))


def new_buffer(prior: Prior, size: int, n_classes: int, generator: torch.Generator) -> SampleBuffer:
    """``size`` prior samples with uniformly drawn target classes."""
    if size < 1 or n_classes < 1:
        raise ValueError(f"new_buffer: size={size} and n_classes={n_classes} must both be >= 1")
    images = prior(size, generator)
    targets = torch.randint(n_classes, (size,), generator=generator, device=generator.device)
    return SampleBuffer(images, targets.to(images.device), n_classes, prior)


def visit(buffer: SampleBuffer, count: int, reset: float,
          generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pick ``count`` distinct slots; re-draw each from the prior (new image, new target) with probability ``reset``.

    Returns ``(slots, images, targets)``; write the advanced images back with ``buffer.images[slots] = ...``.
    """
    n = buffer.images.shape[0]
    if not 1 <= count <= n:
        raise ValueError(f"visit: count={count} must be in [1, {n}] (the buffer size)")
    device = buffer.images.device
    slots = torch.randperm(n, generator=generator, device=generator.device)[:count].to(device)
    fresh = (torch.rand(count, generator=generator, device=generator.device) < reset).to(device)
    if bool(fresh.any()):
        k = int(fresh.sum())
        buffer.images[slots[fresh]] = buffer.prior(k, generator).to(device, buffer.images.dtype)
        buffer.targets[slots[fresh]] = torch.randint(buffer.n_classes, (k,), generator=generator,
                                                     device=generator.device).to(device)
    return slots, buffer.images[slots].clone(), buffer.targets[slots].clone()


def ascend(encode: Callable[[torch.Tensor], torch.Tensor], images01: torch.Tensor, target_features: torch.Tensor,
           steps: int, step_length: float) -> torch.Tensor:
    """``steps`` L2-normalized steps of ``step_length`` up ``cos(encode(x), target)``, clamped to [0, 1].

    ``encode`` maps [0, 1] images to (unnormalized) features; ``target_features`` has one row per
    image. Model weights need not require gradients; the result is detached.
    """
    target = F.normalize(target_features.detach().float(), dim=-1)
    x = images01.detach()
    for _ in range(steps):
        x = x.requires_grad_(True)
        with torch.enable_grad():
            score = (F.normalize(encode(x).float(), dim=-1) * target).sum()
            (grad,) = torch.autograd.grad(score, x)
        norms = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (grad.dim() - 1)))
        x = (x.detach() + step_length * grad / norms).clamp(0, 1)
    return x.detach()


def advance(buffer: SampleBuffer, encode: Callable[[torch.Tensor], torch.Tensor], class_features: torch.Tensor,
            count: int, steps: int, step_length: float, reset: float,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One visit: ``count`` samples (some re-drawn) take ``steps`` ascent steps towards their class and
    are written back; returns ``(samples, targets)``, targets as indices into ``class_features``."""
    slots, samples, targets = visit(buffer, count, reset, generator)
    samples = ascend(encode, samples, class_features[targets], steps, step_length)
    buffer.images[slots] = samples.to(buffer.images.dtype)
    return samples, targets


def contrastive_divergence(sample_features: torch.Tensor, sample_targets: torch.Tensor, real_features: torch.Tensor,
                           real_targets: torch.Tensor) -> torch.Tensor:
    """``mean cos(sample, its target) - mean cos(real, its caption)``: minimizing it pushes samples down, reals up.

    ``*_targets`` are the (unnormalized) caption features, one row per image.
    """
    if sample_features.shape != sample_targets.shape or real_features.shape != real_targets.shape:
        raise ValueError("contrastive_divergence: features and targets need the same shape, got "
                         f"{tuple(sample_features.shape)} vs {tuple(sample_targets.shape)} and "
                         f"{tuple(real_features.shape)} vs {tuple(real_targets.shape)}")

    def cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (F.normalize(_at_least_fp32(a), dim=-1) * F.normalize(_at_least_fp32(b), dim=-1)).sum(-1).mean()

    return cos(sample_features, sample_targets) - cos(real_features, real_targets)
