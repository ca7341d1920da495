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
``RandomPerspective`` a no-op before the script builds its ``augment`` transform; its threshold
and patch weight are command-line flags there (``--thresh 0``, ``--lambda_patch 0``).
Everything is restored when the ``with`` block ends (or on ``restore()``).
"""

from __future__ import annotations

import sys
import types
from typing import Iterable, Optional

from clipag_plugin.guidance.directional import PatchTricks

from ._patch import Patcher, clip_shim, install_clip_shim

__all__ = ["LEVELS", "tricks_for", "patch"]

LEVELS: dict[str, PatchTricks] = {
    "full": PatchTricks(),
    "a": PatchTricks(perspective=False),
    "b": PatchTricks(perspective=False, threshold=None),
    "c": PatchTricks(perspective=False, threshold=None, patch_loss=False),
}
_ALIASES = {"none": "full", "no-warp": "a", "no-reject": "b", "global-only": "c"}


def tricks_for(level: str) -> PatchTricks:
    """The switches of a level name (or alias: none, no-warp, no-reject, global-only).

    Args:
        level: ``"full"``, ``"a"``, ``"b"``, ``"c"`` or an alias.

    Returns:
        The :class:`PatchTricks` of that level.
    """
    key = _ALIASES.get(str(level).lower(), str(level).lower())
    try:
        return LEVELS[key]
    except KeyError:
        raise ValueError(
            f"unknown CLIPStyler level {level!r}; choose from {', '.join(LEVELS)} "
            f"(a: no perspective warp, b: also no threshold rejection, c: global loss only)"
        ) from None


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
            a-c), ``torchvision.transforms.RandomPerspective`` becomes a no-op. Call before the
            script runs.

    Returns:
        The :class:`Patcher`; ``patcher.restore()`` (or leaving the ``with`` block) undoes everything.
    """
    tricks = None if level is None else tricks_for(level)
    patcher = Patcher()
    try:
        apps = _app_modules(modules)
        install_clip_shim(patcher, clip_shim(model, fallback), tuple(apps))
        for module in apps if tricks is not None else ():
            patcher.setattr(module, "TRICKS", tricks)
        if original and tricks is not None and not tricks.perspective:
            import torchvision.transforms

            patcher.setattr(torchvision.transforms, "RandomPerspective", _NoPerspective)
    except BaseException:
        patcher.restore()
        raise
    return patcher
