"""Fixtures shared by the tests of the original programs run on clipag."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def offline(offline_hub, monkeypatch, tiny_model_dir):
    """Offline, nothing cached: every CLIP name falls back (to a tiny model standing in for mini)."""
    monkeypatch.setenv("CLIPAG_OFFLINE", "1")
    return str(tiny_model_dir)


@pytest.fixture
def tiny_vqgan_files(tmp_path):
    """``(config YAML, Lightning checkpoint)`` of a tiny random taming VQGAN, as generate.py reads them."""
    pytest.importorskip("taming")
    from clipag_plugin.vqgan import random_vqgan
    from tests.vqgan.conftest import TAMING_YAML, lightning_checkpoint

    config = tmp_path / "tiny.yaml"
    # the real configs name no checkpoint inside; the training loss is the real (downloading) one
    config.write_text(TAMING_YAML.replace("    ckpt_path: /nonexistent/should-never-be-read.ckpt\n", ""))
    checkpoint = tmp_path / "last.ckpt"
    torch.save(lightning_checkpoint(random_vqgan(seed=0)), checkpoint)
    return config, checkpoint
