"""``finetune``: adversarial fine-tuning of a CLIP image tower (CLIPAG recipe).

Per micro-batch (:mod:`.step`): encode the captions with the frozen text tower; craft a PGD perturbation that
maximizes the training objective (the batch's contrastive loss, or with ``objective=classwise``
each image's cross-entropy over a fixed set of class captions, as TeCoA); take that objective
on the perturbed images (optionally mixed with the clean loss and a FARE term); accumulate;
every ``accum_steps`` micro-batches clip, set the learning rate and step AdamW. With
``negatives_weight > 0`` pictures the model paints itself join the batch as negatives
(:mod:`.negatives`, persistent contrastive divergence). Under torchrun
the contrastive loss sees the features of every rank; checkpoints are atomic and resume exactly.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import torch

from ..model import ClipagModel
from . import dist, state
from .config import FinetuneConfig
from .negatives import SampleBuffer
from .step import _micro_step, _negatives_setup
from .text import ClassBank, class_bank

__all__ = ["finetune", "lr_at", "freeze_text_tower", "MetricsLogger"]

Batch = tuple[torch.Tensor, torch.Tensor]


# --- pieces -----------------------------------------------------------------------------------
def lr_at(step: int, config: FinetuneConfig) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warmup, then cosine to ``min_lr_ratio``."""
    if config.warmup_steps > 0 and step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    floor = config.min_lr_ratio
    return config.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def freeze_text_tower(model: ClipagModel) -> list[torch.nn.Parameter]:
    """Freeze everything but the image tower (text tower, logit scale); return the trainable parameters."""
    for p in model.inner.parameters():
        p.requires_grad_(False)
    params = list(model.visual.parameters())
    for p in params:
        p.requires_grad_(True)
    return params


