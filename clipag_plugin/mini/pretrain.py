"""Contrastive pretraining of the mini-world CLIP from scratch (-> ``mini-vanilla``).

Each step draws a batch of *distinct* captions, renders one varied image per caption, and
minimizes the symmetric CLIP loss, exactly as CLIP is trained, only on a tiny world.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from ..synthesis.init import upsample
from . import world

__all__ = [
    "MINI_MODEL_CFG",
    "MINI_PREPROCESS_CFG",
    "PretrainConfig",
    "new_model",
    "caption_tokens",
    "INPUT_SIZE",
    "encode_world",
    "pretrain",
    "retrieval_accuracy",
    "save_folder",
]

# The models read the 64 px world upsampled to this size (as CLIP reads photos at 224 px). Reading
# it at 96 px gives the stride-2 stem and the 4x-downsampled features 1.5x the resolution of the
# world's pixels; at 64 px the robust model paints ragged, speckled shapes (docs/mini-world.md).
INPUT_SIZE = 96

# open_clip model_cfg: ModifiedResNet tower, text tower with the real CLIP vocabulary.
MINI_MODEL_CFG: dict = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": INPUT_SIZE, "layers": [1, 1, 1, 1], "width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 1, "layers": 2},
}
# The world's images are in [0, 1]; plain 0.5/0.5 normalization.
MINI_PREPROCESS_CFG: dict = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bicubic"}


@dataclass(frozen=True)
class PretrainConfig:
    """Recipe of the vanilla model."""

    steps: int = 450
    batch_size: int = 128
    lr: float = 2e-3
    warmup: int = 50
    weight_decay: float = 0.1
    seed: int = 0
    variation: world.Variation = world.TRAIN


def new_model(seed: int = 0) -> torch.nn.Module:
    """A freshly initialized open_clip CLIP with :data:`MINI_MODEL_CFG`."""
    from open_clip.model import CLIP

    torch.manual_seed(seed)
    return CLIP(**json.loads(json.dumps(MINI_MODEL_CFG)))


def caption_tokens() -> torch.Tensor:
    """``clipag.tokenize`` of the 600 captions, ``(600, 77)``."""
    from ..tokenizer import tokenize

    return tokenize(world.all_captions())


def normalize(x01: torch.Tensor) -> torch.Tensor:
    """The mini models' input normalization of [0, 1] images."""
    return (x01 - 0.5) / 0.5


def encode_world(model: torch.nn.Module, images01: torch.Tensor) -> torch.Tensor:
    """Image features of [0, 1] world images of any size: resized to the tower's input size, normalized.

    ``model`` is an open_clip CLIP or a :class:`~clipag_plugin.model.ClipagModel`. The resize is
    bilinear (:func:`clipag_plugin.synthesis.init.upsample`) and differentiable.
    """
    size = int(model.visual.image_size if hasattr(model.visual, "image_size") else model.visual.input_resolution)
    if images01.shape[-2:] != (size, size):
        images01 = upsample(images01, size)
    return model.encode_image(normalize(images01))


def _lr_at(step: int, cfg: PretrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * t))


def clip_loss(model: torch.nn.Module, images01: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE of matched (image, caption) pairs."""
    img = F.normalize(encode_world(model, images01), dim=-1)
    txt = F.normalize(model.encode_text(tokens), dim=-1)
    logits = model.logit_scale.exp() * img @ txt.t()
    labels = torch.arange(len(images01))
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


def pretrain(
    cfg: PretrainConfig = PretrainConfig(),
    log: Optional[Callable[[str], None]] = None,
    progress: bool = True,
) -> torch.nn.Module:
    """Train a mini CLIP from scratch; returns it in eval mode."""
    from tqdm import tqdm

    model = new_model(cfg.seed).train()
    tokens = caption_tokens()
    g = torch.Generator().manual_seed(cfg.seed + 1)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}], lr=cfg.lr
    )
    bar = tqdm(range(cfg.steps), desc="pretrain mini", disable=not progress)
    for step in bar:
        # Distinct captions per batch, so the contrastive targets are unambiguous.
        ids = torch.randperm(len(tokens), generator=g)[: cfg.batch_size]
        images = world.render(world.scenes_from_indices(ids, g, cfg.variation))
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, cfg)
        loss = clip_loss(model, images, tokens[ids])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if log is not None and (step % 50 == 0 or step == cfg.steps - 1):
            log(f"step {step} loss {loss.item():.4f} lr {_lr_at(step, cfg):.2e}")
    return model.eval()


@torch.no_grad()
def text_features(model: torch.nn.Module, tokens: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Normalized features of the 600 captions."""
    tokens = caption_tokens() if tokens is None else tokens
    return F.normalize(torch.cat([model.encode_text(t) for t in tokens.split(200)]), dim=-1)


@torch.no_grad()
def retrieval_accuracy(
    model: torch.nn.Module, images01: torch.Tensor, ids: torch.Tensor, txt: Optional[torch.Tensor] = None
) -> float:
    """Fraction of images whose nearest of the 600 captions is their own."""
    txt = text_features(model) if txt is None else txt
    img = F.normalize(encode_world(model, images01), dim=-1)
    return float(((img @ txt.t()).argmax(-1) == ids).float().mean())


def save_folder(model: torch.nn.Module, folder: Path, half: bool = True) -> Path:
    """Write ``model`` in open_clip layout (config JSON + safetensors; fp16 storage by default)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": MINI_MODEL_CFG, "preprocess_cfg": MINI_PREPROCESS_CFG}
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n")
    state = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"), metadata={"format": "pt"})
    return folder
