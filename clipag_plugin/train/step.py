"""One micro-batch of adversarial fine-tuning: the attack, the model's own samples, the losses.

:func:`_micro_step` crafts the PGD perturbation (BatchNorm statistics frozen), advances a few
samples of the buffer when ``negatives_weight > 0`` (:mod:`.negatives`), runs one forward of all
images through the trainable tower and returns the losses; the loop (:mod:`.loop`) does
``backward``, accumulation, the optimizer and checkpoints.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Optional

import torch
import torch.nn.functional as F

from ..model import ClipagModel
from . import dist
from .config import FinetuneConfig
from .negatives import SampleBuffer, advance, contrastive_divergence, gmm_prior, new_buffer
from .objective import classwise_loss, clip_logit_scale, combine_losses, contrastive_loss, fare_loss
from .pgd import pgd_attack, sample_start
from .text import ClassBank, encode_captions


def _encode(visual: Callable[[torch.Tensor], torch.Tensor], model: ClipagModel, images01: torch.Tensor) -> torch.Tensor:
    """Image features of [0, 1] images through ``visual`` (maybe DDP-wrapped), CLIP-normalized inside."""
    return visual(model.normalize(_fit(images01, model.visual.input_resolution)))


def _fit(images01: torch.Tensor, size: int) -> torch.Tensor:
    """Resize to ``size`` x ``size`` when needed (as :meth:`ClipagModel.encode_pixels`)."""
    if images01.shape[-1] != size or images01.shape[-2] != size:
        images01 = F.interpolate(images01, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return images01


def _autocast(device: torch.device, config: FinetuneConfig):
    use_bf16 = config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda")
    if not use_bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _seed(*values: int) -> int:
    from .data import _mix

    return _mix(*values)


# --- the model's own samples --------------------------------------------------------------------
_NEGATIVES_SALT = 0x5A3D


def _negatives_setup(config: FinetuneConfig, bank: Optional[ClassBank], resolution: int, d: dist.DistInfo,
                     device: torch.device) -> Optional[SampleBuffer]:
    """This process's sample buffer (None when ``negatives_weight`` is 0)."""
    if config.negatives_weight <= 0:
        return None
    if bank is None:  # validate() already demands classwise; class_prompts may still be missing
        raise ValueError("finetune: negatives_weight > 0 needs the classwise objective's class captions")
    if config.negatives_batch % d.world_size:
        raise ValueError(f"negatives_batch={config.negatives_batch} must be divisible by the number of processes "
                         f"({d.world_size})")
    if config.negatives_batch // d.world_size > config.negatives_buffer:
        raise ValueError(f"negatives_batch per process ({config.negatives_batch // d.world_size}) exceeds "
                         f"negatives_buffer={config.negatives_buffer}; raise the buffer or lower the batch")
    generator = torch.Generator().manual_seed(_seed(config.seed, d.rank, _NEGATIVES_SALT))
    return new_buffer(gmm_prior(config.negatives_prior, resolution, device), config.negatives_buffer,
                      len(bank.prompts), generator)


