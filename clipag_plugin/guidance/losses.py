"""Distances between image and text embeddings, and the weighted multi-prompt loss.

All functions take unnormalized embeddings and normalize them themselves; distances are
pairwise: ``(N, D)`` images x ``(T, D)`` texts -> ``(N, T)``.
"""

from __future__ import annotations

from typing import Callable, Literal, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "cosine_similarity",
    "cosine_distance",
    "spherical_distance_sq",
    "DISTANCES",
    "prompt_loss",
    "positive_cosine",
    "view_crop_loss",
]


def cosine_similarity(images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
    """``(N, D), (T, D) -> (N, T)`` cosine similarities."""
    return F.normalize(images, dim=-1) @ F.normalize(texts, dim=-1).T


def cosine_distance(images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
    """``1 - cos``, in [0, 2] (the CLIPAG notebook's loss)."""
    return 1.0 - cosine_similarity(images, texts)


def spherical_distance_sq(images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
    """``2 * arcsin(|a - b| / 2)^2`` of unit vectors: half the squared great-circle angle (VQGAN+CLIP's loss)."""
    a = F.normalize(images, dim=-1)[:, None, :]
    b = F.normalize(texts, dim=-1)[None, :, :]
    chord = (a - b).norm(dim=-1).div(2).clamp(max=1.0)
    return chord.arcsin().pow(2).mul(2)


Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
DISTANCES: dict[str, Distance] = {"cosine": cosine_distance, "spherical": spherical_distance_sq}


def _distance(name: str) -> Distance:
    try:
        return DISTANCES[name]
    except KeyError:
        raise ValueError(f"unknown distance {name!r}; choose from {', '.join(DISTANCES)}") from None


def prompt_loss(
    images: torch.Tensor,
    texts: torch.Tensor,
    weights: torch.Tensor | Sequence[float],
    stops: torch.Tensor | Sequence[float] | None = None,
    distance: Literal["cosine", "spherical"] = "cosine",
    groups: int = 1,
) -> torch.Tensor:
    """Weighted multi-prompt loss: ``sum_t |w_t| * mean_views(sign(w_t) * d(view, t))``.

    A negative weight pushes away from its text. ``stops[t]`` zeroes the gradient of views whose
    signed distance ``sign(w_t) * d`` is already below it (the value is unchanged), exactly as
    VQGAN+CLIP's ``Prompt`` module. Weights (and stops) may also be one row per image: then each
    image has prompts of its own among the ``T`` texts (a zero weight leaves a text out), so images
    with different captions share one batch.

    Args:
        images: ``(groups * V, D)`` view embeddings, grouped by image (V consecutive views each).
        texts: ``(T, D)`` text embeddings.
        weights, stops: ``(T,)`` for every image alike, or ``(groups, T)`` one row per image;
            ``stops=None`` means no stop.
        groups: number of images the views belong to.

    Returns:
        ``(groups,)`` loss per image.
    """
    if images.shape[0] % groups:
        raise ValueError(f"{images.shape[0]} view embeddings do not split into {groups} equal groups")
    n_texts = texts.shape[0]
    w = torch.as_tensor(weights, dtype=images.dtype, device=images.device)
    if w.dim() <= 1:
        if w.reshape(-1).shape[0] != n_texts:
            raise ValueError(f"{w.reshape(-1).shape[0]} weights for {n_texts} prompts; give one weight per prompt")
        w = w.reshape(1, n_texts)
    elif w.shape != (groups, n_texts):
        raise ValueError(f"weights of shape {tuple(w.shape)} for {groups} images and {n_texts} prompts; give (T,) "
                         f"or one row per image ({groups}, {n_texts})")
    d = _distance(distance)(images, texts).reshape(groups, -1, n_texts) * torch.sign(w)[:, None, :]  # signed
    if stops is not None:
        s = torch.as_tensor(stops, dtype=images.dtype, device=images.device)
        s = s.reshape(1, 1, n_texts) if s.dim() <= 1 else s[:, None, :]
        # same value, gradient only where the signed distance is above the stop (straight-through max)
        floor = torch.maximum(d, s)
        d = floor + (d - floor).detach()
    return (d.mean(dim=1) * w.abs()).sum(dim=-1)


def positive_cosine(images: torch.Tensor, texts: torch.Tensor, weights: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """``(groups,)`` mean cosine of each image's views to its positively weighted texts
    (weights ``(T,)`` or one row per image, as :func:`prompt_loss`); NaN where an image has none."""
    cos = cosine_similarity(images, texts).reshape(groups, -1, texts.shape[0]).mean(dim=1)  # (groups, T)
    positive = (torch.as_tensor(weights, device=images.device) > 0).to(cos.dtype)
    positive = positive.reshape(1, -1) if positive.dim() <= 1 else positive  # (1 or groups, T)
    return (cos * positive).sum(dim=-1) / positive.sum(dim=-1)


def view_crop_loss(
    view_embeddings: torch.Tensor,
    crop_embeddings: torch.Tensor,
    texts: torch.Tensor,
    weights: torch.Tensor | Sequence[float],
    stops: torch.Tensor | Sequence[float] | None = None,
    view_weight: float = 1.0,
    crop_weight: float = 5.0,
    distance: Literal["cosine", "spherical"] = "cosine",
    groups: int = 1,
) -> torch.Tensor:
    """CLIPAG's loss per image: ``view_weight * L(views) + crop_weight * L(crops)`` (empty parts count 0)."""
    total = texts.new_zeros(groups)
    if view_embeddings.shape[0]:
        total = total + view_weight * prompt_loss(view_embeddings, texts, weights, stops, distance, groups)
    if crop_embeddings.shape[0]:
        total = total + crop_weight * prompt_loss(crop_embeddings, texts, weights, stops, distance, groups)
    return total
