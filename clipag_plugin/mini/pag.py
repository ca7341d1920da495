"""Measuring the PAG effect in the mini world: retrieval under attack, synthesis, judging.

Synthesis here is the minimal generator-free recipe (pixels optimized to match a prompt's text
feature), kept small and explicit so the measurement does not hide behind options:

* init: a caption-agnostic 16x16 Gaussian fitted to renders of all 600 captions, shrunk
  towards its mean (:func:`fit_init`, :func:`sample_init`);
* steps: maximize cosine to the prompt with AdamW on the pixels (gradient-norm clip), or with
  normalized gradient ascent (``optimizer="l2"``: every step moves each image by ``lr`` in L2,
  along its gradient, as in image synthesis with robust classifiers; Santurkar et al. 2019);
* optional augmentation per step (random shift of up to ``shift`` px and Gaussian noise);
* optional regularizers: a Gaussian blur between pixels and model, total variation, and
  coarse pixel grids added to the full-resolution pixels (multi-scale parametrization).

:func:`attacked_retrieval` measures caption retrieval under PGD-L2 (the trainer's ``pgd_attack``);
:func:`failure_split` tells the judge's misreadings of generated pictures apart by what the model
itself reads in them (fooled, or the prompt never reached).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from ..synthesis.loop import OPTIMIZERS, l2_step_
from . import judge as judge_mod
from . import world
from .judge import ATTRIBUTES
from .pretrain import encode_world, text_features

__all__ = [
    "InitGaussian",
    "fit_init",
    "sample_init",
    "SynthConfig",
    "synthesize",
    "attacked_retrieval",
    "model_readings",
    "failure_split",
    "high_frequency_energy",
    "seeded_prompts",
    "retarget",
]


@dataclass(frozen=True)
class InitGaussian:
    """A full-covariance Gaussian over ``res x res`` RGB images (flattened)."""

    mean: torch.Tensor  # (3*res*res,)
    chol: torch.Tensor  # (3*res*res, 3*res*res) lower-triangular
    res: int


def fit_init(n: int = 3000, res: int = 16, seed: int = 0) -> InitGaussian:
    """Fit the init Gaussian on clean renders of uniformly drawn captions (no caption used later)."""
    g = torch.Generator().manual_seed(seed)
    x = world.render(world.sample_scenes(n, g, world.CLEAN))
    x = F.interpolate(x, size=(res, res), mode="area").flatten(1).double()
    mean = x.mean(0)
    cov = torch.cov(x.t()) + 1e-4 * torch.eye(x.shape[1], dtype=torch.float64)
    return InitGaussian(mean.float(), torch.linalg.cholesky(cov).float(), res)


def sample_init(gauss: InitGaussian, n: int, generator: torch.Generator, shrink: float = 0.35) -> torch.Tensor:
    """``n`` init images (n, 3, 64, 64) in [0, 1]: ``mean + shrink * L z``, upsampled bicubically."""
    z = torch.randn(n, gauss.mean.numel(), generator=generator)
    x = gauss.mean + shrink * z @ gauss.chol.t()
    x = x.view(n, 3, gauss.res, gauss.res)
    return F.interpolate(x, size=(world.SIZE, world.SIZE), mode="bicubic", align_corners=False).clamp(0, 1)


@dataclass(frozen=True)
class SynthConfig:
    """Settings of the pixel optimization."""

    steps: int = 200
    lr: float = 0.02  # AdamW learning rate, or the L2 length of each step with optimizer="l2"
    optimizer: str = "adamw"  # or "l2": normalized gradient ascent
    grad_clip: float = 1.0
    augment: bool = False
    shift: int = 4
    noise: float = 0.02
    blur: float = 0.0  # sigma (px) of a Gaussian blur applied to the pixels before the model
    tv: float = 0.0  # weight of a total-variation penalty
    scales: tuple[int, ...] = ()  # extra coarse pixel grids (e.g. (8, 16, 32)) added to the 64 px pixels
    shrink: float = 0.35
    seed: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"SynthConfig: optimizer={self.optimizer!r}; choose one of {OPTIMIZERS}")


def _shift(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(round(2.5 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of neighbouring pixels, per image summed over the batch."""
    return ((x[..., 1:, :] - x[..., :-1, :]).abs().mean((1, 2, 3)) + (x[..., :, 1:] - x[..., :, :-1]).abs().mean((1, 2, 3))).sum()


