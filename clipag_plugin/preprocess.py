"""PIL image -> normalized tensor, as OpenAI's preprocess (or the checkpoint's own config)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Optional

if TYPE_CHECKING:  # torchvision is imported on first use only
    from torchvision.transforms import Compose

__all__ = ["OPENAI_MEAN", "OPENAI_STD", "build_preprocess"]

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def build_preprocess(image_size: int, cfg: Optional[Mapping[str, Any]] = None) -> "Compose":
    """Resize (bicubic, shortest side), center-crop, RGB, to tensor, normalize.

    ``cfg`` is an open_clip ``preprocess_cfg`` (mean, std, interpolation, resize_mode); missing
    keys take OpenAI's values. The transform is open_clip's, which matches OpenAI's step by step.
    """
    from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict

    merged = merge_preprocess_dict(PreprocessCfg(size=image_size), dict(cfg or {}))
    merged["size"] = image_size
    return image_transform_v2(PreprocessCfg(**merged), is_train=False)
