"""Scoring generations with a held-out CLIP (one the image was not optimized against)."""

from __future__ import annotations

from typing import Sequence, Union

import torch

from ..guidance.losses import cosine_similarity
from ..guidance.prompts import Prompt, parse_prompts

__all__ = ["heldout_cosine"]


@torch.no_grad()
def heldout_cosine(
    model, images01: torch.Tensor, prompt: Union[str, Prompt, Sequence[Union[str, Prompt]]], truncate: bool = False
) -> torch.Tensor:
    """Cosine ``(B,)`` of each image to the positive prompts (mean over them) under ``model``.

    ``model`` is anything :func:`clipag.generate` accepts as a single model. A generation that
    only fooled its own encoder scores low here; one that painted the prompt scores high.
    """
    from .api import load_guides

    prompts = [p for p in parse_prompts(prompt) if p.weight > 0]
    if not prompts:
        raise ValueError("held-out scoring needs at least one prompt with a positive weight")
    guide = load_guides(model, prompts, truncate=truncate)[0]
    device = next(guide.model.parameters()).device
    emb = guide.model.encode_pixels(images01.to(device).float()).float()
    return cosine_similarity(emb, guide.texts).mean(dim=1).cpu()
