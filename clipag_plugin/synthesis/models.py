"""Which models a generation runs: names loaded once and cached, the default model, and OpenAI's
or open_clip's models given the pixel-encoder surface the loop calls.

The default is CLIPAG ViT-B/32 when its weights are cached or reachable, else the embedded
``mini`` model (:func:`default_model_choice`). :func:`vocabulary_note` tells a user of the mini
models which words of a prompt they never saw.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Optional, Union

import torch

from .encoder import resolution_of

__all__ = ["load_model", "clear_model_cache", "default_model_choice", "resolve_default_model", "as_model",
           "looks_like_model", "vocabulary_note", "ModelLike", "MODEL_CACHE_SIZE", "DEFAULT_MODEL",
           "FALLBACK_MODEL", "MINI_MODELS"]

DEFAULT_MODEL, FALLBACK_MODEL = "ViT-B/32", "mini"
_ZENODO_TIMEOUT_S = 3.0

ModelLike = Union[str, torch.nn.Module, tuple]
MODEL_CACHE_SIZE = 4  # loaded models kept per (name, device), least recently used dropped first
_MODEL_CACHE: "OrderedDict[tuple[str, str], torch.nn.Module]" = OrderedDict()
MINI_MODELS = ("mini", "mini-vanilla")
logger = logging.getLogger("clipag_plugin.generate")


def load_model(name: str, device: Optional[str] = None) -> torch.nn.Module:
    """``clipag.load(name, device)[0]``, kept in a small cache so repeated generations do not reload.

    Args:
        name: anything :func:`clipag.load` accepts (a registry name, ``hf-hub:...``, a path).
        device: as in :func:`clipag.load` (``None``: the best available).

    Returns:
        The loaded model (the same object for the same name and device while it stays cached;
        :data:`MODEL_CACHE_SIZE` are kept).
    """
    from ..loading import load

    key = (str(name), str(device or "auto"))
    if key in _MODEL_CACHE:
        _MODEL_CACHE.move_to_end(key)
        return _MODEL_CACHE[key]
    model = load(str(name), device=device)[0]
    _MODEL_CACHE[key] = model
    while len(_MODEL_CACHE) > MODEL_CACHE_SIZE:
        _MODEL_CACHE.popitem(last=False)
    return model


def clear_model_cache() -> None:
    """Forget the models :func:`load_model` kept (frees their memory once nothing else holds them)."""
    _MODEL_CACHE.clear()


def _vitb32_cached(download_root: Optional[str] = None) -> bool:
    from ..hub import cache_root
    from ..registry import get_entry

    src = get_entry(DEFAULT_MODEL).source
    folder = cache_root(download_root)
    converted = folder / (Path(src.filename).stem + ".safetensors")
    raw = folder / src.filename
    return converted.is_file() or (raw.is_file() and raw.stat().st_size == src.size_bytes)


def _reachable(url: str, timeout: float = _ZENODO_TIMEOUT_S) -> bool:
    import urllib.request

    try:
        request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "clipag-plugin"})
        with urllib.request.urlopen(request, timeout=timeout):
            return True
    except Exception:  # any failure (DNS, timeout, HTTP error) means "not reachable now"
        return False


def _mini_available() -> bool:
    from ..loading import CONFIG_NAME, _packaged_folder
    from ..registry import get_entry

    try:
        return (_packaged_folder(get_entry(FALLBACK_MODEL).source) / CONFIG_NAME).is_file()
    except KeyError:
        return False


def default_model_choice(download_root: Optional[str] = None, check_network: bool = True) -> tuple[str, str]:
    """``(name, reason)`` of the default model: CLIPAG ViT-B/32 when cached or downloadable, else ``mini``.

    Raises ``FileNotFoundError`` when neither is usable.

    Args:
        download_root: cache folder to look in.
        check_network: try reaching the Hub when nothing is cached (False: cache only).

    Returns:
        The model name and a sentence saying why it was chosen.
    """
    from ..hub import is_offline
    from ..registry import get_entry

    if _vitb32_cached(download_root):
        return DEFAULT_MODEL, "its weights are cached"
    offline = is_offline()
    if not offline and check_network and _reachable(get_entry(DEFAULT_MODEL).source.url):
        return DEFAULT_MODEL, "its weights are reachable (they will be downloaded once, 1.3 GB)"
    if offline:
        why = "offline mode is on"
    elif check_network:
        why = "its weights are not cached and Zenodo is not reachable"
    else:
        why = "its weights are not cached (network check skipped)"
    if _mini_available():
        return FALLBACK_MODEL, f"ViT-B/32 is unavailable ({why})"
    raise FileNotFoundError(
        f"No default model: ViT-B/32 is unavailable ({why}) and the embedded 'mini' model is not installed. "
        "Pass a model explicitly (--model NAME or a path), or run `clipag download ViT-B/32` on a connected machine."
    )


def resolve_default_model(download_root: Optional[str] = None, check_network: bool = True) -> str:
    """Name of the default model (see :func:`default_model_choice`).

    Args:
        download_root: cache folder to look in.
        check_network: try reaching the Hub when nothing is cached.

    Returns:
        The model name.
    """
    return default_model_choice(download_root, check_network)[0]


def as_model(item: ModelLike, device: Optional[str]) -> torch.nn.Module:
    if isinstance(item, tuple):
        item = item[0]
    if isinstance(item, (str, os.PathLike)):
        return load_model(str(item), device)
    if hasattr(item, "encode_pixels") and hasattr(item, "encode_text"):
        return item
    if hasattr(item, "encode_image") and hasattr(item, "encode_text") and hasattr(item, "visual"):
        return _PixelEncoder(item)  # an OpenAI `clip` or open_clip model
    raise ValueError(
        f"model {type(item).__name__} has no encode_image/encode_text; pass a name, a path, or a model "
        "returned by clipag.load (or OpenAI's clip.load / open_clip)"
    )


class _PixelEncoder(torch.nn.Module):
    """Give an OpenAI ``clip`` / open_clip model the ``encode_pixels`` the loop uses (OpenAI mean/std).

    The input resolution is kept here, not written onto the model's image tower."""

    def __init__(self, model: torch.nn.Module) -> None:
        from ..preprocess import OPENAI_MEAN, OPENAI_STD

        super().__init__()
        self.model = model
        self.visual = model.visual
        self.input_resolution = resolution_of(model)
        self.context_length = int(getattr(model, "context_length", 77))
        self.name = type(model).__name__
        self.register_buffer("image_mean", torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(OPENAI_STD).view(1, 3, 1, 1), persistent=False)

    def normalize(self, image01: torch.Tensor) -> torch.Tensor:
        return (image01 - self.image_mean.to(image01)) / self.image_std.to(image01)

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        from ..model import input_dtype

        return self.model.encode_image(image.type(input_dtype(self.model.visual)))

    def encode_pixels(self, image01: torch.Tensor) -> torch.Tensor:
        size = self.input_resolution
        if image01.shape[-1] != size or image01.shape[-2] != size:
            image01 = torch.nn.functional.interpolate(
                image01, size=(size, size), mode="bilinear", align_corners=False, antialias=True
            )
        return self.encode_image(self.normalize(image01))

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(tokens[..., : self.context_length].long())


def looks_like_model(item: Any) -> bool:
    """A loaded model, a ``(model, preprocess)`` pair, a registry name or an existing path."""
    if isinstance(item, (torch.nn.Module, tuple)):
        return True
    if isinstance(item, str):
        from ..registry import REGISTRY

        if item in REGISTRY or item.startswith("hf-hub:"):
            return True
        try:
            return Path(item).exists()
        except OSError:  # a long prompt is not a valid file name
            return False
    return False


def vocabulary_note(text: str, model: Any) -> str:
    """For a mini model (by name or loaded), a sentence naming the words of ``text`` it never saw.

    Args:
        text: the prompt text(s).
        model: a model name or a loaded model.

    Returns:
        The sentence, or ``""`` for other models and for prompts in the mini world's words.
    """
    name = model if isinstance(model, str) else getattr(model[0] if isinstance(model, tuple) else model, "name", None)
    if name not in MINI_MODELS:
        return ""
    from ..mini import world

    unknown = world.unknown_words(text)
    if not unknown:
        return ""
    return (f"{name} knows only its world's words ({', '.join(sorted(world.vocabulary()))}); it has never seen "
            f"{', '.join(repr(w) for w in unknown)}, so expect a shape from its world, not the prompt.")
