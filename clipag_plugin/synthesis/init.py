"""Starting images for pixel optimization: ``gmm`` (scored candidates), ``noise``, ``gray``, ``image``."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from .gmm import GaussianMixture

__all__ = ["INITS", "NOTEBOOK_CANDIDATES", "auto_candidates", "noise_init", "gray_init", "image_init", "upsample", "gmm_candidates", "pick_best", "gmm_init"]

INITS = ("gmm", "noise", "gray", "image")
NOTEBOOK_CANDIDATES = 1000  # the CLIPAG notebook draws 1000 GMM samples and keeps the best-scored


def auto_candidates(steps: int, images_per_step: int, device_type: str) -> int:
    """How many GMM candidates to score when none is asked for.

    Scoring a candidate is one forward pass; a step is a forward and a backward pass (about three
    forwards) over ``images_per_step`` images. On CUDA the steps of one image are bound by kernel
    launches while candidates are scored in large batches, so the notebook's 1000 cost less than
    the steps. Elsewhere the cost is linear in the images encoded, so no more candidates than
    ``3 * steps * images_per_step`` (the init then costs at most about as much as the steps;
    measured on a 2-core CPU with the mini model: a batched forward costs 1/4 of a batch-1 step),
    between 16 and 1000.
    """
    if device_type == "cuda":
        return NOTEBOOK_CANDIDATES
    return max(16, min(NOTEBOOK_CANDIDATES, 3 * steps * images_per_step))


def noise_init(size: int, generator: torch.Generator) -> torch.Tensor:
    """``(1, 3, size, size)`` uniform noise in [0, 1]."""
    return torch.rand((1, 3, size, size), generator=generator)


def gray_init(size: int, generator: Optional[torch.Generator] = None, jitter: float = 0.0) -> torch.Tensor:
    """Mid-grey ``(1, 3, size, size)``, plus uniform jitter of +-``jitter`` (0: exactly 0.5)."""
    x = torch.full((1, 3, size, size), 0.5)
    if jitter > 0:
        x = x + jitter * (2 * torch.rand(x.shape, generator=generator) - 1)
    return x.clamp(0, 1)


def image_init(path: str | Path, size: int) -> torch.Tensor:
    """An image file, resized (short side) and centre-cropped to ``size``, as ``(1, 3, size, size)`` in [0, 1]."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms.functional import center_crop, pil_to_tensor, resize

    try:
        with Image.open(path) as im:
            rgb = im.convert("RGB")
    except FileNotFoundError:
        raise ValueError(f"--init image: file {path} not found") from None
    except (OSError, UnidentifiedImageError) as err:
        raise ValueError(f"--init image: cannot read {path} as an image ({err})") from None
    x = pil_to_tensor(rgb).float() / 255.0
    x = center_crop(resize(x, [size], antialias=True), [size, size])
    return x[None].clamp(0, 1)


def upsample(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear upsampling of low-resolution samples to ``size``."""
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)


def gmm_candidates(gmm: GaussianMixture, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` GMM samples upsampled to ``(n, 3, size, size)``."""
    low, _ = gmm.sample(n, generator)
    return upsample(low, size)


@torch.no_grad()
def pick_best(candidates: torch.Tensor, score: Callable[[torch.Tensor], torch.Tensor], batch_size: int = 64) -> int:
    """Index of the candidate with the lowest ``score`` (a loss), scored in batches."""
    losses = torch.cat([score(chunk) for chunk in candidates.split(batch_size)])
    return int(torch.argmin(losses))


def gmm_init(
    gmm: GaussianMixture,
    size: int,
    generator: torch.Generator,
    score: Callable[[torch.Tensor], torch.Tensor],
    candidates: int = 1000,
    batch_size: int = 64,
) -> torch.Tensor:
    """Draw ``candidates`` GMM samples and keep the one with the lowest ``score`` -> ``(1, 3, size, size)``.

    Samples are drawn (and upsampled) batch by batch so 1000 candidates at 224 px never sit in memory at once.
    """
    if candidates < 1:
        raise ValueError(f"gmm candidates must be >= 1, got {candidates}")
    best, best_loss = None, float("inf")
    remaining = candidates
    while remaining > 0:
        k = min(batch_size, remaining)
        chunk = gmm_candidates(gmm, k, size, generator)
        with torch.no_grad():
            losses = score(chunk).float()
        i = int(torch.argmin(losses))
        if float(losses[i]) < best_loss or best is None:
            best, best_loss = chunk[i : i + 1].clone(), float(losses[i])
        remaining -= k
    return best
