"""``load``: a name, repo or path -> ``(model, preprocess)``, as OpenAI's ``clip.load``."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Optional, Union

import torch

from . import checkpoint, hub
from .model import ClipagModel
from .preprocess import OPENAI_MEAN, OPENAI_STD, build_preprocess
from .registry import REGISTRY, HubFiles, ModelEntry, PackagedFiles, UrlFile, get_entry

__all__ = ["load", "load_or_fallback", "available_models", "default_device", "resolve_files", "ResolvedFiles"]

logger = logging.getLogger(__name__)
CONFIG_NAME = "open_clip_config.json"
_WEIGHT_NAMES = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth",
    "pytorch_model.bin",
)


def available_models() -> list[str]:
    """Names ``load`` accepts (besides ``hf-hub:org/repo`` and local paths).

    Returns:
        The registry names, in table order.
    """
    return list(REGISTRY)


def default_device() -> str:
    """cuda, then mps, then cpu.

    Returns:
        ``"cuda"``, ``"mps"`` or ``"cpu"``: the first one available.
    """
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


@dataclass(frozen=True)
class ResolvedFiles:
    """Where a model's files are on disk, once fetched and verified."""

    weights: Path
    # open_clip architecture name, or a full open_clip ``model_cfg`` dict.
    architecture: Union[str, dict]
    preprocess_cfg: dict = field(default_factory=dict)


def _read_config(path: Path) -> tuple[dict, dict]:
    try:
        config = json.loads(path.read_text())
        return config["model_cfg"], config.get("preprocess_cfg", {})
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"{path}: not a valid open_clip config (needs a 'model_cfg' object): {err}") from err


def _folder_files(folder: Path, label: str) -> ResolvedFiles:
    config = folder / CONFIG_NAME
    if not config.is_file():
        raise FileNotFoundError(
            f"{label}: folder {folder} has no {CONFIG_NAME}; expected open_clip layout "
            f"({CONFIG_NAME} + one of {', '.join(_WEIGHT_NAMES)})"
        )
    weights = next((folder / n for n in _WEIGHT_NAMES if (folder / n).is_file()), None)
    if weights is None:
        raise FileNotFoundError(f"{label}: folder {folder} has no weights file (one of {', '.join(_WEIGHT_NAMES)})")
    model_cfg, preprocess_cfg = _read_config(config)
    return ResolvedFiles(weights, model_cfg, preprocess_cfg)


def _url_files(entry: ModelEntry, src: UrlFile, download_root: Optional[str]) -> ResolvedFiles:
    """Download the raw checkpoint once, convert it to safetensors once, reuse that afterwards."""
    converted = hub.cache_root(download_root) / (Path(src.filename).stem + ".safetensors")
    if not converted.is_file():
        raw = hub.fetch_url_file(src, entry.name, download_root)
        with hub.download_lock(converted, f"Model {entry.name!r}"):  # one conversion across processes
            if not converted.is_file():
                state = checkpoint.convert_clipag_checkpoint(checkpoint.read_checkpoint(raw))
                checkpoint.save_state_dict(state, converted)
    return ResolvedFiles(converted, src.architecture)


def _packaged_folder(src: PackagedFiles) -> Path:
    return Path(str(resources.files("clipag_plugin") / "mini" / "weights" / src.folder))


def resolve_files(name: str, download_root: Optional[str] = None, verify: bool = False) -> ResolvedFiles:
    """Fetch (or find) and verify the files behind ``name``; build nothing.

    Args:
        name: a registry name, ``"hf-hub:org/repo[@revision]"`` or a local path.
        download_root: cache folder (as :func:`load`'s).
        verify: hash cached Hub weights against their recorded digest too (``clipag download``);
            by default only new downloads are hashed.

    Returns:
        :class:`ResolvedFiles`: the weights file, the architecture and the preprocessing config.
    """
    if name.startswith("hf-hub:"):
        repo, _, revision = name[len("hf-hub:") :].partition("@")
        if repo.count("/") != 1:
            raise ValueError(f"{name!r}: expected 'hf-hub:org/repo' (optionally '@revision')")
        src = HubFiles(repo_id=repo, revision=revision or "main")
        return _hub_files(name, src, download_root, verify)
    path = Path(os.path.expanduser(name))
    if name in REGISTRY and not _explicit_path(name):
        if path.exists():  # as OpenAI's clip.load: the table first; say which one was used
            logger.warning("%r is both a registry model and a %s here; loading the registry model (write ./%s "
                           "for the %s)", name, "folder" if path.is_dir() else "file", name,
                           "folder" if path.is_dir() else "file")
        return _registry_files(name, download_root, verify)
    if path.is_dir():
        return _folder_files(path, name)
    if path.is_file():
        sidecar = path.parent / CONFIG_NAME
        if sidecar.is_file():
            model_cfg, preprocess_cfg = _read_config(sidecar)
            return ResolvedFiles(path, model_cfg, preprocess_cfg)
        return ResolvedFiles(path, "")  # architecture inferred from the weights' shapes
    return _registry_files(name, download_root, verify)


