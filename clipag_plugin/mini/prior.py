"""The mini world's initialization prior for ``generate --init gmm``.

The CLIPAG notebook starts synthesis from a Gaussian fitted on 16x16 images of the domain
(Tiny-ImageNet there). Here the domain is the mini world, so the prior is one caption-agnostic
full-covariance Gaussian fitted on clean renders of random captions: it knows what the world's
pictures look like in general, nothing about any one prompt.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Optional

import torch

__all__ = ["WORLD_GMM_NAME", "world_gmm_path", "build_world_gmm"]

WORLD_GMM_NAME = "gmm_world_16.npz"


def world_gmm_path() -> Path:
    """Where the shipped mini-world prior lives (``clipag_plugin/mini/weights/``)."""
    return Path(str(resources.files("clipag_plugin") / "mini" / "weights" / WORLD_GMM_NAME))


def build_world_gmm(out: Optional[str | Path] = None, n: int = 3000, seed: int = 0) -> Path:
    """Fit the prior on ``n`` clean renders of random captions (seeded) and save it."""
    from ..synthesis.gmm import fit_gmm_from_arrays
    from . import world

    scenes = world.sample_scenes(n, torch.Generator().manual_seed(seed), world.CLEAN)
    renders = (world.render(scenes).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    gmm = fit_gmm_from_arrays({"world": list(renders)}, resolution=16, patches_per_image=1, min_area=1.0, seed=seed)
    return gmm.save(out or world_gmm_path())


if __name__ == "__main__":  # python -m clipag_plugin.mini.prior: rebuild the shipped file
    print(build_world_gmm())
