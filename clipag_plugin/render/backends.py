"""Which rasterizer draws a scene: the built-in PyTorch one, or pydiffvg when it is installed.

pydiffvg is not on PyPI and is never required; it is *detected* when this module is imported
(without importing it) and imported only when a scene is actually rendered with it.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Sequence

import torch

from .raster import Background, _background, rasterize_strokes

__all__ = ["BACKENDS", "HAS_DIFFVG", "resolve_backend", "render_with"]

BACKENDS = ("auto", "torch", "diffvg")


def _real_diffvg_installed() -> bool:
    """Whether the real pydiffvg is importable (clipag's stand-in, registered under that name, is not it)."""
    loaded = sys.modules.get("pydiffvg")
    if loaded is not None:
        return not getattr(loaded, "__clipag_compat__", False)
    try:
        return importlib.util.find_spec("pydiffvg") is not None
    except ValueError:  # a module without a spec is registered under the name
        return False


HAS_DIFFVG = _real_diffvg_installed()


def resolve_backend(backend: str, device: torch.device) -> str:
    """``"auto"`` -> ``"diffvg"`` for CUDA tensors when pydiffvg is installed, else ``"torch"``.

    diffvg's CUDA kernels are the reference implementation; on CPU the PyTorch rasterizer is
    the faster of the two (see docs/benchmarks.md) and the only one that renders batches at once.

    Args:
        backend: ``"auto"``, ``"torch"`` or ``"diffvg"``.
        device: where the scene's tensors live.

    Returns:
        ``"torch"`` or ``"diffvg"``; an explicit ``"diffvg"`` without pydiffvg raises ``ImportError``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown render backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "diffvg" and not HAS_DIFFVG:
        raise ValueError(
            "backend='diffvg' needs pydiffvg, which is not installed (it is built from "
            "https://github.com/BachiLi/diffvg, not on PyPI); use backend='torch' or 'auto'"
        )
    if backend == "auto":
        return "diffvg" if HAS_DIFFVG and device.type == "cuda" else "torch"
    return backend


def _render_diffvg(
    points: torch.Tensor,
    num_segments: Sequence[int],
    widths: torch.Tensor,
    colors: torch.Tensor,
    height: int,
    width: int,
    background: Background,
    samples: int = 2,
    seed: int = 0,
) -> torch.Tensor:
    """Batched ``(B, N, 2)`` scene through pydiffvg, one image at a time, then 'over' ``background``."""
    import pydiffvg

    pydiffvg.set_use_gpu(points.device.type == "cuda")
    pydiffvg.set_device(points.device)
    per_path = [3 * int(n) + 1 for n in num_segments]
    bg = _background(background, points.shape[0], height, width, points)
    images = []
    for b in range(points.shape[0]):
        shapes, groups = [], []
        for p, pts in enumerate(torch.split(points[b], per_path)):
            shapes.append(pydiffvg.Path(
                num_control_points=torch.full((int(num_segments[p]),), 2, dtype=torch.int32),
                points=pts.contiguous(), stroke_width=widths[b, p], is_closed=False,
            ))
            groups.append(pydiffvg.ShapeGroup(
                shape_ids=torch.tensor([p]), fill_color=None, stroke_color=colors[b, p].contiguous()
            ))
        args = pydiffvg.RenderFunction.serialize_scene(width, height, shapes, groups)
        rgba = pydiffvg.RenderFunction.apply(width, height, samples, samples, seed, None, *args)
        rgba = rgba.to(points.device, points.dtype).permute(2, 0, 1)  # (4, H, W), straight alpha
        alpha = rgba[3:]
        images.append(alpha * rgba[:3] + (1 - alpha) * bg[b])
    return torch.stack(images)


def render_with(
    backend: str,
    points: torch.Tensor,
    num_segments: Sequence[int],
    widths: torch.Tensor,
    colors: torch.Tensor,
    height: int,
    width: int,
    background: Background = "white",
    **options,
) -> torch.Tensor:
    """Render batched points ``(B, N, 2)`` with ``backend``; returns ``(B, 3, H, W)``.

    ``widths``/``colors`` are ``(B, P)``/``(B, P, 4)``, or ``(P,)``/``(P, 4)`` shared by the batch.

    ``options`` go to the backend: ``tile``/``tolerance`` for torch, ``samples``/``seed`` for diffvg.
    """
    chosen = resolve_backend(backend, points.device)
    if chosen == "diffvg" and points.ndim == 3:  # diffvg draws one image at a time: per-image params
        widths = widths.unsqueeze(0).expand(points.shape[0], -1) if widths.ndim == 1 else widths
        colors = colors.unsqueeze(0).expand(points.shape[0], -1, -1) if colors.ndim == 2 else colors
    if chosen == "diffvg":
        return _render_diffvg(points, num_segments, widths, colors, height, width, background, **options)
    return rasterize_strokes(points, num_segments, widths, colors, height, width, background, **options)
