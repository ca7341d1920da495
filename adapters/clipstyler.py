"""CLIPStyler on clipag: swap ``clip`` for clipag and switch the patch tricks off by level.

    from clipag_plugin.adapters import clipstyler
    with clipstyler.patch(level="b", modules=[app]):
        ...  # `import clip` is clipag; app.TRICKS has no warp and no threshold rejection

Levels (each switches off more of CLIPStyler's patch machinery):

* ``"full"``: the reference, perspective-warped patches with threshold rejection;
* ``"a"`` (the default): no perspective warp on the patches (plain random crops). The warp is
  the augmentation trick that averages plain CLIP's noisy gradients; CLIPAG's are perceptually
  aligned without it (as the CLIPDraw adapter's ``augment=False`` default);
* ``"b"``: also no threshold rejection (every patch counts);
* ``"c"``: no patch loss at all, the global directional loss only;
* ``None``: leave the app's setting (only swap ``clip``).

The switches live in a :class:`~clipag_plugin.guidance.directional.PatchTricks` object that
the app reads as its module attribute ``TRICKS`` (see ``examples/clipstyler/clipstyler.py``).
For the original ``train_CLIPstyler.py`` (``original=True``), levels a-c make torchvision's
``RandomPerspective`` a no-op before the script builds its ``augment`` transform, and
torchvision's ``vgg19(pretrained=True)`` is served from clipag's Hub-cached VGG19 (one error
line naming the download command when it is not cached offline). The threshold and the patch
loss are the script's parsed ``args``: ``clipag run clipstyler`` rebinds them as the script
parses them (:func:`script_hooks`: b sets ``args.thresh = 0``; c sets ``args.lambda_patch = 0``
and ``args.num_crops = 1``, the fewest the script's loop accepts), together with its hard-coded
``device = 'cuda'``. Everything is restored when the ``with`` block ends (or on ``restore()``).
"""

from __future__ import annotations

import sys
import types
from typing import Iterable, Optional

from clipag_plugin.guidance.directional import PATCH_LEVELS as LEVELS
from clipag_plugin.guidance.directional import PatchTricks
from clipag_plugin.guidance.directional import patch_tricks_for as tricks_for

from ._patch import Patcher, clip_shim, device_hook, install_clip_shim

__all__ = ["LEVELS", "tricks_for", "patch", "script_hooks", "pretrained_vgg19"]

class _NoPerspective:
    """``torchvision.transforms.RandomPerspective`` stand-in that returns its input unchanged."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __call__(self, img):
        return img

    def forward(self, img):
        return img


def _app_modules(modules: Iterable[types.ModuleType]) -> list[types.ModuleType]:
    """The given modules, or every loaded module holding a ``TRICKS`` switch object."""
    found = list(modules)
    if not found:
        # read the module dict only: never trigger a lazy module __getattr__
        found = [m for m in list(sys.modules.values())
                 if isinstance(getattr(m, "__dict__", {}).get("TRICKS"), PatchTricks)]
    return found


def patch(
    level: Optional[str] = "a",
    *,
    model: Optional[str] = None,
    fallback: Optional[str] = "mini",
    modules: Iterable[types.ModuleType] = (),
    original: bool = False,
    device: Optional[str] = None,
) -> Patcher:
    """Make ``import clip`` give clipag and set the apps' ``TRICKS`` to ``level``; returns the Patcher.

    Args:
        level: ``"full"``, ``"a"`` (default), ``"b"``, ``"c"``, or ``None`` to leave the apps'
            ``TRICKS`` alone (see the module docstring).
        model: load this clipag model whatever name the app asks for (``None``: the app's name;
            clipag's ``"ViT-B/32"`` is the CLIPAG robust ViT-B/32).
        fallback: model used when the wanted weights are neither cached nor reachable.
        modules: app modules to patch (their ``clip`` and ``TRICKS`` attributes); by default every
            loaded module with a ``TRICKS`` attribute of type ``PatchTricks``.
        original: also prepare the original ``train_CLIPstyler.py``: with the warp off (levels
            a-c), ``torchvision.transforms.RandomPerspective`` becomes a no-op, the model gets
            its own normalization of the script's OpenAI-normalized input, and
            ``torchvision.models.vgg19(pretrained=True)`` loads clipag's cached VGG19. Call
            before the script runs.
        device: run CLIP here whatever device the code asks for.

    Returns:
        The :class:`Patcher`; ``patcher.restore()`` (or leaving the ``with`` block) undoes everything.
    """
    tricks = None if level is None else tricks_for(level)
    patcher = Patcher()
    try:
        apps = _app_modules(modules)
        install_clip_shim(patcher, clip_shim(model, fallback, force_device=device, openai_input=original),
                          tuple(apps))
        if original:
            import torchvision.models

            patcher.setattr(torchvision.models, "vgg19", pretrained_vgg19)
        for module in apps if tricks is not None else ():
            patcher.setattr(module, "TRICKS", tricks)
        if original and tricks is not None and not tricks.perspective:
            import torchvision.transforms

            patcher.setattr(torchvision.transforms, "RandomPerspective", _NoPerspective)
    except BaseException:
        patcher.restore()
        raise
    return patcher


def pretrained_vgg19(*args, pretrained: bool = False, weights=None, **kwargs):
    """``torchvision.models.vgg19`` whose pretrained ``features`` come from clipag's Hub-cached VGG19.

    The same ImageNet weights torchvision downloads from its own host (``timm/vgg19.tv_in1k`` on
    the Hub, see :mod:`clipag_plugin.vgg`); the classifier keeps its initialization (CLIP-guided
    apps read ``.features`` only). Offline without the file: one line naming the fetch command.

    Args:
        args: passed to torchvision's ``vgg19``.
        pretrained: the old torchvision flag.
        weights: the new torchvision argument; anything but None means pretrained.
        kwargs: passed to torchvision's ``vgg19``.

    Returns:
        The torchvision VGG19 module.
    """
    from torchvision.models import vgg as tv_vgg

    from clipag_plugin import hub, vgg

    model = tv_vgg.vgg19(*args, weights=None, **kwargs)
    if pretrained or weights is not None:
        try:
            features = vgg.load_vgg19_features("cpu")
        except hub.OfflineError as err:
            raise hub.OfflineError(f"clipag: the script asks for torchvision's pretrained VGG19; {err}") from None
        model.features.load_state_dict(features.state_dict())
    return model


def script_hooks(level: Optional[str], device: Optional[str] = None) -> dict:
    """Names of ``train_CLIPstyler.py`` to rebind while it runs, for ``level``.

    Args:
        level: ``"full"``, ``"a"``, ``"b"``, ``"c"`` (or an alias), or None.
        device: the device its hard-coded ``device`` becomes (None: the CPU, only on machines
            without CUDA).

    Returns:
        ``{name: function(value) -> value}``: ``device``, and ``args`` adjusted for the level.
    """
    tricks = None if level is None else tricks_for(level)

    def adjust(args):
        if tricks is None or not hasattr(args, "thresh"):
            return args
        if tricks.threshold is None:
            args.thresh = 0.0
        if not tricks.patch_loss:
            args.lambda_patch = 0.0
            args.num_crops = 1
        return args

    return {"device": device_hook(device), "args": adjust}
