"""Adversarial fine-tuning of mini-vanilla with the project's trainer (-> ``mini``).

The world is an endless stream of freshly rendered, varied training images, each batch with
distinct captions; :func:`clipag_plugin.train.finetune` does the rest (PGD-L2, frozen text
tower and logit scale), exactly as for a real CLIP. The world's 600 captions are a closed set,
so the recipe uses the trainer's ``classwise`` objective (each image against all 600 captions,
as TeCoA) rather than the in-batch contrastive loss: at equal clean accuracy it doubles the
robustness (docs/mini-world.md), and the attack radius grows from 1.0 to 2.0 over the run.

A second, shorter run (:data:`SAMPLES`) continues the robust model with the trainer's
``negatives_weight`` term: pictures the model paints itself from the ``miniworld`` prior (the
generator's own L2 ascent) become negatives, so their cosine falls while real images keep theirs
(persistent contrastive divergence, :mod:`clipag_plugin.train.negatives`). The adversarial stage
alone paints colour+shape 0.43 on the 60 seeded prompts; the two stages together, see
docs/mini-world.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import torch

from ..synthesis.init import upsample
from . import world
from .pretrain import caption_tokens

__all__ = ["RobustConfig", "SAMPLES", "WorldStream", "finetune_config", "make_robust"]


@dataclass(frozen=True)
class RobustConfig:
    """Recipe of the robust model (fed into :class:`clipag_plugin.train.FinetuneConfig`)."""

    steps: int = 900
    batch_size: int = 64
    lr: float = 5e-4
    warmup: int = 20
    eps: float = 2.0  # final L2 radius in [0, 1] pixels of the model's input (96 px; 1.33 in the world's 64 px)
    eps_ramp_steps: int = 720  # the radius grows linearly over these steps ...
    eps_ramp_start: float = 0.5  # ... from this fraction of eps
    objective: str = "classwise"  # or "contrastive" (the in-batch loss of the first shipped mini)
    pgd_steps: int = 3
    clean_weight: float = 0.0
    train_batchnorm: bool = True
    negatives_weight: float = 0.0  # > 0: the model's own samples as negatives (trainer's negatives_* settings)
    negatives_steps: int = 5
    negatives_batch: int = 32
    negatives_buffer: int = 256
    seed: int = 0
    variation: world.Variation = world.TRAIN


SAMPLES = RobustConfig(steps=300, lr=3e-4, warmup=0, eps_ramp_steps=0, train_batchnorm=False, negatives_weight=1.0,
                       negatives_steps=10)
"""The second stage: 300 steps from the adversarial ``mini`` with its own samples as negatives
(BatchNorm statistics frozen, so the samples never enter them; same attack at eps 2.0)."""


class WorldStream:
    """Re-iterable, seeded stream of ``(images01, tokens)`` batches with distinct captions.

    Images come at ``size`` px (the world's 64 px renders upsampled bilinearly), so the trainer's
    attack radius is measured in the model's input pixels, as for any CLIP.
    """

    def __init__(self, batch_size: int, seed: int, variation: world.Variation = world.TRAIN,
                 size: int = world.SIZE) -> None:
        self.batch_size, self.seed, self.variation, self.size = batch_size, seed, variation, size
        self.tokens = caption_tokens()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.seed)
        while True:
            ids = torch.randperm(len(self.tokens), generator=g)[: self.batch_size]
            images = world.render(world.scenes_from_indices(ids, g, self.variation))
            yield upsample(images, self.size), self.tokens[ids]


def finetune_config(cfg: RobustConfig, base: str = "mini-vanilla"):
    """The trainer's config for this recipe (``base``: the model it starts from, recorded)."""
    from ..train import FinetuneConfig

    return FinetuneConfig(
        model=base,
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        accum_steps=1,
        lr=cfg.lr,
        weight_decay=1e-4,
        warmup_steps=cfg.warmup,
        grad_clip=1.0,
        precision="fp32",
        train_batchnorm=cfg.train_batchnorm,
        norm="l2",
        eps=cfg.eps,
        eps_ramp_steps=cfg.eps_ramp_steps,
        eps_ramp_start=cfg.eps_ramp_start,
        objective=cfg.objective,
        pgd_steps=cfg.pgd_steps,
        random_start=True,
        attack_loss="contrastive",
        clean_weight=cfg.clean_weight,
        negatives_weight=cfg.negatives_weight,
        negatives_batch=cfg.negatives_batch,
        negatives_buffer=cfg.negatives_buffer,
        negatives_steps=cfg.negatives_steps,
        negatives_step_length=1.0,
        negatives_reset=0.05,
        negatives_prior="miniworld",
        seed=cfg.seed,
        num_workers=0,
        log_every=25,
        checkpoint_every=0,
        device="cpu",
    )


def make_robust(vanilla_folder: Path, cfg: RobustConfig = RobustConfig(), out_dir: Optional[Path] = None,
                progress: bool = True):
    """Load a model folder (``mini-vanilla``, or ``mini`` for :data:`SAMPLES`) through ``clipag.load`` and
    fine-tune it with ``cfg``; returns the ``ClipagModel``."""
    from ..loading import load
    from ..train import finetune
    from .pretrain import MINI_MODEL_CFG

    model, _ = load(str(vanilla_folder), device="cpu")
    data = WorldStream(cfg.batch_size, cfg.seed + 7, cfg.variation, model.visual.input_resolution)
    prompts = world.all_captions() if cfg.objective == "classwise" else None
    return finetune(model, data, finetune_config(cfg), out_dir=out_dir, progress=progress,
                    model_cfg=MINI_MODEL_CFG, export=False, class_prompts=prompts)
