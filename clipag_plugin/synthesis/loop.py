"""The pixel-optimization loop of generator-free text-to-image (the CLIPAG notebook's recipe).

Every knob lives in :class:`GenerateConfig` (the CLI reads its defaults from there). The loop
itself is a list of steps; the math is in :mod:`clipag_plugin.guidance` and
:mod:`.threshold`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Generator, Iterator, Optional, Sequence

import torch

from ..guidance.losses import positive_cosine, prompt_loss, view_crop_loss
from ..guidance.views import (
    NO_AUGMENT,
    ViewConfig,
    apply_crops,
    apply_views,
    crop_size_for,
    sample_crop_params,
    sample_view_params,
)
from .accel import (
    PRECISIONS,
    WEIGHTS,
    CompiledEncoder,
    LossScale,
    autocast_dtype,
    dtype_name,
    encoder_autocast,
    fast_matmuls,
    weight_dtype,
)
from .encoder import describe_weights, resolution_of, run_model
from .param import PARAMS, make_param

__all__ = [
    "GenerateConfig",
    "Guide",
    "GenerationResult",
    "NonFiniteLossWarning",
    "frozen",
    "clip_grad_per_image",
    "clip_grads_per_image",
    "l2_step_",
    "guide_losses",
    "prepare_guides",
    "GenerationFrame",
    "optimize",
    "optimize_steps",
    "run_to_end",
]


OPTIMIZERS = ("adamw", "l2")
logger = logging.getLogger("clipag_plugin.generate")


@dataclass(frozen=True)
class GenerateConfig:
    """All options of a generation; defaults are the official notebook's."""

    steps: int = 100
    lr: float = 0.0175  # AdamW learning rate; with optimizer="l2" the L2 length of every step
    optimizer: str = "adamw"  # or "l2": normalized gradient descent (robust-model synthesis)
    weight_decay: float = 0.01  # AdamW only
    grad_clip: float = 0.001  # max gradient norm per image (AdamW only)
    views: int = 32  # augmented full views per step (V)
    crops: int = 32  # random crops per step (P)
    augment: bool = True  # colour/translation/resize/cutout/noise on views (and noise on crops)
    view_weight: float = 1.0
    crop_weight: float = 5.0
    crop_size: Optional[int] = None  # None: 128 at 224 px, scaled with the image side
    noise_std: float = 0.01
    threshold: Optional[float] = 0.95  # dynamic-threshold quantile; None: plain clamp to [0, 1]
    distance: str = "cosine"  # or "spherical" (VQGAN+CLIP's squared spherical distance)
    size: Optional[int] = None  # None: the (first) model's input_resolution
    init: str = "gmm"  # gmm | noise | gray | image
    init_image: Optional[str] = None
    gmm_path: Optional[str] = None  # None: the GMM shipped in the package
    gmm_candidates: Optional[int] = None  # None: 1000 on CUDA, else no more than the steps cost (see init)
    save_every: int = 0  # keep a frame every K steps (0: none)
    truncate: bool = False  # cut prompts longer than the context length instead of failing
    param: str = "pixels"  # what is optimized: "pixels" or "multires" (see synthesis.param)
    levels: Optional[tuple[int, ...]] = None  # multires resolutions; None: 1, 2, 4, ... and the image side
    copies: int = 0  # extra jittered + noisy copies of the image per step (Direct Ascent Synthesis); 0: none
    jitter: int = 0  # max shift of each copy, whole pixels at the image side
    copy_noise: float = 0.0  # std of the Gaussian pixel noise added to each copy
    precision: str = "auto"  # encoder compute: auto (bf16 from sm80, fp16 on sm7x, else fp32), fp32, bf16, fp16
    weights: str = "auto"  # encoder weights: auto (the compute dtype, converted once), fp32, bf16, fp16
    compile: bool = False  # torch.compile the encoders (falls back to eager, announced, where unavailable)

    def __post_init__(self) -> None:
        checks = [
            (self.steps >= 1, f"steps={self.steps}: need at least 1"),
            (self.lr > 0, f"lr={self.lr}: must be > 0"),
            (self.optimizer in OPTIMIZERS, f"optimizer={self.optimizer!r}: choose one of {OPTIMIZERS}"),
            (self.weight_decay >= 0, f"weight_decay={self.weight_decay}: must be >= 0"),
            (self.grad_clip > 0, f"grad_clip={self.grad_clip}: must be > 0"),
            (self.views >= 0 and self.crops >= 0, f"views={self.views}, crops={self.crops}: must be >= 0"),
            (self.views + self.crops >= 1, "views=0 and crops=0 leave nothing to score; use --views 1 --crops 0"),
            (self.noise_std >= 0, f"noise_std={self.noise_std}: must be >= 0"),
            (self.threshold is None or 0 < self.threshold <= 1, f"threshold={self.threshold}: expected 0 < p <= 1"),
            (self.save_every >= 0, f"save_every={self.save_every}: must be >= 0"),
            (self.param in PARAMS, f"param={self.param!r}: choose one of {', '.join(PARAMS)}"),
            (self.levels is None or (len(self.levels) > 0 and all(int(r) >= 1 for r in self.levels)),
             f"levels={self.levels}: expected resolutions >= 1, e.g. 1 2 4 8 16 32 64 96"),
            (self.copies >= 0 and self.jitter >= 0 and self.copy_noise >= 0,
             f"copies={self.copies}, jitter={self.jitter}, copy_noise={self.copy_noise}: must be >= 0"),
            (self.gmm_candidates is None or self.gmm_candidates >= 1,
             f"gmm_candidates={self.gmm_candidates}: need at least 1 (or None: chosen for the device)"),
            (self.precision in PRECISIONS, f"precision={self.precision!r}: choose one of {', '.join(PRECISIONS)}"),
            (self.weights in WEIGHTS, f"weights={self.weights!r}: choose one of {', '.join(WEIGHTS)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        if self.levels is not None:
            object.__setattr__(self, "levels", tuple(int(r) for r in self.levels))

    def view_config(self) -> ViewConfig:
        """The augmentations of the full views (none when ``augment`` is off)."""
        return ViewConfig(noise_std=self.noise_std) if self.augment else NO_AUGMENT

    def effective_views(self) -> int:
        """Views per step: identical views are pointless, so 1 when augmentation is off."""
        return min(self.views, 1) if not self.augment else self.views

    def is_plain(self) -> bool:
        """One un-augmented view per step and nothing else: the step's loss is the whole image's."""
        return self.effective_views() == 1 and not self.augment and self.crops == 0 and self.copies == 0

    def copy_config(self, size: int) -> ViewConfig:
        """The jitter + noise of the copies at image side ``size`` (nothing else)."""
        return ViewConfig(color=False, translation=min(self.jitter / size, 0.99), resize=(1.0, 1.0), cutout=0.0,
                          noise_std=self.copy_noise)


@dataclass
class Guide:
    """One model and its (unit-norm) prompt embeddings."""

    model: torch.nn.Module
    texts: torch.Tensor  # (T, D)
    weights: torch.Tensor  # (T,), or (B, T): each image its own prompts among the texts (batches of captions)
    stops: Optional[torch.Tensor]  # like weights, or None
    name: str = ""
    encoder: Optional[Callable[[torch.Tensor], torch.Tensor]] = None  # e.g. compiled; None: model.encode_pixels

    @property
    def resolution(self) -> int:
        """The side of the images the model reads."""
        return resolution_of(self.model)


@dataclass
class GenerationResult:
    """What a generation returns: the best images and how the run went."""

    images: torch.Tensor  # (B, 3, S, S) in [0, 1], the image with the lowest whole-image loss per seed
    loss: torch.Tensor  # (B,) its whole-image loss (the image itself, no views or crops)
    cosine: torch.Tensor  # (B,) its mean cosine to the positive prompts
    step: torch.Tensor  # (B,) updates behind the best image (0 = the initial image)
    history: list[dict] = field(default_factory=list)  # per step: loss and cosine per image
    frames: list[tuple[int, torch.Tensor]] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    prompts: list = field(default_factory=list)
    nan_step: Optional[int] = None  # step at which the loss stopped being finite, if it did
    config: Optional[GenerateConfig] = None
    preset: Optional[str] = None  # name of the generation preset applied, if one was

    def to_pil(self) -> list:
        """The best images as PIL images (one per seed)."""
        from torchvision.transforms.functional import to_pil_image

        return [to_pil_image(img.detach().float().clamp(0, 1).cpu()) for img in self.images]


class NonFiniteLossWarning(RuntimeWarning):
    """The loss became NaN/inf; the loop stopped and kept the best image so far."""


@contextlib.contextmanager
def frozen(modules: Sequence[torch.nn.Module]) -> Iterator[None]:
    """Turn off ``requires_grad`` on the models' parameters for the loop; restore it after."""
    params = [p for m in modules for p in m.parameters()]
    saved = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, saved, strict=True):
            p.requires_grad_(flag)


def clip_grad_per_image(grad: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Scale each image's gradient to norm <= ``max_norm`` (``torch.nn.utils.clip_grad_norm_`` per image)."""
    return clip_grads_per_image([grad], max_norm)[0]


def clip_grads_per_image(grads: Sequence[torch.Tensor], max_norm: float) -> list[torch.Tensor]:
    """:func:`clip_grad_per_image` over several tensors whose rows belong to the same images."""
    norms = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads]).sum(0).sqrt()
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    return [g * scale.view(-1, *([1] * (g.dim() - 1))) for g in grads]


