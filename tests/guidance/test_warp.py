"""CLIPDraw's augmentation (clipag_plugin.guidance.warp): sampling apart from applying."""

from __future__ import annotations

import pytest
import torch

from clipag_plugin.guidance.warp import (
    apply_clipdraw_warp,
    apply_perspective,
    apply_resized_crop,
    clipdraw_warp,
    sample_clipdraw_warp,
    sample_perspective,
    sample_resized_crop,
)


def test_shapes_and_replay():
    image = torch.rand(1, 3, 40, 40)
    params = sample_clipdraw_warp(4, 40, 40, generator=torch.Generator().manual_seed(0))
    out = apply_clipdraw_warp(image, params, size=24)
    assert out.shape == (4, 3, 24, 24)
    torch.testing.assert_close(out, apply_clipdraw_warp(image, params, size=24))  # pure: replayable
    again = clipdraw_warp(image, 4, 24, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, again)  # same generator state, same draw


def test_sampled_ranges_follow_torchvision():
    g = torch.Generator().manual_seed(1)
    p = sample_perspective(500, 224, 224, 0.5, g)
    moved = (p.end - p.start).abs()
    assert moved.max() <= 0.5 * 112 + 1e-4 and moved.max() > 50
    crop = sample_resized_crop(500, 224, 224, (0.7, 0.9), generator=g).boxes
    w = crop[:, 1, 0] - crop[:, 0, 0] + 1
    h = crop[:, 2, 1] - crop[:, 1, 1] + 1
    frac = w * h / 224**2
    assert frac.min() >= 0.7 - 1e-4 and frac.max() <= 1.0 + 1e-4
    assert crop.min() >= -1e-4 and crop.max() <= 223 + 1e-4


def test_identity_parameters_leave_the_image_alone():
    image = torch.rand(2, 3, 16, 16)
    p = sample_perspective(2, 16, 16, distortion=0.0)
    torch.testing.assert_close(apply_perspective(image, p), image, atol=1e-4, rtol=0)
    c = sample_resized_crop(2, 16, 16, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    torch.testing.assert_close(apply_resized_crop(image, c, 16), image, atol=1e-4, rtol=0)


def test_perspective_fills_uncovered_corners_white():
    image = torch.zeros(1, 3, 32, 32)
    p = sample_perspective(1, 32, 32, 0.5, torch.Generator().manual_seed(3))
    out = apply_perspective(image, p, fill=1.0)
    assert out[0, :, 0, 0].min() > 0.99 or out[0, :, -1, -1].min() > 0.99


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="distortion"):
        sample_perspective(1, 8, 8, 1.5)
    with pytest.raises(ValueError, match="scale"):
        sample_resized_crop(1, 8, 8, scale=(0.9, 0.5))
    with pytest.raises(ValueError, match="crop boxes"):
        apply_resized_crop(torch.rand(2, 3, 8, 8), sample_resized_crop(3, 8, 8), 8)


def test_gradcheck_float64():
    image = torch.rand(1, 1, 6, 6, dtype=torch.float64, requires_grad=True)
    params = sample_clipdraw_warp(2, 6, 6, generator=torch.Generator().manual_seed(0))
    assert torch.autograd.gradcheck(lambda x: apply_clipdraw_warp(x, params, size=5), (image,), eps=1e-6, atol=1e-5)
