"""Losses of adversarial fine-tuning, as pure functions of features.

* :func:`contrastive_loss`: CLIP's symmetric InfoNCE over a batch of (image, caption) pairs.
* :func:`classwise_loss`: cross-entropy of each image over a fixed set of class captions (TeCoA).
* :func:`fare_loss`: FARE's squared L2 distance to the frozen original image embedding.
* :func:`combine_losses`: the training objective's weighted sum.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["contrastive_loss", "classwise_loss", "fare_loss", "combine_losses", "clip_logit_scale"]

MAX_LOGIT_SCALE = 100.0


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def clip_logit_scale(log_scale: torch.Tensor) -> torch.Tensor:
    """``exp(logit_scale)`` clamped at 100, as CLIP does."""
    return log_scale.detach().float().exp().clamp(max=MAX_LOGIT_SCALE)


def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor | float) -> torch.Tensor:
    """Mean of image->text and text->image cross-entropy; pair ``i`` is row ``i`` of both inputs.

    Features are L2-normalized here; ``logit_scale`` is the (already exponentiated) temperature.
    Invariant to permuting the pairs together.

    Args:
        image_features: ``(B, D)`` image embeddings.
        text_features: ``(B, D)`` caption embeddings, row ``i`` the caption of image ``i``.
        logit_scale: the exponentiated temperature (CLIP's ``logit_scale.exp()``).

    Returns:
        The scalar loss.
    """
    if image_features.shape[0] != text_features.shape[0]:
        raise ValueError(
            f"contrastive_loss needs as many images as captions, got {image_features.shape[0]} and {text_features.shape[0]}"
        )
    img = F.normalize(_at_least_fp32(image_features), dim=-1)
    txt = F.normalize(_at_least_fp32(text_features), dim=-1)
    logits = logit_scale * img @ txt.t()
    labels = torch.arange(img.shape[0], device=img.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


def classwise_loss(image_features: torch.Tensor, class_features: torch.Tensor, labels: torch.Tensor,
                   logit_scale: torch.Tensor | float) -> torch.Tensor:
    """Mean cross-entropy of ``logit_scale * cos(image, class)`` over all classes; ``labels`` index ``class_features``.

    Unlike :func:`contrastive_loss` every image competes against the same, complete set of
    captions, whatever else is in the batch (TeCoA, Mao et al. 2023).
    """
    if labels.shape[0] != image_features.shape[0]:
        raise ValueError(f"classwise_loss needs one label per image, got {labels.shape[0]} for {image_features.shape[0]}")
    img = F.normalize(_at_least_fp32(image_features), dim=-1)
    cls = F.normalize(_at_least_fp32(class_features), dim=-1)
    return F.cross_entropy(logit_scale * img @ cls.t(), labels)


def fare_loss(image_features: torch.Tensor, reference_features: torch.Tensor) -> torch.Tensor:
    """FARE (Schlarmann et al. 2024): squared L2 distance of unnormalized embeddings, mean over the batch.

    Args:
        image_features: ``(B, D)`` embeddings of the (perturbed) images.
        reference_features: ``(B, D)`` embeddings of the clean images by the frozen original encoder.

    Returns:
        The scalar loss.
    """
    return (_at_least_fp32(image_features) - _at_least_fp32(reference_features)).pow(2).sum(dim=-1).mean()


def combine_losses(
    adversarial: torch.Tensor,
    clean: torch.Tensor | None = None,
    fare: torch.Tensor | None = None,
    clean_weight: float = 0.0,
    fare_weight: float = 0.0,
) -> torch.Tensor:
    """``(1 - clean_weight) * adversarial + clean_weight * clean + fare_weight * fare``."""
    if not 0.0 <= clean_weight <= 1.0:
        raise ValueError(f"clean_weight={clean_weight} must be in [0, 1]")
    loss = (1.0 - clean_weight) * adversarial
    if clean_weight > 0:
        if clean is None:
            raise ValueError("clean_weight > 0 needs the clean loss")
        loss = loss + clean_weight * clean
    if fare_weight > 0:
        if fare is None:
            raise ValueError("fare_weight > 0 needs the FARE loss")
        loss = loss + fare_weight * fare
    return loss
