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

__all__ = [
    "SOURCE_TEXT",
    "PatchTricks",
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


def image_direction(features: torch.Tensor, source_features: torch.Tensor) -> torch.Tensor:
    """``(N, D)`` unit vectors from the (normalized) source embedding to each (normalized) image embedding."""
    return F.normalize(F.normalize(features.float(), dim=-1) - F.normalize(source_features.float(), dim=-1), dim=-1)


def directional_loss(image_dir: torch.Tensor, text_dir: torch.Tensor) -> torch.Tensor:
    """Per-row ``1 - cos(image_dir, text_dir)``, ``(N,)`` in [0, 2]; ``text_dir`` is ``(1, D)`` or ``(N, D)``."""
    if image_dir.shape[-1] != text_dir.shape[-1]:
        raise ValueError(
            f"image directions have dimension {image_dir.shape[-1]}, text direction {text_dir.shape[-1]}; "
            "compute both with the same CLIP model"
        )
    return 1.0 - F.cosine_similarity(image_dir, text_dir.expand_as(image_dir), dim=-1)


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
    """``n`` square crops of side ``size`` at ``offsets`` ``(y, x)``; each warped ``start -> end``.

    ``start``/``end`` are ``(n, 4, 2)`` corner coordinates ``(x, y)`` in crop pixels (top-left,
    top-right, bottom-right, bottom-left); ``end`` is ``None`` when the warp is switched off.
    """

    offsets: torch.Tensor  # (n, 2) long
    size: int
    start: torch.Tensor  # (n, 4, 2) float
    end: Optional[torch.Tensor]  # (n, 4, 2) float, or None: no warp

    def __len__(self) -> int:
        return int(self.offsets.shape[0])


def _randint(lo: int, hi: int, n: int, generator: Optional[torch.Generator]) -> torch.Tensor:
    """``n`` integers uniform in ``[lo, hi)``."""
    return torch.randint(lo, hi, (n,), generator=generator)


def sample_patch_params(
    height: int,
    width: int,
    n: int,
    size: int,
    distortion: float = 0.5,
    perspective: bool = True,
    generator: Optional[torch.Generator] = None,
) -> PatchParams:
    """Draw ``n`` crop positions and, when ``perspective``, perspective corners for each crop.

    The corners follow torchvision's ``RandomPerspective``: each corner moves inwards by up to
    ``distortion`` times half the side. ``generator`` should live on the CPU.
    """
    if n < 1:
        raise ValueError(f"n={n}: sample at least one patch")
    if not 0 < size <= min(height, width):
        raise ValueError(f"patch side {size} must be between 1 and the image's shorter side {min(height, width)}")
    if not 0.0 <= distortion <= 1.0:
        raise ValueError(f"distortion={distortion}: expected a value in [0, 1] (reference: 0.5)")
    offsets = torch.stack(
        [_randint(0, height - size + 1, n, generator), _randint(0, width - size + 1, n, generator)], dim=1
    )
    last = float(size - 1)
    start = torch.tensor([[0.0, 0.0], [last, 0.0], [last, last], [0.0, last]]).expand(n, 4, 2).clone()
    if not perspective:
        return PatchParams(offsets, int(size), start, None)
    d = int(distortion * (size // 2))
    near = lambda: _randint(0, d + 1, n, generator)  # noqa: E731 - distance moved in from an edge
    far = lambda: _randint(size - d - 1, size, n, generator)  # noqa: E731
    end = torch.stack(
        [
            torch.stack([near(), near()], dim=1),  # top-left
            torch.stack([far(), near()], dim=1),  # top-right
            torch.stack([far(), far()], dim=1),  # bottom-right
            torch.stack([near(), far()], dim=1),  # bottom-left
        ],
        dim=1,
    ).float()
    return PatchParams(offsets, int(size), start, end)


def apply_patches(image: torch.Tensor, params: PatchParams, out_size: Optional[int] = None) -> torch.Tensor:
    """Cut the patches from ``image`` ``(1, C, H, W)``, warp them (fill 0), resize to ``out_size``.

    Differentiable in ``image``; returns ``(n, C, out_size, out_size)``.
    """
    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(f"expected one image of shape (1, C, H, W), got {tuple(image.shape)}")
    c = params.size
    out = out_size or c
    crops = torch.cat([image[:, :, y : y + c, x : x + c] for y, x in params.offsets.tolist()])
    if params.end is not None:
        from kornia.geometry.transform import get_perspective_transform, warp_perspective

        matrix = get_perspective_transform(params.start.to(crops), params.end.to(crops))
        crops = warp_perspective(crops, matrix, (c, c), mode="bilinear", padding_mode="zeros", align_corners=True)
    if out != c:
        crops = F.interpolate(crops, size=(out, out), mode="bilinear", align_corners=False)
    return crops
