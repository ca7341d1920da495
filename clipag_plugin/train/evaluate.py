"""Clean and robust evaluation on in-memory tensors: caption retrieval and zero-shot accuracy.

Attacks are PGD in [0, 1] pixel space against the metric being measured: for retrieval the
cross-entropy of the true caption among all captions, for zero-shot the cross-entropy of the
true class among all classes. Everything takes ``images01`` (float ``(N, 3, H, W)`` in [0, 1])
so that both the CLI (images read from disk) and the mini world (images rendered in memory)
use the same code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

import torch
import torch.nn.functional as F

from ..model import ClipagModel
from .objective import clip_logit_scale
from .pgd import NORMS, pgd_attack
from .text import encode_captions

__all__ = ["AttackConfig", "DEFAULT_TEMPLATES", "retrieval_accuracy", "zero_shot_accuracy", "zero_shot_classifier",
           "image_features"]

# The seven-template ensemble OpenAI's notebooks use for ImageNet zero-shot.
DEFAULT_TEMPLATES = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)


def _parse_number(text: str) -> float:
    if "/" in text:
        num, den = text.split("/", 1)
        return float(num) / float(den)
    return float(text)


@dataclass(frozen=True)
class AttackConfig:
    """A PGD attack for evaluation: norm, radius in [0, 1] pixels, steps (step size 2.5 eps / steps)."""

    norm: str = "l2"
    eps: float = 0.5
    steps: int = 10
    step_size: Optional[float] = None
    random_start: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"AttackConfig: norm={self.norm!r}; choose one of {NORMS}")
        if self.eps < 0 or self.steps < 0:
            raise ValueError(f"AttackConfig: eps={self.eps} and steps={self.steps} must be >= 0")

    @classmethod
    def parse(cls, spec: str, steps: int = 10) -> "AttackConfig":
        """``"l2:0.5"``, ``"linf:4/255"`` (optionally ``":steps"``) -> AttackConfig."""
        parts = spec.split(":")
        if len(parts) not in (2, 3):
            raise ValueError(f"attack {spec!r}: expected NORM:EPS[:STEPS], e.g. l2:0.5 or linf:4/255:10")
        try:
            return cls(parts[0].lower(), _parse_number(parts[1]), int(parts[2]) if len(parts) == 3 else steps)
        except ValueError as err:
            raise ValueError(f"attack {spec!r}: {err}") from err

    @property
    def label(self) -> str:
        eps = f"{self.eps * 255:.3g}/255" if self.norm == "linf" else f"{self.eps:.3g}"
        return f"pgd{self.steps}-{self.norm} eps={eps}"


def _chunks(n: int, size: int) -> Iterable[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _device_of(model: ClipagModel) -> torch.device:
    return next(model.parameters()).device


def _text_features(model: ClipagModel, tokens: torch.Tensor, batch_size: int) -> torch.Tensor:
    device = _device_of(model)
    with torch.no_grad():
        feats = [encode_captions(model, tokens[s].to(device)).float() for s in _chunks(tokens.shape[0], batch_size)]
    return F.normalize(torch.cat(feats), dim=-1)


def image_features(model: ClipagModel, images01: torch.Tensor, attack: Optional[AttackConfig] = None,
                   targets: Optional[torch.Tensor] = None, labels: Optional[torch.Tensor] = None,
                   batch_size: int = 64) -> torch.Tensor:
    """Normalized image features; with ``attack``, of PGD images that push each image away from its label.

    ``targets`` (``(K, D)`` normalized text features) and ``labels`` (index into them per image)
    define the attacked cross-entropy.
    """
    device = _device_of(model)
    scale = clip_logit_scale(model.logit_scale)
    if isinstance(attack, str):
        attack = AttackConfig.parse(attack)
    out = []
    was_training = model.training
    model.eval()
    for s in _chunks(images01.shape[0], batch_size):
        x = images01[s].to(device).float()
        if attack is not None and attack.steps > 0 and attack.eps > 0:
            y = labels[s].to(device)

            def loss_fn(x01: torch.Tensor, y: torch.Tensor = y) -> torch.Tensor:
                logits = scale * F.normalize(model.encode_pixels(x01).float(), dim=-1) @ targets.t()
                return F.cross_entropy(logits, y, reduction="sum")

            gen = torch.Generator(device=device).manual_seed(attack.seed + s.start)
            x = pgd_attack(loss_fn, x, attack.eps, attack.steps, attack.step_size, attack.norm,
                           attack.random_start, gen)
        with torch.no_grad():
            out.append(F.normalize(model.encode_pixels(x).float(), dim=-1))
    model.train(was_training)
    return torch.cat(out)


def _recall(similarity: torch.Tensor, query_ids: torch.Tensor, item_ids: torch.Tensor, ks: Sequence[int]) -> dict[int, float]:
    """Fraction of queries whose top-k items include one with the query's id."""
    order = similarity.argsort(dim=1, descending=True)
    hits = item_ids[order] == query_ids[:, None]
    return {k: float(hits[:, : min(k, hits.shape[1])].any(dim=1).float().mean()) for k in ks}


