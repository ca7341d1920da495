"""The VQGAN+CLIP loop in a few lines of library calls lowers the loss (tiny CLIP, tiny VQGAN)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("taming")

from clipag_plugin.guidance.cutouts import Cutouts
from clipag_plugin.guidance.losses import prompt_loss
from clipag_plugin.vqgan import codebook_bounds, random_code_latents, synth


@pytest.mark.parametrize("mode, cutn", [("none", 1), ("latest", 4)])
def test_few_steps_lower_the_loss(tiny_clip, tiny_vqgan, mode, cutn):
    perceptor, _ = tiny_clip
    generator = torch.Generator().manual_seed(0)
    z = random_code_latents(tiny_vqgan, 8, 8, generator).requires_grad_(True)
    z_min, z_max = codebook_bounds(tiny_vqgan)
    target = perceptor.encode_text(__import__("clipag").tokenize(["a red circle"])).detach()
    cutouts = Cutouts(perceptor.visual.input_resolution, cutn, mode=mode, noise=0.0)
    opt = torch.optim.Adam([z], lr=0.3)

    def loss_now(seed: int) -> torch.Tensor:
        views = cutouts(synth(tiny_vqgan, z), generator=torch.Generator().manual_seed(seed))
        return prompt_loss(perceptor.encode_pixels(views), target, [1.0], distance="spherical").sum()

    with torch.no_grad():
        first = float(loss_now(0))
    for step in range(8):
        opt.zero_grad()
        loss_now(step).backward()
        assert z.grad is not None and z.grad.abs().sum() > 0
        opt.step()
        with torch.no_grad():
            z.copy_(z.maximum(z_min).minimum(z_max))
    with torch.no_grad():
        assert float(loss_now(0)) < first - 1e-3
