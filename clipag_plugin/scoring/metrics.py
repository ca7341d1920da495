"""The numbers of a folder of generated pictures: CLIP score, FID / KID / IS, and the mini world's.

- :func:`clip_score`: ``100 * max(cos(image, caption), 0)`` with a scoring CLIP (the definition
  torchmetrics' ``CLIPScore`` uses), best with another model than the one that painted.
- :func:`inception_scores`: FID and KID against reference pictures, and IS, through torchmetrics
  on the field's Inception-v3 (:mod:`.inception`).
- :func:`judge_scores`: for captions of the mini world, the world judge's readings and FID in the
  judge's feature space against the world's own renders of the same captions (torchmetrics' FID
  with the judge as the feature network): the mini world's FID, offline and in seconds.

:class:`PictureScores` computes all of them over chunks of pictures (what ``clipag score`` does).
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Union

import torch
from torch import nn

__all__ = ["clip_score", "inception_scores", "judge_scores", "PictureScores", "JudgeFeatures", "world_captions"]


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
    scores = PictureScores(judge=True, seed=seed)
    scores.update(images01, captions)
    return scores.compute()


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
    scores = PictureScores(inception=weights, kid_subset=kid_subset, splits=splits)
    if reference01 is not None:
        scores.add_reference(reference01)
    scores.update(images01, [""] * len(images01))
    return scores.compute()


class PictureScores:
    """The numbers of a set of pictures, fed in chunks, so that a folder of 10,000 need not fit in memory.

    Args:
        clip_model: the scoring CLIP (None: no CLIP score).
        judge: the mini world's numbers (every caption must be a world caption).
        inception: the Inception weights file (None: no FID, KID, IS).
        kid_subset: KID's subset size (cut to the smaller set at the end).
        splits: IS's splits (cut to the number of pictures).
        seed: the jitter of the world renders the judge FID compares with.
    """

    def __init__(self, clip_model: Any = None, judge: bool = False,
                 inception: Optional[Union[str, os.PathLike]] = None, kid_subset: int = 1000, splits: int = 10,
                 seed: int = 0) -> None:
        self.clip_model, self.kid_subset, self.splits, self.seed = clip_model, kid_subset, splits, seed
        self.judge = None
        self.references = 0
        if judge or inception is not None:
            try:
                from torchmetrics.image.fid import FrechetInceptionDistance
            except ImportError as err:
                from .inception import MISSING

                raise ImportError(MISSING) from err
        if judge:
            from ..mini.judge import load_judge

            self.judge = load_judge()
            self.judge_fid = FrechetInceptionDistance(feature=JudgeFeatures(self.judge))
        self.inception = inception is not None
        if self.inception:
            from torchmetrics.image.inception import InceptionScore
            from torchmetrics.image.kid import KernelInceptionDistance

            from .inception import inception_extractor

            pool = inception_extractor(["2048"], inception)
            pool.num_features = 2048
            # the reference's features are kept across reset(): one pass over it serves every model
            self.fid = FrechetInceptionDistance(feature=pool, reset_real_features=False)
            self.kid = KernelInceptionDistance(feature=pool, subset_size=kid_subset, reset_real_features=False)
            self.inception_score = InceptionScore(feature=inception_extractor(["logits_unbiased"], inception),
                                                  splits=splits)
        self.reset()

    def reset(self) -> None:
        """Forget the pictures (the reference stays)."""
        self.count, self.clip_sum, self.sums = 0, 0.0, {}
        for metric in ("judge_fid", "fid", "kid", "inception_score"):
            if hasattr(self, metric):
                getattr(self, metric).reset()

    def add_reference(self, images01: torch.Tensor) -> None:
        """Real pictures for FID and KID, ``(B, 3, H, W)`` in [0, 1]; call once per chunk."""
        if not self.inception:
            raise ValueError("reference pictures are for FID and KID: pass inception=WEIGHTS")
        real = _uint8(images01)
        self.fid.update(real, real=True)
        self.kid.update(real, real=True)
        self.references += len(real)

    def update(self, images01: torch.Tensor, captions: Sequence[str]) -> None:
        """Add a chunk of generated pictures ``(B, 3, H, W)`` in [0, 1] with their captions."""
        if len(captions) != len(images01):
            raise ValueError(f"{len(images01)} pictures but {len(captions)} captions; give one caption per picture")
        self.count += len(images01)
        if self.clip_model is not None:
            self.clip_sum += float(clip_score(images01, captions, self.clip_model).sum())
        if self.judge is not None:
            from ..mini import judge, world

            ids = world_captions(captions)
            if ids is None:
                raise ValueError("judge scores need mini-world captions ('a red circle on the left, blue background')")
            numbers = judge.score(images01, list(captions), self.judge)
            numbers["confidence"] = judge.confidence(images01, list(captions), self.judge)
            for key, value in numbers.items():
                self.sums[key] = self.sums.get(key, 0.0) + value * len(images01)
            self.judge_fid.update(world.render_clean(ids, seed=self.seed + self.count), real=True)
            self.judge_fid.update(images01.float(), real=False)
        if self.inception:
            fake = _uint8(images01)
            if self.references:
                self.fid.update(fake, real=False)
                self.kid.update(fake, real=False)
            self.inception_score.update(fake)

    def compute(self) -> dict[str, float]:
        """The numbers of the pictures added since the last :meth:`reset`."""
        if not self.count:
            raise ValueError("no pictures were added")
        out: dict[str, float] = {"pictures": self.count}
        if self.clip_model is not None:
            out["clip_score"] = self.clip_sum / self.count
        out.update({key: value / self.count for key, value in self.sums.items()})
        if self.judge is not None:
            out["judge_fid"] = float(self.judge_fid.compute())
        if self.inception:
            if self.references:
                out["fid"] = float(self.fid.compute())
                self.kid.subset_size = max(2, min(self.kid_subset, self.count, self.references))
                kid_mean, kid_std = self.kid.compute()
                out["kid"], out["kid_std"] = float(kid_mean), float(kid_std)
            self.inception_score.splits = max(1, min(self.splits, self.count))
            is_mean, is_std = self.inception_score.compute()
            out["is"], out["is_std"] = float(is_mean), float(is_std)
        return out
