"""The page's VQGAN+CLIP tab without the page: two CLIPs steer the same VQGAN's latents, in turn.

The tab needs the ``[vqgan]`` extra (taming-transformers) and a VQGAN on disk;
:func:`vqgan_status` says which VQGANs are ready or, when none is, what to install or download.
Each slot runs :func:`~clipag_plugin.synthesis.latents.vqgan_clip_iter` with the page's knobs:
size, steps, seed and the cutout trick on or off. At the end each slot has the picture as PNG, an
animation of the run, the settings as JSON and, for the mini models, the world judge's reading.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

from .slots import (
    Caps,
    SlotView,
    UiInputError,
    check_model_and_steps,
    close_slot,
    ending_with_result,
    prepare_slots,
    run_in_turn,
    show_frame,
)

__all__ = ["LatentRequest", "vqgan_status", "vqgan_side_by_side", "DEFAULT_STEPS", "MISSING_TAMING"]

DEFAULT_STEPS = 200
MISSING_TAMING = ("VQGAN+CLIP needs taming-transformers: `pip install 'clipag-plugin[vqgan]'` (in a checkout: "
                  "`pip install -e '.[vqgan]'`), then restart `clipag ui`.")
_VQGANS: dict = {}


@dataclass(frozen=True)
class LatentRequest:
    """One model's run: the model and the knobs the tab shows (None: the reference's settings)."""

    model: str
    steps: Optional[int] = None
    size: Optional[int] = None
    seed: int = 0
    tricks: bool = False  # the cutout trick (crops, augmentation, noise)

    def config(self, device: str = "cpu"):
        """The :class:`~clipag_plugin.synthesis.latents.LatentConfig` of this request (256 px off a GPU)."""
        from ..synthesis.latents import LatentConfig, with_options

        size = self.size or (512 if str(device).startswith("cuda") else 256)
        return with_options(LatentConfig(width=size, height=size), steps=self.steps or DEFAULT_STEPS, seed=self.seed,
                            tricks=self.tricks)


def vqgan_status(download_root: Optional[str] = None) -> tuple[list[str], str]:
    """The VQGANs ready to load here, and what to do when there is none (``''`` when ready)."""
    if importlib.util.find_spec("taming") is None:
        return [], MISSING_TAMING
    from ..vqgan import DEFAULT_VQGAN, cached_vqgans

    ready = cached_vqgans(download_root)
    if not ready:
        return [], (f"No VQGAN is downloaded. On a connected machine run `python -m clipag_plugin.vqgan download "
                    f"{DEFAULT_VQGAN}` (about 1 GB, once; `python -m clipag_plugin.vqgan list` shows the others), "
                    f"then restart `clipag ui`.")
    return ready, ""


def _check(request: LatentRequest, caps: Caps, choices: Sequence[str]) -> None:
    check_model_and_steps(request.model, request.steps, caps, choices)
    if request.size is not None and not 64 <= int(request.size) <= caps.max_size:
        raise UiInputError(f"Size {request.size} px is out of range: this server paints 64 to {caps.max_size} px "
                           f"(clipag ui --max-size sets the limit).")


def _vqgan(name: str, device: str):
    from ..vqgan import load_vqgan

    key = (name, device)
    if key not in _VQGANS:
        try:
            _VQGANS.clear()  # one VQGAN at a time: they are large
            _VQGANS[key] = load_vqgan(name, device=device, progress=False).eval().requires_grad_(False)
        except (OSError, KeyError) as err:
            raise UiInputError(f"VQGAN {name!r} could not be loaded: {err}") from None
    return _VQGANS[key]


def vqgan_side_by_side(
    prompt: str,
    vqgan: str,
    requests: Sequence[LatentRequest],
    *,
    caps: Caps = Caps(),
    every: int = 10,
    device: Optional[str] = None,
    out_dir: Path,
    stop: Optional[threading.Event] = None,
    choices: Optional[Sequence[str]] = None,
    vqgans: Optional[Sequence[str]] = None,
) -> Iterator[list[SlotView]]:
    """Steer ``vqgan``'s latents towards ``prompt`` with every slot's CLIP, a frame of each in turn.

    Args:
        prompt: the text (``"a:1 | b:-0.3"`` syntax).
        vqgan: a VQGAN name from ``vqgans``.
        requests: one per slot.
        caps, every, device, out_dir, stop, choices: as :func:`~.slots.paint_side_by_side`.
        vqgans: the VQGANs allowed (default: :func:`vqgan_status`'s).

    Returns:
        An iterator of the slots' views; the last one has every slot ``done``.
    """
    from ..loading import default_device
    from ..synthesis.api import load_model
    from ..synthesis.latents import LatentFrame, vqgan_clip_iter

    ready, message = (list(vqgans), "") if vqgans is not None else vqgan_status()
    if vqgan not in ready:
        raise UiInputError(message or f"VQGAN {vqgan!r} is not on this machine; choose {', '.join(ready)}.")
    text, views, notes = prepare_slots(prompt, requests, _check, caps, choices, out_dir)
    where = str(device or default_device())
    model = _vqgan(vqgan, where)
    configs = [r.config(where) for r in requests]
    streams = [ending_with_result(vqgan_clip_iter(text, load_model(r.model, device), model, c, every=every))
               for r, c in zip(requests, configs, strict=True)]

    def show(i: int, frame: LatentFrame) -> None:
        show_frame(views[i], frame.image, frame.step, frame.total, frame.loss, notes[i])

    def finish(i: int, result, last: Optional[LatentFrame]) -> None:
        view = views[i]
        image, steps, loss = ((result.image, len(result.losses) - 1, result.losses[-1]) if last is None
                              else (last.image, last.step, last.loss))
        settings = {"prompt": text, "model": view.model, "vqgan": vqgan, "app": "vqgan+clip",
                    "config": dataclasses.asdict(configs[i]), "final_loss": loss}
        close_slot(view, image, out_dir, settings, f"loss {loss:.4f}", text, notes[i],
                   stopped_at=steps if last is not None else None)

    yield from run_in_turn(views, streams, LatentFrame, show, finish, stop)
