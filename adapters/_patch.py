"""The patch mechanism the app adapters share: reversible attribute and module swaps."""

from __future__ import annotations

import logging
import sys
import types
import warnings
from typing import Any, Callable, Optional

import torch

from clipag_plugin.preprocess import OPENAI_MEAN, OPENAI_STD

__all__ = ["Patcher", "clip_shim", "install_clip_shim", "robust_name", "device_hook", "CLIP_MODULE_NAMES",
           "OPENAI_NAMES"]

_MISSING = object()

# Names under which CLIP-guided code imports OpenAI's package: `import clip`,
# `from clip import clip`, and the notebooks' `from CLIP import clip` (a cloned repo folder).
CLIP_MODULE_NAMES = ("clip", "clip.clip", "CLIP", "CLIP.clip")


class Patcher:
    """Remembers every change it makes and undoes them in reverse order.

    Use as a context manager, or call :meth:`restore` yourself.
    """

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []

    def setattr(self, obj: Any, name: str, value: Any) -> None:
        """``setattr(obj, name, value)``, undone on restore (deleted again if it was absent)."""
        old = obj.__dict__.get(name, _MISSING) if hasattr(obj, "__dict__") else getattr(obj, name, _MISSING)

        def undo() -> None:
            if old is _MISSING:
                try:
                    delattr(obj, name)
                except AttributeError:
                    pass
            else:
                setattr(obj, name, old)

        setattr(obj, name, value)
        self._undo.append(undo)

    def set_module(self, name: str, module: Optional[types.ModuleType]) -> None:
        """Put ``module`` into ``sys.modules[name]`` (or remove it for ``None``), undone on restore."""
        old = sys.modules.get(name, _MISSING)

        def undo() -> None:
            if old is _MISSING:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old

        if module is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = module
        self._undo.append(undo)

    def add_undo(self, undo: Callable[[], None]) -> None:
        """Run ``undo`` on restore (after the changes made later are undone)."""
        self._undo.append(undo)

    def restore(self) -> None:
        """Undo every change, newest first."""
        while self._undo:
            self._undo.pop()()

    @property
    def active(self) -> bool:
        """Whether any change is in place."""
        return bool(self._undo)

    def __enter__(self) -> "Patcher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()


logger = logging.getLogger("clipag_plugin.adapters")

# OpenAI's other model names -> the closest robust model of the registry (None: no robust match)
OPENAI_NAMES = {
    "ViT-B/16": "fare4-ViT-B/16-laion2b",
    "ViT-L/14": "fare2-ViT-L/14",
    "ViT-L/14@336px": "fare2-ViT-L/14",
    "RN50": None, "RN101": None, "RN50x4": None, "RN50x16": None, "RN50x64": None,
}


def robust_name(name: str) -> str:
    """The registry name the stand-in loads for an app's model name (OpenAI's names mapped).

    Args:
        name: what the app passed to ``clip.load``.

    Returns:
        A name :func:`clipag.load` accepts; OpenAI names without a robust counterpart raise
        ``KeyError`` listing the robust choices.
    """
    from clipag_plugin.registry import REGISTRY

    if name in REGISTRY or name.startswith("hf-hub:") or "/" not in name and name not in OPENAI_NAMES:
        return name
    if name in OPENAI_NAMES:
        mapped = OPENAI_NAMES[name]
        if mapped is None:
            robust = ", ".join(n for n, e in REGISTRY.items() if e.robust)
            raise KeyError(f"clip.load({name!r}): clipag has no robust counterpart of OpenAI's {name}; "
                           f"pass --model with one of: {robust}")
        logger.warning("the app asks for OpenAI's %s; loading %s, the closest robust model", name, mapped)
        return mapped
    return name


