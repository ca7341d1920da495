"""Directional CLIP losses (CLIPStyler) and the random perspective patches they are measured on.

The directional loss asks the *change* of the image embedding (stylized minus source) to point
the same way as the *change* of the text embedding (style text minus ``"a Photo"``), each text
averaged over the 79 ImageNet templates. CLIPStyler measures it on the whole image (global loss)
and on many random crops, each warped by a random perspective (patch loss); patches whose loss
is already under a threshold are zeroed (threshold rejection).

As everywhere in ``guidance/``, sampling is apart from applying: :func:`sample_patch_params`
draws crop positions and perspective corners from a ``torch.Generator``; :func:`apply_patches`
is a pure, differentiable function of ``(image, params)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from .templates import IMAGENET_TEMPLATES, compose_text
from .warp import PerspectiveParams, apply_perspective, sample_perspective

__all__ = [
    "SOURCE_TEXT",
    "PatchTricks",
    "PATCH_LEVELS",
    "patch_tricks_for",
    "PatchParams",
    "template_text_features",
    "text_direction",
    "image_direction",
    "directional_loss",
    "reject_below",
    "patch_directional_loss",
    "global_directional_loss",
    "sample_patch_params",
    "apply_patches",
]

SOURCE_TEXT = "a Photo"  # CLIPStyler's source text (capital P, as in the release)


@dataclass(frozen=True)
class PatchTricks:
    """CLIPStyler's patch tricks, each switchable (the defaults are the reference's).

    Attributes:
        perspective: warp every patch with a random perspective (distortion 0.5, fill 0).
        threshold: zero per-patch losses under this value; ``None`` keeps every patch.
        patch_loss: use the patch directional loss at all (``False``: global loss only).
    """

    perspective: bool = True
    threshold: Optional[float] = 0.7
    patch_loss: bool = True

    def __post_init__(self) -> None:
        if self.threshold is not None and not 0.0 <= self.threshold <= 2.0:
            raise ValueError(f"threshold={self.threshold}: 1 - cos lies in [0, 2]; pick a value there or None")


# --- text and image directions ------------------------------------------------------------

Tokenize = Callable[[Sequence[str]], torch.Tensor]


# CLIPStyler's tricks switched off one at a time: the levels the adapter and the page offer.
PATCH_LEVELS: dict[str, PatchTricks] = {
    "full": PatchTricks(),
    "a": PatchTricks(perspective=False),
    "b": PatchTricks(perspective=False, threshold=None),
    "c": PatchTricks(perspective=False, threshold=None, patch_loss=False),
}
_ALIASES = {"none": "full", "no-warp": "a", "no-reject": "b", "global-only": "c"}


def patch_tricks_for(level: str) -> PatchTricks:
    """The switches of a level name (or alias: none, no-warp, no-reject, global-only).

    Args:
        level: ``"full"``, ``"a"``, ``"b"``, ``"c"`` or an alias.

    Returns:
        The :class:`PatchTricks` of that level.
    """
    key = _ALIASES.get(str(level).lower(), str(level).lower())
    try:
        return PATCH_LEVELS[key]
    except KeyError:
        raise ValueError(
            f"unknown CLIPStyler level {level!r}; choose from {', '.join(PATCH_LEVELS)} "
            f"(a: no perspective warp, b: also no threshold rejection, c: global loss only)"
        ) from None


@torch.no_grad()
def template_text_features(
    model, tokenize: Tokenize, text: str, templates: Sequence[str] = IMAGENET_TEMPLATES
) -> torch.Tensor:
    """``(1, D)`` unit text feature: the mean of ``text``'s features over ``templates``, normalized."""
    device = next(model.parameters()).device
    tokens = tokenize(compose_text(text, tuple(templates))).to(device)
    features = model.encode_text(tokens).float().mean(dim=0, keepdim=True)
    return F.normalize(features, dim=-1)