@torch.no_grad()
def l2_step_(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], length: float) -> None:
    """Move each image (row of every tensor in ``params``) by ``length`` in L2 against its gradient.

    The norm is taken per image over all the tensors together; a zero gradient leaves the image.
    This is the update of image synthesis with robust classifiers (Santurkar et al. 2019): unlike
    Adam it keeps the gradient's spatial structure, which is what a robust model makes meaningful.
    """
    norms = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads]).sum(0).sqrt()
    scale = length / norms.clamp_min(1e-12)
    for p, g in zip(params, grads, strict=True):
        p.sub_(g * scale.view(-1, *([1] * (g.dim() - 1))))


def guide_losses(
    images: torch.Tensor, view_batch: torch.Tensor, n_views: int, n_crops: int, guides: Sequence[Guide],
    config: GenerateConfig, n_whole: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, Optional[tuple[torch.Tensor, torch.Tensor]]]:
    """Loss per image summed over the ensemble, the mean cosine to the positive prompts, and the
    whole-image ``(loss, cosine)`` when ``n_whole`` is 1 (else None).

    ``view_batch`` holds, per image, ``n_whole`` (0 or 1) copies of the image itself, then its
    ``n_views`` views, then its ``n_crops`` crops. The image itself is only scored (no gradient
    flows from it). Each model's encoder is called exactly once.
    """
    b = images.shape[0]
    total = images.new_zeros(b)
    whole_total = images.new_zeros(b)
    cosines, whole_cosines = [], []
    for guide in guides:
        encode = guide.encoder or guide.model.encode_pixels
        with encoder_autocast(config.precision, view_batch.device):
            emb = encode(view_batch)
        emb = emb.float()
        emb = emb.view(b, n_whole + n_views + n_crops, emb.shape[-1])
        views = emb[:, n_whole : n_whole + n_views].reshape(b * n_views, emb.shape[-1])
        crops = emb[:, n_whole + n_views :].reshape(b * n_crops, emb.shape[-1])
        total = total + view_crop_loss(
            views, crops, guide.texts, guide.weights, guide.stops,
            config.view_weight, config.crop_weight, config.distance, groups=b,
        )
        whole = emb[:, 0].detach() if n_whole else None
        if whole is not None:
            whole_total = whole_total + prompt_loss(whole, guide.texts, guide.weights, guide.stops, config.distance, b)
        if bool((guide.weights > 0).any()):
            seen = views if n_views else crops
            cosines.append(positive_cosine(seen.detach(), guide.texts, guide.weights, b))
            if whole is not None:
                whole_cosines.append(positive_cosine(whole, guide.texts, guide.weights, b))
    nan = images.new_full((b,), float("nan"))
    cosine = torch.stack(cosines).mean(0) if cosines else nan
    if not n_whole:
        return total, cosine, None
    return total, cosine, (whole_total.detach(), torch.stack(whole_cosines).mean(0) if whole_cosines else nan)