def _stand_in(model, *, openai_input: bool, dedupe: bool):
    """Make a loaded model safe for apps written for OpenAI's CLIP: inputs of any resolution are
    resized to the model's own (one notice), OpenAI-normalized inputs are re-normalized with the
    model's own statistics when ``openai_input``, identical views in a batch are encoded once when
    ``dedupe``, and ``model.clipag_stats`` counts the images that reach the image tower."""
    resolution = int(model.visual.input_resolution)
    mean = getattr(model, "image_mean", None)
    std = getattr(model, "image_std", None)
    own = mean is not None and std is not None
    renormalize = openai_input and own and not (
        torch.allclose(mean.flatten().cpu(), torch.tensor(OPENAI_MEAN), atol=1e-6)
        and torch.allclose(std.flatten().cpu(), torch.tensor(OPENAI_STD), atol=1e-6))
    encode = model.encode_image
    stats = {"calls": 0, "images": 0, "resized_from": None}
    model.clipag_stats = stats
    affine: dict = {}  # (device, dtype) -> (scale, shift) taking OpenAI-normalized input to the model's own

    def own_normalization(image: torch.Tensor) -> torch.Tensor:
        key = (image.device, image.dtype)
        if key not in affine:
            oai_mean = torch.tensor(OPENAI_MEAN, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
            oai_std = torch.tensor(OPENAI_STD, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
            m, s = mean.to(image), std.to(image)
            affine[key] = (oai_std / s, (oai_mean - m) / s)
        scale, shift = affine[key]
        return image * scale + shift

    def encode_image(image: torch.Tensor) -> torch.Tensor:
        if image.shape[-1] != resolution or image.shape[-2] != resolution:
            if stats["resized_from"] is None:
                logger.warning("the app feeds %s px images; the model reads %d px, so they are resized "
                               "(once-per-run notice)", "x".join(map(str, image.shape[-2:])), resolution)
            stats["resized_from"] = tuple(image.shape[-2:])
            image = torch.nn.functional.interpolate(image, size=(resolution, resolution), mode="bicubic",
                                                    align_corners=False, antialias=True)
        if renormalize:
            image = own_normalization(image)
        stats["calls"] += 1
        if dedupe and image.shape[0] > 1 and torch.equal(image, image[:1].expand_as(image)):  # one reduction
            stats["images"] += 1
            return encode(image[:1]).repeat(image.shape[0], 1)  # real rows: callers may normalize in place
        stats["images"] += image.shape[0]
        return encode(image)

    model.encode_image = encode_image
    return model


def clip_shim(model: Optional[str] = None, fallback: Optional[str] = "mini", *, force_device: Optional[str] = None,
              openai_input: bool = False, dedupe: bool = False) -> types.ModuleType:
    """A module that looks like OpenAI's ``clip`` but loads clipag models.

    ``model`` replaces whatever name the app asks for (``None`` keeps the app's name: clipag's
    ``"ViT-B/32"`` is the CLIPAG robust ViT-B/32; OpenAI's other names map to the closest robust
    model, see :data:`OPENAI_NAMES`). When the weights are neither cached nor reachable,
    ``fallback`` (the embedded mini model by default) is loaded instead, announced through
    ``logging`` on stderr (an app's warning filter cannot hide it). A CUDA device on a machine
    without CUDA becomes the CPU, also announced; ``force_device`` replaces whatever device the app
    asks for. ``openai_input``: the app normalizes with OpenAI's mean/std (the original programs
    do), so a model with other statistics gets its own; ``dedupe``: identical views in one batch
    reach the encoder once.
    """
    import clipag_plugin
    from clipag_plugin.loading import load_or_fallback

    shim = types.ModuleType("clip", "clipag standing in for OpenAI's clip (see clipag_plugin.adapters)")

    def load(name: str, device=None, jit: bool = False, download_root: Optional[str] = None):
        if jit:
            logger.info("jit=True is ignored; returning the eager model")
        wanted = model or robust_name(name)
        target = device
        if force_device is not None:
            target = force_device
        elif target is not None and torch.device(target).type == "cuda" and not torch.cuda.is_available():
            logger.warning("the app asks for %s but this machine has no CUDA; using the CPU "
                           "(clipag run --device picks another)", target)
            target = "cpu"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded, preprocess, used = load_or_fallback(wanted, device=target, fallback=fallback,
                                                        download_root=download_root)
        for warning in caught:
            logger.warning("%s", str(warning.message).removeprefix("clipag: "))
        shim.last_loaded = used
        _stand_in(loaded, openai_input=openai_input, dedupe=dedupe)
        shim.models.append(loaded)
        return loaded, preprocess

    load.__doc__ = clipag_plugin.load.__doc__
    shim.load = load
    shim.tokenize = clipag_plugin.tokenize
    shim.available_models = clipag_plugin.available_models
    shim.last_loaded = None
    shim.models = []
    shim.__clipag__ = True
    shim.__path__ = []  # lets `from clip import clip` and `import clip.clip` resolve
    shim.clip = shim
    return shim


def install_clip_shim(patcher: Patcher, shim: types.ModuleType, modules: tuple = ()) -> None:
    """Make every CLIP import name resolve to ``shim``; also rebind ``clip`` in already-imported ``modules``."""
    for name in CLIP_MODULE_NAMES:
        patcher.set_module(name, shim)
    for module in modules:
        if hasattr(module, "clip"):
            patcher.setattr(module, "clip", shim)


def device_hook(requested: Optional[str]) -> Callable[[Any], Any]:
    """A rebinding hook for a script's ``device`` name: the requested device, or the CPU in place
    of a hard-coded CUDA device on a machine without CUDA (announced once), else the script's own."""
    told = []

    def hook(value: Any) -> Any:
        wanted = requested
        if wanted is None:
            try:
                kind = torch.device(value).type
            except (TypeError, RuntimeError):
                return value
            if kind != "cuda" or torch.cuda.is_available():
                return value
            wanted = "cpu"
            if not told:
                logger.warning("the script hard-codes %s and this machine has no CUDA; running on the CPU "
                               "(clipag run --device picks another)", value)
                told.append(True)
        return torch.device(wanted) if isinstance(value, torch.device) else wanted

    return hook
