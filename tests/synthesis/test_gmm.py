"""Gaussian-mixture prior: fit, sample, save/load, the shipped file, fit from a folder."""

import numpy as np
import pytest
import torch
from PIL import Image

from clipag_plugin.synthesis.gmm import (
    GaussianMixture,
    fit_gaussians,
    fit_gmm,
    fit_gmm_from_arrays,
    load_gmm,
    random_patches,
    shipped_gmm_path,
)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_fit_gaussians_recovers_known_mean_and_covariance():
    d = 4
    true_l = torch.tensor([[1.0, 0, 0, 0], [0.5, 0.8, 0, 0], [0, 0.3, 0.6, 0], [0.2, 0, 0, 0.4]], dtype=torch.float64)
    mu = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    x = mu + torch.randn(20000, d, generator=_gen(), dtype=torch.float64) @ true_l.T
    means, factors, residual = fit_gaussians([x], rank=None, shrinkage=0.0)
    assert torch.allclose(means[0].double(), mu, atol=0.03)
    cov = factors[0].double() @ factors[0].double().T
    assert torch.allclose(cov, true_l @ true_l.T, atol=0.05) and float(residual[0]) == 0.0
    # low rank: top directions + isotropic residual keep the total variance
    _, low, res = fit_gaussians([x], rank=2, shrinkage=0.0)
    assert low.shape == (1, d, 2)
    total = float((low[0] ** 2).sum() + (d - 2) * res[0] ** 2)
    assert total == pytest.approx(float(torch.trace(true_l @ true_l.T)), rel=0.05)


def test_fit_needs_two_samples():
    with pytest.raises(ValueError):
        fit_gaussians([torch.zeros(1, 3)])


def _tiny_gmm(k=2, r=4, rank=3):
    d = 3 * r * r
    means = torch.stack([torch.full((d,), 0.2), torch.full((d,), 0.8)])[:k]
    factors = torch.zeros(k, d, rank)
    factors[:, 0, 0] = 0.1
    return GaussianMixture(means, factors, torch.full((k,), 0.01), tuple(f"c{i}" for i in range(k)), r)


def test_sample_shapes_range_components_and_reproducibility():
    gmm = _tiny_gmm()
    x, comp = gmm.sample(50, _gen())
    assert x.shape == (50, 3, 4, 4) and comp.shape == (50,)
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    # each sample sits near its component's mean
    for c, m in ((0, 0.2), (1, 0.8)):
        assert float(x[comp == c].mean()) == pytest.approx(m, abs=0.02)
    y, _ = gmm.sample(50, _gen())
    assert torch.equal(x, y)
    only1, comp1 = gmm.sample(5, _gen(), component=1)
    assert bool((comp1 == 1).all())
    with pytest.raises(ValueError):
        gmm.sample(1, _gen(), component=5)


def test_sample_is_reparameterized_gradcheck():
    # x = mean + L z + r e is linear in (mean, L): check the reparameterized draw in float64
    z = torch.randn(3, 2, dtype=torch.float64, generator=_gen())
    mean = torch.rand(6, dtype=torch.float64, requires_grad=True)
    factor = torch.rand(6, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda m, f: m + z @ f.T, (mean, factor))


def test_save_load_round_trip(tmp_path):
    gmm = _tiny_gmm()
    path = gmm.save(tmp_path / "g.npz")
    back = GaussianMixture.load(path)
    assert back.names == gmm.names and back.resolution == 4
    assert torch.allclose(back.means, gmm.means) and torch.allclose(back.factors, gmm.factors, atol=1e-3)
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(ValueError):
        GaussianMixture.load(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError):
        load_gmm(tmp_path / "missing.npz")


def test_shipped_gmm_is_small_and_loads():
    path = shipped_gmm_path()
    assert path.is_file() and path.stat().st_size < 1_000_000
    gmm = load_gmm()
    assert gmm.resolution == 16 and gmm.num_components >= 8 and "astronaut" in gmm.names
    x, _ = gmm.sample(8, _gen())
    assert x.shape == (8, 3, 16, 16) and 0.05 < float(x.mean()) < 0.95


def test_random_patches_known_answer():
    img = torch.zeros(3, 20, 30)
    img[0] = 1.0  # pure red: every patch is pure red whatever the crop
    p = random_patches(img, 5, 4, _gen())
    assert p.shape == (5, 48)
    assert torch.allclose(p.view(5, 3, 16)[:, 0], torch.ones(5, 16)) and float(p.view(5, 3, 16)[:, 1:].abs().max()) == 0


def _write(folder, name, color, size=(24, 20)):
    folder.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    arr[...] = color
    arr[::2, ::3] = 255 - np.array(color, dtype=np.uint8)
    Image.fromarray(arr).save(folder / name)


def test_fit_gmm_from_folder(tmp_path):
    _write(tmp_path / "reds", "a.png", (200, 10, 10))
    _write(tmp_path / "reds", "b.png", (180, 20, 20))
    _write(tmp_path / "blues", "c.jpg", (10, 10, 200))
    with pytest.warns(UserWarning, match="shrinkage"):  # 20-40 patches for a 48-dim covariance
        gmm = fit_gmm(tmp_path, resolution=4, patches_per_image=20, progress=False)
    assert gmm.names == ("blues", "reds") and gmm.means.shape == (2, 48)
    red = gmm.means[1].view(3, 16).mean(1)
    assert float(red[0]) > float(red[2])
    per_image = fit_gmm(tmp_path, resolution=4, patches_per_image=10, rank=4, by="image", progress=False)
    assert per_image.num_components == 3 and per_image.factors.shape == (3, 48, 4)


def test_fit_gmm_errors(tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        fit_gmm(tmp_path / "missing")
    with pytest.raises(ValueError, match="no images"):
        fit_gmm(tmp_path)
    with pytest.raises(ValueError):
        fit_gmm(tmp_path, by="colour")
    with pytest.raises(ValueError):
        fit_gmm_from_arrays({})
