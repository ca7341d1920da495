"""The optimization loop on a fast stand-in model: loss goes down, encoder calls, determinism, NaN."""

import dataclasses

import pytest
import torch

from clipag_plugin.guidance.prompts import Prompt
from clipag_plugin.synthesis.api import load_guides
from clipag_plugin.synthesis.loop import (
    GenerateConfig,
    NonFiniteLossWarning,
    clip_grad_per_image,
    frozen,
    l2_step_,
    optimize,
)

from .conftest import FakeClip

FAST = GenerateConfig(steps=15, views=3, crops=2, lr=0.05, init="noise")
PLAIN = dataclasses.replace(FAST, views=1, crops=0, augment=False)


def _run(model, config, seeds=(0,), prompts=(Prompt("a red barn"),)):
    guides = load_guides(model, list(prompts), truncate=False)
    init = torch.stack([torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(s)) for s in seeds])
    gens = [torch.Generator().manual_seed(s + 100) for s in seeds]
    return optimize(init, guides, config, gens), init


def _whole_loss(model, images):
    guides = load_guides(model, [Prompt("a red barn")], truncate=False)
    with torch.no_grad():
        emb = model.encode_pixels(images).float()
    return 1 - torch.nn.functional.cosine_similarity(emb, guides[0].texts)


def test_loss_goes_down_and_best_is_kept(fake_clip):
    result, init = _run(fake_clip, FAST)
    losses = [h["loss"][0] for h in result.history]
    assert len(losses) == 15 and min(losses[-3:]) < losses[0]
    # the kept image is the one with the lowest whole-image loss (the image itself, not its views)
    assert float(result.loss[0]) == pytest.approx(float(_whole_loss(FakeClip(), result.images)[0]), abs=1e-5)
    assert float(result.loss[0]) < float(_whole_loss(FakeClip(), init)[0])
    assert 0 < int(result.step[0]) <= FAST.steps
    assert result.images.shape == (1, 3, 16, 16)
    assert 0 <= float(result.images.min()) and float(result.images.max()) <= 1


def test_no_augment_calls_the_encoder_once_per_step(fake_clip):
    result, _ = _run(fake_clip, PLAIN)
    assert fake_clip.calls == PLAIN.steps + 1  # one per step, one to score the final image
    # and it still optimizes
    assert result.history[-1]["loss"][0] < result.history[0]["loss"][0]


def test_no_augment_with_many_views_still_one_view():
    config = dataclasses.replace(PLAIN, views=32)
    assert config.effective_views() == 1
    model = FakeClip()
    _run(model, config)
    assert model.calls == config.steps + 1


def test_ensemble_calls_each_model_once_per_step():
    a, b = FakeClip(seed=0), FakeClip(seed=1)
    result, _ = _run([a, b], PLAIN)
    assert a.calls == b.calls == PLAIN.steps + 1
    single, _ = _run(FakeClip(seed=0), PLAIN)
    assert result.history[0]["loss"][0] > single.history[0]["loss"][0]  # losses are summed


def test_deterministic_under_seed():
    r1, _ = _run(FakeClip(), FAST, seeds=(0, 1))
    r2, _ = _run(FakeClip(), FAST, seeds=(0, 1))
    assert torch.equal(r1.images, r2.images) and r1.history == r2.history
    r3, _ = _run(FakeClip(), FAST, seeds=(2, 1))
    assert not torch.equal(r1.images[0], r3.images[0])


def test_seed_result_does_not_depend_on_the_batch():
    batch, _ = _run(FakeClip(), FAST, seeds=(0, 1))
    alone, _ = _run(FakeClip(), FAST, seeds=(1,))
    assert torch.allclose(batch.images[1], alone.images[0], atol=1e-4)


def test_negative_prompt_changes_the_result():
    pos, _ = _run(FakeClip(), PLAIN)
    both, _ = _run(FakeClip(), PLAIN, prompts=(Prompt("a red barn"), Prompt("blurry", -0.5)))
    assert not torch.allclose(pos.images, both.images)