def _sample_batch(
    images: torch.Tensor, generators: Sequence[torch.Generator], config: GenerateConfig, crop: int,
    whole: bool = False,
) -> tuple[torch.Tensor, int, int]:
    """Draw this step's views and crops for every image and apply them -> (B * (W + V + P), 3, S, S),
    led by the image itself (``W = 1``) when ``whole``."""
    size = images.shape[-1]
    n_views, n_crops, n_copies = config.effective_views(), config.crops, config.copies
    view_cfg = config.view_config()
    copy_cfg = config.copy_config(size) if n_copies else None
    per_image = []
    for i, gen in enumerate(generators):
        parts = [images[i : i + 1]] if whole else []
        if n_views:
            parts.append(apply_views(images, sample_view_params(n_views, size, gen, view_cfg, source=i)))
        if n_copies:  # the copies count as views (same weight, one mean)
            parts.append(apply_views(images, sample_view_params(n_copies, size, gen, copy_cfg, source=i)))
        if n_crops:
            crops = apply_crops(images, sample_crop_params(n_crops, size, crop, gen, 0.0, source=i))
            if config.augment:  # as the notebook: crops get the views' DiffAugment (and noise) too
                params = replace(sample_view_params(n_crops, size, gen, view_cfg), source=torch.arange(n_crops))
                crops = apply_views(crops, params)
            parts.append(crops)
        per_image.append(torch.cat(parts) if len(parts) > 1 else parts[0])
    return torch.cat(per_image), n_views + n_copies, n_crops


