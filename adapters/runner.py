"""Run the original programs users already have on clipag: ``clipag run APP -- script.py ARGS``.

One function per step, each an adapter's own piece: the app's ``patch`` (the ``clip`` swap, the
robust model, the stand-ins that keep the program working offline and on the CPU), its
``script_hooks`` (the tricks switched off inside a script that runs everything at import time),
then :func:`clipag_plugin.adapters._script.run_script`. What ran is reported: the model actually
loaded, which hooks fired, the tricks that were off (and, by name, those that could not be reached:
a fork that renames ``MakeCutouts`` or sets ``NUM_AUGS`` inside a function), and how many images
reached the image tower.

A notebook (``.ipynb``) runs cell by cell in one namespace (:mod:`clipag_plugin.adapters._notebook`):
``cells`` picks cells by number or ``#@title``, ``workdir`` stands for Colab's ``/content`` and
receives what the cells display. ``overrides`` (``--set args.num_iter=20``) give a module-level name
or attribute another value wherever the program sets it, for a quick run of a long program.

From Python (or one notebook cell)::

    from clipag_plugin.adapters.runner import run
    report = run("vqgan-clip", "generate.py", ["-p", "a lighthouse", "-i", "50"], tricks="off")
    report = run("clipdraw", "clipdraw.ipynb", cells="Imports and Notebook Utilities,Load CLIP,Curve Optimizer",
                 overrides={"args.num_iter": 20})
    print(report.summary())
"""

from __future__ import annotations

import ast
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, MutableMapping, Optional, Sequence, Union

import torch

from ._script import module_level_names, run_script, unreachable_bindings
from .vqgan_clip import REFERENCE_CUTOUT_CLASSES

__all__ = ["APPS", "RunReport", "RunInputError", "RunError", "ProgramNeedsCudaError", "NotebookCellError", "run",
           "tricks_description", "parse_overrides"]

logger = logging.getLogger("clipag_plugin.adapters")

APPS = ("clipdraw", "vqgan-clip", "clipstyler")

class RunInputError(ValueError):
    """Bad input to :func:`run` itself (not an error of the program it runs)."""


class RunError(RuntimeError):
    """The program could not run on this machine as asked (the message says what to do)."""


class ProgramNeedsCudaError(RunError):
    """The program needs CUDA, which this machine lacks (``clipag run --device cpu`` is the fix)."""


class NotebookCellError(RunError):
    """A notebook cell raised. ``cell`` is the :class:`~clipag_plugin.adapters._cells.NotebookCell`,
    ``line`` its line, ``user_traceback`` the traceback from the cell's code down; the error the cell
    raised is the ``__cause__``."""

    def __init__(self, message: str, cell: Any, line: Optional[int], user_traceback: str) -> None:
        super().__init__(message)
        self.cell, self.line, self.user_traceback = cell, line, user_traceback


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
        hooks_fired: ``{script name: times it was rebound}`` (``--set`` names included).
        unreached: one sentence per trick that could not be switched off (empty when all were).
        overrides: the ``--set`` values, ``{name: value}``.
        unapplied: the ``--set`` names the program never set.
        cells: for a notebook, the labels of the cells that ran.
        workdir: for a notebook, its working folder.
        files: for a notebook, the files written or changed in its working folder.
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
    overrides: dict = field(default_factory=dict)
    unapplied: list = field(default_factory=list)
    cells: list = field(default_factory=list)
    workdir: Optional[str] = None
    files: list = field(default_factory=list)
    namespace: dict = field(default_factory=dict, repr=False)

    def summary(self) -> str:
        """The model that ran, the tricks (and any that stayed on), the hooks that fired, what
        reached its image tower and, for a notebook, the files it wrote."""
        from clipag_plugin.registry import REGISTRY

        names = []
        for name in self.models or ["(no CLIP model loaded)"]:
            entry = REGISTRY.get(name)
            names.append(f"{name} ({'robust' if entry.robust else 'NOT robust'})" if entry else name)
        tricks = tricks_description(self.app, self.tricks)
        if self.unreached:
            tricks = f"tricks NOT all off: {'; '.join(self.unreached)}"
        fired = ", ".join(f"{name} x{count}" for name, count in sorted(self.hooks_fired.items())
                          if name not in self.overrides) or "none"
        lines = [f"clipag run {self.app}: ran {', '.join(names)}; {tricks}",
                 f"clipag run {self.app}: script names rebound: {fired}"]
        if self.overrides:
            lines.append(f"clipag run {self.app}: --set " + ", ".join(
                f"{name}={value!r} ({'applied x' + str(self.hooks_fired[name]) if self.hooks_fired.get(name) else 'NEVER applied'})"
                for name, value in self.overrides.items()))
        lines.append(f"clipag run {self.app}: {self.encoder_images} images reached the image tower in "
                     f"{self.encoder_calls} calls")
        if self.cells:
            lines.insert(0, f"clipag run {self.app}: ran {len(self.cells)} cells: {', '.join(self.cells)}")
        if self.workdir is not None:
            lines.append(f"clipag run {self.app}: wrote {len(self.files)} files in {self.workdir}"
                         + (f": {files_summary(self.files, self.workdir)}" if self.files else ""))
        return "\n".join(lines)


