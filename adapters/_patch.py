"""The patch mechanism the app adapters share: reversible attribute and module swaps."""

from __future__ import annotations

import sys
import types
import warnings
from typing import Any, Callable, Optional

__all__ = ["Patcher", "clip_shim", "install_clip_shim", "CLIP_MODULE_NAMES"]

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


def clip_shim(model: Optional[str] = None, fallback: Optional[str] = "mini") -> types.ModuleType:
    """A module that looks like OpenAI's ``clip`` but loads clipag models.

    ``model`` replaces whatever name the app asks for (``None`` keeps the app's name: clipag's
    ``"ViT-B/32"`` is the CLIPAG robust ViT-B/32). When the weights are neither cached nor
    reachable, ``fallback`` (the embedded mini model by default) is loaded instead, with a warning.
    """
    import clipag_plugin
    from clipag_plugin.loading import load_or_fallback

    shim = types.ModuleType("clip", "clipag standing in for OpenAI's clip (see clipag_plugin.adapters)")

    def load(name: str, device=None, jit: bool = False, download_root: Optional[str] = None):
        if jit:
            warnings.warn("clipag: jit=True is ignored; returning the eager model", stacklevel=2)
        wanted = model or name
        loaded, preprocess, used = load_or_fallback(wanted, device=device, fallback=fallback,
                                                    download_root=download_root)
        shim.last_loaded = used
        return loaded, preprocess

    load.__doc__ = clipag_plugin.load.__doc__
    shim.load = load
    shim.tokenize = clipag_plugin.tokenize
    shim.available_models = clipag_plugin.available_models
    shim.last_loaded = None
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
