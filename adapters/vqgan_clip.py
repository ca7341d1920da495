"""VQGAN+CLIP on clipag: swap ``clip`` for clipag and switch the cutout trick off, part by part.

    from clipag_plugin.adapters import vqgan_clip
    with vqgan_clip.patch(app):          # app: the VQGAN+CLIP module (examples/vqgan_clip/vqgan_clip.py)
        app.main(["a red circle"])       # `clip` is clipag; one whole-image cutout, no kornia, no noise

What ``patch`` changes (each a keyword switch, all on by default, all undone on exit):

* ``swap_clip``: ``import clip``, ``from clip import clip`` and ``from CLIP import clip`` give a
  clipag stand-in (the embedded ``fallback`` model loads when the wanted weights are missing);
  the app module's own ``clip`` name is rebound too;
* ``attributes``: every model the stand-in loads has ``visual.input_resolution`` and
  ``visual.output_dim`` (what VQGAN+CLIP reads), and the app's ``normalize`` uses the model's
  own mean/std;
* ``single_cutout``: one cutout of the whole image resized to the model's input, instead of
  ``cutn`` crops or pooled copies;
* ``no_augment``: no kornia augmentation of the cutouts;
* ``no_noise``: no noise added to the cutouts.

The cutout switches act on the app's cutout constructors: a ``make_cutouts(cut_method, cut_size,
cutn, cut_pow)`` function (the bundled example) and the reference script's classes
``MakeCutouts`` / ``MakeCutoutsOrig`` / ``MakeCutoutsUpdate`` / ``MakeCutoutsPoolingUpdate`` /
``MakeCutoutsNRUpdate`` (constructed as ``(cut_size, cutn, cut_pow=1.)``), whichever exist.

Every ``patch`` also makes taming importable with any Lightning version (the
``pytorch_lightning.utilities.distributed`` stand-in) and makes taming's
``init_from_ckpt`` read checkpoints through clipag's safe Lightning reader (the stock method
calls ``torch.load`` without ``weights_only``, which fails on real checkpoints under torch >= 2.6).
nerdyrodent's ``generate.py`` defines its cutout classes and uses them at import time, so for
that script the switches are applied while it runs (:func:`script_hooks`, ``clipag run vqgan-clip``).
"""

from __future__ import annotations

import types
from typing import Callable, Optional

import torch

from clipag_plugin.guidance.cutouts import DEFAULT_AUGMENT, DEFAULT_NOISE, Cutouts

from ._patch import Patcher, clip_shim, install_clip_shim

__all__ = ["patch", "ensure_clip_attributes", "switched_cutouts", "script_hooks", "safe_init_from_ckpt",
           "REFERENCE_CUTOUT_CLASSES"]

# The reference script's cutout classes and the cutout mode each one implements.
REFERENCE_CUTOUT_CLASSES = {
    "MakeCutouts": "latest",
    "MakeCutoutsPoolingUpdate": "latest",
    "MakeCutoutsOrig": "original",
    "MakeCutoutsUpdate": "updated",
    "MakeCutoutsNRUpdate": "updated",
}


def ensure_clip_attributes(model: torch.nn.Module) -> torch.nn.Module:
    """Give ``model.visual`` the ``input_resolution`` and ``output_dim`` VQGAN+CLIP reads.

    clipag models already have both; an open_clip model gets them from ``visual.image_size``
    and from encoding one blank text. Raises ``AttributeError`` when neither can be found.

    Args:
        model: a CLIP model (clipag's or open_clip's).

    Returns:
        ``model``, with the two attributes set.
    """
    visual = model.visual
    if getattr(visual, "input_resolution", None) is None:
        size = getattr(visual, "image_size", None)
        if size is None:
            raise AttributeError(
                f"{type(model).__name__}.visual has neither input_resolution nor image_size; VQGAN+CLIP needs "
                f"the square input size of the image tower"
            )
        visual.input_resolution = int(size[0] if isinstance(size, (tuple, list)) else size)
    if getattr(visual, "output_dim", None) is None:
        with torch.no_grad():
            tokens = torch.zeros(1, 77, dtype=torch.long, device=next(model.parameters()).device)
            visual.output_dim = int(model.encode_text(tokens).shape[-1])
    return model