def test_nan_loss_stops_and_keeps_best():
    model = FakeClip(nan_after=4)
    with pytest.warns(NonFiniteLossWarning, match="step 4"):
        result, _ = _run(model, PLAIN)
    assert result.nan_step == 4 and len(result.history) == 4
    assert bool(torch.isfinite(result.images).all()) and int(result.step[0]) < 4


def test_frames_every_k_steps(fake_clip):
    result, _ = _run(fake_clip, dataclasses.replace(PLAIN, steps=6, save_every=2))
    assert [s for s, _ in result.frames] == [2, 4, 6] and result.frames[0][1].shape == (1, 3, 16, 16)


def test_plain_clamp_when_threshold_off(fake_clip):
    result, _ = _run(fake_clip, dataclasses.replace(PLAIN, threshold=None, lr=0.5))
    assert 0 <= float(result.images.min()) and float(result.images.max()) <= 1


def test_clip_grad_per_image_known_answer():
    g = torch.zeros(2, 3, 2, 2)
    g[0, 0, 0, 0] = 3.0
    g[1, 0, 0, 0] = 0.0005
    out = clip_grad_per_image(g, 0.001)
    assert float(out[0].norm()) == pytest.approx(0.001, rel=1e-3)
    assert torch.equal(out[1], g[1])  # under the limit: untouched


def test_l2_step_moves_each_image_by_the_step_length_along_its_gradient():
    g = torch.Generator().manual_seed(0)
    pixels, coarse = torch.rand(3, 3, 8, 8, generator=g), torch.rand(3, 3, 2, 2, generator=g)
    grads = [torch.randn(3, 3, 8, 8, generator=g), torch.randn(3, 3, 2, 2, generator=g)]
    grads[0][1] = 0.0  # image 1 moves through its coarse grid only
    before = [pixels.clone(), coarse.clone()]
    l2_step_([pixels, coarse], grads, 0.5)
    moved = ((pixels - before[0]).flatten(1).pow(2).sum(1) + (coarse - before[1]).flatten(1).pow(2).sum(1)).sqrt()
    assert torch.allclose(moved, torch.full((3,), 0.5))
    assert torch.equal(pixels[1], before[0][1])
    cos = torch.nn.functional.cosine_similarity((before[0] - pixels).flatten(1), grads[0].flatten(1))
    assert torch.allclose(cos[[0, 2]], torch.ones(2))  # straight down the gradient
    zero = torch.rand(2, 3, 4, 4)
    untouched = zero.clone()
    l2_step_([zero], [torch.zeros_like(zero)], 1.0)
    assert torch.equal(zero, untouched)



def test_l2_optimizer_takes_fixed_length_steps_and_optimizes(fake_clip):
    config = dataclasses.replace(PLAIN, optimizer="l2", lr=0.3, threshold=None, steps=6)
    moved = []
    guides = load_guides(fake_clip, [Prompt("a red barn")], truncate=False)
    init = torch.full((1, 3, 16, 16), 0.5)  # mid-gray: six steps of 0.3 cannot reach the clamp
    previous = [init]

    def record(step, pixels, loss):
        moved.append(float((pixels - previous[-1]).norm()))
        previous.append(pixels.clone())

    result = optimize(init, guides, config, [torch.Generator().manual_seed(0)], callback=record)
    assert moved == pytest.approx([0.3] * 6, rel=1e-4)
    assert result.history[-1]["loss"][0] < result.history[0]["loss"][0]
    with pytest.raises(ValueError, match="optimizer='sgd': choose one of"):
        GenerateConfig(optimizer="sgd")


def test_frozen_restores_requires_grad(fake_clip):
    with frozen([fake_clip]):
        assert not any(p.requires_grad for p in fake_clip.parameters())
    assert all(p.requires_grad for p in fake_clip.parameters())


@pytest.mark.parametrize(
    "bad", [dict(steps=0), dict(lr=0), dict(views=0, crops=0), dict(threshold=1.5), dict(grad_clip=0), dict(views=-1)]
)
def test_config_validation(bad):
    with pytest.raises(ValueError):
        GenerateConfig(**bad)
