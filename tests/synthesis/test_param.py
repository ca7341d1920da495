"""Parametrizations: shapes, range, the start image, gradients reaching every level, determinism."""

import dataclasses

import pytest
import torch

from clipag_plugin.guidance.prompts import Prompt
from clipag_plugin.synthesis.api import load_guides
from clipag_plugin.synthesis.loop import GenerateConfig, optimize
from clipag_plugin.synthesis.param import (
    PARAMS,
    MultiRes,
    Pixels,
    check_levels,
    default_levels,
    make_param,
    multires_image,
)

from .conftest import FakeClip


def _init(b=2, size=16, seed=0):
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_default_levels_double_up_to_the_side():
    assert default_levels(96) == (1, 2, 4, 8, 16, 32, 64, 96)
    assert default_levels(64) == (1, 2, 4, 8, 16, 32, 64)
    assert default_levels(1) == (1,)


@pytest.mark.parametrize("levels, size", [((0, 2), 16), ((1, 32), 16), ((), 16)])
def test_levels_that_do_not_fit_name_the_valid_range(levels, size):
    with pytest.raises(ValueError, match="levels|empty") as err:
        check_levels(levels, size)
    assert "16" in str(err.value)


def test_check_levels_sorts_and_dedups():
    assert check_levels([8, 1, 8, 4], 16) == (1, 4, 8)


def test_unknown_param_lists_the_choices():
    with pytest.raises(ValueError, match="pixels, multires"):
        make_param("wavelets", _init())
    with pytest.raises(ValueError, match="param="):
        GenerateConfig(param="wavelets")


@pytest.mark.parametrize("name", PARAMS)
def test_starts_exactly_at_the_init_and_stays_in_range(name):
    init = _init()
    param = make_param(name, init, threshold=None)
    x = param.forward()
    assert x.shape == init.shape
    # multires goes through a logit of the start clamped to [1e-3, 1 - 1e-3]; pixels is the start
    expected = init.clamp(1e-3, 1 - 1e-3) if name == "multires" else init
    assert torch.allclose(x, expected, atol=1e-5)
    with torch.no_grad():
        for t in param.tensors():
            t.add_(torch.randn(t.shape, generator=torch.Generator().manual_seed(1)) * 50)
    param.project_()
    x = param.forward().detach()
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def test_multires_has_one_zero_level_per_resolution():
    param = make_param("multires", _init(b=3, size=16), levels=(1, 4, 16))
    assert isinstance(param, MultiRes)
    assert [tuple(t.shape) for t in param.tensors()] == [(3, 3, 1, 1), (3, 3, 4, 4), (3, 3, 16, 16)]
    assert all(float(t.detach().abs().max()) == 0 for t in param.tensors())
    assert isinstance(make_param("pixels", _init()), Pixels)


def test_multires_known_answer_a_one_pixel_level_shifts_the_whole_logit():
    base = torch.zeros(1, 3, 8, 8)  # sigmoid(0) = 0.5 everywhere
    level = torch.full((1, 3, 1, 1), 2.0)
    out = multires_image(base, [level])
    assert torch.allclose(out, torch.sigmoid(torch.tensor(2.0)).expand(1, 3, 8, 8))


def test_gradient_reaches_every_level():
    param = make_param("multires", _init(size=16), levels=default_levels(16))
    target = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    loss = (param.forward() - target).pow(2).sum()
    grads = torch.autograd.grad(loss, param.tensors())
    assert len(grads) == 5
    assert all(float(g.abs().sum()) > 0 for g in grads)


def test_multires_gradcheck():
    base = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    levels = [torch.randn(1, 2, r, r, dtype=torch.float64, requires_grad=True) for r in (1, 2, 4)]
    assert torch.autograd.gradcheck(lambda *ls: multires_image(base, ls), levels)


def test_pixels_project_thresholds_or_clamps():
    over = torch.full((1, 3, 4, 4), 1.5)
    clamped = make_param("pixels", over, threshold=None)
    clamped.project_()
    assert float(clamped.forward().max()) == 1.0
    thresholded = make_param("pixels", torch.linspace(-0.5, 1.5, 48).view(1, 3, 4, 4), threshold=0.95)
    thresholded.project_()
    x = thresholded.forward()
    # dynamic thresholding rescales instead of piling values at 0 and 1
    assert float(x.min()) >= 0 and float(x.max()) <= 1 and int((x == 1).sum()) < 5


PLAIN = GenerateConfig(steps=12, views=1, crops=0, augment=False, optimizer="l2", lr=0.5, init="noise",
                       param="multires", threshold=None)


def _run(config, seed=0):
    model = FakeClip()
    guides = load_guides(model, [Prompt("a red barn")], truncate=False)
    init = _init(b=1, size=16, seed=seed)
    return optimize(init, guides, config, [torch.Generator().manual_seed(seed + 7)]), model


@pytest.mark.parametrize("optimizer, lr", [("l2", 0.5), ("adamw", 0.05)])
def test_multires_loop_lowers_the_loss(optimizer, lr):
    result, model = _run(dataclasses.replace(PLAIN, optimizer=optimizer, lr=lr))
    losses = [h["loss"][0] for h in result.history]
    assert min(losses[-3:]) < losses[0]
    assert model.calls == PLAIN.steps + 1  # still one encoder call per step (+ the final image)
    assert 0 <= float(result.images.min()) and float(result.images.max()) <= 1


def test_multires_loop_is_deterministic_with_copies():
    config = dataclasses.replace(PLAIN, copies=3, jitter=2, copy_noise=0.05)
    a, _ = _run(config, seed=1)
    b, _ = _run(config, seed=1)
    c, _ = _run(config, seed=2)
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)


def test_copies_join_the_views():
    config = dataclasses.replace(PLAIN, steps=2, copies=3, jitter=2)
    model = FakeClip()
    seen = []
    original = model.encode_pixels
    model.encode_pixels = lambda x: (seen.append(x.shape[0]), original(x))[1]
    guides = load_guides(model, [Prompt("a red barn")], truncate=False)
    optimize(_init(b=1, size=16), guides, config, [torch.Generator().manual_seed(0)])
    # per step: the image itself (scored whole), the one view and 3 jittered copies; then the final image
    assert seen == [5, 5, 1]


def test_bad_copy_options_fail():
    with pytest.raises(ValueError, match="copies"):
        GenerateConfig(copies=-1)
    with pytest.raises(ValueError, match="levels"):
        GenerateConfig(levels=(0, 4))