def switched_cutouts(mode: str, cut_size: int, cutn: int, cut_pow: float = 1.0, *, single_cutout: bool = True,
                     no_augment: bool = True, no_noise: bool = True) -> Cutouts:
    """The cutouts the app asked for (``mode`` ...), with the chosen parts of the trick off.

    Args:
        mode: the app's cutout method (``"original"``, ``"updated"``, ``"latest"``, ...).
        cut_size: side of each cutout (the model's input resolution).
        cutn: cutouts per step the app asked for.
        cut_pow: the app's cutout size exponent.
        single_cutout: one whole-image cutout instead of ``cutn``.
        no_augment: no kornia augmentation.
        no_noise: no per-cutout noise.

    Returns:
        A :class:`~clipag_plugin.guidance.cutouts.Cutouts`.
    """
    augment = None if no_augment else DEFAULT_AUGMENT[mode]
    noise = 0.0 if no_noise else DEFAULT_NOISE[mode]
    return Cutouts(cut_size, cutn, cut_pow, mode="none" if single_cutout else mode, augment=augment, noise=noise)


def _factory(mode: Optional[str], switches: dict) -> Callable[..., Cutouts]:
    if mode is None:  # the example's make_cutouts(cut_method, cut_size, cutn, cut_pow)
        def make_cutouts(cut_method: str, cut_size: int, cutn: int, cut_pow: float = 1.0) -> Cutouts:
            return switched_cutouts(cut_method, cut_size, cutn, cut_pow, **switches)

        return make_cutouts

    def make_reference_cutouts(cut_size: int, cutn: int, cut_pow: float = 1.0) -> Cutouts:
        return switched_cutouts(mode, cut_size, cutn, cut_pow, **switches)

    return make_reference_cutouts


def patch(
    app: Optional[types.ModuleType] = None,
    *,
    model: Optional[str] = None,
    fallback: Optional[str] = "mini",
    swap_clip: bool = True,
    attributes: bool = True,
    single_cutout: bool = True,
    no_augment: bool = True,
    no_noise: bool = True,
    original: bool = False,
    device: Optional[str] = None,
) -> Patcher:
    """Apply the switches to ``app`` (and to ``sys.modules`` for the clip swap); returns the Patcher.

    Args:
        app: the VQGAN+CLIP module whose ``clip``, ``normalize`` and cutout constructors are
            patched; ``None`` patches only the import names (``import clip`` done afterwards).
        model: load this clipag model whatever name the app asks for (``None``: the app's own
            name; clipag's ``"ViT-B/32"`` is the CLIPAG robust ViT-B/32).
        fallback: model used when the wanted weights are neither cached nor reachable.
        swap_clip, attributes, single_cutout, no_augment, no_noise: see the module docstring.
        original: the code normalizes with OpenAI's mean/std itself (nerdyrodent's script does),
            so a model with other statistics gets its own.
        device: run CLIP here whatever device the code asks for.

    Returns:
        The :class:`Patcher`; ``patcher.restore()`` (or leaving the ``with`` block) undoes everything.
    """
    patcher = Patcher()
    try:
        _make_taming_safe(patcher)
        if swap_clip:
            shim = clip_shim(model, fallback, force_device=device, openai_input=original)
            if attributes:
                _wrap_load(shim, app, patcher)
            install_clip_shim(patcher, shim, (app,) if app is not None else ())
        if app is not None and (single_cutout or no_augment or no_noise):
            switches = {"single_cutout": single_cutout, "no_augment": no_augment, "no_noise": no_noise}
            if callable(getattr(app, "make_cutouts", None)):
                patcher.setattr(app, "make_cutouts", _factory(None, switches))
            for name, mode in REFERENCE_CUTOUT_CLASSES.items():
                if callable(getattr(app, name, None)):
                    patcher.setattr(app, name, _factory(mode, switches))
    except BaseException:
        patcher.restore()
        raise
    return patcher


