"""VQGAN image generators from taming-transformers, loaded safely (the ``[vqgan]`` extra).

Importing this package is cheap: taming-transformers and Lightning are imported only when a
model is built.

    from clipag_plugin.vqgan import load_vqgan, synth
    model = load_vqgan("vqgan_imagenet_f16_16384", device="cuda")
"""

from __future__ import annotations

from .build import TINY_CONFIG, VqganConfig, build_vqmodel, downsample_factor, random_vqgan, read_config
from .checkpoint import LIGHTNING_ALLOW_LIST, convert_vqgan_checkpoint, read_lightning_checkpoint
from .lightning_shim import import_taming_vqgan, install_lightning_shim
from .loading import (
    ConvertedVqgan,
    cached_vqgans,
    convert_to_cache,
    load_vqgan,
    resolve_vqgan,
    vqgan_cache_dir,
)
from .quantize import (
    codebook,
    codebook_bounds,
    encode_latents,
    random_code_latents,
    replace_grad,
    synth,
    vector_quantize,
)
from .registry import (
    DEFAULT_VQGAN,
    VQGAN_REGISTRY,
    VqganEntry,
    VqganHubFiles,
    VqganUrlFiles,
    get_vqgan_entry,
    vqgan_names,
)

__all__ = [
    "load_vqgan", "resolve_vqgan", "cached_vqgans", "convert_to_cache", "vqgan_cache_dir", "ConvertedVqgan",
    "VQGAN_REGISTRY", "DEFAULT_VQGAN", "VqganEntry", "VqganUrlFiles", "VqganHubFiles", "get_vqgan_entry",
    "vqgan_names", "VqganConfig", "TINY_CONFIG", "read_config", "build_vqmodel", "random_vqgan",
    "downsample_factor", "read_lightning_checkpoint", "convert_vqgan_checkpoint", "LIGHTNING_ALLOW_LIST",
    "install_lightning_shim", "import_taming_vqgan", "replace_grad", "vector_quantize", "codebook",
    "codebook_bounds", "random_code_latents", "encode_latents", "synth",
]
