"""Straight-through quantization, decoding to [0, 1], latent initialization."""

from __future__ import annotations

import pytest
import torch

from clipag_plugin.guidance.cutouts import clamp_with_grad
from clipag_plugin.vqgan.quantize import (
    codebook,
    codebook_bounds,
    encode_latents,
    random_code_latents,
    replace_grad,
    synth,
    vector_quantize,
)


def test_vector_quantize_picks_nearest_code_and_passes_gradient_straight_through():
    torch.manual_seed(0)
    book = torch.randn(10, 4, dtype=torch.float64)
    x = torch.randn(3, 5, 4, dtype=torch.float64, requires_grad=True)
    x_q = vector_quantize(x, book)
    nearest = torch.cdist(x.detach().reshape(-1, 4), book).argmin(-1)
    assert torch.equal(x_q.detach().reshape(-1, 4), book[nearest])
    w = torch.randn_like(x)
    (x_q * w).sum().backward()
    assert torch.allclose(x.grad, w)  # identity Jacobian: the straight-through estimator


def test_vector_quantize_rejects_channel_mismatch():
    with pytest.raises(ValueError, match="channels"):
        vector_quantize(torch.zeros(2, 3), torch.zeros(5, 4))


def test_replace_grad_value_of_first_gradient_of_second():
    a = torch.tensor([1.0, 2.0], requires_grad=True)
    b = torch.tensor([5.0, 7.0], requires_grad=True)
    out = replace_grad(a * 0 + 3.0, b * 2)
    assert torch.equal(out.detach(), torch.tensor([3.0, 3.0]))
    out.sum().backward()
    assert torch.equal(b.grad, torch.tensor([2.0, 2.0])) and a.grad is None


def test_clamp_with_grad_blocks_only_outward_pushes():
    x = torch.tensor([-0.5, 0.5, 1.5], requires_grad=True)
    y = clamp_with_grad(x, 0.0, 1.0)
    assert torch.equal(y.detach(), torch.tensor([0.0, 0.5, 1.0]))
    # descending on +sum pushes every value down: blocked below 0, passes above 1 and inside
    y.sum().backward()
    assert torch.equal(x.grad, torch.tensor([0.0, 1.0, 1.0]))
    x.grad = None
    (-clamp_with_grad(x, 0.0, 1.0)).sum().backward()
    assert torch.equal(x.grad, torch.tensor([-1.0, -1.0, 0.0]))


def test_clamp_with_grad_gradcheck_inside_range():
    x = (torch.rand(6, dtype=torch.float64) * 0.8 + 0.1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: clamp_with_grad(t, 0.0, 1.0), (x,))


def test_random_code_latents_are_codebook_rows_and_reproducible(tiny_vqgan):
    z = random_code_latents(tiny_vqgan, 3, 5, torch.Generator().manual_seed(1))
    assert z.shape == (1, 16, 3, 5)
    rows = z.permute(0, 2, 3, 1).reshape(-1, 16)
    assert (rows[:, None, :] == codebook(tiny_vqgan)[None]).all(-1).any(-1).all()
    assert torch.equal(z, random_code_latents(tiny_vqgan, 3, 5, torch.Generator().manual_seed(1)))
    lo, hi = codebook_bounds(tiny_vqgan)
    assert lo.shape == hi.shape == (1, 16, 1, 1) and (z >= lo).all() and (z <= hi).all()


def test_synth_is_an_image_in_unit_range_with_gradient_to_latents(tiny_vqgan):
    z = random_code_latents(tiny_vqgan, 4, 4, torch.Generator().manual_seed(0)).requires_grad_(True)
    image = synth(tiny_vqgan, z)
    assert image.shape == (1, 3, 16, 16)
    assert image.min() >= 0 and image.max() <= 1
    image.mean().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_encode_latents_of_an_image(tiny_vqgan):
    z = encode_latents(tiny_vqgan, torch.rand(1, 3, 32, 32))
    assert z.shape == (1, 16, 8, 8)
