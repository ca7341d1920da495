"""The VQGAN+CLIP tab's logic: what it says without taming or a VQGAN, and two CLIPs steering a tiny one."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from PIL import Image

from clipag_plugin.ui.latents import MISSING_TAMING, LatentRequest, vqgan_side_by_side, vqgan_status
from clipag_plugin.ui.slots import Caps, UiInputError

PROMPT = "a red circle on the left, blue background"


@pytest.fixture
def tiny_vqgan_cached(tmp_path, monkeypatch, offline_hub):
    """A tiny untrained VQGAN converted into the cache under the registry name ``tiny-vqgan``."""
    pytest.importorskip("taming")
    from clipag_plugin.vqgan import (
        VQGAN_REGISTRY,
        VqganUrlFiles,
        convert_to_cache,
        random_vqgan,
        vqgan_cache_dir,
    )
    from tests.vqgan.conftest import TAMING_YAML, lightning_checkpoint

    entry = dataclasses.replace(VQGAN_REGISTRY["vqgan_imagenet_f16_1024"], name="tiny-vqgan", n_embed=64,
                                source=VqganUrlFiles("https://example.invalid/model.yaml",
                                                     "https://example.invalid/last.ckpt"))
    monkeypatch.setitem(VQGAN_REGISTRY, "tiny-vqgan", entry)
    (tmp_path / "model.yaml").write_text(TAMING_YAML)
    torch.save(lightning_checkpoint(random_vqgan(seed=0)), tmp_path / "last.ckpt")
    convert_to_cache(tmp_path / "model.yaml", tmp_path / "last.ckpt", vqgan_cache_dir("tiny-vqgan"), 64)
    return "tiny-vqgan"


def test_without_taming_it_names_the_install_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "taming" else real(name, *a))
    ready, message = vqgan_status()
    assert ready == [] and message == MISSING_TAMING and "pip install 'clipag-plugin[vqgan]'" in message


def test_without_a_vqgan_it_names_the_download_command(offline_hub):
    pytest.importorskip("taming")
    ready, message = vqgan_status()
    assert ready == [] and "python -m clipag_plugin.vqgan download vqgan_imagenet_f16_16384" in message
    with pytest.raises(UiInputError, match="No VQGAN is downloaded"):
        next(vqgan_side_by_side(PROMPT, "vqgan_imagenet_f16_16384", [LatentRequest("mini")], out_dir=offline_hub))


def test_two_models_steer_one_vqgan_and_leave_their_files(tmp_path, tiny_vqgan_cached):
    ready, message = vqgan_status()
    assert ready == [tiny_vqgan_cached] and message == ""
    requests = [LatentRequest("mini", steps=4, size=64), LatentRequest("mini-vanilla", steps=4, size=64, tricks=True)]
    statuses, views = [], []
    for views in vqgan_side_by_side(PROMPT, tiny_vqgan_cached, requests, every=2, out_dir=tmp_path / "out",
                                    device="cpu"):
        statuses.append([v.status for v in views])
    assert statuses[0] == [f"{name}: step 0/4, loss {s.split('loss ')[1]}" for name, s in
                           zip(("mini", "mini-vanilla"), statuses[0], strict=True)]
    assert len(statuses) == 4  # steps 0, 2 and 4, then the results
    for view, name, tricks in zip(views, ("mini", "mini-vanilla"), (False, True), strict=True):
        assert view.done and view.status.startswith(f"{name}: done; loss") and "judge reads" in view.status
        assert Image.open(tmp_path / "out" / f"{name}.png").size == (64, 64)
        settings = json.loads((tmp_path / "out" / f"{name}.json").read_text())
        assert settings["vqgan"] == "tiny-vqgan" and settings["config"]["tricks"] is tricks
        assert settings["config"]["cutn"] == 32 and settings["config"]["steps"] == 4


@pytest.mark.parametrize("request_, vqgan, match", [
    (LatentRequest("mini", steps=999), "tiny-vqgan", "Steps 999 is out of range"),
    (LatentRequest("mini", size=4000), "tiny-vqgan", "Size 4000 px is out of range"),
    (LatentRequest("ViT-B/32"), "tiny-vqgan", "not available here"),
    (LatentRequest("mini"), "vqgan_imagenet_f16_16384", "not on this machine; choose tiny-vqgan"),
])
def test_bad_requests_are_sentences(tmp_path, request_, vqgan, match):
    with pytest.raises(UiInputError, match=match):
        next(vqgan_side_by_side(PROMPT, vqgan, [request_], caps=Caps(max_steps=300), out_dir=tmp_path,
                                choices=["mini", "mini-vanilla"], vqgans=["tiny-vqgan"]))