def _param_groups(visual: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices and convolutions; not biases, norms, embeddings' 1-d gains (as open_clip)."""
    decay, no_decay = [], []
    for p in visual.parameters():
        (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _pick_device(config: FinetuneConfig, d: dist.DistInfo) -> torch.device:
    if config.device:
        return torch.device(config.device)
    if torch.cuda.is_available():
        return torch.device("cuda", d.local_rank)
    return torch.device("cpu")


class MetricsLogger:
    """JSON lines in ``metrics.jsonl`` (and TensorBoard when it is installed); main rank only."""

    def __init__(self, out_dir: Optional[Path], enabled: bool) -> None:
        self.path = out_dir / "metrics.jsonl" if (out_dir and enabled) else None
        self.tb = None
        if self.path is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out_dir / "tensorboard"))
            except Exception:  # tensorboard not installed: JSON lines only
                self.tb = None

    def log(self, record: dict[str, Any]) -> None:
        if self.path is None:
            return
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.tb.add_scalar(f"train/{key}", value, record["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# --- data -------------------------------------------------------------------------------------
def _batches(data: Any, config: FinetuneConfig, resolution: int, d: dist.DistInfo, resume: dict[str, Any],
             device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor, int, Optional[dict]]]:
    """``(images01, tokens, worker, position)`` forever, starting where ``resume`` says."""
    micro = int(resume.get("micro", 0))
    if hasattr(data, "epoch"):  # a data.py source: sharded, resumable stream
        from .data import CaptionStream, make_loader

        if config.batch_size % d.world_size:
            raise ValueError(f"batch_size={config.batch_size} must be divisible by the number of processes ({d.world_size})")
        starts = resume.get("data")
        if starts is not None and len(starts) != d.world_size:
            raise ValueError(f"checkpoint was written by {len(starts)} processes, this run has {d.world_size}; "
                             f"resume with the same --nproc_per_node")
        stream = CaptionStream(data, config.batch_size // d.world_size, resolution, config.seed, d.rank, d.world_size,
                               config.num_workers, starts[d.rank] if starts else None, micro)
        for batch in make_loader(stream, config.num_workers, pin_memory=device.type == "cuda"):
            yield batch["images"], batch["tokens"], int(batch["worker"]), batch["state"]
        return
    # a plain iterable of (images01, tokens): cycled; a resume skips what was already consumed
    seen, skip = 0, micro
    while True:
        produced = False
        for images01, tokens in data:
            produced = True
            if seen < skip:
                seen += 1
                continue
            yield images01, tokens, 0, None
        if not produced:
            raise ValueError("data yielded no batches; pass a re-iterable (list, DataLoader) rather than a spent generator")


def _class_bank(model: ClipagModel, config: FinetuneConfig, prompts: Optional[Sequence[str]]) -> Optional[ClassBank]:
    """The classwise objective's captions, encoded once (None for the contrastive objective)."""
    if config.objective != "classwise":
        if prompts is not None:
            raise ValueError("finetune: class_prompts given but objective is 'contrastive'; set objective='classwise'")
        return None
    if prompts is None:
        if not config.class_prompts:
            raise ValueError("finetune: objective='classwise' needs the class captions; pass class_prompts=[...] or "
                             "--class-prompts FILE (one caption per line)")
        path = Path(config.class_prompts)
        if not path.is_file():
            raise FileNotFoundError(f"--class-prompts {path}: no such file; give a text file with one caption per line")
        prompts = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return class_bank(model, prompts)


def _text_fingerprint(model: ClipagModel) -> str:
    """Identity of the frozen towers (everything but ``visual``), checked when resuming."""
    return state.fingerprint({k: v for k, v in model.inner.state_dict().items() if not k.startswith("visual.")})


def _warn_config_changes(saved: dict[str, Any], config: FinetuneConfig, path: Path, verbose: bool) -> None:
    """Resuming with other settings is allowed (e.g. more steps) but is no longer an exact continuation."""
    now = config.to_dict()
    changed = sorted(k for k in now if k in saved and saved[k] != now[k] and k not in ("device",))
    if changed and verbose:
        import warnings

        warnings.warn(f"resuming from {path} with changed settings {changed}: the run continues, but not exactly "
                      f"as the original would have", stacklevel=3)


# --- the loop -----------------------------------------------------------------------------------
def finetune(
    model: ClipagModel,
    data: Optional[Iterable[Batch]] = None,
    config: Optional[FinetuneConfig] = None,
    out_dir: Optional[str | os.PathLike] = None,
    progress: bool = True,
    *,
    resume: bool = False,
    model_cfg: Optional[dict] = None,
    export: bool = True,
    on_step: Optional[Callable[[int, dict[str, float]], None]] = None,
    class_prompts: Optional[Sequence[str]] = None,
) -> ClipagModel:
    """Adversarially fine-tune ``model``'s image tower in place and return it (eval mode).

    Args:
        model: a :class:`ClipagModel` (anything ``clipag.load`` returns). Trained in fp32 on the
            config's device; the text tower and logit scale are frozen and stay bit-identical.
        data: an iterable of ``(images01, tokens)`` batches (float ``(B, 3, H, W)`` in [0, 1],
            int ``(B, 77)``), re-iterated when exhausted (e.g. a list or a DataLoader); or a
            source from :func:`clipag_plugin.train.data.open_source`; or None to open
            ``config.data``. Under torchrun a plain iterable must yield this rank's share.
        config: :class:`FinetuneConfig` (CLIPAG defaults when None).
        out_dir: where checkpoints, ``metrics.jsonl``, ``config.json`` and the exported model
            (``out_dir/model``) go; None keeps everything in memory.
        progress: show a tqdm bar (main rank only).
        resume: continue from the newest checkpoint in ``out_dir/checkpoints`` if there is one.
        model_cfg: open_clip ``model_cfg`` for the export, when it cannot be found from ``model.name``.
        export: write ``out_dir/model`` (open_clip layout) at the end.
        on_step: called as ``on_step(step, metrics)`` after every optimizer step on every rank.
        class_prompts: the classes of ``objective="classwise"`` (default: read from
            ``config.class_prompts``, one caption per line).

    Returns:
        ``model`` itself, trained, in eval mode.
    """
    from tqdm.auto import tqdm

    config = config or FinetuneConfig()
    config.validate()
    d = dist.info()
    device = _pick_device(config, d)
    out = Path(out_dir) if out_dir is not None else None
    if data is None:
        if not config.data:
            raise ValueError("finetune: no data; pass data=... or set config.data (tar shards, CSV or caption folder)")
        from .data import open_source

        data = open_source(config.data, config.data_format, config.shuffle_buffer, config.csv_path_column,
                           config.csv_caption_column)

    # model: fp32 master weights, frozen text tower, optional frozen copy for FARE
    model.inner.float().to(device)
    model.to(device)
    flags = {id(p): p.requires_grad for p in model.parameters()}
    params = freeze_text_tower(model)
    model.inner.eval()
    model.visual.train(config.train_batchnorm)
    needs_reference = config.fare_weight > 0 or config.attack_loss == "fare"
    reference = copy.deepcopy(model.visual).eval().requires_grad_(False) if needs_reference else None
    bank = _class_bank(model, config, class_prompts)
    negatives = _negatives_setup(config, bank, model.visual.input_resolution, d, device)
    # fused AdamW on CUDA (one kernel for all parameters), the for-each one elsewhere; same math
    optimizer = torch.optim.AdamW(_param_groups(model.visual, config.weight_decay), lr=config.lr,
                                  betas=config.betas, weight_decay=config.weight_decay,
                                  fused=device.type == "cuda")
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 for the fp32 parts (bf16 autocast covers the rest)

    # resume: weights, optimizer, counters, data position, RNG
    step, micro, resume_state = 0, 0, {}
    ckpt_dir = out / "checkpoints" if out is not None else None
    text_id = _text_fingerprint(model) if ckpt_dir is not None else ""
    if resume and ckpt_dir is not None:
        found = state.latest_checkpoint(ckpt_dir)
        if found is not None:
            ckpt, path = found
            if ckpt.get("text_fingerprint", text_id) != text_id:
                raise ValueError(f"{path} was trained from a different base model (its frozen text tower differs from "
                                 f"{model.name!r}'s); resume with the same --model")
            _warn_config_changes(json.loads(ckpt.get("config", "{}")), config, path, d.is_main)
            model.visual.load_state_dict(ckpt["visual"])
            optimizer.load_state_dict(ckpt["optimizer"])
            if reference is not None and "reference" in ckpt:
                reference.load_state_dict(ckpt["reference"])
            step, micro = int(ckpt["step"]), int(ckpt["micro"])
            resume_state = {"micro": micro, "data": ckpt.get("data")}
            state.set_rng_state(ckpt["rng"])
            if negatives is not None and ckpt.get("negatives") is not None:
                negatives.load_state_dict(ckpt["negatives"][d.rank])
            if d.is_main and progress:
                print(f"finetune: resumed from {path} (step {step})")

    train_visual: Callable = model.visual
    if d.enabled:
        from torch.nn.parallel import DistributedDataParallel

        train_visual = DistributedDataParallel(model.visual, device_ids=[device.index] if device.type == "cuda" else None)

    if out is not None and d.is_main:
        out.mkdir(parents=True, exist_ok=True)
        resolved = config.to_dict() | {
            "base_model": model.name, "resolved_eps": config.resolved_eps(model.visual.input_resolution),
            "resolved_step_size": config.resolved_step_size(model.visual.input_resolution),
            "world_size": d.world_size, "global_batch": config.batch_size,
        }
        (out / "config.json").write_text(json.dumps(resolved, indent=2))
    logger = MetricsLogger(out, d.is_main)
    bar = tqdm(total=config.steps, initial=step, disable=not (progress and d.is_main), desc="finetune", unit="step")

    positions: dict[int, dict] = {}
    data_states = resume_state.get("data")
    if data_states is not None:
        positions = dict(enumerate(data_states[d.rank]))
    batches = _batches(data, config, model.visual.input_resolution, d, resume_state, device)
    window = {"t": time.perf_counter(), "images": 0}
    sums: dict[str, Any] = {}
    metrics: dict[str, float] = {}
    try:
        while step < config.steps:
            # accumulate gradients over micro-batches
            for k in range(config.accum_steps):
                images01, tokens, worker, position = next(batches)
                images01 = images01.to(device, non_blocking=True).float()
                tokens = tokens.to(device, non_blocking=True)
                last = k == config.accum_steps - 1
                sync = contextlib.nullcontext() if (last or not d.enabled) else train_visual.no_sync()
                with sync:
                    losses = _micro_step(model, train_visual, reference, images01, tokens, config, d, micro, device, bank,
                                         negatives)
                    (losses["backward"] / config.accum_steps).backward()
                micro += 1
                if position is not None:
                    positions[worker] = position
                window["images"] += images01.shape[0] * d.world_size
                for key in ("loss", "adv_loss", "clean_loss", "fare_loss", "negatives_loss"):  # stays on the device: no sync
                    if key in losses:
                        sums[key] = sums.get(key, 0.0) + losses[key].detach() / config.accum_steps
            # clip, schedule, step
            grad_norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip if config.grad_clip > 0 else float("inf"))
            lr = lr_at(step, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            elapsed = time.perf_counter() - window["t"]
            metrics = {**{k: float(v) for k, v in sums.items()}, "lr": lr, "grad_norm": float(grad_norm), "images_per_s": window["images"] / max(elapsed, 1e-9)}
            metrics["skipped"] = sum(int(p.get("skipped", 0)) for p in positions.values())
            sums = {}
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['loss']:.4f}", adv=f"{metrics['adv_loss']:.4f}",
                            img_s=f"{metrics['images_per_s']:.1f}")
            if step % max(1, config.log_every) == 0 or step == config.steps:
                metrics["skipped"] = sum(dist.all_gather_objects(metrics["skipped"]))  # over all ranks
                logger.log({"step": step, **metrics})
                window = {"t": time.perf_counter(), "images": 0}
            if ckpt_dir is not None and ((config.checkpoint_every and step % config.checkpoint_every == 0)
                                         or step == config.steps):
                _save_checkpoint(ckpt_dir, model, reference, optimizer, step, micro, positions, config, d, text_id,
                                 negatives)
            if on_step is not None:
                on_step(step, metrics)
    finally:
        bar.close()
        logger.close()

    # hand the model back: eval mode, the caller's requires_grad flags
    model.eval()
    for p in model.parameters():
        p.requires_grad_(flags.get(id(p), False))
    if out is not None and export and d.is_main:
        from .export import export_open_clip

        export_open_clip(model, out / "model", model_cfg=model_cfg, recipe=config.to_dict(), metrics=metrics)
    dist.barrier()
    return model


