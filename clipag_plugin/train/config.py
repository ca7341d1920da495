"""``FinetuneConfig``: every setting of the fine-tuning recipe, with its default, in one place.

The CLI builds its flags from these fields (help text in each field's metadata), a YAML or JSON
file can sit under the flags, and the resolved config is saved beside the run's outputs.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from .pgd import NORMS, default_eps, default_step_size

__all__ = ["FinetuneConfig", "load_config_file"]

PRECISIONS = ("auto", "fp32", "bf16")
DATA_FORMATS = ("auto", "tar", "csv", "folder")
ATTACK_LOSSES = ("contrastive", "fare")
OBJECTIVES = ("contrastive", "classwise")


def _f(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class FinetuneConfig:
    """Adversarial fine-tuning settings (CLIPAG recipe by default).

    Only the image tower is trained; the text tower and the logit scale stay frozen.
    """

    # model and data
    model: str = _f("openai-ViT-B/32", "base model: anything clipag.load accepts (name, hf-hub:org/repo, path); "
                                          "default: the vanilla CLIP that CLIPAG was fine-tuned from")
    data: Optional[str] = _f(None, "training data: tar shards ('shards/{00000..00099}.tar', a folder of .tar), "
                                   "a CSV of path,caption, or an image folder with sidecar .txt captions")
    data_format: str = _f("auto", f"data layout; one of {DATA_FORMATS}", choices=DATA_FORMATS)
    csv_path_column: str = _f("path", "CSV column holding image paths (relative to the CSV's folder)")
    csv_caption_column: str = _f("caption", "CSV column holding captions")
    shuffle_buffer: int = _f(1000, "samples held in the shuffle buffer when streaming tar shards")
    num_workers: int = _f(2, "data-loading worker processes per rank (0: load in the main process)")
    # optimization
    steps: int = _f(1000, "optimizer steps")
    batch_size: int = _f(32, "global batch per micro-step (split across ranks); the contrastive loss sees all of it")
    accum_steps: int = _f(10, "micro-batches accumulated per optimizer step (CLIPAG: 10)")
    lr: float = _f(2e-5, "AdamW peak learning rate")
    weight_decay: float = _f(1e-4, "AdamW weight decay")
    betas: tuple[float, float] = _f((0.9, 0.999), "AdamW betas")
    warmup_steps: int = _f(100, "linear warmup steps, then cosine decay to min_lr_ratio * lr")
    min_lr_ratio: float = _f(0.0, "final learning rate as a fraction of lr")
    grad_clip: float = _f(1.0, "clip the gradient norm to this (0: off)")
    precision: str = _f("auto", f"one of {PRECISIONS}; auto = bf16 autocast on CUDA, fp32 elsewhere", choices=PRECISIONS)
    train_batchnorm: bool = _f(True, "update BatchNorm statistics of CNN towers during training (they are frozen during attacks)")
    # adversary
    norm: str = _f("l2", f"attack norm; one of {NORMS}", choices=NORMS)
    eps: Optional[float] = _f(None, "attack radius in [0,1] pixel units; default: L2 1.5 at 224x224 scaled by "
                                    "sqrt(pixel count) at other resolutions (e.g. 0.43 at 64x64), linf 4/255")
    eps_ramp_steps: int = _f(0, "optimizer steps over which the attack radius grows linearly from "
                                "eps_ramp_start * eps to eps (0: constant eps)")
    eps_ramp_start: float = _f(0.0, "radius at step 0 of the ramp, as a fraction of eps")
    pgd_steps: int = _f(3, "PGD steps per batch (0: train on clean images)")
    step_size: Optional[float] = _f(None, "PGD step size; default 2.5 * eps / pgd_steps")
    random_start: bool = _f(False, "start PGD from a uniform draw in the ball")
    attack_loss: str = _f("contrastive", f"what PGD maximizes; one of {ATTACK_LOSSES}", choices=ATTACK_LOSSES)
    # objective
    objective: str = _f("contrastive", f"what the attack (unless attack_loss=fare) and the training loss use; one of "
                                       f"{OBJECTIVES}: the batch's image-caption InfoNCE, or (TeCoA) the cross-entropy "
                                       f"of each image over all of --class-prompts", choices=OBJECTIVES)
    class_prompts: Optional[str] = _f(None, "text file, one caption per line: the classes of objective=classwise; "
                                            "every training caption must be one of them")
    clean_weight: float = _f(0.0, "weight of the clean contrastive loss (adversarial gets 1 - this)")
    fare_weight: float = _f(0.0, "weight of the FARE loss (L2 to the frozen original image embedding)")
    # the model's own samples as negatives (persistent contrastive divergence, train/negatives.py)
    negatives_weight: float = _f(0.0, "weight of the contrastive-divergence term on pictures the model paints "
                                      "itself (0: off); needs objective=classwise")
    negatives_batch: int = _f(32, "buffer samples per micro-step (global, split across ranks)")
    negatives_buffer: int = _f(256, "persistent sample buffer size per process")
    negatives_steps: int = _f(5, "ascent steps a sample takes at each visit")
    negatives_step_length: float = _f(1.0, "L2 length of each ascent step, in [0,1] pixels at the model's input size")
    negatives_reset: float = _f(0.05, "probability that a visited sample is re-drawn from the prior")
    negatives_prior: Optional[str] = _f(None, "prior of new samples: a GMM .npz or a named prior (e.g. miniworld); "
                                              "default: the shipped photo GMM")
    # bookkeeping
    seed: int = _f(0, "seed of data order, attack starts and everything else random")
    log_every: int = _f(10, "optimizer steps between metric lines")
    checkpoint_every: int = _f(100, "optimizer steps between atomic checkpoints (0: only at the end)")
    keep_checkpoints: int = _f(2, "how many recent checkpoints to keep")
    device: Optional[str] = _f(None, "cuda / cpu / cuda:1; default: LOCAL_RANK's GPU when available, else cpu")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the bad setting and its valid range."""
        checks = [
            (self.data_format in DATA_FORMATS, f"data_format={self.data_format!r}; choose one of {DATA_FORMATS}"),
            (self.precision in PRECISIONS, f"precision={self.precision!r}; choose one of {PRECISIONS}"),
            (self.norm in NORMS, f"norm={self.norm!r}; choose one of {NORMS}"),
            (self.attack_loss in ATTACK_LOSSES, f"attack_loss={self.attack_loss!r}; choose one of {ATTACK_LOSSES}"),
            (self.objective in OBJECTIVES, f"objective={self.objective!r}; choose one of {OBJECTIVES}"),
            (self.steps >= 1, f"steps={self.steps}; must be >= 1"),
            (self.batch_size >= 1, f"batch_size={self.batch_size}; must be >= 1"),
            (self.accum_steps >= 1, f"accum_steps={self.accum_steps}; must be >= 1"),
            (self.pgd_steps >= 0, f"pgd_steps={self.pgd_steps}; must be >= 0"),
            (self.eps is None or self.eps >= 0, f"eps={self.eps}; must be >= 0"),
            (0.0 <= self.clean_weight <= 1.0, f"clean_weight={self.clean_weight}; must be in [0, 1]"),
            (self.fare_weight >= 0, f"fare_weight={self.fare_weight}; must be >= 0"),
            (self.negatives_weight >= 0, f"negatives_weight={self.negatives_weight}; must be >= 0"),
            (self.negatives_weight == 0 or self.objective == "classwise",
             f"negatives_weight={self.negatives_weight} needs objective='classwise' (the samples' targets are "
             f"class captions); set objective='classwise' with class_prompts, or negatives_weight=0"),
            (self.negatives_batch >= 1, f"negatives_batch={self.negatives_batch}; must be >= 1"),
            (self.negatives_buffer >= 1, f"negatives_buffer={self.negatives_buffer}; must be >= 1"),
            (self.negatives_steps >= 0, f"negatives_steps={self.negatives_steps}; must be >= 0"),
            (self.negatives_step_length > 0, f"negatives_step_length={self.negatives_step_length}; must be > 0"),
            (0.0 <= self.negatives_reset <= 1.0, f"negatives_reset={self.negatives_reset}; must be in [0, 1]"),
            (self.eps_ramp_steps >= 0, f"eps_ramp_steps={self.eps_ramp_steps}; must be >= 0"),
            (0.0 <= self.eps_ramp_start <= 1.0, f"eps_ramp_start={self.eps_ramp_start}; must be in [0, 1]"),
            (self.warmup_steps >= 0, f"warmup_steps={self.warmup_steps}; must be >= 0"),
            (self.num_workers >= 0, f"num_workers={self.num_workers}; must be >= 0"),
            (self.keep_checkpoints >= 1, f"keep_checkpoints={self.keep_checkpoints}; must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"FinetuneConfig: {message}")
        self.betas = tuple(float(b) for b in self.betas)  # YAML/JSON give lists

    # --- derived values ---------------------------------------------------------------------
    def resolved_eps(self, resolution: int) -> float:
        """``eps`` or the CLIPAG default for ``resolution`` (see :func:`pgd.default_eps`)."""
        return float(self.eps) if self.eps is not None else default_eps(resolution, self.norm)

    def resolved_step_size(self, resolution: int) -> float:
        if self.step_size is not None:
            return float(self.step_size)
        return default_step_size(self.resolved_eps(resolution), max(1, self.pgd_steps))

    def eps_at(self, step: int, resolution: int) -> tuple[float, float]:
        """``(radius, step size)`` of the attack at optimizer step ``step`` (0-based), after the ramp."""
        eps, size = self.resolved_eps(resolution), self.resolved_step_size(resolution)
        if self.eps_ramp_steps <= 0 or step >= self.eps_ramp_steps:
            return eps, size
        frac = self.eps_ramp_start + (1.0 - self.eps_ramp_start) * step / self.eps_ramp_steps
        return eps * frac, size * frac

    # --- (de)serialization ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "FinetuneConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise KeyError(f"unknown FinetuneConfig keys {unknown}; valid keys: {sorted(known)}")
        return cls(**dict(values))

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> "FinetuneConfig":
        values = load_config_file(path)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values)

    def replace(self, **changes: Any) -> "FinetuneConfig":
        return dataclasses.replace(self, **changes)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``, needs PyYAML) or JSON config into a dict."""
    path = Path(path)
    text = path.read_text()
    if path.suffix.lower() in {".yaml", ".yml"}:
        try:
            import yaml
        except ImportError as err:  # pragma: no cover - pyyaml is in the train extra
            raise ImportError(f"{path}: reading YAML configs needs PyYAML (pip install pyyaml), or use JSON") from err
        values = yaml.safe_load(text) or {}
    else:
        values = json.loads(text)
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a config file must hold a mapping of setting -> value, got {type(values).__name__}")
    return values
