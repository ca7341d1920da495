"""Views: sampling apart from applying; shapes, known answers, float64 gradchecks."""

from dataclasses import replace

import pytest
import torch

from clipag_plugin.guidance.views import (
    NO_AUGMENT,
    ViewConfig,
    apply_affine,
    apply_color,
    apply_crops,
    apply_cutout,
    apply_noise,
    apply_views,
    cat_params,
    crop_size_for,
    identity_view_params,
    sample_crop_params,
    sample_view_params,
)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _img(b=2, s=8, dtype=torch.float32):
    return torch.rand(b, 3, s, s, generator=_gen(1), dtype=dtype)


# --- sampling -----------------------------------------------------------------------------
def test_sample_shapes_and_ranges():
    p = sample_view_params(5, 16, _gen(), ViewConfig(), source=1)
    assert len(p) == 5 and p.source.tolist() == [1] * 5
    assert p.brightness.shape == (5,) and p.shift.shape == (5, 2) and p.noise.shape == (5, 3, 16, 16)
    assert bool((p.brightness.abs() <= 0.5).all()) and bool((p.saturation >= 0).all() and (p.saturation <= 2).all())
    assert bool((p.contrast >= 0.5).all() and (p.contrast <= 1.5).all())
    assert bool((p.scale >= 0.8).all() and (p.scale <= 1.2).all())
    # whole-pixel shifts of at most 1/8 of the side
    pixels = p.shift * 16
    assert torch.allclose(pixels, pixels.round()) and bool((pixels.abs() <= 2).all())


def test_sampling_is_reproducible():
    a = sample_view_params(3, 8, _gen(7))
    b = sample_view_params(3, 8, _gen(7))
    assert torch.equal(a.brightness, b.brightness) and torch.equal(a.noise, b.noise)


def test_switching_one_op_off_keeps_the_others():
    full = sample_view_params(4, 8, _gen(3), ViewConfig())
    no_color = sample_view_params(4, 8, _gen(3), replace(ViewConfig(), color=False))
    assert torch.equal(full.scale, no_color.scale) and torch.equal(full.shift, no_color.shift)
    assert bool((no_color.brightness == 0).all())


def test_no_augment_is_identity():
    x = _img()
    p = sample_view_params(3, 8, _gen(), NO_AUGMENT, source=1)
    assert p.noise is None
    out = apply_views(x, p)
    assert out.shape == (3, 3, 8, 8)
    assert torch.equal(out, x[[1, 1, 1]])


def test_bad_config():
    with pytest.raises(ValueError):
        ViewConfig(translation=1.5)
    with pytest.raises(ValueError):
        ViewConfig(resize=(1.2, 0.8))


# --- colour -------------------------------------------------------------------------------
def test_color_known_answers():
    x = _img()
    one, zero = torch.ones(2), torch.zeros(2)
    assert torch.allclose(apply_color(x, zero, one, one), x)
    assert torch.allclose(apply_color(x, zero + 0.1, one, one), x + 0.1)
    gray = apply_color(x, zero, zero, one)  # saturation 0: every channel equals the grey level
    assert torch.allclose(gray, x.mean(1, keepdim=True).expand_as(x), atol=1e-6)
    flat = apply_color(x, zero, one, zero)  # contrast 0: constant image at the mean
    assert torch.allclose(flat, x.mean((1, 2, 3), keepdim=True).expand_as(x), atol=1e-6)


def test_color_gradcheck():
    x = _img(2, 4, torch.float64).requires_grad_(True)
    b = torch.tensor([0.1, -0.2], dtype=torch.float64)
    s = torch.tensor([0.5, 1.5], dtype=torch.float64)
    c = torch.tensor([1.2, 0.7], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: apply_color(t, b, s, c), (x,))


# --- translation / resize -----------------------------------------------------------------
def test_affine_identity_and_whole_pixel_shift():
    x = _img(1, 8)
    assert torch.allclose(apply_affine(x, torch.zeros(1, 2), torch.ones(1)), x, atol=1e-6)
    moved = apply_affine(x, torch.tensor([[1 / 8, 0.0]]), torch.ones(1))  # one pixel right
    expected = torch.zeros_like(x)
    expected[..., 1:] = x[..., :-1]
    assert torch.allclose(moved, expected, atol=1e-6)
    down = apply_affine(x, torch.tensor([[0.0, 2 / 8]]), torch.ones(1))  # two pixels down
    expected = torch.zeros_like(x)
    expected[..., 2:, :] = x[..., :-2, :]
    assert torch.allclose(down, expected, atol=1e-6)