def _wrap_load(shim: types.ModuleType, app: Optional[types.ModuleType], patcher: Patcher) -> None:
    """Make ``shim.load`` guarantee the attributes and point the app's ``normalize`` at the model."""
    inner_load = shim.load

    def load(name: str, device=None, jit: bool = False, download_root: Optional[str] = None):
        loaded, preprocess = inner_load(name, device=device, jit=jit, download_root=download_root)
        ensure_clip_attributes(loaded)
        if app is not None and callable(getattr(app, "normalize", None)) and callable(getattr(loaded, "normalize", None)):
            patcher.setattr(app, "normalize", loaded.normalize)
        return loaded, preprocess

    load.__doc__ = inner_load.__doc__
    shim.load = load


def script_hooks(single_cutout: bool = True, no_augment: bool = True, no_noise: bool = True) -> dict:
    """The reference script's cutout classes, rebound as soon as the script defines them.

    Args:
        single_cutout: one whole-image cutout instead of ``cutn``.
        no_augment: no kornia augmentation.
        no_noise: no per-cutout noise.

    Returns:
        ``{class name: function(class) -> constructor}`` for ``run_script``; empty with every
        switch off (the script's own classes run).
    """
    switches = {"single_cutout": single_cutout, "no_augment": no_augment, "no_noise": no_noise}
    if not any(switches.values()):
        return {}
    return {name: (lambda value, mode=mode: _factory(mode, switches)) for name, mode in REFERENCE_CUTOUT_CLASSES.items()}


def safe_init_from_ckpt(self, path, ignore_keys=()) -> None:
    """taming's ``init_from_ckpt`` through clipag's allow-listed Lightning reader.

    Args:
        self: the taming model.
        path: the checkpoint file.
        ignore_keys: state-dict key prefixes to drop, as taming's own method.
    """
    from clipag_plugin.vqgan import read_lightning_checkpoint

    checkpoint = read_lightning_checkpoint(path)
    state = checkpoint["state_dict"] if isinstance(checkpoint, dict) and "state_dict" in checkpoint else checkpoint
    state = {k: v for k, v in state.items() if not any(k.startswith(prefix) for prefix in ignore_keys)}
    self.load_state_dict(state, strict=False)


class _UnusedTrainingLoss(torch.nn.Module):
    """Stands in for taming's ``VQLPIPSWithDiscriminator`` while a program builds a VQGAN to generate
    with: that loss only trains (programs delete it), and building it downloads LPIPS and VGG16
    weights, which fails offline."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()


def _make_taming_safe(patcher: Patcher) -> None:
    """Lightning shim for taming's old import, the safe ``init_from_ckpt`` on its models, and no
    download for the training loss a generating program builds and deletes."""
    try:
        from clipag_plugin.vqgan import import_taming_vqgan, install_lightning_shim

        install_lightning_shim()
        taming_vqgan = import_taming_vqgan()
    except ImportError:
        return  # taming not installed: nothing to make safe (apps fail at their own import, clearly)
    try:  # the training loss is deleted after loading; building it would download LPIPS/VGG weights
        from taming.modules.losses import vqperceptual

        patcher.setattr(vqperceptual, "VQLPIPSWithDiscriminator", _UnusedTrainingLoss)
    except ImportError:
        pass
    for name in ("VQModel", "GumbelVQ"):
        cls = getattr(taming_vqgan, name, None)
        if cls is not None and "init_from_ckpt" in cls.__dict__:
            patcher.setattr(cls, "init_from_ckpt", safe_init_from_ckpt)
    try:
        from taming.models import cond_transformer
    except ImportError:
        return
    if "init_from_ckpt" in cond_transformer.Net2NetTransformer.__dict__:
        patcher.setattr(cond_transformer.Net2NetTransformer, "init_from_ckpt", safe_init_from_ckpt)