def prepare_guides(
    guides: Sequence[Guide], config: GenerateConfig, device: torch.device
) -> tuple[list[Guide], GenerateConfig]:
    """The guides with the run's encoder weights, and ``config`` with the precision resolved.

    ``config.precision`` becomes the compute dtype used on ``device`` (``"auto"`` resolved, see
    :func:`~.accel.autocast_dtype`) and ``config.weights`` the dtype of the encoder weights; a
    model whose image tower holds other weights is replaced by a converted copy
    (:func:`~.encoder.run_model`), the caller's model stays as it is. Idempotent.

    Args:
        guides: the loaded guides.
        config: the run's settings.
        device: where the encoders run.

    Returns:
        ``(guides, config)``.
    """
    compute = autocast_dtype(config.precision, device)
    weights = weight_dtype(config.weights, compute)
    prepared = []
    for guide in guides:
        model = run_model(guide.model, weights, device)
        if model is not guide.model:
            logger.info("%s: encoder weights %s", guide.name or "model", describe_weights(guide.model, model))
        prepared.append(guide if model is guide.model else replace(guide, model=model, encoder=None))
    resolved = replace(config, precision=dtype_name(compute), weights=dtype_name(weights))
    # said once, when "auto" was resolved to something other than fp32 (fp32 everywhere needs no notice)
    if resolved != config and (resolved.precision != "fp32" or resolved.weights != "fp32"):
        logger.info("precision: %s compute, %s weights on %s", resolved.precision, resolved.weights, device.type)
    return prepared, resolved


@dataclass
class GenerationFrame:
    """One step of a running generation, as :func:`optimize_steps` yields it.

    Attributes:
        step: updates done so far (1 after the first).
        total: the run's steps.
        loss: ``(B,)`` this step's loss per image.
        images: ``(B, 3, S, S)`` the images after this update (CPU, fp32), or None on steps
            whose picture was not asked for.
        result: the run's result so far: its ``images`` are the best (lowest whole-image loss)
            up to this step, so a run stopped here keeps them.
    """

    step: int
    total: int
    loss: torch.Tensor
    images: Optional[torch.Tensor]
    result: GenerationResult


def optimize(
    init: torch.Tensor,
    guides: Sequence[Guide],
    config: GenerateConfig,
    generators: Sequence[torch.Generator],
    callback: Optional[Callable[[int, torch.Tensor, torch.Tensor], None]] = None,
) -> GenerationResult:
    """Optimize ``init`` ``(B, 3, S, S)`` toward the guides' prompts; return the lowest-loss images.

    ``generators[i]`` drives image ``i``'s views, so a seed's result does not depend on the batch.
    ``callback(step, image, loss)`` runs after every step (progress display, frames, tests).
    The encoders run at the precision of ``config`` (:func:`prepare_guides`); the result's
    ``config`` names the precision and weights that ran.
    """
    steps = optimize_steps(init, guides, config, generators, every=1 if callback is not None else 0,
                           device_images=True)
    return run_to_end(steps, None if callback is None else lambda f: callback(f.step - 1, f.images, f.loss))


def run_to_end(steps: Generator[Any, None, Any], on_frame: Optional[Callable[[Any], None]] = None) -> Any:
    """Drive a loop written as a generator (:func:`optimize_steps`, ``strokes.draw_iter``) to its end.

    Args:
        steps: the generator: frames, then its result as the return value.
        on_frame: called with every frame (None: frames are dropped).

    Returns:
        The generator's return value.
    """
    while True:
        try:
            frame = next(steps)
        except StopIteration as done:
            return done.value
        if on_frame is not None:
            on_frame(frame)