def test_affine_zoom_in_keeps_centre_value():
    x = torch.zeros(1, 3, 9, 9)
    x[..., 4, 4] = 1.0
    zoomed = apply_affine(x, torch.zeros(1, 2), torch.tensor([2.0]))
    assert zoomed.shape == x.shape and float(zoomed[0, 0, 4, 4]) == pytest.approx(1.0)


def test_affine_gradcheck():
    x = _img(2, 5, torch.float64).requires_grad_(True)
    shift = torch.tensor([[0.2, 0.0], [0.0, -0.2]], dtype=torch.float64)
    scale = torch.tensor([1.13, 0.87], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: apply_affine(t, shift, scale), (x,))


# --- cutout and noise ---------------------------------------------------------------------
def test_cutout_known_answer():
    x = torch.ones(1, 3, 8, 8)
    out = apply_cutout(x, torch.tensor([[0.5, 0.5]]), 0.5)
    assert float(out[0, 0].sum()) == 64 - 16  # a 4x4 square zeroed
    assert float(out[0, 0, 2:6, 2:6].sum()) == 0.0
    assert torch.equal(apply_cutout(x, torch.tensor([[0.5, 0.5]]), 0.0), x)


def test_cutout_and_noise_gradcheck():
    x = _img(1, 6, torch.float64).requires_grad_(True)
    noise = torch.randn(1, 3, 6, 6, generator=_gen(2), dtype=torch.float64)
    fn = lambda t: apply_noise(apply_cutout(t, torch.tensor([[0.3, 0.6]]), 0.5), noise)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.equal(apply_noise(x, None), x)


def test_apply_views_full_pipeline_gradcheck():
    x = _img(2, 6, torch.float64).requires_grad_(True)
    p = cat_params([sample_view_params(2, 6, _gen(s), ViewConfig(), source=s) for s in (0, 1)])
    p = replace(p, noise=p.noise.double())
    assert p.source.tolist() == [0, 0, 1, 1]
    assert apply_views(x, p).shape == (4, 3, 6, 6)
    assert torch.autograd.gradcheck(lambda t: apply_views(t, p), (x,))


# --- crops --------------------------------------------------------------------------------
def test_crop_size_scales_with_the_image():
    assert crop_size_for(224) == 128
    assert crop_size_for(64) == 37
    assert crop_size_for(448) == 256


def test_crops_shapes_and_known_answer():
    x = _img(2, 8)
    p = sample_crop_params(5, 8, 4, _gen(), source=1)
    out = apply_crops(x, p, out_size=8)
    assert out.shape == (5, 3, 8, 8) and p.offsets.max() <= 4
    full = sample_crop_params(2, 8, 8, _gen(), source=0)  # a full-size crop is the image itself
    assert torch.equal(apply_crops(x, full), x[[0, 0]])
    # a 4x4 crop upsampled 2x keeps its mean (bilinear, edges clamped)
    one = sample_crop_params(1, 8, 4, _gen(5), source=0)
    oy, ox = one.offsets[0].tolist()
    assert torch.allclose(apply_crops(x, one).mean(), x[0, :, oy : oy + 4, ox : ox + 4].mean(), atol=1e-2)


def test_crops_gradcheck_and_errors():
    x = _img(1, 6, torch.float64).requires_grad_(True)
    p = sample_crop_params(3, 6, 3, _gen())
    assert torch.autograd.gradcheck(lambda t: apply_crops(t, p, 6), (x,))
    with pytest.raises(ValueError):
        sample_crop_params(1, 6, 7, _gen())
    assert apply_crops(x, sample_crop_params(0, 6, 3, _gen()), 6).shape == (0, 3, 6, 6)


def test_identity_params():
    p = identity_view_params(2)
    x = _img(1, 4)
    assert torch.equal(apply_views(x, p), x[[0, 0]])
