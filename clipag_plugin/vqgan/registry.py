"""The table of VQGAN checkpoints: one frozen dataclass per weight, no string conventions.

Two kinds of source exist:

* :class:`VqganUrlFiles` - a taming-transformers config YAML and Lightning checkpoint on a
  plain web host (the authors' Heidelberg file share);
* :class:`VqganHubFiles` - the same pair in a Hugging Face Hub repository.

Checksums and pinned revisions are recorded where they are known; ``None`` means unknown
(only then is a download accepted unverified, and ``docs/adapters.md`` says so).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Optional, Union

__all__ = [
    "VqganUrlFiles",
    "VqganHubFiles",
    "VqganEntry",
    "VQGAN_REGISTRY",
    "DEFAULT_VQGAN",
    "get_vqgan_entry",
    "vqgan_names",
]


@dataclass(frozen=True)
class VqganUrlFiles:
    """A config YAML + Lightning checkpoint pair on a plain web host."""

    config_url: str
    checkpoint_url: str
    checkpoint_size_bytes: Optional[int] = None
    checkpoint_sha256: Optional[str] = None
    config_sha256: Optional[str] = None


@dataclass(frozen=True)
class VqganHubFiles:
    """A config YAML + Lightning checkpoint pair in a Hugging Face Hub repository."""

    repo_id: str
    config_filename: str = "config.yaml"
    checkpoint_filename: str = "model.ckpt"
    # A commit hash pins the files; "main" follows the branch (used where no hash is known).
    revision: str = "main"


VqganSource = Union[VqganUrlFiles, VqganHubFiles]


@dataclass(frozen=True)
class VqganEntry:
    """Everything known about one VQGAN checkpoint name."""

    name: str
    source: VqganSource
    n_embed: int
    embed_dim: int
    # Spatial reduction factor: one code per ``factor x factor`` pixels.
    factor: int
    trained_on: str
    license: str
    description: str


def _heibox(share: str, path: str) -> str:
    """A direct-download link into a Heidelberg ``heibox`` share (the taming authors' host)."""
    return f"https://heibox.uni-heidelberg.de/d/{share}/files/?p=%2F{path.replace('/', '%2F')}&dl=1"


_ENTRIES = (
    VqganEntry(
        name="vqgan_imagenet_f16_16384",
        source=VqganUrlFiles(
            config_url=_heibox("a7530b09fed84f80a887", "configs/model.yaml"),
            checkpoint_url=_heibox("a7530b09fed84f80a887", "ckpts/last.ckpt"),
        ),
        n_embed=16384,
        embed_dim=256,
        factor=16,
        trained_on="ImageNet",
        license="MIT (taming-transformers)",
        description="taming-transformers ImageNet VQGAN, f=16, 16384 codes (VQGAN+CLIP's default)",
    ),
    VqganEntry(
        name="vqgan_imagenet_f16_1024",
        source=VqganUrlFiles(
            config_url=_heibox("8088892a516d4e3baf92", "configs/model.yaml"),
            checkpoint_url=_heibox("8088892a516d4e3baf92", "ckpts/last.ckpt"),
        ),
        n_embed=1024,
        embed_dim=256,
        factor=16,
        trained_on="ImageNet",
        license="MIT (taming-transformers)",
        description="taming-transformers ImageNet VQGAN, f=16, 1024 codes",
    ),
    VqganEntry(
        name="boris/vqgan_f16_16384",
        source=VqganHubFiles(repo_id="boris/vqgan_f16_16384"),
        n_embed=16384,
        embed_dim=256,
        factor=16,
        trained_on="ImageNet, then fine-tuned on CC3M + YFCC100M (DALL-E mini)",
        license="see the Hub model card",
        description="The ImageNet f16-16384 VQGAN fine-tuned for faces and people by Boris Dayma",
    ),
)

VQGAN_REGISTRY: dict[str, VqganEntry] = {entry.name: entry for entry in _ENTRIES}

# The reference CLI's default (vqgan_imagenet_f16_16384).
DEFAULT_VQGAN = "vqgan_imagenet_f16_16384"


def vqgan_names() -> list[str]:
    """All VQGAN registry names, in table order.

    Returns:
        The names :func:`load_vqgan` accepts besides ``hf-hub:`` repos and folders.
    """
    return list(VQGAN_REGISTRY)


def get_vqgan_entry(name: str) -> VqganEntry:
    """Look a name up; an unknown one raises a ``KeyError`` listing the valid names.

    Args:
        name: a VQGAN registry name.

    Returns:
        The frozen :class:`VqganEntry`.
    """
    try:
        return VQGAN_REGISTRY[name]
    except KeyError:
        pass
    close = difflib.get_close_matches(name, VQGAN_REGISTRY, n=2)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    raise KeyError(
        f"Unknown VQGAN {name!r}. Valid names: {', '.join(VQGAN_REGISTRY)}; or 'hf-hub:org/repo' (a repo "
        f"holding config.yaml + model.ckpt), or pass a local config YAML and checkpoint.{hint}"
    )
