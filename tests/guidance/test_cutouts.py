"""VQGAN+CLIP cutouts: smoke, exceptions, shapes, known answers, replay, gradcheck (kornia's order)."""

from __future__ import annotations

import pytest
import torch

from clipag_plugin.guidance.cutouts import (
    CUTOUT_MODES,
    CropParams,
    Cutouts,
    apply_crops,
    pooled_cutouts,
    resize_square,
    sample_crops,
    sample_noise,
    whole_cutout,
)


@pytest.mark.parametrize("mode", CUTOUT_MODES)
def test_every_mode_runs_and_has_the_right_shape(mode):
    image = torch.rand(1, 3, 40, 48)
    out = Cutouts(16, cutn=5, mode=mode)(image, generator=torch.Generator().manual_seed(0))
    assert out.shape == ((1 if mode == "none" else 5), 3, 16, 16)
    assert torch.isfinite(out).all()


def test_bad_arguments_name_the_choices():
    with pytest.raises(ValueError, match="original, updated, latest, none"):
        Cutouts(16, mode="fancy")
    with pytest.raises(ValueError, match="at least 1"):
        Cutouts(16, cutn=0)
    with pytest.raises(ValueError, match="augmentation set"):
        Cutouts(16, augment="wild")


def test_none_mode_is_the_whole_image_resized_without_noise_or_augmentation():
    image = torch.rand(2, 3, 32, 32)
    cut = Cutouts(16, cutn=32, mode="none")
    assert cut.cutn == 1 and len(cut.augs) == 0 and cut.noise_fac == 0
    assert torch.allclose(cut(image), resize_square(image, 16))
    assert torch.equal(whole_cutout(image, 32), image)


def test_crops_fit_the_image_and_cut_pow_shrinks_them():
    g = torch.Generator().manual_seed(0)
    p = sample_crops(30, 50, cut_size=8, cutn=200, cut_pow=1.0, generator=g)
    assert ((p.sizes >= 8) & (p.sizes <= 30)).all()
    assert ((p.offsets_y + p.sizes <= 30) & (p.offsets_x + p.sizes <= 50)).all()
    small = sample_crops(30, 50, 8, 200, cut_pow=8.0, generator=g)
    assert small.sizes.float().mean() < p.sizes.float().mean() - 5


def test_apply_crops_known_answer_and_batch_order():
    image = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6)
    p = CropParams(sizes=torch.tensor([3, 2]), offsets_y=torch.tensor([1, 0]), offsets_x=torch.tensor([2, 4]))
    out = apply_crops(image, p, cut_size=3)
    assert out.shape == (4, 1, 3, 3)  # cutout-major: (cut0 img0, cut0 img1, cut1 img0, cut1 img1)
    assert torch.equal(out[0], image[0, :, 1:4, 2:5]) and torch.equal(out[1], image[1, :, 1:4, 2:5])
    assert torch.allclose(out[3], resize_square(image[1:, :, 0:2, 4:6], 3)[0])
    with pytest.raises(ValueError, match="does not fit"):
        apply_crops(image[:, :, :2, :2], p, 2)


def test_pooled_cutouts_known_answer():
    image = torch.tensor([[[[0.0, 1.0], [2.0, 5.0]]]])
    out = pooled_cutouts(image, 1, cutn=3)
    assert out.shape == (3, 1, 1, 1)
    assert torch.allclose(out, torch.full((3, 1, 1, 1), (2.0 + 5.0) / 2))


@pytest.mark.parametrize("mode", ["original", "updated", "latest"])
def test_same_generator_replays_the_same_cutouts_and_global_rng_is_untouched(mode):
    image = torch.rand(1, 3, 24, 24)
    cut = Cutouts(12, cutn=4, mode=mode)
    state = torch.get_rng_state()
    a = cut(image, generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.get_rng_state(), state)
    b = cut(image, generator=torch.Generator().manual_seed(5))
    c = cut(image, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    params = cut.sample(image.shape, torch.Generator().manual_seed(5))
    assert torch.equal(cut.apply(image, params), a)


def test_noise_scale_is_per_cutout_and_at_most_the_factor():
    noise = sample_noise((400, 3, 16, 16), 0.1, torch.Generator().manual_seed(0))
    stds = noise.flatten(1).std(dim=1)
    assert stds.max() < 0.11 and stds.min() < 0.01 and 0.04 < stds.mean() < 0.06


def test_original_mode_clamps_updated_and_latest_add_noise():
    image = torch.rand(1, 3, 20, 20)
    g = torch.Generator().manual_seed(0)
    out = Cutouts(10, cutn=8, mode="original")(image * 3 - 1, generator=g)
    assert out.min() >= 0 and out.max() <= 1
    for mode in ("updated", "latest"):
        cut = Cutouts(10, cutn=8, mode=mode)
        assert cut.noise_fac == pytest.approx(0.1) and len(cut.augs) > 0
        assert cut.sample(image.shape, g).noise is not None


def test_switches_turn_augmentation_and_noise_off():
    cut = Cutouts(10, cutn=4, mode="latest", augment=None, noise=0.0)
    image = torch.rand(1, 3, 20, 20)
    expected = pooled_cutouts(image, 10, 4)
    assert torch.allclose(cut(image, generator=torch.Generator().manual_seed(0)), expected)


def test_gradients_reach_the_image_in_every_mode():
    for mode in CUTOUT_MODES:
        image = torch.rand(1, 3, 24, 24, requires_grad=True)
        Cutouts(12, cutn=3, mode=mode)(image, generator=torch.Generator().manual_seed(1)).sum().backward()
        assert image.grad is not None and image.grad.abs().sum() > 0, mode


def test_gradcheck_crops_pooling_and_resize():
    image = torch.rand(1, 2, 9, 9, dtype=torch.float64, requires_grad=True)
    p = sample_crops(9, 9, cut_size=4, cutn=2, generator=torch.Generator().manual_seed(0))
    assert torch.autograd.gradcheck(lambda t: apply_crops(t, p, 4), (image,))
    assert torch.autograd.gradcheck(lambda t: whole_cutout(t, 5), (image,))
    # max pooling is piecewise linear; distinct values keep gradcheck away from ties
    distinct = (torch.randperm(81, dtype=torch.float64).view(1, 1, 9, 9) / 81).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: pooled_cutouts(t, 3, 2), (distinct,))
