"""Run the original programs users already have on clipag: ``clipag run APP -- script.py ARGS``.

One function per step, each an adapter's own piece: the app's ``patch`` (the ``clip`` swap, the
robust model, the stand-ins that keep the program working offline and on the CPU), its
``script_hooks`` (the tricks switched off inside a script that runs everything at import time),
then :func:`clipag_plugin.adapters._script.run_script`. What ran is reported: the model actually
loaded, which hooks fired, the tricks that were off (and, by name, those that could not be reached:
a fork that renames ``MakeCutouts`` or sets ``NUM_AUGS`` inside a function), and how many images
reached the image tower.

From Python (or one notebook cell)::

    from clipag_plugin.adapters.runner import run
    report = run("vqgan-clip", "generate.py", ["-p", "a lighthouse", "-i", "50"], tricks="off")
    print(report.summary())
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch

from ._script import module_level_names, run_script, unreachable_bindings
from .vqgan_clip import REFERENCE_CUTOUT_CLASSES

__all__ = ["APPS", "RunReport", "RunInputError", "RunError", "ProgramNeedsCudaError", "run", "tricks_description"]

logger = logging.getLogger("clipag_plugin.adapters")

APPS = ("clipdraw", "vqgan-clip", "clipstyler")

class RunInputError(ValueError):
    """Bad input to :func:`run` itself (not an error of the program it runs)."""


class RunError(RuntimeError):
    """The program could not run on this machine as asked (the message says what to do)."""


class ProgramNeedsCudaError(RunError):
    """The program needs CUDA, which this machine lacks (``clipag run --device cpu`` is the fix)."""


# With the tricks off, the script names that switch each trick off (a trick is reached when one fires),
# and a pattern for the names a fork might have renamed them to.
_TRICK_HOOKS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "clipdraw": ("augmentation", ("NUM_AUGS",), r"aug"),
    "vqgan-clip": ("cutouts", tuple(REFERENCE_CUTOUT_CLASSES), r"cutout"),
    "clipstyler": ("patch settings", ("args",), r"arg"),
}


_TRICKS_OFF = {
    "clipdraw": "augmentation (one un-augmented copy per step instead of 4 perspective-warped crops)",
    "vqgan-clip": "cutouts (one whole-image view per step instead of cutn augmented, noised crops)",
    "clipstyler": "patch machinery (no perspective warp, no threshold, no patch loss: the global "
                  "directional loss alone, plus the one crop the script's loop needs)",
}


def tricks_description(app: str, tricks: str) -> str:
    """One sentence saying what ``tricks`` means for ``app``.

    Args:
        app: one of :data:`APPS`.
        tricks: ``"on"`` or ``"off"``.

    Returns:
        The sentence.
    """
    if tricks == "on":
        return "tricks on: the program's own augmentation, as written"
    return f"tricks off: {_TRICKS_OFF[app]}"


@dataclass
class RunReport:
    """What a run did.

    Attributes:
        app: the app name.
        script: the script that ran.
        tricks: ``"on"`` or ``"off"``.
        models: the models the program loaded (registry names, after any fallback).
        encoder_calls: calls of ``encode_image``.
        encoder_images: images that reached the image tower.
        hooks_fired: ``{script name: times it was rebound}``.
        unreached: one sentence per trick that could not be switched off (empty when all were).
        namespace: the script's globals after it ran; empty unless ``run(keep_namespace=True)``.
    """

    app: str
    script: str
    tricks: str
    models: list = field(default_factory=list)
    encoder_calls: int = 0
    encoder_images: int = 0
    hooks_fired: dict = field(default_factory=dict)
    unreached: list = field(default_factory=list)
    namespace: dict = field(default_factory=dict, repr=False)

    def summary(self) -> str:
        """The model that ran, the tricks (and any that stayed on), the hooks that fired, and what
        reached its image tower."""
        from clipag_plugin.registry import REGISTRY

        names = []
        for name in self.models or ["(no CLIP model loaded)"]:
            entry = REGISTRY.get(name)
            names.append(f"{name} ({'robust' if entry.robust else 'NOT robust'})" if entry else name)
        tricks = tricks_description(self.app, self.tricks)
        if self.unreached:
            tricks = f"tricks NOT all off: {'; '.join(self.unreached)}"
        fired = ", ".join(f"{name} x{count}" for name, count in sorted(self.hooks_fired.items())) or "none"
        return (f"clipag run {self.app}: ran {', '.join(names)}; {tricks}\n"
                f"clipag run {self.app}: script names rebound: {fired}\n"
                f"clipag run {self.app}: {self.encoder_images} images reached the image tower in "
                f"{self.encoder_calls} calls")


def _plan(app: str, tricks: str, model: Optional[str], device: Optional[str], fallback: Optional[str]):
    """``(patcher, hooks)`` for one app: the adapter applied, and the names to rebind in its script."""
    off = tricks == "off"
    if app == "clipdraw":
        from . import clipdraw

        augment = False if off else None
        patcher = clipdraw.patch(model, augment=augment, normalize=True, notebook=True, fallback=fallback,
                                 device=device)
        return patcher, clipdraw.script_hooks(augment, True, device)
    if app == "vqgan-clip":
        from . import vqgan_clip

        patcher = vqgan_clip.patch(None, model=model, fallback=fallback, original=True, device=device,
                                   single_cutout=off, no_augment=off, no_noise=off)
        return patcher, vqgan_clip.script_hooks(single_cutout=off, no_augment=off, no_noise=off)
    if app == "clipstyler":
        from . import clipstyler

        level = "c" if off else "full"
        patcher = clipstyler.patch(level, model=model, fallback=fallback, original=True, device=device)
        return patcher, clipstyler.script_hooks(level, device)
    raise ValueError(f"unknown app {app!r}; choose one of {', '.join(APPS)}")


def _cuda_error(err: BaseException) -> bool:
    text = str(err)
    return not torch.cuda.is_available() and any(
        marker in text for marker in ("CUDA", "cuda", "NVIDIA driver", "Torch not compiled with CUDA"))


def _unreached_tricks(app: str, source: str, fired: dict) -> list[str]:
    """One sentence per trick whose switch never fired, naming where the script keeps it instead."""
    what, names, pattern = _TRICK_HOOKS[app]
    if any(fired.get(name) for name in names):
        return []
    hidden = unreachable_bindings(source, names)
    if hidden:
        where = ", ".join(f"{name} is set inside {place}" for name, place in hidden.items())
        return [f"{what} not switched off: {where}, out of clipag run's reach (move it to module level, or "
                f"switch it off in your code)"]
    similar = sorted(n for n in module_level_names(source) if re.search(pattern, n, re.IGNORECASE)
                     and n not in names)
    hint = f"; it defines {', '.join(similar)}, which clipag run does not know" if similar else ""
    return [f"{what} not switched off: the script never sets {' / '.join(names)} at module level{hint} (switch "
            f"the trick off in your code, or rename it)"]


def run(app: str, script: str | Path, argv: Sequence[str] = (), *, model: Optional[str] = None,
        tricks: str = "off", device: Optional[str] = None, fallback: Optional[str] = "mini",
        keep_namespace: bool = False) -> RunReport:
    """Run an original program on clipag, unmodified, as ``python script ARGS`` would.

    Args:
        app: ``"clipdraw"`` (the notebook's code saved as a script, or a fork of it),
            ``"vqgan-clip"`` (nerdyrodent's ``generate.py``) or ``"clipstyler"``
            (``train_CLIPstyler.py``).
        script: the program's file.
        argv: its own command-line arguments.
        model: the clipag model to load whatever the program asks for (None: its own name,
            OpenAI's names mapped to the closest robust model).
        tricks: ``"off"`` (the default: the robust encoder needs none) or ``"on"``.
        device: where CLIP (and a hard-coded ``device``) runs; None keeps the program's choice,
            with the CPU in place of CUDA on machines without it.
        fallback: model used when the wanted weights are not available offline (None: an error).
        keep_namespace: keep the script's globals in ``report.namespace`` (by default they are
            cleared when the run ends, which frees the models the script loaded).

    Returns:
        A :class:`RunReport`; tricks that could not be switched off are logged as warnings and
        listed in ``report.unreached``. Bad arguments raise :class:`RunInputError` before anything
        runs; a program that needs CUDA on a machine without it raises
        :class:`ProgramNeedsCudaError`; the program's own errors propagate as they would under
        ``python script.py``.
    """
    if app not in APPS:
        raise RunInputError(f"unknown app {app!r}; choose one of {', '.join(APPS)}")
    if tricks not in ("on", "off"):
        raise RunInputError(f"tricks={tricks!r}: choose 'on' or 'off'")
    if not Path(script).is_file():
        raise RunInputError(f"script {str(script)!r} does not exist; pass the path of the program to run")
    try:
        wanted = torch.device(device) if device is not None else None
    except RuntimeError as err:
        raise RunInputError(f"device {device!r}: {err}; use cpu, cuda, cuda:1 or mps") from None
    if wanted is not None and wanted.type == "cuda" and not torch.cuda.is_available():
        raise RunInputError(f"device {device!r}: this machine has no CUDA; use cpu")
    report = RunReport(app, str(script), tricks)
    logger.info("%s", tricks_description(app, tricks))
    patcher, hooks = _plan(app, tricks, model, device, fallback)
    shim = sys.modules.get("clip")
    fired: dict = {}
    namespace: dict = {}
    try:
        namespace = run_script(script, argv, hooks, fired=fired)
    except (RuntimeError, AssertionError) as err:
        if _cuda_error(err):
            raise ProgramNeedsCudaError(
                f"clipag run {app}: the program needs CUDA, which this machine lacks ({err}); "
                f"run it with `clipag run {app} --device cpu -- ...`") from None
        raise
    finally:
        report.hooks_fired = dict(fired)
        if shim is not None and getattr(shim, "__clipag__", False):
            report.models = list(dict.fromkeys(getattr(m, "name", "?") for m in shim.models))
            for loaded in shim.models:
                stats = getattr(loaded, "clipag_stats", {})
                report.encoder_calls += stats.get("calls", 0)
                report.encoder_images += stats.get("images", 0)
            shim.models.clear()  # the report keeps names and counts, not the models
        patcher.restore()
    if tricks == "off":
        report.unreached = _unreached_tricks(app, Path(script).read_text(encoding="utf-8"), fired)
        for sentence in report.unreached:
            logger.warning("%s", sentence)
    if keep_namespace:
        report.namespace = namespace
    else:
        namespace.clear()  # drop the script's objects (and the GPU memory they hold) now
    return report