def synthesize(
    model: torch.nn.Module,
    prompts: Sequence[str],
    init: torch.Tensor,
    cfg: SynthConfig = SynthConfig(),
) -> torch.Tensor:
    """Images that maximize cosine to each prompt's text feature, starting from ``init``.

    ``model`` is an open_clip CLIP or a :class:`~clipag_plugin.model.ClipagModel`; the images stay
    at ``init``'s size and are resized into the model (:func:`~.pretrain.encode_world`).
    """
    from ..tokenizer import tokenize

    g = torch.Generator().manual_seed(cfg.seed)
    with torch.no_grad():
        target = F.normalize(model.encode_text(tokenize(list(prompts))), dim=-1)
    pixels = init.clone().requires_grad_(True)
    coarse = [torch.zeros(len(init), 3, r, r, requires_grad=True) for r in cfg.scales]
    params = [pixels, *coarse]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0) if cfg.optimizer == "adamw" else None
    for _ in range(cfg.steps):
        x = compose(pixels, coarse)
        view = _blur(x, cfg.blur) if cfg.blur > 0 else x
        if cfg.augment:  # one random shift for the batch plus per-pixel noise
            dx, dy = (int(v) for v in torch.randint(-cfg.shift, cfg.shift + 1, (2,), generator=g))
            view = _shift(view, dx, dy) + cfg.noise * torch.randn(view.shape, generator=g)
        feats = F.normalize(encode_world(model, view), dim=-1)
        loss = -(feats * target).sum()
        if cfg.tv > 0:
            loss = loss + cfg.tv * total_variation(x)
        if opt is not None:
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
        else:
            grads = torch.autograd.grad(loss, params)
            l2_step_(params, grads, cfg.lr)
        if not coarse:
            with torch.no_grad():
                pixels.clamp_(0, 1)
    return compose(pixels, coarse).detach()


def compose(pixels: torch.Tensor, coarse: Sequence[torch.Tensor]) -> torch.Tensor:
    """The image: full-resolution pixels plus bilinearly upsampled coarse grids, clamped to [0, 1]."""
    x = pixels
    for grid in coarse:
        x = x + F.interpolate(grid, size=pixels.shape[-2:], mode="bilinear", align_corners=False)
    return x.clamp(0, 1)


def attacked_retrieval(
    model: torch.nn.Module,
    images01: torch.Tensor,
    ids: torch.Tensor,
    eps: float,
    steps: int = 10,
    txt: Optional[torch.Tensor] = None,
    seed: int = 0,
) -> float:
    """Caption retrieval accuracy (over all 600 captions) under PGD-L2 of radius ``eps``."""
    from ..train.pgd import pgd_attack

    txt = text_features(model) if txt is None else txt
    scale = model.logit_scale.exp().detach()

    def loss_fn(x: torch.Tensor) -> torch.Tensor:
        img = F.normalize(encode_world(model, x), dim=-1)
        return F.cross_entropy(scale * img @ txt.t(), ids, reduction="sum")

    if eps > 0 and steps > 0:
        g = torch.Generator().manual_seed(seed)
        images01 = pgd_attack(loss_fn, images01, eps, steps=steps, norm="l2", random_start=False, generator=g)
    with torch.no_grad():
        img = F.normalize(encode_world(model, images01), dim=-1)
        return float(((img @ txt.t()).argmax(-1) == ids).float().mean())


