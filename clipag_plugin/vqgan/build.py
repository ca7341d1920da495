"""Build taming-transformers ``VQModel`` objects from configs, without the training loss.

The stock configs name ``VQLPIPSWithDiscriminator`` as the loss, which downloads VGG weights
for LPIPS; generation never uses the loss, so every model here is built with taming's
``DummyLoss``. Only the architecture fields of a config are read (no ``ckpt_path``, no
``remap`` file, no other import targets), so a config cannot make the build load anything.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from .lightning_shim import import_taming_vqgan

__all__ = [
    "VqganConfig",
    "TINY_CONFIG",
    "DUMMY_LOSS",
    "read_config",
    "config_from_dict",
    "build_vqmodel",
    "random_vqgan",
    "downsample_factor",
]

DUMMY_LOSS = {"target": "taming.modules.losses.vqperceptual.DummyLoss"}
_TARGETS = ("taming.models.vqgan.VQModel",)
# Encoder/Decoder arguments; anything else in a ddconfig is dropped.
_DD_KEYS = ("double_z", "z_channels", "resolution", "in_channels", "out_ch", "ch", "ch_mult",
            "num_res_blocks", "attn_resolutions", "dropout")


@dataclass(frozen=True)
class VqganConfig:
    """The architecture of a ``VQModel``: what the config YAML says, and nothing executable."""

    n_embed: int
    embed_dim: int
    ddconfig: Mapping[str, Any] = field(hash=False)

    @property
    def factor(self) -> int:
        """Pixels per code along each side (2 ** (len(ch_mult) - 1))."""
        return 2 ** (len(self.ddconfig["ch_mult"]) - 1)

    def to_dict(self) -> dict:
        """JSON-ready form (the cache stores it beside the converted weights)."""
        return {"n_embed": self.n_embed, "embed_dim": self.embed_dim, "ddconfig": dict(self.ddconfig)}


# About 1M parameters at 64 px: the tests' model (and the example's labelled random fallback).
TINY_CONFIG = VqganConfig(
    n_embed=64,
    embed_dim=16,
    ddconfig={"double_z": False, "z_channels": 16, "resolution": 64, "in_channels": 3, "out_ch": 3,
              "ch": 32, "ch_mult": [1, 2, 2], "num_res_blocks": 1, "attn_resolutions": [],
              "dropout": 0.0},
)


def config_from_dict(config: Mapping[str, Any], source: str = "config") -> VqganConfig:
    """A :class:`VqganConfig` from a taming config (``{"model": {"target", "params"}}``) or its
    ``params`` / our cached ``to_dict`` form. Raises ``ValueError`` naming what is missing."""
    model = config.get("model", config)
    target = model.get("target", _TARGETS[0])
    if target not in _TARGETS:
        raise ValueError(
            f"{source}: model target {target!r} is not supported; expected one of {', '.join(_TARGETS)} "
            f"(GumbelVQ and transformer configs are not handled)"
        )
    params = model.get("params", model)
    try:
        dd = params["ddconfig"]
        n_embed, embed_dim = int(params["n_embed"]), int(params["embed_dim"])
        ddconfig = {k: (list(dd[k]) if isinstance(dd[k], (list, tuple)) else dd[k]) for k in _DD_KEYS if k in dd}
        for key in ("z_channels", "resolution", "ch", "ch_mult", "num_res_blocks", "out_ch", "in_channels"):
            ddconfig[key]  # noqa: B018 - presence check
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"{source}: not a taming VQModel config (need model.params.n_embed, embed_dim and ddconfig with "
            f"ch, ch_mult, z_channels, resolution, ...): missing or bad {err}"
        ) from err
    ddconfig.setdefault("attn_resolutions", [])
    ddconfig.setdefault("double_z", False)
    ddconfig.setdefault("dropout", 0.0)
    return VqganConfig(n_embed=n_embed, embed_dim=embed_dim, ddconfig=ddconfig)


def read_config(path: str | os.PathLike) -> VqganConfig:
    """Parse a taming config YAML (safe loader) into a :class:`VqganConfig`.

    Args:
        path: the YAML file.

    Returns:
        The parsed config.
    """
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: not a readable YAML config ({err})") from err
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a mapping at the top of the config, got {type(data).__name__}")
    return config_from_dict(data, str(path))


def build_vqmodel(config: VqganConfig, state_dict: Optional[Mapping[str, torch.Tensor]] = None) -> torch.nn.Module:
    """A taming ``VQModel`` with a dummy loss, in eval mode, gradients off for its weights.

    When ``state_dict`` is given it is loaded strictly (``loss.*`` keys must already be gone).

    Args:
        config: the architecture.
        state_dict: weights to load strictly, or None for random ones.

    Returns:
        The ``VQModel``.
    """
    vqgan = import_taming_vqgan()
    with contextlib.redirect_stdout(io.StringIO()):  # taming prints the latent shape on every build
        model = vqgan.VQModel(
            ddconfig=dict(config.ddconfig), lossconfig=DUMMY_LOSS, n_embed=config.n_embed, embed_dim=config.embed_dim
        )
    if state_dict is not None:
        missing, unexpected = model.load_state_dict(dict(state_dict), strict=False)
        if missing or unexpected:
            raise ValueError(
                f"VQGAN weights do not fit the config ({len(missing)} missing keys, e.g. {missing[:3]}; "
                f"{len(unexpected)} unexpected, e.g. {unexpected[:3]})"
            )
    return model.eval().requires_grad_(False)


def random_vqgan(config: VqganConfig = TINY_CONFIG, seed: int = 0) -> torch.nn.Module:
    """An UNTRAINED ``VQModel`` with random weights (tests, smoke runs; its pictures are noise).

    The codebook is spread to unit scale so that distinct codes decode to distinct images.

    Args:
        config: the architecture (default: a tiny one).
        seed: seed of the weights.

    Returns:
        The model.
    """
    generator = torch.Generator().manual_seed(seed)
    model = build_vqmodel(config)
    with torch.no_grad():
        for param in model.parameters():
            if param.ndim > 1:
                fan_in = param[0].numel()
                param.copy_(torch.randn(param.shape, generator=generator) / fan_in**0.5)
        model.quantize.embedding.weight.copy_(torch.randn(model.quantize.embedding.weight.shape, generator=generator))
    model.clipag_random = True  # the example prints a warning for models carrying this flag
    return model


def downsample_factor(model: torch.nn.Module) -> int:
    """Pixels per code of a built ``VQModel`` (the reference reads ``2 ** (num_resolutions - 1)``).

    Args:
        model: a taming ``VQModel``.

    Returns:
        The factor (16 for the f16 models).
    """
    return 2 ** (model.decoder.num_resolutions - 1)
