"""A scene of open cubic-Bezier strokes and the one function that draws it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import torch

from .backends import render_with
from .raster import Background
from .svg import strokes_to_svg

__all__ = ["StrokeScene", "render"]


@dataclass
class StrokeScene:
    """Open cubic-Bezier strokes, one RGBA colour and one width per path.

    Attributes:
        points: ``(N, 2)``, or ``(B, N, 2)`` for a batch of scenes sharing the same paths layout;
            path ``p`` owns ``3 * num_segments[p] + 1`` consecutive control points, in pixels.
        num_segments: cubic segments per path.
        widths: ``(P,)`` / ``(B, P)`` half stroke thickness in pixels (diffvg's ``stroke_width``).
        colors: ``(P, 4)`` / ``(B, P, 4)`` straight RGBA in [0, 1] (unbatched ones are shared).
        height, width: canvas size in pixels.
    """

    points: torch.Tensor
    num_segments: tuple[int, ...]
    widths: torch.Tensor
    colors: torch.Tensor
    height: int
    width: int

    @classmethod
    def from_paths(
        cls,
        paths: Sequence[torch.Tensor],
        widths: Union[Sequence[torch.Tensor], torch.Tensor],
        colors: Union[Sequence[torch.Tensor], torch.Tensor],
        height: int,
        width: int,
    ) -> "StrokeScene":
        """Pack per-path tensors (``(3n+1, 2)`` points, scalar width, ``(4,)`` colour); keeps gradients."""
        bad = [i for i, p in enumerate(paths) if p.ndim != 2 or p.shape[-1] != 2 or (p.shape[0] - 1) % 3]
        if bad:
            raise ValueError(f"paths {bad[:5]}: each path needs (3 * segments + 1, 2) control points")
        widths = widths if isinstance(widths, torch.Tensor) else torch.stack([w.reshape(()) for w in widths])
        colors = colors if isinstance(colors, torch.Tensor) else torch.stack(list(colors))
        points = torch.cat(list(paths)) if paths else torch.zeros(0, 2)
        return cls(points, tuple((p.shape[0] - 1) // 3 for p in paths), widths.reshape(-1), colors, height, width)

    @property
    def batched(self) -> bool:
        return self.points.ndim == 3

    def path_points(self, index: int = 0) -> list[torch.Tensor]:
        """Control points of each path (views into ``points``) of image ``index`` of a batch."""
        pts = self.points[index] if self.batched else self.points
        return list(torch.split(pts, [3 * n + 1 for n in self.num_segments]))

    def render(self, background: Background = "white", backend: str = "auto", **options) -> torch.Tensor:
        """See :func:`render`."""
        return render(self, background, backend, **options)

    def to_svg(self, background: Union[str, float, Sequence[float], None] = "white", index: int = 0) -> str:
        """SVG text of the scene (image ``index`` of a batch)."""
        pts, w, c = self.points, self.widths, self.colors
        if self.batched:
            pts, w, c = pts[index], (w if w.ndim == 1 else w[index]), (c if c.ndim == 2 else c[index])
        return strokes_to_svg(pts, self.num_segments, w, c, self.height, self.width, background)

    def save_svg(self, path: Union[str, Path], background: Union[str, float, Sequence[float], None] = "white",
                 index: int = 0) -> Path:
        """Write :meth:`to_svg` to ``path``."""
        path = Path(path)
        path.write_text(self.to_svg(background, index))
        return path


def render(scene: StrokeScene, background: Background = "white", backend: str = "auto", **options) -> torch.Tensor:
    """Draw ``scene`` composited in path order over ``background``.

    Args:
        scene: the strokes.
        background: ``"white"``/``"black"``, a grey level, an RGB triple or an image tensor.
        backend: ``"torch"`` (built in), ``"diffvg"`` (needs pydiffvg) or ``"auto"``.
        options: ``tile``/``tolerance`` (torch) or ``samples``/``seed`` (diffvg).

    Returns:
        ``(3, H, W)``, or ``(B, 3, H, W)`` for a batched scene; differentiable in the scene's
        points, widths and colours (and a tensor background).
    """
    pts, w, c = scene.points, scene.widths, scene.colors
    if not scene.batched:
        pts, w, c = pts.unsqueeze(0), w.reshape(1, -1), c.unsqueeze(0)
    out = render_with(backend, pts, scene.num_segments, w, c, scene.height, scene.width, background, **options)
    return out if scene.batched else out[0]
