"""Starting images: noise, gray, image file, GMM candidates scored by the model."""

import pytest
import torch
from PIL import Image

from clipag_plugin.synthesis.gmm import GaussianMixture
from clipag_plugin.synthesis.init import gmm_init, gray_init, image_init, noise_init, pick_best, upsample


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_noise_and_gray():
    x = noise_init(8, _gen())
    assert x.shape == (1, 3, 8, 8) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert torch.equal(noise_init(8, _gen()), x)
    assert torch.equal(gray_init(4), torch.full((1, 3, 4, 4), 0.5))
    jittered = gray_init(4, _gen(), jitter=0.1)
    assert float((jittered - 0.5).abs().max()) <= 0.1 + 1e-6


def test_image_init_resizes_and_crops(tmp_path):
    Image.new("RGB", (40, 20), (255, 0, 0)).save(tmp_path / "red.png")
    x = image_init(tmp_path / "red.png", 16)
    assert x.shape == (1, 3, 16, 16)
    assert torch.allclose(x[0, 0], torch.ones(16, 16)) and float(x[0, 1:].abs().max()) == 0
    with pytest.raises(ValueError, match="not found"):
        image_init(tmp_path / "missing.png", 16)
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(ValueError, match="cannot read"):
        image_init(tmp_path / "bad.png", 16)


def test_upsample_keeps_constant_images():
    x = torch.full((2, 3, 4, 4), 0.3)
    assert torch.allclose(upsample(x, 12), torch.full((2, 3, 12, 12), 0.3))


def test_pick_best_and_gmm_init_pick_the_lowest_score():
    cands = torch.stack([torch.full((3, 2, 2), v) for v in (0.9, 0.1, 0.5, 0.3)])
    score = lambda x: (x.mean((1, 2, 3)) - 0.35).abs()  # noqa: E731
    assert pick_best(cands, score, batch_size=3) == 3
    # a 3-component mixture of near-constant images at 0.1, 0.5 and 0.9: the target 0.45 picks the 0.5 one
    d = 3 * 4 * 4
    gmm = GaussianMixture(
        torch.stack([torch.full((d,), v) for v in (0.1, 0.5, 0.9)]), torch.zeros(3, d, 1), torch.full((3,), 0.01),
        ("dark", "mid", "light"), 4,
    )
    calls = []

    def target(x):
        calls.append(len(x))
        return (x.mean((1, 2, 3)) - 0.45).abs()

    best = gmm_init(gmm, 8, _gen(), target, candidates=20, batch_size=8)
    assert best.shape == (1, 3, 8, 8) and float(best.mean()) == pytest.approx(0.5, abs=0.02)
    assert calls == [8, 8, 4]  # scored in batches
    with pytest.raises(ValueError):
        gmm_init(gmm, 8, _gen(), target, candidates=0)