def _explicit_path(name: str) -> bool:
    """Whether ``name`` is written as a path (``./x``, ``../x``, ``/x``, ``~/x``), not as a registry name."""
    return name.startswith(("./", "../", "/", "~", ".\\", "..\\")) or os.path.isabs(name)


def _registry_files(name: str, download_root: Optional[str], verify: bool) -> ResolvedFiles:
    entry = get_entry(name)
    src = entry.source
    if isinstance(src, HubFiles):
        return _hub_files(name, src, download_root, verify)
    if isinstance(src, UrlFile):
        return _url_files(entry, src, download_root)
    folder = _packaged_folder(src)
    if not (folder / CONFIG_NAME).is_file():
        raise FileNotFoundError(
            f"Model {name!r} ships inside the package, but {folder} is missing; reinstall clipag-plugin, "
            f"or rebuild it with `python -m clipag_plugin.mini.build` (see docs/mini-world.md)."
        )
    files = _folder_files(folder, name)
    if src.weights_sha256 and hub.sha256_of(files.weights) != src.weights_sha256:
        raise hub.ChecksumError(f"Model {name!r}: shipped weights {files.weights} do not match the registry sha256")
    return files


def _hub_files(name: str, src: HubFiles, download_root: Optional[str], verify: bool = False) -> ResolvedFiles:
    from huggingface_hub.errors import EntryNotFoundError

    try:
        folder = hub.fetch_hub_folder(src, name, cache_dir=download_root, verify=verify)
    except (hub.ChecksumError, hub.IncompleteDownloadError):
        raise  # a file that does not verify is never swapped for another
    except (hub.OfflineError, EntryNotFoundError) as err:
        if src.weights_filename != "open_clip_model.safetensors":
            raise
        # repos made by older open_clip versions only hold the .bin (its digest is another one)
        fallback = dataclasses.replace(src, weights_filename="open_clip_pytorch_model.bin", sha256=None)
        try:
            folder = hub.fetch_hub_folder(fallback, name, cache_dir=download_root, verify=verify)
        except (hub.OfflineError, EntryNotFoundError):
            raise err from None
    except Exception as err:  # huggingface_hub raises many types; name the input either way
        raise OSError(f"Model {name!r}: could not fetch {src.repo_id!r} from the Hub: {err}") from err
    return _folder_files(folder, name)


