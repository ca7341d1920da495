"""Filled and closed vector shapes, drawn layer by layer (the part of diffvg's model that open
strokes do not cover: fills, closed outlines, several shapes per group).

A :class:`Layer` is one group of diffvg's scene: cubic segments (lines and quadratics are
elevated to cubics by :func:`cubic_segments`), an optional stroke and an optional fill. Each layer
is evaluated only inside the bounding box of its outline (grown by the stroke's reach):

* **stroke** coverage is ``clamp(w + 1/2 - d, 0, 1)`` with ``d`` the distance to the nearest
  flattened piece, as in :mod:`clipag_plugin.render.raster`;
* **fill** coverage is ``clamp(1/2 + s * d, 0, 1)`` with ``s = +1`` inside, ``-1`` outside (crossing
  count with the even-odd or the nonzero rule; closed contours, an open one closed by a line),
  so the inside is flat and the gradient lives on the boundary, as with an analytic box filter.

Layers are composited "over" one another in order, fill before stroke, onto a transparent
canvas; the result is premultiplied RGBA. Open strokes alone (CLIPDraw's scenes) go through the
tiled rasterizer, which culls far better; this module is for everything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from .bezier import flatten_counts, flatten_cubics
from .raster import _piece_distance2

__all__ = ["Layer", "cubic_segments", "rasterize_layers"]

_EDGE = 0.5  # half the anti-aliasing ramp, in pixels
_CHUNK = 1 << 22  # pixel x piece pairs evaluated at once


@dataclass
class Layer:
    """One group: cubic segments of its outlines, and how to paint them.

    Attributes:
        segments: ``(S, 4, 2)`` cubic control points in pixels (differentiable).
        contour: ``(S,)`` which outline each segment belongs to (fills close each outline).
        stroke_width: half thickness of the stroke in pixels (diffvg's ``stroke_width``), or None.
        stroke_color: ``(4,)`` straight RGBA of the stroke, or None for no stroke.
        fill_color: ``(4,)`` straight RGBA of the fill, or None for no fill.
        even_odd: fill rule: even-odd (diffvg's default) or nonzero winding.
    """

    segments: torch.Tensor
    contour: torch.Tensor
    stroke_width: Optional[torch.Tensor] = None
    stroke_color: Optional[torch.Tensor] = None
    fill_color: Optional[torch.Tensor] = None
    even_odd: bool = True


def cubic_segments(points: torch.Tensor, num_control_points: Sequence[int], closed: bool) -> torch.Tensor:
    """diffvg's path layout as cubic segments.

    Segment ``k`` starts at the current point, uses ``num_control_points[k]`` control points (0:
    line, 1: quadratic, 2: cubic) and ends at the next point; a closed path's last segment ends
    at the first point. Lines and quadratics are elevated exactly to cubics.

    Args:
        points: ``(N, 2)`` points in pixels (differentiable).
        num_control_points: control points per segment, each 0, 1 or 2.
        closed: whether the last segment returns to the first point.

    Returns:
        ``(S, 4, 2)`` cubic control points.
    """
    counts = [int(c) for c in num_control_points]
    if any(c not in (0, 1, 2) for c in counts):
        raise ValueError(f"num_control_points must hold 0 (line), 1 (quadratic) or 2 (cubic); got {counts}")
    needed = sum(counts) + len(counts) + (0 if closed else 1)
    if points.shape[0] != needed:
        raise ValueError(
            f"a {'closed' if closed else 'open'} path with num_control_points={counts} needs {needed} points, "
            f"got {points.shape[0]}"
        )
    out, at, n = [], 0, points.shape[0]
    for c in counts:
        p0 = points[at]
        inner = [points[at + 1 + i] for i in range(c)]
        p3 = points[(at + c + 1) % n]
        if c == 2:
            out.append(torch.stack([p0, inner[0], inner[1], p3]))
        elif c == 1:
            q = inner[0]
            out.append(torch.stack([p0, p0 + 2.0 / 3.0 * (q - p0), p3 + 2.0 / 3.0 * (q - p3), p3]))
        else:
            out.append(torch.stack([p0, p0 + (p3 - p0) / 3.0, p0 + 2.0 * (p3 - p0) / 3.0, p3]))
        at += c + 1
    return torch.stack(out) if out else points.new_zeros(0, 4, 2)


def _pieces(layer: Layer, tolerance: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Line pieces ``(L, 2)`` starts/ends of the layer's outlines and the contour of each."""
    ctrl = layer.segments.unsqueeze(0)
    starts, ends, seg = flatten_cubics(ctrl, flatten_counts(ctrl, tolerance))
    return starts[0], ends[0], layer.contour.to(starts.device)[seg]


def _closing(starts: torch.Tensor, ends: torch.Tensor, contour: torch.Tensor):
    """Add, for every contour whose end is not its start, the line back to the start."""
    extra_a, extra_b = [], []
    for c in torch.unique(contour).tolist():
        idx = torch.nonzero(contour == c).squeeze(1)
        first, last = starts[idx[0]], ends[idx[-1]]
        if float((first - last).detach().abs().max()) > 1e-6:
            extra_a.append(last)
            extra_b.append(first)
    if not extra_a:
        return starts, ends
    return torch.cat([starts, torch.stack(extra_a)]), torch.cat([ends, torch.stack(extra_b)])


def _distance(starts: torch.Tensor, ends: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    """Distance from each pixel centre ``(P, 2)`` to the nearest piece; gradients through that piece only."""
    with torch.no_grad():
        a, b = starts.detach(), ends.detach()
        best = torch.empty(px.shape[0], dtype=torch.long, device=px.device)
        step = max(1, _CHUNK // max(1, a.shape[0]))
        for lo in range(0, px.shape[0], step):
            chunk = px[lo : lo + step]
            best[lo : lo + step] = _piece_distance2(a[None], b[None], chunk[:, :1], chunk[:, 1:]).argmin(1)
    return torch.sqrt(_piece_distance2(starts[best], ends[best], px[:, :1], px[:, 1:]).squeeze(1) + 1e-12)


@torch.no_grad()
def _inside(starts: torch.Tensor, ends: torch.Tensor, px: torch.Tensor, even_odd: bool) -> torch.Tensor:
    """Whether each pixel centre is inside the closed outline (crossings of a ray towards +x)."""
    a, b = starts.detach(), ends.detach()
    inside = torch.empty(px.shape[0], dtype=torch.bool, device=px.device)
    step = max(1, _CHUNK // max(1, a.shape[0]))
    for lo in range(0, px.shape[0], step):
        p = px[lo : lo + step, None]
        ay, by = a[None, :, 1], b[None, :, 1]
        spans = (ay > p[..., 1]) != (by > p[..., 1])
        x_cross = a[None, :, 0] + (p[..., 1] - ay) * (b[None, :, 0] - a[None, :, 0]) / torch.where(
            by == ay, torch.ones_like(by), by - ay)
        hits = spans & (x_cross > p[..., 0])
        if even_odd:
            inside[lo : lo + step] = hits.sum(1) % 2 == 1
        else:
            direction = torch.where(by > ay, 1, -1)
            inside[lo : lo + step] = (hits * direction).sum(1) != 0
    return inside


def rasterize_layers(layers: Sequence[Layer], height: int, width: int, *, tolerance: float = 0.1,
                     device: Optional[torch.device] = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Composite ``layers`` in order onto a transparent ``height`` x ``width`` canvas.

    Args:
        layers: the groups, bottom first.
        height: canvas height in pixels.
        width: canvas width in pixels.
        tolerance: largest distance in pixels between a curve and its flattened pieces.
        device: where the canvas lives when no layer has segments to say so (default: the CPU).
        dtype: the canvas dtype in that case.

    Returns:
        ``(4, H, W)`` premultiplied RGBA, differentiable in the layers' points, widths and colours.
    """
    ref = next((layer.segments for layer in layers if layer.segments.numel()), None)
    if ref is None:
        ref = torch.zeros(1, device=device, dtype=dtype)
    canvas = ref.new_zeros(4, height, width)
    for layer in layers:
        if layer.segments.shape[0] == 0 or (layer.fill_color is None and layer.stroke_color is None):
            continue
        starts, ends, contour = _pieces(layer, tolerance)
        reach = float(layer.stroke_width.detach().max()) if layer.stroke_color is not None else 0.0
        reach += _EDGE + 1.0
        lo = torch.minimum(starts, ends).detach().amin(0) - reach
        hi = torch.maximum(starts, ends).detach().amax(0) + reach
        x0, y0 = max(0, int(lo[0].floor())), max(0, int(lo[1].floor()))
        x1, y1 = min(width, int(hi[0].ceil()) + 1), min(height, int(hi[1].ceil()) + 1)
        if x0 >= x1 or y0 >= y1:
            continue
        ys = torch.arange(y0, y1, device=ref.device, dtype=ref.dtype) + 0.5
        xs = torch.arange(x0, x1, device=ref.device, dtype=ref.dtype) + 0.5
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        px = torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)
        paints = []
        if layer.fill_color is not None:
            fa, fb = _closing(starts, ends, contour)
            d = _distance(fa, fb, px)
            sign = torch.where(_inside(fa, fb, px, layer.even_odd), 1.0, -1.0).to(d.dtype)
            paints.append(((_EDGE + sign * d).clamp(0.0, 1.0), layer.fill_color))
        if layer.stroke_color is not None:
            d = _distance(starts, ends, px)
            paints.append(((layer.stroke_width + _EDGE - d).clamp(0.0, 1.0), layer.stroke_color))
        for coverage, color in paints:
            alpha = (coverage * color[3]).reshape(1, y1 - y0, x1 - x0)
            paint = torch.cat([color[:3], color.new_ones(1)]).reshape(4, 1, 1) * alpha
            window = canvas[:, y0:y1, x0:x1] * (1.0 - alpha) + paint
            canvas = torch.cat([
                canvas[:, :y0],
                torch.cat([canvas[:, y0:y1, :x0], window, canvas[:, y0:y1, x1:]], 2),
                canvas[:, y1:],
            ], 1)
    return canvas
