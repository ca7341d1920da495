"""VQGAN+CLIP: optimize a VQGAN's latent grid until CLIP sees the prompt (Crowson 2021).

The reference loop (nerdyrodent/VQGAN-CLIP's ``generate.py``) as a library generator: random
codebook entries (or an image's encoding) as the start, each step decodes the latents, cuts the
picture into CLIP-sized views, scores them against the prompts (spherical distance, weights and
stops), steps Adam and keeps the latents inside the codebook's box. The cutout trick (many crops,
kornia augmentation, noise) is one switch: a robust encoder does without it and looks at the
whole picture once. :func:`vqgan_clip_iter` streams frames; :func:`vqgan_clip` returns the
finished :class:`LatentResult`. The bundled ``examples/vqgan_clip/vqgan_clip.py`` is this loop
behind the reference's command line. Needs the ``[vqgan]`` extra (taming) and a VQGAN.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from ..guidance.cutouts import CUTOUT_MODES, Cutouts
from ..guidance.losses import prompt_loss
from ..guidance.prompts import Prompt, parse_prompts

__all__ = ["LatentConfig", "LatentTargets", "LatentFrame", "LatentResult", "cutouts_for", "text_targets",
           "vqgan_clip_iter", "vqgan_clip", "with_options"]


@dataclass(frozen=True)
class LatentConfig:
    """Every setting of a VQGAN+CLIP run; the defaults are the reference's (512 px on a GPU).

    Args:
        width, height: picture size in pixels (rounded down to the VQGAN's token grid).
        steps: optimization steps.
        lr: Adam's learning rate on the latents.
        cut_method: the cutout kind (:data:`~clipag_plugin.guidance.cutouts.CUTOUT_MODES`).
        cutn: cutouts per step.
        cut_pow: crop-size exponent.
        tricks: the cutout trick (crops, augmentation, noise); False: one whole-picture view.
        init_weight: pull towards the starting latents.
        seed: the start and the cutouts.
    """

    width: int = 512
    height: int = 512
    steps: int = 500
    lr: float = 0.1
    cut_method: str = "latest"
    cutn: int = 32
    cut_pow: float = 1.0
    tricks: bool = True
    init_weight: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.steps >= 0, f"steps={self.steps}: must be >= 0"),
            (min(self.width, self.height) >= 16, f"size {self.width}x{self.height}: each side at least 16 px"),
            (self.cut_method in CUTOUT_MODES, f"cut_method={self.cut_method!r}: choose {', '.join(CUTOUT_MODES)}"),
            (self.cutn >= 1, f"cutn={self.cutn}: must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


def with_options(config: LatentConfig, **changes: Any) -> LatentConfig:
    """``config`` with the given fields changed (None values are ignored)."""
    return dataclasses.replace(config, **{k: v for k, v in changes.items() if v is not None})


@dataclass
class LatentTargets:
    """What the views are scored against: one embedding per row, each with its weight and stop."""

    embeds: torch.Tensor  # (T, D)
    weights: list[float]
    stops: list[float]

    def __add__(self, other: "LatentTargets") -> "LatentTargets":
        return LatentTargets(torch.cat([self.embeds, other.embeds.to(self.embeds)]), self.weights + other.weights,
                             self.stops + other.stops)


@dataclass
class LatentFrame:
    """One step of a running VQGAN+CLIP (as :func:`vqgan_clip_iter` yields it)."""

    step: int  # updates done before this picture
    total: int
    loss: float
    image: torch.Tensor  # (3, H, W) in [0, 1], the picture this step scored


@dataclass
class LatentResult:
    """What a run leaves: the last picture, the latents and the loss per step."""

    image: torch.Tensor  # (3, H, W) in [0, 1]
    latents: torch.Tensor
    losses: list[float] = field(default_factory=list)
    config: Optional[LatentConfig] = None


def cutouts_for(config: LatentConfig, cut_size: int) -> Cutouts:
    """The views of a step: the reference's cutouts, or with ``tricks`` off one whole-picture view."""
    if config.tricks:
        return Cutouts(cut_size, config.cutn, config.cut_pow, mode=config.cut_method)
    return Cutouts(cut_size, 1, config.cut_pow, mode="none", augment=None, noise=0.0)


def text_targets(prompts: Union[str, Sequence[Prompt]], clip_model: Any, tokenize: Optional[Callable] = None,
                 ) -> LatentTargets:
    """The prompts' text embeddings (``"a fox:1 | blurry:-0.5"`` syntax or :class:`Prompt` objects)."""
    from ..tokenizer import tokenizer_for

    parsed = parse_prompts(prompts) if isinstance(prompts, str) else list(prompts)
    tokenize = tokenizer_for(clip_model, tokenize)
    device = next(clip_model.parameters()).device
    with torch.no_grad():
        embeds = [clip_model.encode_text(tokenize([p.text]).to(device)).float() for p in parsed]
    return LatentTargets(torch.cat(embeds), [p.weight for p in parsed], [p.stop for p in parsed])


def vqgan_clip_iter(
    targets: Union[str, LatentTargets],
    clip_model: Any,
    vqgan: torch.nn.Module,
    config: LatentConfig = LatentConfig(),
    *,
    every: int = 1,
    cutouts: Optional[Callable[..., torch.Tensor]] = None,
    normalize: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    init_latents: Optional[torch.Tensor] = None,
    generator: Optional[torch.Generator] = None,
) -> Generator[LatentFrame, None, LatentResult]:
    """Optimize ``vqgan``'s latents for ``targets``: a :class:`LatentFrame` every ``every`` steps (and
    the first and last), the :class:`LatentResult` at the end (``StopIteration.value``). Closing the
    generator stops the run.

    Args:
        targets: a prompt (``"a:1 | b:-0.3"``) or :class:`LatentTargets` (text and image prompts).
        clip_model: a CLIP with ``encode_image``/``encode_text`` and ``visual.input_resolution``.
        vqgan: a taming ``VQModel`` (:func:`clipag_plugin.vqgan.load_vqgan`).
        config: the settings.
        every: steps between frames.
        cutouts: makes the views, called as ``cutouts(image, generator=g)`` (default: :func:`cutouts_for`).
        normalize: the model's input normalization (default: the model's own, else OpenAI's).
        init_latents: the start (default: random codebook entries); e.g. an image's
            :func:`~clipag_plugin.vqgan.encode_latents`.
        generator: the random start and cutouts (default: seeded with ``config.seed``).

    Returns:
        A generator of frames whose return value is the result.
    """
    from .. import vqgan as vq

    device = next(vqgan.parameters()).device
    generator = generator if generator is not None else torch.Generator().manual_seed(config.seed)
    if isinstance(targets, str):
        targets = text_targets(targets, clip_model)
    embeds = targets.embeds.to(device).detach()
    make = cutouts if cutouts is not None else cutouts_for(config, int(clip_model.visual.input_resolution))
    if normalize is None:  # the model's own statistics, OpenAI's for OpenAI's CLIP
        from .strokes import clip_input

        def normalize(image01: torch.Tensor) -> torch.Tensor:
            return clip_input(image01, clip_model, True)
    f = vq.downsample_factor(vqgan)
    if init_latents is None:
        z = vq.random_code_latents(vqgan, config.height // f, config.width // f, generator)
    else:
        z = init_latents.detach().clone()
    z_min, z_max = vq.codebook_bounds(vqgan)
    z_orig = z.clone()
    z.requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=config.lr)
    losses: list[float] = []
    for i in range(config.steps + 1):
        # one step: decode, cut out, embed, loss, Adam, keep z inside the codebook's box
        optimizer.zero_grad(set_to_none=True)
        out = vq.synth(vqgan, z)
        views = clip_model.encode_image(normalize(make(out, generator=generator))).float()
        loss = prompt_loss(views, embeds, targets.weights, targets.stops, distance="spherical").sum()
        if config.init_weight:
            loss = loss + F.mse_loss(z, z_orig) * config.init_weight / 2
        losses.append(float(loss.detach()))
        if i % max(1, every) == 0 or i == config.steps:
            yield LatentFrame(i, config.steps, losses[-1], out[0].detach().clamp(0, 1))
        if i == config.steps:
            break
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            z.copy_(z.maximum(z_min).minimum(z_max))
    return LatentResult(out[0].detach().clamp(0, 1), z.detach(), losses, config)


def vqgan_clip(targets: Union[str, LatentTargets], clip_model: Any, vqgan: torch.nn.Module,
               config: LatentConfig = LatentConfig(), **options: Any) -> LatentResult:
    """:func:`vqgan_clip_iter` run to the end; ``on_step`` in ``options`` is called with every frame.

    Args:
        targets: the prompt or targets.
        clip_model: the CLIP.
        vqgan: the VQGAN.
        config: the settings.
        options: the keywords of :func:`vqgan_clip_iter`, and ``on_step``.

    Returns:
        The :class:`LatentResult`.
    """
    from .loop import run_to_end

    on_step = options.pop("on_step", None)
    return run_to_end(vqgan_clip_iter(targets, clip_model, vqgan, config, every=1, **options), on_step)
