"""PGD pieces: smoke, exceptions, shapes, known answers, float64 gradchecks, the attack raises the loss."""

from __future__ import annotations

import math

import pytest
import torch

from clipag_plugin.train.pgd import (
    ascent_step,
    default_eps,
    default_step_size,
    pgd_attack,
    project,
    sample_start,
)


def _norms(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).norm(dim=1)


def test_default_eps_scales_with_sqrt_pixel_count():
    assert default_eps(224) == pytest.approx(1.5)
    assert default_eps(64) == pytest.approx(1.5 * 64 / 224)
    assert default_eps(448) == pytest.approx(3.0)
    assert default_eps(64, "linf") == pytest.approx(4 / 255)
    assert default_step_size(1.5, 3) == pytest.approx(1.25)


def test_bad_arguments_name_the_choices():
    with pytest.raises(ValueError, match="l2"):
        pgd_attack(lambda x: x.sum(), torch.rand(1, 3, 4, 4), 0.1, norm="l3")
    with pytest.raises(ValueError, match="eps"):
        pgd_attack(lambda x: x.sum(), torch.rand(1, 3, 4, 4), -1.0)
    with pytest.raises(ValueError, match="steps"):
        default_step_size(1.0, 0)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_random_start_inside_ball_and_shapes(norm):
    g = torch.Generator().manual_seed(0)
    delta = sample_start((64, 3, 8, 8), 0.7, norm, g, torch.float64)
    assert delta.shape == (64, 3, 8, 8) and delta.dtype == torch.float64
    size = _norms(delta) if norm == "l2" else delta.flatten(1).abs().amax(dim=1)
    assert bool((size <= 0.7 + 1e-12).all()) and float(size.max()) > 0.5


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_project_respects_ball_and_box_float64(norm):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(16, 3, 6, 6, generator=g, dtype=torch.float64)
    delta = torch.randn(16, 3, 6, 6, generator=g, dtype=torch.float64) * 3
    p = project(delta, x, 0.5, norm)
    size = _norms(p) if norm == "l2" else p.flatten(1).abs().amax(dim=1)
    assert bool((size <= 0.5 + 1e-12).all())
    assert bool(((x + p) >= 0).all()) and bool(((x + p) <= 1).all())
    # a point already inside stays where it is
    small = project(delta * 1e-3, torch.full_like(x, 0.5), 0.5, norm)
    assert torch.allclose(small, delta * 1e-3)


def test_ascent_step_known_answer():
    delta = torch.zeros(1, 1, 1, 2, dtype=torch.float64)
    grad = torch.tensor([[[[3.0, 4.0]]]], dtype=torch.float64)
    assert torch.allclose(ascent_step(delta, grad, 1.0, "l2"), torch.tensor([[[[0.6, 0.8]]]], dtype=torch.float64))
    assert torch.allclose(ascent_step(delta, grad, 0.1, "linf"), torch.full_like(delta, 0.1))


def test_project_gradcheck_float64():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 3, 3, generator=g, dtype=torch.float64) * 0.5 + 0.25
    delta = (torch.randn(2, 3, 3, 3, generator=g, dtype=torch.float64) * 0.05).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda d: project(d, x, 0.1, "l2"), (delta,))


@pytest.mark.parametrize("norm,eps", [("l2", 0.5), ("linf", 8 / 255)])
def test_attack_increases_loss_and_respects_bound_float64(norm, eps):
    torch.manual_seed(0)
    w = torch.randn(5, 3 * 8 * 8, dtype=torch.float64)
    labels = torch.arange(4) % 5
    x = torch.rand(4, 3, 8, 8, dtype=torch.float64)

    def loss_fn(images):
        return torch.nn.functional.cross_entropy(images.flatten(1) @ w.t(), labels)

    adv = pgd_attack(loss_fn, x, eps, steps=5, norm=norm, random_start=True, generator=torch.Generator().manual_seed(0))
    assert adv.dtype == torch.float64 and adv.shape == x.shape and not adv.requires_grad
    delta = adv - x
    size = _norms(delta) if norm == "l2" else delta.flatten(1).abs().amax(dim=1)
    assert bool((size <= eps * (1 + 1e-9)).all())
    assert bool(((adv >= 0) & (adv <= 1)).all())
    assert float(loss_fn(adv)) > float(loss_fn(x)) + 1e-3
    # a single step already raises the loss (first-order ascent)
    one = pgd_attack(loss_fn, x, eps * 1e-3, steps=1, norm=norm)
    assert float(loss_fn(one)) > float(loss_fn(x))


def test_zero_steps_and_noise_override():
    x = torch.rand(2, 3, 4, 4)
    assert torch.equal(pgd_attack(lambda i: i.sum(), x, 1.0, steps=0), x)
    noise = torch.full_like(x, 0.01)
    out = pgd_attack(lambda i: i.sum(), x.clamp(0.1, 0.9), 1.0, steps=0, noise=noise)
    assert torch.allclose(out, x.clamp(0.1, 0.9) + 0.01)
    assert math.isclose(float((pgd_attack(lambda i: i.sum(), torch.zeros(1, 3, 4, 4), 1.0, steps=1) ** 2).sum()), 1.0,
                        rel_tol=1e-5)