def text_direction(
    model,
    tokenize: Tokenize,
    target_text: str,
    source_text: str = SOURCE_TEXT,
    templates: Sequence[str] = IMAGENET_TEMPLATES,
) -> torch.Tensor:
    """``(1, D)`` unit vector from ``source_text`` to ``target_text`` in CLIP's text space."""
    target = template_text_features(model, tokenize, target_text, templates)
    source = template_text_features(model, tokenize, source_text, templates)
    return F.normalize(target - source, dim=-1)


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """Half-precision embeddings (CLIP on CUDA) to float32; float32/64 unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def image_direction(features: torch.Tensor, source_features: torch.Tensor) -> torch.Tensor:
    """``(N, D)`` unit vectors from the (normalized) source embedding to each (normalized) image embedding."""
    source = F.normalize(_upcast(source_features), dim=-1)
    return F.normalize(F.normalize(_upcast(features), dim=-1) - source.to(_upcast(features).dtype), dim=-1)


def directional_loss(image_dir: torch.Tensor, text_dir: torch.Tensor) -> torch.Tensor:
    """Per-row ``1 - cos(image_dir, text_dir)``, ``(N,)`` in [0, 2]; ``text_dir`` is ``(1, D)`` or ``(N, D)``."""
    if image_dir.shape[-1] != text_dir.shape[-1]:
        raise ValueError(
            f"image directions have dimension {image_dir.shape[-1]}, text direction {text_dir.shape[-1]}; "
            "compute both with the same CLIP model"
        )
    return 1.0 - F.cosine_similarity(image_dir, text_dir.to(image_dir.dtype).expand_as(image_dir), dim=-1)


def reject_below(losses: torch.Tensor, threshold: Optional[float]) -> torch.Tensor:
    """Zero the losses under ``threshold`` (value and gradient); ``None`` keeps them all."""
    if threshold is None:
        return losses
    return torch.where(losses < threshold, torch.zeros_like(losses), losses)


def patch_directional_loss(
    patch_features: torch.Tensor,
    source_features: torch.Tensor,
    text_dir: torch.Tensor,
    threshold: Optional[float] = 0.7,
) -> torch.Tensor:
    """Mean over patches of the directional loss, patches under ``threshold`` counted as 0."""
    if patch_features.shape[0] == 0:
        raise ValueError("no patches: sample at least one (num_crops >= 1)")
    losses = directional_loss(image_direction(patch_features, source_features), text_dir)
    return reject_below(losses, threshold).mean()


def global_directional_loss(
    features: torch.Tensor, source_features: torch.Tensor, text_dir: torch.Tensor
) -> torch.Tensor:
    """Directional loss of the whole image(s), averaged over the batch."""
    return directional_loss(image_direction(features, source_features), text_dir).mean()


# --- patches: random crops, each through a random perspective ------------------------------


@dataclass(frozen=True)
class PatchParams:
    """``n`` square crops of side ``size`` at pixel ``offsets`` ``(y, x)``, each then warped by
    ``warp`` (corners ``start -> end`` in crop pixels); ``warp`` is ``None`` when switched off."""

    offsets: torch.Tensor  # (n, 2) long
    size: int
    warp: Optional[PerspectiveParams]

    def __len__(self) -> int:
        return int(self.offsets.shape[0])


def sample_patch_params(
    height: int,
    width: int,
    n: int,
    size: int,
    distortion: float = 0.5,
    perspective: bool = True,
    generator: Optional[torch.Generator] = None,
) -> PatchParams:
    """Draw ``n`` crop positions and, when ``perspective``, a perspective warp for each crop.

    The warp is torchvision's ``RandomPerspective(distortion)`` law (each corner moves inwards by
    up to ``distortion`` x half the side), drawn by :func:`clipag_plugin.guidance.warp.sample_perspective`.
    ``generator`` should live on the CPU.
    """
    if n < 1:
        raise ValueError(f"n={n}: sample at least one patch")
    if not 0 < size <= min(height, width):
        raise ValueError(f"patch side {size} must be between 1 and the image's shorter side {min(height, width)}")
    if not 0.0 <= distortion <= 1.0:
        raise ValueError(f"distortion={distortion}: expected a value in [0, 1] (reference: 0.5)")
    offsets = torch.stack(
        [
            torch.randint(0, height - size + 1, (n,), generator=generator),
            torch.randint(0, width - size + 1, (n,), generator=generator),
        ],
        dim=1,
    )
    warp = sample_perspective(n, size, size, distortion, generator) if perspective else None
    return PatchParams(offsets, int(size), warp)


def apply_patches(image: torch.Tensor, params: PatchParams, out_size: Optional[int] = None) -> torch.Tensor:
    """Cut the patches from ``image`` ``(1, C, H, W)``, warp them (fill 0), resize to ``out_size``.

    Differentiable in ``image``; returns ``(n, C, out_size, out_size)``.
    """
    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(f"expected one image of shape (1, C, H, W), got {tuple(image.shape)}")
    c = params.size
    out = out_size or c
    crops = torch.cat([image[:, :, y : y + c, x : x + c] for y, x in params.offsets.tolist()])
    if params.warp is not None:
        crops = apply_perspective(crops, params.warp, fill=0.0)
    if out != c:
        crops = F.interpolate(crops, size=(out, out), mode="bilinear", align_corners=False)
    return crops
