"""The shipped mini-world prior and the registry's checks on the shipped weights."""

from __future__ import annotations

import pytest
import torch

import clipag
from clipag_plugin import hub, registry
from clipag_plugin.mini import pretrain
from clipag_plugin.mini.prior import build_world_gmm, world_gmm_path
from clipag_plugin.synthesis.gmm import load_gmm


def test_miniworld_prior_is_shipped_and_loads_by_name():
    assert world_gmm_path().is_file()
    gmm = load_gmm("miniworld")
    assert gmm.means.shape == (1, 3 * 16 * 16)  # one caption-agnostic Gaussian at 16x16
    images, component = gmm.sample(8, generator=torch.Generator().manual_seed(0))
    assert images.shape == (8, 3, 16, 16) and (component == 0).all()
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    assert float(images.std()) > 0.05  # not a constant image


def test_prior_rebuild_is_deterministic(tmp_path):
    a = build_world_gmm(tmp_path / "a.npz", n=200, seed=3)
    b = build_world_gmm(tmp_path / "b.npz", n=200, seed=3)
    assert a.read_bytes() == b.read_bytes()


def test_shipped_weights_match_the_registry_sha256(monkeypatch):
    entry = registry.REGISTRY["mini"]
    assert entry.source.weights_sha256 is not None
    model, _ = clipag.load("mini", device="cpu")
    assert model.visual.input_resolution == pretrain.INPUT_SIZE  # reads the 64 px world at 96 px
    bad = registry.ModelEntry(**{**entry.__dict__, "source": registry.PackagedFiles("mini", "0" * 64)})
    monkeypatch.setitem(registry.REGISTRY, "mini", bad)
    with pytest.raises(hub.ChecksumError, match="do not match"):
        clipag.load("mini", device="cpu")
