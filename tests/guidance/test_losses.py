"""Losses: cosine / spherical distances and the weighted multi-prompt loss."""

import math

import pytest
import torch
import torch.nn.functional as F

from clipag_plugin.guidance.losses import (
    cosine_distance,
    cosine_similarity,
    prompt_loss,
    spherical_distance_sq,
    view_crop_loss,
)


def _rand(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_distances_known_answers():
    a = torch.tensor([[1.0, 0.0], [0.0, 3.0], [-2.0, 0.0]])
    t = torch.tensor([[5.0, 0.0]])
    assert cosine_similarity(a, t).squeeze(1).tolist() == pytest.approx([1.0, 0.0, -1.0])
    assert cosine_distance(a, t).squeeze(1).tolist() == pytest.approx([0.0, 1.0, 2.0])
    # 2 * arcsin(chord / 2)^2 = angle^2 / 2: 0, (pi/2)^2/2, pi^2/2
    sph = spherical_distance_sq(a, t).squeeze(1)
    assert sph.tolist() == pytest.approx([0.0, (math.pi / 2) ** 2 / 2, math.pi**2 / 2], abs=1e-3)


def test_distances_shapes_and_scale_invariance():
    a, t = _rand(5, 8), _rand(3, 8, seed=1)
    assert cosine_distance(a, t).shape == (5, 3) and spherical_distance_sq(a, t).shape == (5, 3)
    assert torch.allclose(cosine_distance(3 * a, t), cosine_distance(a, t))


def test_distances_gradcheck():
    a = _rand(4, 6).requires_grad_(True)
    t = _rand(2, 6, seed=1)
    assert torch.autograd.gradcheck(lambda x: cosine_distance(x, t), (a,))
    assert torch.autograd.gradcheck(lambda x: spherical_distance_sq(x, t), (a,))


def test_prompt_loss_known_answer_groups_and_negative_weights():
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    imgs = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # 2 images x 2 views
    loss = prompt_loss(imgs, t, [1.0, -0.5], groups=2)
    d = cosine_distance(imgs, t)
    expected0 = d[:2, 0].mean() - 0.5 * d[:2, 1].mean()
    expected1 = d[2:, 0].mean() - 0.5 * d[2:, 1].mean()
    assert loss.shape == (2,) and torch.allclose(loss, torch.stack([expected0, expected1]))


def test_negative_weight_pushes_away():
    t = _rand(1, 8)
    x = _rand(1, 8, seed=3).requires_grad_(True)
    prompt_loss(x, t, [-1.0]).sum().backward()
    step = (x - 0.1 * x.grad).detach()
    assert float(cosine_similarity(step, t)) < float(cosine_similarity(x.detach(), t))


def test_stop_zeroes_gradient_but_keeps_value():
    t = torch.tensor([[1.0, 0.0]])
    x = torch.tensor([[1.0, 0.2]], requires_grad=True)  # close to t: distance ~0.02
    free = prompt_loss(x, t, [1.0])
    stopped = prompt_loss(x, t, [1.0], stops=[0.5])
    assert torch.allclose(free, stopped)
    stopped.sum().backward()
    assert float(x.grad.abs().sum()) == 0.0


def test_prompt_loss_gradcheck():
    x = _rand(6, 5).requires_grad_(True)
    t = _rand(2, 5, seed=4)
    assert torch.autograd.gradcheck(lambda v: prompt_loss(v, t, [1.0, -0.3], groups=3), (x,))
    assert torch.autograd.gradcheck(lambda v: prompt_loss(v, t, [0.7, 0.2], distance="spherical", groups=2), (x,))


def test_view_crop_loss_weights_and_empty_parts():
    t = _rand(1, 4)
    v, c = _rand(3, 4, seed=1), _rand(2, 4, seed=2)
    got = view_crop_loss(v, c, t, [1.0], view_weight=1.0, crop_weight=5.0)
    assert torch.allclose(got, prompt_loss(v, t, [1.0]) + 5.0 * prompt_loss(c, t, [1.0]))
    only_view = view_crop_loss(v, c[:0], t, [1.0])
    assert torch.allclose(only_view, prompt_loss(v, t, [1.0]))


def test_errors():
    t = _rand(2, 4)
    with pytest.raises(ValueError):
        prompt_loss(_rand(3, 4), t, [1.0])  # one weight for two prompts
    with pytest.raises(ValueError):
        prompt_loss(_rand(3, 4), t, [1.0, 1.0], groups=2)
    with pytest.raises(ValueError):
        prompt_loss(_rand(2, 4), t, [1.0, 1.0], distance="l2")  # type: ignore[arg-type]


def test_one_weight_row_per_image_equals_each_image_alone():
    from clipag_plugin.guidance.losses import positive_cosine

    g = torch.Generator().manual_seed(0)
    views = torch.randn(2 * 3, 8, generator=g, dtype=torch.float64)  # 2 images, 3 views each
    texts = torch.randn(3, 8, generator=g, dtype=torch.float64)
    rows = torch.tensor([[1.0, 0.0, -0.3], [0.0, 2.0, 0.0]], dtype=torch.float64)
    stops = torch.tensor([[-1.0, -1.0, 0.2], [-1.0, 0.5, -1.0]], dtype=torch.float64)
    for distance in ("cosine", "spherical"):
        batched = prompt_loss(views, texts, rows, stops, distance, groups=2)
        alone = [prompt_loss(views[3 * i:3 * i + 3], texts, rows[i], stops[i], distance) for i in range(2)]
        assert torch.allclose(batched, torch.cat(alone))
    cos = positive_cosine(views, texts, rows, groups=2)
    expected = [F.cosine_similarity(views[0:3], texts[0:1]).mean(), F.cosine_similarity(views[3:6], texts[1:2]).mean()]
    assert torch.allclose(cos, torch.stack(expected))
    assert torch.allclose(positive_cosine(views, texts, torch.tensor([1.0, -1.0, 1.0]), groups=2),
                          positive_cosine(views, texts, torch.tensor([[1.0, -1.0, 1.0]] * 2), groups=2))
    fn = lambda v: prompt_loss(v, texts, rows, None, "spherical", groups=2)  # noqa: E731  (stops: straight-through)
    assert torch.autograd.gradcheck(fn, (views.clone().requires_grad_(),))
    with pytest.raises(ValueError, match=r"one row per image \(2, 3\)"):
        prompt_loss(views, texts, torch.ones(3, 3), groups=2)
