"""The OpenAI-CLIP surface over an open_clip model.

OpenAI's ``clip.load`` returns a model with ``encode_image``, ``encode_text``,
``forward(image, text) -> (logits_per_image, logits_per_text)``, ``logit_scale``, ``dtype`` and
``visual.input_resolution`` / ``visual.output_dim``; CLIP-guided apps read exactly these.
:class:`ClipagModel` gives any open_clip ``CLIP`` that surface without copying weights.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["ClipagModel", "input_dtype"]


def input_dtype(visual: nn.Module) -> torch.dtype:
    """The dtype an image tower reads: that of its first convolution or linear layer.

    Args:
        visual: the image tower.

    Returns:
        Its input dtype (fp16 after ``load`` on CUDA, whose embeddings and norms stay fp32).
    """
    first = next((m.weight for m in visual.modules() if isinstance(m, (nn.Conv2d, nn.Linear))), None)
    return first.dtype if first is not None else next(visual.parameters()).dtype


def _as_int(size) -> int:
    if isinstance(size, (tuple, list)):
        if size[0] != size[1]:
            raise ValueError(f"non-square input resolution {tuple(size)} is not supported by the CLIP surface")
        return int(size[0])
    return int(size)


class ClipagModel(nn.Module):
    """Wrap an open_clip ``CLIP``/``CustomTextCLIP`` so it behaves like OpenAI's ``CLIP``.

    Args:
        inner: the open_clip model (kept as ``self.inner``; its state dict is the wrapper's
            state dict with an ``inner.`` prefix).
        image_size: square input resolution the image tower expects.
        mean, std: the per-channel normalization the checkpoint was trained with.
        name: the name it was loaded under (for messages and reports).
    """

    def __init__(
        self,
        inner: nn.Module,
        image_size: int | Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        name: str = "",
    ) -> None:
        super().__init__()
        self.inner = inner
        self.name = name
        visual = inner.visual
        visual.input_resolution = _as_int(image_size)
        if not hasattr(visual, "output_dim") or visual.output_dim is None:
            visual.output_dim = int(self.encode_text(torch.zeros(1, self.context_length, dtype=torch.long)).shape[-1])
        self.register_buffer("image_mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    # --- attributes OpenAI code reads -------------------------------------------------------
    @property
    def visual(self) -> nn.Module:
        """The image tower (has ``input_resolution`` and ``output_dim``)."""
        return self.inner.visual

    @property
    def logit_scale(self) -> nn.Parameter:
        """Log of the logit temperature, as in OpenAI's model."""
        return self.inner.logit_scale

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the image tower's input layer (fp16 on CUDA after ``load``, fp32 on CPU).

        As OpenAI's ``visual.conv1.weight.dtype``: ``load`` leaves embeddings and norms in fp32 on
        CUDA, so the first parameter is not the one that says what the tower reads.
        """
        return input_dtype(self.inner.visual)

    @property
    def context_length(self) -> int:
        """How many tokens the text tower reads."""
        return int(getattr(self.inner, "context_length", 77))

    # --- the CLIP API -----------------------------------------------------------------------
    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """Image features (unnormalized) of CLIP-normalized images ``(B, 3, R, R)``."""
        return self.inner.encode_image(image.type(self.dtype))

    def encode_text(self, text: torch.Tensor) -> torch.Tensor:
        """Text features (unnormalized) of token ids from :func:`clipag.tokenize`.

        Token rows longer than the model's own context are cut to it when the cut part is only
        padding, and refused otherwise.
        """
        ctx = self.context_length
        if text.shape[-1] > ctx:
            if bool(text[..., ctx:].any()):
                raise ValueError(
                    f"text tokens of length {text.shape[-1]} do not fit model {self.name or ''} context "
                    f"length {ctx}; tokenize with context_length={ctx} (and truncate=True if needed)"
                )
            text = text[..., :ctx]
        return self.inner.encode_text(text.long())

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits_per_image, logits_per_text)`` exactly as OpenAI's ``CLIP.forward``."""
        image_features = self.encode_image(image)
        text_features = self.encode_text(text)
        image_features = image_features / image_features.norm(dim=1, keepdim=True)
        text_features = text_features / text_features.norm(dim=1, keepdim=True)
        logits_per_image = self.logit_scale.exp() * image_features @ text_features.t()
        return logits_per_image, logits_per_image.t()

    # --- conveniences for pixel-space optimization ------------------------------------------
    def normalize(self, image01: torch.Tensor) -> torch.Tensor:
        """Apply the checkpoint's mean/std to images in [0, 1] (differentiable)."""
        return (image01 - self.image_mean.to(image01)) / self.image_std.to(image01)

    def encode_pixels(self, image01: torch.Tensor) -> torch.Tensor:
        """``encode_image`` of [0, 1] images, resized to ``input_resolution`` when needed."""
        size = self.visual.input_resolution
        if image01.shape[-1] != size or image01.shape[-2] != size:
            image01 = torch.nn.functional.interpolate(
                image01, size=(size, size), mode="bilinear", align_corners=False, antialias=True
            )
        return self.encode_image(self.normalize(image01))
