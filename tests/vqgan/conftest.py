"""Fixtures for the VQGAN tests: a tiny untrained VQModel through the real taming classes."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def tiny_vqgan():
    """About 1M parameters, 64 px, f=4, 64 codes of 16 channels (``TINY_CONFIG``)."""
    pytest.importorskip("taming")
    from clipag_plugin.vqgan import random_vqgan

    return random_vqgan(seed=0)


def lightning_checkpoint(model: torch.nn.Module) -> dict:
    """A checkpoint shaped like taming's Lightning ``last.ckpt``: callbacks keyed by class, OmegaConf
    hyper-parameters, numpy scalars, optimizer state and the training loss's weights."""
    import numpy as np
    from omegaconf import OmegaConf
    from pytorch_lightning.callbacks import ModelCheckpoint

    state = dict(model.state_dict())
    state["loss.discriminator.main.0.weight"] = torch.zeros(4, 3, 1, 1)
    state["loss.perceptual_loss.net.slice1.0.weight"] = torch.zeros(2, 3, 1, 1)
    return {
        "epoch": 7,
        "global_step": np.int64(1234),
        "pytorch-lightning_version": "1.0.8",
        "callbacks": {ModelCheckpoint: {"best_model_score": torch.tensor(0.25), "best_model_path": "x.ckpt"}},
        "hyper_parameters": OmegaConf.create({"embed_dim": 16, "ddconfig": {"ch": 32, "ch_mult": [1, 2, 2]}}),
        "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(2)}}, "param_groups": [{"lr": 4.5e-6}]}],
        "lr_schedulers": [],
        "state_dict": state,
    }


TAMING_YAML = """\
model:
  base_learning_rate: 4.5e-06
  target: taming.models.vqgan.VQModel
  params:
    embed_dim: 16
    n_embed: 64
    monitor: val/rec_loss
    ckpt_path: /nonexistent/should-never-be-read.ckpt
    ddconfig:
      double_z: false
      z_channels: 16
      resolution: 64
      in_channels: 3
      out_ch: 3
      ch: 32
      ch_mult: [1, 2, 2]
      num_res_blocks: 1
      attn_resolutions: []
      dropout: 0.0
    lossconfig:
      target: taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator
      params:
        disc_conditional: false
        disc_in_channels: 3
        disc_start: 0
        disc_weight: 0.75
        codebook_weight: 1.0
"""
