"""SVG text of a stroke scene (stroke-width is twice the half-width, round caps and joins)."""

from __future__ import annotations

from typing import Sequence, Union
from xml.sax.saxutils import quoteattr

import torch

__all__ = ["strokes_to_svg"]


def _num(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") or "0"


def _rgb(rgb: Sequence[float]) -> str:
    r, g, b = (int(round(255 * min(max(float(c), 0.0), 1.0))) for c in rgb)
    return f"rgb({r}, {g}, {b})"


def strokes_to_svg(
    points: torch.Tensor,
    num_segments: Sequence[int],
    widths: torch.Tensor,
    colors: torch.Tensor,
    height: int,
    width: int,
    background: Union[str, float, Sequence[float], None] = "white",
) -> str:
    """One image's strokes (``points`` ``(N, 2)``, ``widths`` ``(P,)``, ``colors`` ``(P, 4)``) as SVG.

    ``background`` may be ``"white"``/``"black"``, a grey level, an RGB triple, or ``None`` for a
    transparent canvas (image backgrounds are not embedded).

    Args:
        points: ``(N, 2)`` control points of all paths, in pixels.
        num_segments: cubic segments per path.
        widths: ``(P,)`` half-widths (diffvg's convention).
        colors: ``(P, 4)`` RGBA in [0, 1].
        height: canvas height in pixels.
        width: canvas width in pixels.
        background: the canvas colour.

    Returns:
        The SVG document as text.
    """
    points = points.detach().cpu().double()
    widths = widths.detach().cpu().double().reshape(-1)
    colors = colors.detach().cpu().double()
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">',
    ]
    if background is not None:
        if isinstance(background, str):
            fill = background
        else:
            level = torch.as_tensor(background, dtype=torch.float64).reshape(-1)
            fill = _rgb(level.expand(3) if level.numel() == 1 else level)
        lines.append(f'  <rect width="100%" height="100%" fill={quoteattr(fill)}/>')
    start = 0
    for p, n in enumerate(num_segments):
        pts = points[start : start + 3 * int(n) + 1].tolist()
        start += 3 * int(n) + 1
        d = [f"M {_num(pts[0][0])} {_num(pts[0][1])}"]
        for k in range(int(n)):
            c = pts[1 + 3 * k : 4 + 3 * k]
            d.append("C " + " ".join(f"{_num(x)} {_num(y)}" for x, y in c))
        r, g, b, a = colors[p].tolist()
        lines.append(
            f'  <path d="{" ".join(d)}" fill="none" stroke="{_rgb((r, g, b))}" '
            f'stroke-opacity="{_num(min(max(a, 0.0), 1.0))}" stroke-width="{_num(2 * widths[p].item())}" '
            'stroke-linecap="round" stroke-linejoin="round"/>'
        )
    lines.append("</svg>")
    return "\n".join(lines) + "\n"