@torch.no_grad()
def model_readings(model: torch.nn.Module, images01: torch.Tensor,
                   txt: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
    """What ``model`` itself reads in each image: the attributes of its nearest of the 600 captions.

    Returns ``(B,)`` class indices per attribute, in the judge's order (:data:`.judge.CLASSES`).
    """
    txt = text_features(model) if txt is None else txt
    nearest = (F.normalize(encode_world(model, images01), dim=-1) @ txt.t()).argmax(-1)
    tuples = torch.tensor([world.index_tuple(i) for i in nearest.tolist()], dtype=torch.long).view(-1, 4)
    return {a: tuples[:, k] for k, a in enumerate(ATTRIBUTES)}  # index_tuple order = the judge's


def failure_split(model: torch.nn.Module, images01: torch.Tensor, prompts: Sequence[str],
                  judge: Optional[torch.nn.Module] = None,
                  txt: Optional[torch.Tensor] = None) -> dict[str, dict[str, float]]:
    """Per attribute, the fractions of generated ``images01`` that the judge reads as the prompt asks
    (``"right"``), that it misreads while ``model`` reads the prompt's value (``"fooled"``: the
    gradients convinced the model but drew nothing the judge sees), and that both misread
    (``"not_reached"``: the optimization never got the model there). The three sum to 1.
    ``txt``: the model's normalized features of the 600 captions, if already computed.
    """
    pred, wanted = judge_mod.readings(images01, prompts, judge)
    own = model_readings(model, images01, txt)
    out = {}
    for a, target in wanted.items():
        judged, seen = pred[a] == target, own[a] == target
        out[a] = {"right": float(judged.float().mean()), "fooled": float((~judged & seen).float().mean()),
                  "not_reached": float((~judged & ~seen).float().mean())}
    return out


@torch.no_grad()
def high_frequency_energy(images01: torch.Tensor) -> float:
    """Mean squared difference between the images and their 3x3 box blur (speckle; 0 for flat colour).

    Read at the world's 64 px (antialiased), as the judge reads them, so the figure compares
    pictures of any size. A clean render scores about 0.001 (edges only); pixel speckle raises it.
    """
    x = images01.float().clamp(0, 1)
    if x.shape[-2:] != (world.SIZE, world.SIZE):
        x = F.interpolate(x, size=(world.SIZE, world.SIZE), mode="bilinear", antialias=True)
    blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return float((x - blurred).pow(2).mean())


def seeded_prompts(n: int = 60, seed: int = 2024) -> tuple[list[str], torch.Tensor]:
    """``n`` distinct captions drawn with ``seed`` (the measurement's fixed prompt set)."""
    ids = torch.randperm(600, generator=torch.Generator().manual_seed(seed))[:n]
    texts = world.all_captions()
    return [texts[i] for i in ids.tolist()], ids


def retarget(ids: torch.Tensor, attribute: str, generator: torch.Generator) -> torch.Tensor:
    """Caption ids with the object's ``attribute`` ("colour" or "shape") changed to another valid value.

    A new colour differs from both the old one and the background. With :func:`synthesize` started
    from clean renders of ``ids`` this is the *morph* test: do the gradients redraw the one attribute?
    """
    if attribute not in ("colour", "shape"):
        raise ValueError(f"retarget: attribute={attribute!r}; choose 'colour' or 'shape'")
    out = []
    for c, s, p, b in (world.index_tuple(i) for i in ids.tolist()):
        if attribute == "shape":
            s = (s + 1 + int(torch.randint(len(world.SHAPES) - 1, (1,), generator=generator))) % len(world.SHAPES)
        else:
            choices = [k for k in range(len(world.COLOURS)) if k not in (c, b)]
            c = choices[int(torch.randint(len(choices), (1,), generator=generator))]
        out.append(world.caption_index(c, s, p, b))
    return torch.tensor(out, dtype=torch.long)