def _save_checkpoint(folder: Path, model: ClipagModel, reference: Optional[torch.nn.Module], optimizer: torch.optim.Optimizer,
                     step: int, micro: int, positions: dict[int, dict], config: FinetuneConfig, d: dist.DistInfo,
                     text_id: str = "", buffer: Optional[SampleBuffer] = None) -> None:
    """Gather every rank's data position (and sample buffer); the main rank writes atomically and prunes old checkpoints."""
    workers = max(1, config.num_workers)
    local = [positions.get(w, {"epoch": 0, "consumed": 0, "skipped": 0}) for w in range(workers)]
    everyone = dist.all_gather_objects(local)
    buffers = dist.all_gather_objects(buffer.state_dict()) if buffer is not None else None
    if d.is_main:
        ckpt = {
            "format": state.FORMAT,
            "step": step,
            "micro": micro,
            "world_size": d.world_size,
            "visual": {k: v.detach().cpu() for k, v in model.visual.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "data": everyone,
            "rng": state.rng_state(),
            "config": json.dumps(config.to_dict()),
            "text_fingerprint": text_id,
        }
        if buffers is not None:
            ckpt["negatives"] = buffers
        if reference is not None:
            ckpt["reference"] = {k: v.detach().cpu() for k, v in reference.state_dict().items()}
        state.save_atomic(ckpt, state.checkpoint_path(folder, step))
        state.prune_checkpoints(folder, config.keep_checkpoints)
    dist.barrier()
