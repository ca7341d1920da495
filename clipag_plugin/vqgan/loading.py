"""``load_vqgan``: a registry name, ``hf-hub:`` repo or local files -> a taming ``VQModel``.

Downloads happen once into the cache; the Lightning checkpoint is then read through the
inert allow-list (:mod:`.checkpoint`) and converted once to safetensors beside a JSON copy of
the architecture. Later loads, offline ones included, read only those two files.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from .. import checkpoint as _ckpt
from .. import hub
from ..registry import HubFiles
from .build import VqganConfig, build_vqmodel, config_from_dict, read_config
from .checkpoint import convert_vqgan_checkpoint, read_lightning_checkpoint
from .registry import DEFAULT_VQGAN, VQGAN_REGISTRY, VqganEntry, VqganHubFiles, VqganUrlFiles, get_vqgan_entry

__all__ = ["ConvertedVqgan", "load_vqgan", "resolve_vqgan", "convert_to_cache", "vqgan_cache_dir", "cached_vqgans"]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
_LOCAL_CONFIGS = ("config.yaml", "model.yaml", "project.yaml")
_LOCAL_CKPTS = ("model.ckpt", "last.ckpt")


@dataclass(frozen=True)
class ConvertedVqgan:
    """A converted VQGAN on disk: the architecture and a safetensors state dict."""

    folder: Path
    config: VqganConfig

    @property
    def weights(self) -> Path:
        return self.folder / WEIGHTS_NAME


def vqgan_cache_dir(name: str, download_root: Optional[Union[str, os.PathLike]] = None) -> Path:
    """Where ``name``'s downloads and converted weights live (under ``clipag``'s cache root).

    Args:
        name: a VQGAN name.
        download_root: cache root, or None for the default.

    Returns:
        The folder (not created here).
    """
    slug = re.sub(r"[^A-Za-z0-9_.@-]+", "--", name.removeprefix("hf-hub:"))
    return hub.cache_root(download_root) / "vqgan" / slug


def _read_converted(folder: Path) -> Optional[ConvertedVqgan]:
    if (folder / WEIGHTS_NAME).is_file() and (folder / CONFIG_NAME).is_file():
        config = config_from_dict(json.loads((folder / CONFIG_NAME).read_text()), str(folder / CONFIG_NAME))
        return ConvertedVqgan(folder, config)
    return None


def cached_vqgans(download_root: Optional[Union[str, os.PathLike]] = None) -> list[str]:
    """The registry's VQGANs that :func:`load_vqgan` can load without a network (converted, or downloaded).

    Args:
        download_root: cache root, or None for the default.

    Returns:
        Registry names, in table order.
    """
    from huggingface_hub import try_to_load_from_cache

    ready = []
    for name, entry in VQGAN_REGISTRY.items():
        folder = vqgan_cache_dir(name, download_root)
        src = entry.source
        if _read_converted(folder) is not None:
            ready.append(name)
        elif isinstance(src, VqganUrlFiles):
            if (folder / "model.yaml").is_file() and (folder / "last.ckpt").is_file():
                ready.append(name)
        elif all(isinstance(try_to_load_from_cache(src.repo_id, f, revision=src.revision), str)
                 for f in (src.config_filename, src.checkpoint_filename)):
            ready.append(name)
    return ready


def convert_to_cache(
    config_path: Union[str, os.PathLike],
    checkpoint_path: Union[str, os.PathLike],
    folder: Union[str, os.PathLike],
    expected_n_embed: Optional[int] = None,
    extra_allowed: Sequence[str] = (),
) -> ConvertedVqgan:
    """Read a config YAML + Lightning checkpoint safely and write ``model.safetensors`` +
    ``config.json`` into ``folder`` (weights first, config last, each atomically).

    Args:
        config_path: the taming config YAML.
        checkpoint_path: the Lightning ``.ckpt`` (or a ``.safetensors`` state dict).
        folder: where the converted files go.
        expected_n_embed: codebook size the config must have (registry entries), or None.
        extra_allowed: further class names the checkpoint may pickle (kept inert).

    Returns:
        :class:`ConvertedVqgan` naming the two files.
    """
    folder = Path(folder)
    config = read_config(config_path)
    if expected_n_embed is not None and config.n_embed != expected_n_embed:
        raise ValueError(
            f"{config_path}: config has n_embed={config.n_embed}, but the registry expects {expected_n_embed}; "
            f"the downloaded config belongs to a different model (delete {folder} and retry)"
        )
    state = convert_vqgan_checkpoint(read_lightning_checkpoint(checkpoint_path, extra_allowed))
    build_vqmodel(config, state)  # refuse to cache weights that do not fit the config
    _ckpt.save_state_dict(state, folder / WEIGHTS_NAME)
    tmp = folder / (CONFIG_NAME + ".tmp")
    tmp.write_text(json.dumps(config.to_dict(), indent=1))
    os.replace(tmp, folder / CONFIG_NAME)
    return ConvertedVqgan(folder, config)


def _fetch_url(url: str, dest: Path, size: Optional[int], sha256: Optional[str], name: str,
               progress: bool, transport: Optional[hub.Transport]) -> Path:
    """A VQGAN file through ``hub.fetch_verified``: cached, verified where known, offline-aware."""
    return hub.fetch_verified(
        url, dest, what=f"VQGAN {name!r}", size=size, sha256=sha256, progress=progress, transport=transport,
        fetch_hint=(f"Run `python -m clipag_plugin.vqgan download {name}` on a connected machine and copy "
                    f"{dest.parent} over, or pass local files (vqgan_config=/vqgan_checkpoint=)."),
    )


def _entry_for(name: str) -> VqganEntry:
    if name.startswith("hf-hub:"):
        repo, _, revision = name[len("hf-hub:"):].partition("@")
        if repo.count("/") != 1:
            raise ValueError(f"{name!r}: expected 'hf-hub:org/repo' (optionally '@revision')")
        return VqganEntry(name, VqganHubFiles(repo, revision=revision or "main"), 0, 0, 0, "?", "?", name)
    return get_vqgan_entry(name)


def resolve_vqgan(
    name: str = DEFAULT_VQGAN,
    download_root: Optional[Union[str, os.PathLike]] = None,
    progress: bool = True,
    transport: Optional[hub.Transport] = None,
    extra_allowed: Sequence[str] = (),
) -> ConvertedVqgan:
    """Fetch (once), convert (once) and return the cached safetensors form of ``name``.

    ``extra_allowed``: further fully qualified names the checkpoint may pickle; they are kept
    inert (see :func:`~clipag_plugin.vqgan.read_lightning_checkpoint`).

    Args:
        name: a registry name, ``"hf-hub:org/repo[@rev]"`` or a local folder.
        download_root: cache root (default ``$CLIPAG_CACHE`` or ``~/.cache/clipag``).
        progress: show download progress bars.
        transport: replaces the HTTP download (tests).
        extra_allowed: further class names the checkpoint may pickle.

    Returns:
        :class:`ConvertedVqgan` naming the cached files.
    """
    entry = _entry_for(name)
    folder = vqgan_cache_dir(name, download_root)
    converted = _read_converted(folder)
    if converted is not None:
        return converted
    expected = entry.n_embed or None
    src = entry.source
    if isinstance(src, VqganUrlFiles):
        config = _fetch_url(src.config_url, folder / "model.yaml", None, src.config_sha256, name, progress, transport)
        ckpt = _fetch_url(src.checkpoint_url, folder / "last.ckpt", src.checkpoint_size_bytes,
                          src.checkpoint_sha256, name, progress, transport)
        return convert_to_cache(config, ckpt, folder, expected, extra_allowed)
    hub_src = HubFiles(repo_id=src.repo_id, weights_filename=src.checkpoint_filename,
                       config_filename=src.config_filename, revision=src.revision)
    try:
        snapshot = hub.fetch_hub_folder(hub_src, name, cache_dir=download_root, progress=progress)
    except hub.OfflineError:
        raise
    except Exception as err:  # huggingface_hub raises many types; name the input either way
        raise OSError(f"VQGAN {name!r}: could not fetch {src.repo_id!r} from the Hub: {err}") from err
    return convert_to_cache(snapshot / src.config_filename, snapshot / src.checkpoint_filename, folder, expected,
                            extra_allowed)


def _local_pair(path: Path) -> tuple[Path, Path]:
    config = next((path / n for n in _LOCAL_CONFIGS if (path / n).is_file()), None)
    ckpt = next((path / n for n in (*_LOCAL_CKPTS, WEIGHTS_NAME) if (path / n).is_file()), None)
    if config is None or ckpt is None:
        raise FileNotFoundError(
            f"{path}: expected a taming config ({' or '.join(_LOCAL_CONFIGS)}) and a checkpoint "
            f"({' or '.join((*_LOCAL_CKPTS, WEIGHTS_NAME))}) in this folder"
        )
    return config, ckpt


def load_vqgan(
    name: str = DEFAULT_VQGAN,
    device: Union[str, torch.device, None] = "cpu",
    download_root: Optional[Union[str, os.PathLike]] = None,
    vqgan_config: Optional[Union[str, os.PathLike]] = None,
    vqgan_checkpoint: Optional[Union[str, os.PathLike]] = None,
    progress: bool = True,
    extra_allowed: Sequence[str] = (),
) -> torch.nn.Module:
    """A taming ``VQModel`` (eval mode, weights frozen, dummy loss) on ``device``.

    Args:
        name: a name from :data:`~clipag_plugin.vqgan.VQGAN_REGISTRY`, ``"hf-hub:org/repo[@rev]"``
            (a repo holding ``config.yaml`` + ``model.ckpt``), or a local folder holding a config
            YAML and a checkpoint. Ignored when both ``vqgan_config`` and ``vqgan_checkpoint`` are given.
        vqgan_config, vqgan_checkpoint: local files, as the reference CLI's ``-conf``/``-ckpt``
            (the checkpoint may be a Lightning ``.ckpt`` or a ``.safetensors`` state dict).
        download_root: cache root (default ``$CLIPAG_CACHE`` or ``~/.cache/clipag``).
        extra_allowed: further class names a Lightning checkpoint may pickle (kept inert).
        device: where to put the model.
        progress: show download progress bars.

    Returns:
        The model.
    """
    if (vqgan_config is None) != (vqgan_checkpoint is None):
        raise ValueError("pass both vqgan_config and vqgan_checkpoint (the YAML and the .ckpt), or neither")
    if vqgan_config is None and Path(os.path.expanduser(name)).is_dir():
        vqgan_config, vqgan_checkpoint = _local_pair(Path(os.path.expanduser(name)))
    if vqgan_config is not None:
        config = read_config(vqgan_config)
        ckpt = Path(vqgan_checkpoint)
        raw = (_ckpt.read_checkpoint(ckpt) if ckpt.suffix == ".safetensors"
               else read_lightning_checkpoint(ckpt, extra_allowed))
        model = build_vqmodel(config, convert_vqgan_checkpoint(raw))
    else:
        converted = resolve_vqgan(name, download_root, progress=progress, extra_allowed=extra_allowed)
        model = build_vqmodel(converted.config, _ckpt.read_checkpoint(converted.weights))
    return model.to(device if device is not None else "cpu")