def retrieval_accuracy(model: ClipagModel, images01: torch.Tensor, tokens: torch.Tensor,
                       attack: Optional[AttackConfig | str] = None, ks: Sequence[int] = (1, 5),
                       batch_size: int = 64) -> dict[str, float]:
    """Image->text and text->image recall@k of pairs ``(images01[i], tokens[i])``.

    Identical captions count as the same caption (a hit on any of them is a hit). With
    ``attack`` (an :class:`AttackConfig` or a spec such as ``"l2:1.0"``), images are perturbed
    to lose their caption among all captions.


    Args:
        model: the CLIP to evaluate.
        images01: ``(N, 3, H, W)`` images in [0, 1].
        tokens: ``(N, context)`` caption tokens, row ``i`` the caption of image ``i``.
        attack: an attack config or spec, or None for clean accuracy.
        ks: the recall cut-offs.
        batch_size: images per forward.

    Returns:
        ``{"image_to_text_r1": ..., "image_to_text_r5": ..., "text_to_image_r1": ..., ...}``.
    """
    if images01.shape[0] != tokens.shape[0]:
        raise ValueError(f"retrieval_accuracy: {images01.shape[0]} images but {tokens.shape[0]} captions")
    text = _text_features(model, tokens, batch_size)
    _, caption_ids = torch.unique(tokens.cpu(), dim=0, return_inverse=True)
    caption_ids = caption_ids.to(text.device)
    labels = torch.arange(tokens.shape[0])
    image = image_features(model, images01, attack, text, labels, batch_size)
    sim = image @ text.t()
    i2t = _recall(sim, caption_ids, caption_ids, ks)
    t2i = _recall(sim.t(), caption_ids, caption_ids, ks)
    out = {f"image_to_text_r{k}": v for k, v in i2t.items()}
    out |= {f"text_to_image_r{k}": v for k, v in t2i.items()}
    return out


def zero_shot_classifier(model: ClipagModel, class_names: Sequence[str],
                         templates: Sequence[str] = DEFAULT_TEMPLATES) -> torch.Tensor:
    """``(C, D)`` normalized class embeddings: mean of the normalized template embeddings per class."""
    from ..tokenizer import tokenize

    if not class_names:
        raise ValueError("zero_shot_classifier: no class names")
    if not templates or any("{}" not in t for t in templates):
        raise ValueError(f"templates must each contain '{{}}' for the class name, got {list(templates)}")
    rows = []
    for name in class_names:
        tokens = tokenize([t.format(name) for t in templates], context_length=model.context_length, truncate=True)
        rows.append(F.normalize(_text_features(model, tokens, 256).mean(dim=0), dim=-1))
    return torch.stack(rows)


def zero_shot_accuracy(model: ClipagModel, images01: torch.Tensor, labels: torch.Tensor,
                       class_names: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES,
                       attack: Optional[AttackConfig | str] = None, batch_size: int = 64,
                       classifier: Optional[torch.Tensor] = None) -> dict[str, float]:
    """Top-1 / top-5 zero-shot accuracy (``{"top1", "top5", "n"}``), clean or under ``attack``.

    Args:
        model: the CLIP to evaluate.
        images01: ``(N, 3, H, W)`` images in [0, 1].
        labels: ``(N,)`` class indices.
        class_names: one name per class.
        templates: prompt templates averaged per class (default: the 7 of OpenAI's notebook).
        attack: an attack config or spec (``"l2:1.0"``, ``"linf:4/255"``), or None.
        batch_size: images per forward.
        classifier: precomputed ``(C, D)`` class embeddings (skips the text tower).

    Returns:
        ``{"top1": ..., "top5": ..., "n": ...}``.
    """
    labels = torch.as_tensor(labels, dtype=torch.long)
    if images01.shape[0] != labels.shape[0]:
        raise ValueError(f"zero_shot_accuracy: {images01.shape[0]} images but {labels.shape[0]} labels")
    if classifier is None:
        classifier = zero_shot_classifier(model, class_names, templates)
    labels = labels.to(classifier.device)
    feats = image_features(model, images01, attack, classifier, labels, batch_size)
    top = (feats @ classifier.t()).topk(min(5, classifier.shape[0]), dim=1).indices
    hits = top == labels[:, None]
    return {"top1": float(hits[:, 0].float().mean()), "top5": float(hits.any(dim=1).float().mean()),
            "n": int(labels.shape[0])}


def merge_accuracies(parts: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Combine per-chunk ``zero_shot_accuracy`` results, weighted by their ``n``."""
    total = sum(p["n"] for p in parts)
    if total == 0:
        return {"top1": math.nan, "top5": math.nan, "n": 0}
    return {"top1": sum(p["top1"] * p["n"] for p in parts) / total,
            "top5": sum(p["top5"] * p["n"] for p in parts) / total, "n": total}
