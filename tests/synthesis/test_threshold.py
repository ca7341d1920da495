"""Dynamic thresholding: shape, known answers, gradient."""

import pytest
import torch

from clipag_plugin.synthesis.threshold import dynamic_threshold


def test_in_range_images_are_unchanged():
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(dynamic_threshold(x), x, atol=1e-6)


def test_overshoot_is_rescaled_per_image():
    # image 0: in [-0.5, 1.5] -> |2x-1| up to 2 everywhere -> divided by 2: back to [0, 1], order kept
    a = torch.linspace(-0.5, 1.5, 3 * 16).view(1, 3, 4, 4)
    b = torch.full((1, 3, 4, 4), 0.25)
    out = dynamic_threshold(torch.cat([a, b]), p=1.0)
    assert out.shape == (2, 3, 4, 4)
    assert float(out[0].min()) == pytest.approx(0.0, abs=1e-6) and float(out[0].max()) == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(out[0], ((a[0] * 2 - 1) / 2 + 1) / 2)
    assert torch.allclose(out[1], b[0])  # the other image is untouched


def test_quantile_clamps_outliers():
    x = torch.full((1, 3, 10, 10), 0.5)
    x[0, 0, 0, 0] = 5.0  # one outlier, above the 0.95 quantile
    out = dynamic_threshold(x, p=0.95)
    assert float(out.max()) == pytest.approx(1.0) and float(out[0, 1].mean()) == pytest.approx(0.5)


def test_gradcheck():
    x = (torch.rand(2, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 1.6 - 0.3)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: dynamic_threshold(t, 0.9), (x,))


@pytest.mark.parametrize("p", [0.0, 1.5])
def test_bad_quantile(p):
    with pytest.raises(ValueError):
        dynamic_threshold(torch.rand(1, 3, 2, 2), p)
