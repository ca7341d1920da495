"""The numbers of a folder of generated pictures: CLIP score, FID / KID / IS, and the mini world's.

- :func:`clip_score`: ``100 * max(cos(image, caption), 0)`` with a scoring CLIP (the definition
  torchmetrics' ``CLIPScore`` uses), best with another model than the one that painted.
- :func:`inception_scores`: FID and KID against reference pictures, and IS, through torchmetrics
  on the field's Inception-v3 (:mod:`.inception`).
- :func:`judge_scores`: for captions of the mini world, the world judge's readings and FID in the
  judge's feature space against the world's own renders of the same captions (torchmetrics' FID
  with the judge as the feature network): the mini world's FID, offline and in seconds.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Union

import torch
from torch import nn

__all__ = ["clip_score", "inception_scores", "judge_scores", "JudgeFeatures", "world_captions"]


@torch.no_grad()
def clip_score(images01: torch.Tensor, captions: Sequence[str], model: Any, batch_size: int = 64) -> torch.Tensor:
    """``(B,)`` CLIP score of each picture with its caption: ``100 * max(cos, 0)``.

    Args:
        images01: ``(B, 3, H, W)`` in [0, 1].
        captions: one per picture (cut to the model's context length).
        model: a clipag model (``encode_pixels`` / ``encode_text``).
        batch_size: pictures encoded at once.

    Returns:
        The scores, on the CPU.
    """
    from ..tokenizer import tokenize

    if len(captions) != len(images01):
        raise ValueError(f"{len(images01)} pictures but {len(captions)} captions; give one caption per picture")
    device = next(model.parameters()).device
    scores = []
    for start in range(0, len(images01), batch_size):
        chunk = images01[start:start + batch_size].to(device).float()
        tokens = tokenize(list(captions[start:start + batch_size]), context_length=model.context_length,
                          truncate=True).to(device)
        cos = torch.nn.functional.cosine_similarity(model.encode_pixels(chunk).float(),
                                                    model.encode_text(tokens).float(), dim=-1)
        scores.append(100 * cos.clamp_min(0).cpu())
    return torch.cat(scores)


def _uint8(images01: torch.Tensor) -> torch.Tensor:
    return (images01.clamp(0, 1) * 255).round().to(torch.uint8)


def inception_scores(images01: torch.Tensor, reference01: Optional[torch.Tensor],
                     weights: Union[str, os.PathLike], kid_subset: int = 1000, splits: int = 10) -> dict[str, float]:
    """FID and KID against ``reference01`` (when given) and IS of ``images01``, on the Inception-v3.

    Args:
        images01: generated pictures ``(B, 3, H, W)`` in [0, 1] (resized to 299 px by the extractor).
        reference01: reference pictures, or None for IS only.
        weights: the Inception weights file (:func:`~.inception.inception_path`).
        kid_subset: KID's subset size (cut to the smaller set).
        splits: IS's number of splits (cut to the number of pictures).

    Returns:
        ``fid``, ``kid``, ``kid_std`` (with a reference), ``is``, ``is_std``.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.inception import InceptionScore
    from torchmetrics.image.kid import KernelInceptionDistance

    from .inception import inception_extractor

    pool = inception_extractor(["2048"], weights)
    pool.num_features = 2048
    logits = inception_extractor(["logits_unbiased"], weights)
    out: dict[str, float] = {}
    fake = _uint8(images01)
    if reference01 is not None:
        real = _uint8(reference01)
        fid = FrechetInceptionDistance(feature=pool)
        subset = max(2, min(kid_subset, len(fake), len(real)))
        kid = KernelInceptionDistance(feature=pool, subset_size=subset, subsets=10)
        for metric in (fid, kid):
            metric.update(real, real=True)
            metric.update(fake, real=False)
        out["fid"] = float(fid.compute())
        kid_mean, kid_std = kid.compute()
        out["kid"], out["kid_std"] = float(kid_mean), float(kid_std)
    inception = InceptionScore(feature=logits, splits=max(1, min(splits, len(fake))))
    inception.update(fake)
    is_mean, is_std = inception.compute()
    out["is"], out["is_std"] = float(is_mean), float(is_std)
    return out


class JudgeFeatures(nn.Module):
    """The mini world judge's 128-d hidden layer, as a feature network for torchmetrics' FID."""

    num_features = 128

    def __init__(self, judge: Optional[nn.Module] = None) -> None:
        super().__init__()
        from ..mini.judge import load_judge

        self.judge = (judge or load_judge()).eval()

    @torch.no_grad()
    def forward(self, images01: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        from ..mini import world

        x = images01.float()
        if x.shape[-2:] != (world.SIZE, world.SIZE):
            x = F.interpolate(x, size=(world.SIZE, world.SIZE), mode="bilinear", antialias=True)
        return self.judge.hidden(self.judge.features(x * 2 - 1))


def world_captions(captions: Sequence[str]) -> Optional[list[int]]:
    """The mini-world caption ids of ``captions``, or None when one of them is not a world caption."""
    from ..mini import judge, world

    ids = []
    for caption in captions:
        try:
            parts = world.parse_caption(caption)
        except ValueError:
            return None
        ids.append(world.caption_index(*(judge.CLASSES[a].index(parts[a]) for a in judge.ATTRIBUTES)))
    return ids


def judge_scores(images01: torch.Tensor, captions: Sequence[str], seed: int = 0) -> dict[str, float]:
    """The judge's accuracies and confidence, and FID in its feature space against clean renders of the
    same captions (one render per picture, seeded).

    Args:
        images01: ``(B, 3, H, W)`` in [0, 1].
        captions: mini-world captions, one per picture.
        seed: the renders' jitter.

    Returns:
        ``colour``, ``shape``, ``position``, ``background``, ``colour+shape``, ``all``, ``confidence``,
        ``judge_fid``.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    from ..mini import judge, world

    ids = world_captions(captions)
    if ids is None:
        raise ValueError("judge scores need mini-world captions ('a red circle on the left, blue background')")
    model = judge.load_judge()
    out = judge.score(images01, list(captions), model)
    out["confidence"] = judge.confidence(images01, list(captions), model)
    fid = FrechetInceptionDistance(feature=JudgeFeatures(model))
    fid.update(world.render_clean(ids, seed=seed), real=True)
    fid.update(images01.float(), real=False)
    out["judge_fid"] = float(fid.compute())
    return out