def optimize_steps(
    init: torch.Tensor,
    guides: Sequence[Guide],
    config: GenerateConfig,
    generators: Sequence[torch.Generator],
    every: int = 1,
    device_images: bool = False,
) -> Generator[GenerationFrame, None, GenerationResult]:
    """:func:`optimize` as a generator: one :class:`GenerationFrame` per step, the result at the end
    (``StopIteration.value``). Closing it stops the run; the last frame's ``result`` holds the
    best images so far.

    Args:
        init, guides, config, generators: as :func:`optimize`.
        every: attach the images to every ``every``-th frame and the last (0: never).
        device_images: leave the attached images on the device (default: CPU copies).

    Returns:
        The :class:`GenerationResult`, as :func:`optimize` returns it.
    """
    if len(generators) != init.shape[0]:
        raise ValueError(f"{len(generators)} generators for a batch of {init.shape[0]} images")
    size = init.shape[-1]
    crop = config.crop_size or crop_size_for(size)
    if not 0 < crop <= size:
        raise ValueError(f"crop_size={crop} must be between 1 and the image size {size}")
    guides, config = prepare_guides(guides, config, init.device)
    scale = LossScale(autocast_dtype(config.precision, init.device) == torch.float16)
    param = make_param(config.param, init, config.levels, config.threshold)
    tensors = param.tensors()
    optimizer = (torch.optim.AdamW(tensors, lr=config.lr, weight_decay=config.weight_decay)
                 if config.optimizer == "adamw" else None)
    b = init.shape[0]
    best = init.detach().float().cpu().clone()
    best_loss = torch.full((b,), math.inf)
    best_cos = torch.full((b,), math.nan)
    best_step = torch.zeros(b, dtype=torch.long)
    result = GenerationResult(best, best_loss, best_cos, best_step, config=config)
    # the kept image is the one with the lowest whole-image loss (the image itself, no views), as
    # the notebook keeps it. A plain step's own loss is that loss; otherwise the image itself
    # rides along in the step's encoder batch. One more forward scores the final image.
    whole_config = replace(config, view_weight=1.0)
    plain = config.is_plain() and config.view_weight == 1.0

    def keep(images: torch.Tensor, loss: torch.Tensor, cosine: torch.Tensor, k: int) -> None:
        loss = loss.detach().float().cpu()
        better = loss < best_loss
        if bool(better.any()):
            best[better] = images.detach().float().cpu()[better]
            best_loss[better] = loss[better]
            best_cos[better] = cosine.detach().float().cpu()[better]
            best_step[better] = k

    if config.compile:
        guides = [replace(g, encoder=g.encoder or CompiledEncoder(g.model.encode_pixels, g.name)) for g in guides]
    with frozen([g.model for g in guides]), fast_matmuls(init.device):
        for step in range(config.steps):
            # 1. the image from the parametrization, its views and crops, then the loss of every model
            pixels = param.forward()
            batch, n_views, n_crops = _sample_batch(pixels, generators, config, crop, whole=not plain)
            loss, cosine, whole = guide_losses(pixels, batch, n_views, n_crops, guides, config,
                                               n_whole=0 if plain else 1)
            detached = loss.detach().cpu()
            # 2. stop on NaN/inf, keeping the best image so far
            if not bool(torch.isfinite(detached).all()):
                result.nan_step = step
                warnings.warn(
                    f"loss became non-finite at step {step}; stopped and kept the best image so far "
                    f"(from step {int(best_step.min())}). Try a lower --lr.",
                    NonFiniteLossWarning,
                    stacklevel=2,
                )
                break
            # 3. remember each seed's lowest whole-image loss (this image is the one after `step` updates)
            keep(pixels, *(whole if whole is not None else (detached, cosine)), step)
            result.history.append({"step": step, "loss": detached.tolist(), "cosine": cosine.detach().cpu().tolist()})
            # 4. gradient step on the parametrization's tensors: AdamW with per-image norm
            #    clipping, or a fixed-length L2 step (fp16: a scaled loss; an overflow skips the step)
            grads = scale.unscale(torch.autograd.grad(scale.scaled(loss.sum()), tensors))
            if grads is None:
                logger.debug("step %d: fp16 gradients overflowed; step skipped, loss scale now %g", step, scale.scale)
            elif optimizer is not None:
                for t, g in zip(tensors, clip_grads_per_image(grads, config.grad_clip), strict=True):
                    t.grad = g
                optimizer.step()
            else:
                l2_step_(tensors, grads, config.lr)
            # 5. back into [0, 1] (pixels: dynamic thresholding or a clamp; multires: nothing to do)
            param.project_()
            saving = bool(config.save_every) and (step + 1) % config.save_every == 0
            showing = bool(every) and ((step + 1) % every == 0 or step + 1 == config.steps)
            current = None
            if saving or showing:
                with torch.no_grad():
                    current = param.forward().detach()
                if saving:
                    result.frames.append((step + 1, current.cpu().clone()))
            shown = None if not showing else current if device_images else current.float().cpu().clone()
            yield GenerationFrame(step + 1, config.steps, detached, shown, result)
        if result.nan_step is None:  # the image after the last update has not been scored yet
            with torch.no_grad():
                final = param.forward()
                loss, cosine, _ = guide_losses(final, final, 1, 0, guides, whole_config)
            keep(final, loss, cosine, config.steps)
    return result
