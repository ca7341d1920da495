"""Run CLIPDraw code on clipag (installed as ``clipag_plugin.adapters.clipdraw``).

``patch()`` does three independent things, each switchable, all undone on exit:

* **model**: ``import clip`` / ``from clip import clip`` / ``from CLIP import clip`` resolve to a
  clipag stand-in whose ``load`` returns CLIPAG (offline: the embedded mini model, with a warning);
* **augment**: the augmentation trick off, i.e. one un-augmented copy per step instead of four
  perspective-warped crops (CLIPAG's gradients are perceptually aligned without it);
* **normalize**: CLIP's mean/std applied before the encoder.

On the bundled example (``examples/clipdraw/clipdraw.py``) the switches set its module-level hooks
(``clip``, ``USE_AUGMENT``, ``USE_NORMALIZED_CLIP``)::

    import clipdraw                                    # the example module
    from clipag_plugin.adapters.clipdraw import patch
    with patch(app=clipdraw):                          # CLIPAG, no augmentation, normalized
        model, _ = clipdraw.clip.load("ViT-B/32")
        drawing = clipdraw.clipdraw("a red circle", model, num_iter=100)

On the original notebook, call ``patch(notebook=True)`` in a cell *before* ``import clip``: its
torchvision ``RandomPerspective`` becomes a no-op and ``RandomResizedCrop(224, ...)`` a plain
resize, and in IPython every later cell runs with ``NUM_AUGS = 1`` (one image per step reaches
the encoder), ``use_normalized_clip = True`` and a hard-coded CUDA ``device`` replaced by the
CPU on machines without CUDA (:mod:`clipag_plugin.adapters._script`). ``clipag run clipdraw``
does the same for a script.

``import pydiffvg`` works without building diffvg: when the real package is not installed, the
adapter registers :mod:`clipag_plugin.render.pydiffvg_compat` under that name.
"""

from __future__ import annotations

import importlib
import types
from typing import Optional, Union

from ._patch import Patcher, clip_shim, device_hook, install_clip_shim
from ._script import install_cell_hooks

__all__ = ["patch", "HOOKS", "script_hooks", "install_pydiffvg"]

# The module-level names an app exposes for this adapter to switch.
HOOKS = {"augment": "USE_AUGMENT", "normalize": "USE_NORMALIZED_CLIP"}


class _Unchanged:
    """``RandomPerspective`` stand-in: returns its input (accepts the same arguments)."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __call__(self, img):
        return img


def _resize_instead_of_crop(resize_cls):
    class _ResizeOnly(resize_cls):
        """``RandomResizedCrop`` stand-in: a plain resize of the whole image to ``size``."""

        def __init__(self, size, scale=None, ratio=None, interpolation=None, antialias=True, **_):
            super().__init__(size if isinstance(size, (tuple, list)) else (size, size), antialias=antialias)

    return _ResizeOnly


def _app_module(app: Union[types.ModuleType, str, None]) -> Optional[types.ModuleType]:
    if app is None or isinstance(app, types.ModuleType):
        return app
    return importlib.import_module(app)


def patch(
    model: Optional[str] = None,
    augment: Optional[bool] = False,
    normalize: Optional[bool] = True,
    *,
    clip: bool = True,
    app: Union[types.ModuleType, str, None] = None,
    notebook: bool = False,
    fallback: Optional[str] = "mini",
    device: Optional[str] = None,
) -> Patcher:
    """Make CLIPDraw code use clipag; returns the :class:`Patcher` (a context manager).

    Args:
        model: clipag model name to load whatever the app asks for (``None``: the app's own name;
            clipag's ``"ViT-B/32"`` is CLIPAG).
        augment: ``False`` turns the augmentation trick off, ``True`` forces it on, ``None``
            leaves the app's setting alone.
        normalize: ``True``/``False`` sets CLIP normalization; ``None`` leaves it alone.
        clip: swap the ``clip`` module for clipag (``False`` keeps OpenAI's).
        app: the CLIPDraw module (or its import name) whose hooks to set and whose ``clip`` to
            rebind; needed for ``augment``/``normalize`` unless ``notebook`` is used.
        notebook: the original notebook (or a script written like it): neutralize torchvision's
            ``RandomPerspective``/``RandomResizedCrop`` when ``augment`` is ``False``, feed the
            model its own normalization, encode identical copies once, and in IPython apply
            :func:`script_hooks` to every later cell.
        fallback: model loaded when ``model``'s weights are not available offline.
        device: run the model here whatever device the code asks for.

    Returns:
        The :class:`Patcher`; ``patcher.restore()`` (or leaving the ``with`` block) undoes everything.
    """
    module = _app_module(app)
    patcher = Patcher()
    try:
        install_pydiffvg(patcher)
        if clip:
            shim = clip_shim(model, fallback, force_device=device, openai_input=notebook and normalize is True,
                             dedupe=notebook and augment is False)
            install_clip_shim(patcher, shim, modules=(module,) if module else ())
        if module is not None:
            for value, hook in ((augment, HOOKS["augment"]), (normalize, HOOKS["normalize"])):
                if value is None:
                    continue
                if not hasattr(module, hook):
                    raise AttributeError(
                        f"app {module.__name__!r} has no {hook!r} hook; CLIPDraw apps for this adapter define "
                        f"{sorted(HOOKS.values())} (see examples/clipdraw/clipdraw.py), or pass None to leave it"
                    )
                patcher.setattr(module, hook, bool(value))
        if notebook and augment is False:
            from torchvision import transforms

            patcher.setattr(transforms, "RandomPerspective", _Unchanged)
            patcher.setattr(transforms, "RandomResizedCrop", _resize_instead_of_crop(transforms.Resize))
        if notebook:
            install_cell_hooks(patcher, script_hooks(augment, normalize, device))
    except BaseException:
        patcher.restore()
        raise
    return patcher


def install_pydiffvg(patcher: Patcher) -> bool:
    """Register clipag's pydiffvg interface as ``pydiffvg`` unless the real one is installed.

    Args:
        patcher: undoes the registration on restore.

    Returns:
        True when the stand-in was registered.
    """
    from clipag_plugin.render import backends

    if backends.HAS_DIFFVG:
        return False
    from clipag_plugin.render import pydiffvg_compat

    patcher.set_module("pydiffvg", pydiffvg_compat)
    return True


def script_hooks(augment: Optional[bool], normalize: Optional[bool], device: Optional[str] = None) -> dict:
    """Module-level names of the CLIPDraw notebook to rebind, with the value each gets.

    Args:
        augment: ``False``: ``NUM_AUGS`` becomes 1 (one image per step reaches the encoder).
        normalize: ``True``: ``use_normalized_clip`` becomes True.
        device: the device a hard-coded ``device`` becomes (None: the CPU, only when the code asks
            for CUDA on a machine without it).

    Returns:
        ``{name: function(value) -> value}`` for :func:`clipag_plugin.adapters._script.run_script`.
    """
    hooks = {"device": device_hook(device)}
    if augment is False:
        hooks["NUM_AUGS"] = lambda value: 1
    if normalize is True:
        hooks["use_normalized_clip"] = lambda value: True
    return hooks