def infer_vit_config(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """open_clip ``model_cfg`` of a ViT CLIP state dict, read off its tensor shapes."""
    if "visual.conv1.weight" not in state or "visual.positional_embedding" not in state:
        raise ValueError(
            "cannot infer the architecture of this checkpoint (not an open_clip ViT state dict); put an "
            f"{CONFIG_NAME} (open_clip format) beside the file"
        )
    width, _, patch, _ = state["visual.conv1.weight"].shape
    grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    v_layers = len({k.split(".")[3] for k in state if k.startswith("visual.transformer.resblocks.")})
    t_layers = len({k.split(".")[2] for k in state if k.startswith("transformer.resblocks.")})
    t_width = state["ln_final.weight"].shape[0]
    return {
        "embed_dim": int(state["text_projection"].shape[1]),
        "vision_cfg": {"image_size": int(grid * patch), "layers": v_layers, "width": int(width),
                       "patch_size": int(patch), "head_width": 64},
        "text_cfg": {"context_length": int(state["positional_embedding"].shape[0]),
                     "vocab_size": int(state["token_embedding.weight"].shape[0]),
                     "width": int(t_width), "heads": max(1, int(t_width) // 64), "layers": t_layers},
    }


def build_model(files: ResolvedFiles, name: str) -> tuple[torch.nn.Module, int, dict]:
    """Instantiate the open_clip model and load the weights strictly; return (model, size, preprocess_cfg)."""
    import open_clip
    from open_clip.model import CLIP, CustomTextCLIP

    state = checkpoint.read_state_dict(files.weights)
    arch = files.architecture or infer_vit_config(state)
    if isinstance(arch, str):
        model = open_clip.create_model(arch, pretrained=None, load_weights=False)
    else:
        cfg = dict(arch)
        custom = cfg.pop("custom_text", False) or "hf_model_name" in cfg.get("text_cfg", {})
        model = (CustomTextCLIP if custom else CLIP)(**cfg)
    if "logit_scale" in state and state["logit_scale"].ndim != model.logit_scale.ndim:
        state["logit_scale"] = state["logit_scale"].reshape(model.logit_scale.shape)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ValueError(
            f"Model {name!r}: weights in {files.weights} do not fit the architecture "
            f"({len(missing)} missing keys, e.g. {missing[:3]}; {len(unexpected)} unexpected, e.g. {unexpected[:3]})"
        )
    size = model.visual.image_size
    return model.eval(), (size[0] if isinstance(size, (tuple, list)) else size), files.preprocess_cfg


def load(
    name: str,
    device: Union[str, torch.device, None] = None,
    jit: bool = False,
    download_root: Optional[str] = None,
):
    """Load a robust CLIP; returns ``(model, preprocess)`` exactly as OpenAI's ``clip.load``.

    Args:
        name: a name from :func:`available_models`, ``"hf-hub:org/repo"`` (open_clip layout,
            optionally ``@revision``), or a local path (safetensors file, open_clip checkpoint,
            or a folder in open_clip layout).
        device: where to put the model; ``None`` picks cuda, then mps, then cpu. On CUDA the
            weights are fp16 (as OpenAI's), elsewhere fp32.
        jit: accepted for compatibility only. TorchScript archives can run arbitrary code, so
            the eager model is returned (with a warning).
        download_root: cache folder for downloads (default: the Hugging Face cache for Hub
            models, ``~/.cache/clipag`` for others).
    """
    if jit:
        warnings.warn(
            "clipag.load(jit=True): TorchScript loading is not supported (it can execute arbitrary code); "
            "returning the eager model, which has the same API.",
            stacklevel=2,
        )
    device = torch.device(device if device is not None else default_device())
    files = resolve_files(name, download_root)
    text_cfg = files.architecture.get("text_cfg", {}) if isinstance(files.architecture, dict) else {}
    if text_cfg.get("hf_tokenizer_name"):
        warnings.warn(
            f"clipag.load({name!r}): this model's text tower reads the {text_cfg['hf_tokenizer_name']!r} tokenizer, "
            f"but clipag.tokenize (like OpenAI's clip.tokenize) returns CLIP byte-pair ids; encode text with "
            f"open_clip.get_tokenizer('hf-hub:...') for this model, or its text features will be wrong.",
            stacklevel=2,
        )
    inner, size, preprocess_cfg = build_model(files, name)
    mean = tuple(preprocess_cfg.get("mean", OPENAI_MEAN))
    std = tuple(preprocess_cfg.get("std", OPENAI_STD))
    model = ClipagModel(inner, size, mean, std, name=name).to(device)
    if device.type == "cuda":
        from open_clip.model import convert_weights_to_lp

        convert_weights_to_lp(model.inner, dtype=torch.float16)
    return model.eval(), build_preprocess(size, preprocess_cfg)


def load_or_fallback(
    name: str,
    device: Union[str, torch.device, None] = None,
    fallback: Optional[str] = "mini",
    download_root: Optional[str] = None,
):
    """``load(name)``, or the embedded ``fallback`` model when ``name``'s weights are neither
    cached nor reachable (offline machine, no network). Says which one it used.

    Unknown names still raise ``KeyError``; a file that exists but does not verify
    (:class:`~clipag_plugin.hub.ChecksumError`, :class:`~clipag_plugin.checkpoint.CorruptCheckpointError`)
    is raised too, not replaced by the fallback.

    Args:
        name: as for :func:`load`.
        device: as for :func:`load`.
        fallback: the model to use when ``name`` is unavailable offline; None raises instead.
        download_root: as for :func:`load`.

    Returns:
        ``(model, preprocess, used_name)``.
    """
    try:
        model, preprocess = load(name, device=device, download_root=download_root)
        return model, preprocess, name
    except (hub.ChecksumError, checkpoint.CorruptCheckpointError):
        raise  # broken is not the same as unavailable: never hide it behind another model
    except OSError as err:
        if fallback is None or fallback == name:
            raise
        reason = str(err).splitlines()[0].split(". ")[0].rstrip(".")
        warnings.warn(
            f"clipag: model {name!r} is not available offline; using the embedded {fallback!r} model instead "
            f"({reason}; `clipag download {name}` on a connected machine fetches it).",
            stacklevel=2,
        )
        model, preprocess = load(fallback, device=device)
        return model, preprocess, fallback