@contextlib.contextmanager
def _eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """``module`` in eval mode (BatchNorm statistics frozen) inside the block; its mode restored after."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


# --- one micro-batch ----------------------------------------------------------------------------
def _micro_step(model: ClipagModel, train_visual: Callable, reference: Optional[torch.nn.Module], images01: torch.Tensor,
                tokens: torch.Tensor, config: FinetuneConfig, d: dist.DistInfo, micro: int, device: torch.device,
                bank: Optional[ClassBank] = None,
                negatives: Optional[SampleBuffer] = None) -> dict[str, torch.Tensor]:
    """Attack, forward and return the losses (``backward`` is the caller's)."""
    visual = model.visual
    resolution = visual.input_resolution
    eps, step_size = config.eps_at(micro // config.accum_steps, resolution)
    scale = clip_logit_scale(model.logit_scale)
    # frozen towers: captions (all ranks) and, for FARE, the original embedding
    labels = bank.labels(tokens) if bank is not None else None
    with torch.no_grad(), _autocast(device, config):
        text = None if bank is not None else dist.gather_features(encode_captions(model, tokens).float(), with_grad=False)
        ref = None if reference is None else _encode(reference, model, images01).float()

    def objective(feats: torch.Tensor) -> torch.Tensor:
        """The training objective of this rank's features (classwise) or the global batch's (contrastive)."""
        if bank is not None:
            return classwise_loss(feats, bank.features, labels, scale)
        return contrastive_loss(dist.gather_features(feats), text, scale)

    def attack_objective(x01: torch.Tensor) -> torch.Tensor:
        with _autocast(device, config):
            feats = _encode(visual, model, x01).float()
        if config.attack_loss == "fare":
            return fare_loss(feats, ref)
        return objective(feats)

    # the adversary: PGD in [0, 1] pixels, BatchNorm statistics frozen while attacking
    adversarial = images01
    if config.pgd_steps > 0 and eps > 0:
        noise = None
        if config.random_start:  # drawn for the global batch, so the start does not depend on world size
            gen = torch.Generator(device=device).manual_seed(_seed(config.seed, micro))
            b = images01.shape[0]
            noise = sample_start((b * d.world_size, *images01.shape[1:]), eps, config.norm, gen, images01.dtype,
                                 device)[d.rank * b:(d.rank + 1) * b]
        with _eval_mode(visual):
            adversarial = pgd_attack(attack_objective, images01, eps, config.pgd_steps, step_size, config.norm, noise=noise)
    # the model's own samples: a few buffer pictures take more ascent steps towards their captions
    samples = targets = None
    if negatives is not None and bank is not None:
        gen = torch.Generator().manual_seed(_seed(config.seed, micro, d.rank, _NEGATIVES_SALT))

        def encode(x01: torch.Tensor) -> torch.Tensor:
            with _autocast(device, config):
                return _encode(visual, model, x01)

        with _eval_mode(visual):
            samples, targets = advance(negatives, encode, bank.features, config.negatives_batch // d.world_size,
                                       config.negatives_steps, config.negatives_step_length, config.negatives_reset, gen)
    # the defender: one forward of perturbed (and clean, and sampled) images through the trainable tower
    b = images01.shape[0]
    parts = [adversarial] + ([images01] if config.clean_weight > 0 else []) + ([samples] if samples is not None else [])
    inputs = torch.cat(parts) if len(parts) > 1 else adversarial
    with _autocast(device, config):
        feats = _encode(train_visual, model, inputs).float()
    feats_adv = feats[:b]
    feats_clean = feats[b:2 * b] if config.clean_weight > 0 else feats[:0]
    losses = {"adv_loss": objective(feats_adv)}
    if config.clean_weight > 0:
        losses["clean_loss"] = objective(feats_clean)
    if config.fare_weight > 0:
        losses["fare_loss"] = fare_loss(feats_adv, ref)
    # each rank holds the whole contrastive loss but gradients only through its own features;
    # DDP averages, so the contrastive terms are scaled by the world size to get the true gradient
    # (the classwise loss is a per-rank mean already: DDP's average is the global mean)
    w = float(d.world_size) if bank is None else 1.0
    clean = losses.get("clean_loss")
    losses["backward"] = combine_losses(w * losses["adv_loss"], None if clean is None else w * clean,
                                        losses.get("fare_loss"), config.clean_weight, config.fare_weight)
    if "fare_loss" in losses:  # reported as the mean over ranks (the contrastive terms are global already)
        losses["fare_loss"] = dist.all_mean(losses["fare_loss"].detach())
    losses["loss"] = combine_losses(losses["adv_loss"].detach(), losses.get("clean_loss"), losses.get("fare_loss"),
                                    config.clean_weight, config.fare_weight)
    if samples is not None and targets is not None and bank is not None:
        cd = contrastive_divergence(feats[-samples.shape[0]:], bank.features[targets], feats_adv, bank.features[labels])
        losses["backward"] = losses["backward"] + config.negatives_weight * cd
        losses["negatives_loss"] = dist.all_mean(cd.detach())
        losses["loss"] = losses["loss"] + config.negatives_weight * losses["negatives_loss"]
    return losses