def files_summary(files: Sequence[str], root: str, groups: int = 8) -> str:
    """``res/iter_0.png … res/iter_9.png (10 files), final.svg``: numbered series folded into one entry.

    Args:
        files: the paths.
        root: shown relative to this folder.
        groups: at most this many entries, then ``and N more``.

    Returns:
        The summary.
    """
    series: dict[tuple, list] = {}
    for name in files:
        path = Path(name)
        try:
            path = path.resolve().relative_to(Path(root).resolve())
        except ValueError:
            pass
        key = (str(path.parent), re.sub(r"\d+", "#", path.name))
        series.setdefault(key, []).append(path)

    def natural(path: Path) -> list:
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]

    entries = []
    for paths in series.values():
        paths.sort(key=natural)
        entries.append(str(paths[0]) if len(paths) == 1 else f"{paths[0]} … {paths[-1]} ({len(paths)} files)")
    shown = ", ".join(entries[:groups])
    return shown + (f", and {len(entries) - groups} more" if len(entries) > groups else "")


_OVERRIDE = re.compile(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)=(.*)", re.DOTALL)


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["args.num_iter=20", "prompt=a fox"]`` as ``{"args.num_iter": 20, "prompt": "a fox"}``.

    Values are Python literals where they parse as one (``20``, ``0.5``, ``True``, ``'x'``,
    ``[1, 2]``), else the text as written.

    Args:
        items: ``NAME=VALUE`` or ``NAME.ATTR=VALUE`` strings.

    Returns:
        ``{name: value}``; malformed items raise :class:`RunInputError`.
    """
    overrides: dict[str, Any] = {}
    for item in items:
        match = _OVERRIDE.fullmatch(item.strip())
        if not match:
            raise RunInputError(f"--set {item!r}: write NAME=VALUE or NAME.ATTR=VALUE for a name the program sets "
                                f"at module level, e.g. --set args.num_iter=20")
        name, text = match.groups()
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        overrides[name] = value
    return overrides


def _with_overrides(hooks: Mapping[str, Callable[[Any], Any]], overrides: Mapping[str, Any],
                    fired: MutableMapping[str, int]) -> dict:
    """The app's hooks plus one per override: ``NAME`` takes the value wherever the program binds it;
    ``NAME.ATTR`` wherever it assigns that attribute, and on the object as soon as ``NAME`` is bound
    (an argparse ``args``)."""
    hooks = dict(hooks)
    for name, value in overrides.items():
        root, _, attrs = name.partition(".")
        hooks[name] = lambda _old, value=value: value
        if not attrs:
            continue
        inner = hooks.get(root, lambda obj: obj)

        def set_on_bind(obj: Any, inner=inner, name=name, attrs=attrs, value=value) -> Any:
            obj = inner(obj)
            *parents, last = attrs.split(".")
            target = obj
            for attr in parents:
                target = getattr(target, attr, None)
            try:
                setattr(target, last, value)
            except (AttributeError, TypeError):
                return obj
            fired[name] = fired.get(name, 0) + 1
            return obj

        hooks[root] = set_on_bind
    return hooks


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


def _spec_without(cells: Sequence[Any], skipped: Any) -> str:
    """A ``--cells`` value naming ``cells`` less ``skipped``, ranges folded (``2-4,6``)."""
    numbers = [cell.number for cell in cells if cell.number != skipped.number]
    parts: list[list[int]] = []
    for number in numbers:
        if parts and number == parts[-1][-1] + 1:
            parts[-1].append(number)
        else:
            parts.append([number])
    return ",".join(f"{p[0]}-{p[-1]}" if len(p) > 2 else ",".join(map(str, p)) for p in parts)


def _prepare_notebook(script: Path, cells: Optional[str]) -> tuple[list, list]:
    """``(every code cell, the chosen ones)``, bad input as :class:`RunInputError`."""
    from . import _cells

    try:
        every = _cells.read_cells(script)
    except ImportError as err:
        raise RunInputError(str(err)) from None
    except Exception as err:  # noqa: BLE001 - nbformat's errors for files that are not notebooks
        raise RunInputError(f"{str(script)!r} is not a readable notebook ({type(err).__name__}: {err})") from None
    try:
        chosen = _cells.select_cells(every, cells)
    except ValueError as err:
        raise RunInputError(str(err)) from None
    if not chosen:
        raise RunInputError(f"{str(script)!r} has no code cells to run")
    return every, chosen


def run(app: str, script: str | Path, argv: Sequence[str] = (), *, model: Optional[str] = None,
        tricks: str = "off", device: Optional[str] = None, fallback: Optional[str] = "mini",
        keep_namespace: bool = False, cells: Optional[str] = None, workdir: Optional[str | Path] = None,
        overrides: Union[Mapping[str, Any], Sequence[str], None] = None) -> RunReport:
    """Run an original program on clipag, unmodified, as ``python script ARGS`` (or a kernel) would.

    Args:
        app: ``"clipdraw"`` (the notebook, or its code saved as a script, or a fork of it),
            ``"vqgan-clip"`` (nerdyrodent's ``generate.py``) or ``"clipstyler"``
            (``train_CLIPstyler.py``).
        script: the program's file: a script, or a notebook (``.ipynb``).
        argv: its own command-line arguments.
        model: the clipag model to load whatever the program asks for (None: its own name,
            OpenAI's names mapped to the closest robust model).
        tricks: ``"off"`` (the default: the robust encoder needs none) or ``"on"``.
        device: where CLIP (and a hard-coded ``device``) runs; None keeps the program's choice,
            with the CPU in place of CUDA on machines without it.
        fallback: model used when the wanted weights are not available offline (None: an error).
        keep_namespace: keep the script's globals in ``report.namespace`` (by default they are
            cleared when the run ends, which frees the models the script loaded).
        cells: notebooks only: the cells to run, by number, range or ``#@title``
            (``"2-4"``, ``"Load CLIP,Curve Optimizer"``); None runs every code cell.
        workdir: notebooks only: the working folder standing for Colab's ``/content``, where the
            cells start and their displays are saved (default: ``<notebook name>_run`` beside it).
        overrides: ``{name: value}`` or ``["name=value", ...]``: a module-level name (``num_paths``)
            or attribute (``args.num_iter``) takes this value wherever the program sets it.

    Returns:
        A :class:`RunReport`; tricks that could not be switched off are logged as warnings and
        listed in ``report.unreached``, overrides never applied in ``report.unapplied``. Bad
        arguments raise :class:`RunInputError` before anything runs; a program that needs CUDA on
        a machine without it raises :class:`ProgramNeedsCudaError`; a script's own errors
        propagate as they would under ``python script.py``, a notebook cell's as
        :class:`NotebookCellError` naming the cell and line.
    """
    if app not in APPS:
        raise RunInputError(f"unknown app {app!r}; choose one of {', '.join(APPS)}")
    if tricks not in ("on", "off"):
        raise RunInputError(f"tricks={tricks!r}: choose 'on' or 'off'")
    if not Path(script).is_file():
        raise RunInputError(f"script {str(script)!r} does not exist; pass the path of the program to run")
    notebook = Path(script).suffix.lower() == ".ipynb"
    if not notebook and (cells is not None or workdir is not None):
        raise RunInputError(f"--cells and --workdir are for notebooks; {str(script)!r} is a script "
                            f"(pass the .ipynb file)")
    try:
        wanted = torch.device(device) if device is not None else None
    except RuntimeError as err:
        raise RunInputError(f"device {device!r}: {err}; use cpu, cuda, cuda:1 or mps") from None
    if wanted is not None and wanted.type == "cuda" and not torch.cuda.is_available():
        raise RunInputError(f"device {device!r}: this machine has no CUDA; use cpu")
    if overrides is not None and not isinstance(overrides, Mapping):
        overrides = parse_overrides(list(overrides))
    overrides = dict(overrides or {})
    every, chosen = _prepare_notebook(Path(script), cells) if notebook else ([], [])
    report = RunReport(app, str(script), tricks, overrides=overrides)
    logger.info("%s", tricks_description(app, tricks))
    if notebook:
        from ._installs import install_notice

        notice = install_notice(every, chosen)
        if notice:
            logger.warning("%s", notice)
    patcher, app_hooks = _plan(app, tricks, model, device, fallback)
    shim = sys.modules.get("clip")
    fired: dict = {}
    hooks = _with_overrides(app_hooks, overrides, fired)
    namespace: dict = {}
    source = ""
    try:
        if notebook:
            namespace, source = _run_notebook(app, report, Path(script), every, chosen, argv, hooks, workdir, fired)
        else:
            source = Path(script).read_text(encoding="utf-8")
            namespace = run_script(script, argv, hooks, fired=fired)
    except (RuntimeError, AssertionError) as err:
        if _cuda_error(err) and not isinstance(err, RunError):
            raise ProgramNeedsCudaError(
                f"clipag run {app}: the program needs CUDA, which this machine lacks ({err}); "
                f"run it with `clipag run {app} --device cpu -- ...`") from None
        raise
    finally:
        report.hooks_fired = {name: count for name, count in fired.items() if name in app_hooks or name in overrides}
        if shim is not None and getattr(shim, "__clipag__", False):
            report.models = list(dict.fromkeys(getattr(m, "name", "?") for m in shim.models))
            for loaded in shim.models:
                stats = getattr(loaded, "clipag_stats", {})
                report.encoder_calls += stats.get("calls", 0)
                report.encoder_images += stats.get("images", 0)
            shim.models.clear()  # the report keeps names and counts, not the models
        patcher.restore()
    if tricks == "off":
        report.unreached = _unreached_tricks(app, source, fired)
        for sentence in report.unreached:
            logger.warning("%s", sentence)
    report.unapplied = [name for name in overrides if not fired.get(name)]
    for name in report.unapplied:
        logger.warning("--set %s=%r was never applied: the program never sets %s at module level%s", name,
                       overrides[name], name, " (in the cells that ran)" if notebook else "")
    if keep_namespace:
        report.namespace = namespace
    else:
        namespace.clear()  # drop the script's objects (and the GPU memory they hold) now
    return report


def _run_notebook(app: str, report: RunReport, script: Path, every: list, chosen: list, argv: Sequence[str],
                  hooks: Mapping[str, Callable[[Any], Any]], workdir: Optional[str | Path],
                  fired: dict) -> tuple[dict, str]:
    """Run the chosen cells; ``(namespace, the cells' translated source)``; a failing cell becomes
    :class:`NotebookCellError` (or :class:`ProgramNeedsCudaError`)."""
    from . import _notebook
    from ._cells import translate

    folder = Path(workdir) if workdir is not None else _notebook.default_workdir(script)
    report.workdir = str(folder)
    report.cells = [cell.label for cell in chosen]
    source = "\n".join(translate(cell.source) for cell in chosen)
    try:
        result = _notebook.run_notebook(script, chosen, argv, hooks, workdir=folder, fired=fired)
    except _notebook.CellFailure as failure:
        where = f"{failure.cell.label}, line {failure.line}" if failure.line else failure.cell.label
        if _cuda_error(failure.error):
            raise ProgramNeedsCudaError(
                f"clipag run {app}: {where} needs CUDA, which this machine lacks ({failure.error}); "
                f"run it with `clipag run {app} --device cpu -- ...`") from failure.error
        rest = _spec_without(chosen, failure.cell)
        hint = f"; fix the cell, or leave it out with --cells {rest}" if rest else "; fix the cell"
        raise NotebookCellError(f"clipag run {app}: the notebook stopped in {where}: "
                                f"{type(failure.error).__name__}: {failure.error}{hint}",
                                failure.cell, failure.line, failure.user_traceback) from failure.error
    report.files = [str(p) for p in result.files]
    return result.namespace, source
