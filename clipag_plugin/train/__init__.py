"""Adversarial fine-tuning (the CLIPAG recipe) and robustness evaluation.

Public API (imported lazily, so ``import clipag_plugin.train`` is cheap)::

    finetune(model, data, config, out_dir=None, progress=True) -> ClipagModel
    FinetuneConfig                       # every setting, CLIPAG defaults
    pgd_attack(loss_fn, images01, eps, steps, step_size, norm, random_start, generator)
    contrastive_loss, fare_loss          # pure loss functions of features
    retrieval_accuracy(model, images01, tokens, attack=None) -> dict
    zero_shot_accuracy(model, images01, labels, class_names, templates=..., attack=None) -> dict
    AttackConfig                         # norm / eps / steps of an evaluation attack
    export_open_clip(model, folder, ...) # safetensors + open_clip_config.json
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "finetune",
    "FinetuneConfig",
    "pgd_attack",
    "default_eps",
    "contrastive_loss",
    "fare_loss",
    "retrieval_accuracy",
    "zero_shot_accuracy",
    "AttackConfig",
    "export_open_clip",
]

_WHERE = {
    "finetune": "loop",
    "FinetuneConfig": "config",
    "pgd_attack": "pgd",
    "default_eps": "pgd",
    "contrastive_loss": "objective",
    "fare_loss": "objective",
    "retrieval_accuracy": "evaluate",
    "zero_shot_accuracy": "evaluate",
    "AttackConfig": "evaluate",
    "export_open_clip": "export",
}

if TYPE_CHECKING:  # pragma: no cover
    from .config import FinetuneConfig
    from .evaluate import AttackConfig, retrieval_accuracy, zero_shot_accuracy
    from .export import export_open_clip
    from .loop import finetune
    from .objective import contrastive_loss, fare_loss
    from .pgd import default_eps, pgd_attack


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
