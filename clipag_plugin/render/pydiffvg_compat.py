"""pydiffvg's Python interface over clipag's own rasterizer: CLIPDraw-style code without building diffvg.

pydiffvg is not on the package index; building it needs CMake, a compiler and, for CUDA, the
CUDA toolkit. This module offers the calls CLIP-guided drawing code makes (the CLIPDraw notebook
and its forks)::

    import clipag_plugin.render.pydiffvg_compat as pydiffvg     # or: the CLIPDraw adapter
    path = pydiffvg.Path(num_control_points=torch.tensor([2]), points=pts, is_closed=False,
                         stroke_width=torch.tensor(1.0))
    group = pydiffvg.ShapeGroup(shape_ids=torch.tensor([0]), fill_color=None, stroke_color=rgba)
    args = pydiffvg.RenderFunction.serialize_scene(224, 224, [path], [group])
    img = pydiffvg.RenderFunction.apply(224, 224, 2, 2, 0, None, *args)     # (224, 224, 4)

``apply`` returns what pydiffvg returns: an ``H x W x 4`` tensor of straight (not premultiplied)
RGB and alpha, the colour divided by the alpha where the alpha is above 1e-6, gradients to points,
stroke widths and colours. Open strokes only (CLIPDraw) go through the tiled stroke rasterizer;
fills, closed paths, polygons, rectangles, circles, ellipses and several shapes per group through
:mod:`clipag_plugin.render.shapes`. Differences from diffvg: edges are anti-aliased analytically
(deterministic; the sample counts and the seed are accepted and ignored), per-point stroke widths
are averaged per path, and colour gradients (``LinearGradient``, ``RadialGradient``) are not
supported (a clear error says so).

The CLIPDraw adapter registers this module as ``pydiffvg`` when the real one is not installed;
when it is, the real one is used.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any, Optional, Sequence
from xml.sax.saxutils import quoteattr

import torch

from .raster import rasterize_strokes
from .shapes import Layer, cubic_segments, rasterize_layers
from .svg import _num as _svg_number
from .svg import _rgb

__clipag_compat__ = True  # lets clipag tell this module from the real pydiffvg

__all__ = [
    "Path", "Polygon", "Rect", "Circle", "Ellipse", "ShapeGroup", "LinearGradient", "RadialGradient",
    "RenderFunction", "imwrite", "save_svg", "set_print_timing", "set_use_gpu", "get_use_gpu", "set_device",
    "get_device",
]

_state = {"use_gpu": torch.cuda.is_available(), "device": None, "print_timing": False}


def set_print_timing(value: bool) -> None:
    """Accepted for compatibility (this renderer prints no timings)."""
    _state["print_timing"] = bool(value)


def set_use_gpu(value: bool) -> None:
    """Use CUDA when ``value`` and CUDA is available (as pydiffvg's ``set_use_gpu``)."""
    _state["use_gpu"] = bool(value) and torch.cuda.is_available()
    if not _state["use_gpu"]:
        _state["device"] = torch.device("cpu")


def get_use_gpu() -> bool:
    """Whether rendering happens on CUDA."""
    return bool(_state["use_gpu"])


def set_device(device: Any) -> None:
    """Render on ``device``; a CUDA device on a machine without CUDA becomes the CPU (with a warning)."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        warnings.warn("pydiffvg (clipag): no CUDA on this machine; rendering on the CPU", stacklevel=2)
        device = torch.device("cpu")
    _state["device"] = device
    _state["use_gpu"] = device.type == "cuda"


def get_device() -> torch.device:
    """The device :func:`set_device` chose (CUDA when available, as pydiffvg's default)."""
    if _state["device"] is None:
        _state["device"] = torch.device("cuda" if _state["use_gpu"] else "cpu")
    return _state["device"]


class Path:
    """A path of line (0), quadratic (1) and cubic (2 control points) segments, open or closed."""

    def __init__(self, num_control_points, points, is_closed, stroke_width=torch.tensor(1.0), id="",
                 use_distance_approx=False):
        self.num_control_points = num_control_points
        self.points = points
        self.is_closed = is_closed
        self.stroke_width = stroke_width
        self.id = id
        self.use_distance_approx = use_distance_approx


class Polygon:
    """A polyline through ``points``, closed or not."""

    def __init__(self, points, is_closed, stroke_width=torch.tensor(1.0), id=""):
        self.points = points
        self.is_closed = is_closed
        self.stroke_width = stroke_width
        self.id = id


class Rect:
    """An axis-aligned rectangle from ``p_min`` to ``p_max``."""

    def __init__(self, p_min, p_max, stroke_width=torch.tensor(1.0), id=""):
        self.p_min = p_min
        self.p_max = p_max
        self.stroke_width = stroke_width
        self.id = id


class Circle:
    """A circle of ``radius`` around ``center``."""

    def __init__(self, radius, center, stroke_width=torch.tensor(1.0), id=""):
        self.radius = radius
        self.center = center
        self.stroke_width = stroke_width
        self.id = id


class Ellipse:
    """An axis-aligned ellipse with radii ``radius`` (2,) around ``center``."""

    def __init__(self, radius, center, stroke_width=torch.tensor(1.0), id=""):
        self.radius = radius
        self.center = center
        self.stroke_width = stroke_width
        self.id = id


_IDENTITY = torch.eye(3)


class ShapeGroup:
    """Shapes painted together with one fill and/or one stroke colour (straight RGBA)."""

    def __init__(self, shape_ids, fill_color, use_even_odd_rule=True, stroke_color=None,
                 shape_to_canvas=_IDENTITY, id=""):
        self.shape_ids = shape_ids
        self.fill_color = fill_color
        self.use_even_odd_rule = use_even_odd_rule
        self.stroke_color = stroke_color
        self.shape_to_canvas = shape_to_canvas
        self.id = id


class LinearGradient:
    """Accepted so that scenes build; rendering one raises (colour gradients are not supported)."""

    def __init__(self, begin=None, end=None, offsets=None, stop_colors=None):
        self.begin, self.end, self.offsets, self.stop_colors = begin, end, offsets, stop_colors


class RadialGradient:
    """Accepted so that scenes build; rendering one raises (colour gradients are not supported)."""

    def __init__(self, center=None, radius=None, offsets=None, stop_colors=None):
        self.center, self.radius, self.offsets, self.stop_colors = center, radius, offsets, stop_colors


class _Scene:
    """What ``serialize_scene`` hands to ``apply``: the shapes and groups themselves (so gradients flow)."""

    def __init__(self, width: int, height: int, shapes: Sequence[Any], groups: Sequence[ShapeGroup]):
        self.width, self.height, self.shapes, self.groups = width, height, list(shapes), list(groups)

    def shape(self, index: Any) -> Any:
        """The shape a group refers to, with an error naming the index when there is none."""
        index = int(index)
        if not 0 <= index < len(self.shapes):
            raise IndexError(f"pydiffvg (clipag): a ShapeGroup refers to shape {index}, but there are "
                             f"{len(self.shapes)} shapes")
        return self.shapes[index]


_KAPPA = 4.0 * (math.sqrt(2.0) - 1.0) / 3.0  # cubic control distance of a quarter circle


def _ellipse_points(center: torch.Tensor, rx: torch.Tensor, ry: torch.Tensor) -> torch.Tensor:
    """Twelve points (four closed cubic arcs) of an ellipse."""
    rows = []
    for angle in range(4):
        c0, s0 = math.cos(angle * math.pi / 2), math.sin(angle * math.pi / 2)
        c1, s1 = math.cos((angle + 1) * math.pi / 2), math.sin((angle + 1) * math.pi / 2)
        rows += [(c0, s0), (c0 - _KAPPA * s0, s0 + _KAPPA * c0), (c1 + _KAPPA * s1, s1 - _KAPPA * c1)]
    unit = torch.tensor(rows, dtype=center.dtype, device=center.device)
    return center + unit * torch.stack([rx, ry]).reshape(1, 2)


def _outline(shape: Any) -> tuple[torch.Tensor, bool]:
    """``(cubic segments (S, 4, 2), closed)`` of any supported shape."""
    if isinstance(shape, Path):
        counts = torch.as_tensor(shape.num_control_points).reshape(-1).tolist()
        return cubic_segments(shape.points, counts, bool(shape.is_closed)), bool(shape.is_closed)
    if isinstance(shape, Polygon):
        n = shape.points.shape[0] if shape.is_closed else shape.points.shape[0] - 1
        return cubic_segments(shape.points, [0] * n, bool(shape.is_closed)), bool(shape.is_closed)
    if isinstance(shape, Rect):
        lo, hi = shape.p_min, shape.p_max
        corners = torch.stack([lo, torch.stack([hi[0], lo[1]]), hi, torch.stack([lo[0], hi[1]])])
        return cubic_segments(corners, [0, 0, 0, 0], True), True
    if isinstance(shape, Circle):
        r = torch.as_tensor(shape.radius).reshape(())
        return cubic_segments(_ellipse_points(shape.center, r, r), [2] * 4, True), True
    if isinstance(shape, Ellipse):
        r = torch.as_tensor(shape.radius).reshape(-1)
        return cubic_segments(_ellipse_points(shape.center, r[0], r[-1]), [2] * 4, True), True
    raise TypeError(f"pydiffvg (clipag): unsupported shape {type(shape).__name__}; supported: Path, Polygon, Rect, "
                    f"Circle, Ellipse")


def _width(shape: Any) -> torch.Tensor:
    width = shape.stroke_width
    if isinstance(width, torch.Tensor) and width.ndim == 0:
        return width
    width = torch.as_tensor(width)
    return width.mean() if width.numel() > 1 else width.reshape(())


def _color(color: Any, what: str) -> Optional[torch.Tensor]:
    if color is None or isinstance(color, torch.Tensor):
        return color
    raise NotImplementedError(
        f"pydiffvg (clipag): {what} is a {type(color).__name__}; only constant RGBA colours are supported by "
        f"clipag's renderer (install the real pydiffvg for colour gradients)"
    )


_IDENTITIES: dict[int, tuple[Any, int, bool]] = {}  # shape_to_canvas tensors seen: (tensor, version, identity?)


def _is_identity(matrix: Any) -> bool:
    """Whether a ``shape_to_canvas`` is the identity, compared on the matrix's own device (cached per
    tensor and in-place version: a scene is re-serialized every step, and each answer is a sync on CUDA)."""
    if matrix is _IDENTITY:
        return True
    if not isinstance(matrix, torch.Tensor):
        matrix = torch.as_tensor(matrix)
        return tuple(matrix.shape) == (3, 3) and torch.equal(matrix, torch.eye(3, dtype=matrix.dtype))
    hit = _IDENTITIES.get(id(matrix))
    if hit is not None and hit[0] is matrix and hit[1] == matrix._version:
        return hit[2]
    if len(_IDENTITIES) > 65536:
        _IDENTITIES.clear()
    answer = tuple(matrix.shape) == (3, 3) and torch.equal(
        matrix.detach(), torch.eye(3, dtype=matrix.dtype, device=matrix.device))
    _IDENTITIES[id(matrix)] = (matrix, matrix._version, answer)
    return answer


def _transform(segments: torch.Tensor, matrix: Any) -> torch.Tensor:
    if _is_identity(matrix):
        return segments
    matrix = torch.as_tensor(matrix).to(segments)
    return segments @ matrix[:2, :2].T + matrix[:2, 2]


_CUBIC_ONLY: dict[int, tuple[torch.Tensor, bool]] = {}  # num_control_points tensors seen, by id


def _all_cubic(counts: Any) -> bool:
    """Whether every segment has two control points (cached: a scene is re-serialized every step)."""
    if not isinstance(counts, torch.Tensor):
        return all(int(c) == 2 for c in counts)
    hit = _CUBIC_ONLY.get(id(counts))
    if hit is not None and hit[0] is counts:
        return hit[1]
    if len(_CUBIC_ONLY) > 65536:
        _CUBIC_ONLY.clear()
    result = bool((counts == 2).all())
    _CUBIC_ONLY[id(counts)] = (counts, result)
    return result


def _open_strokes(scene: _Scene) -> Optional[tuple[list, list]]:
    """``(paths, groups)`` when every group is one open cubic Path with a stroke and no fill
    (CLIPDraw's scenes, drawn by the tiled stroke rasterizer), else None.

    Runs every step on every group, so the checks read plain attributes and cached answers only."""
    shapes, paths = scene.shapes, []
    for group in scene.groups:
        if group.fill_color is not None or not isinstance(group.stroke_color, torch.Tensor):
            return None
        ids = group.shape_ids
        cached = group.__dict__.get("_clipag_index")
        if cached is not None and cached[0] is ids:  # shape_ids of a group rarely change: skip int(tensor)
            index = cached[1]
        else:
            if (ids.numel() if isinstance(ids, torch.Tensor) else len(ids)) != 1:
                return None
            index = int(ids[0])
            group._clipag_index = (ids, index)
        if not _is_identity(group.shape_to_canvas):
            return None
        shape = shapes[index] if 0 <= index < len(shapes) else scene.shape(index)  # the latter raises
        if type(shape) is not Path or shape.is_closed:
            return None
        if not _all_cubic(shape.num_control_points):
            return None
        paths.append(shape)
    return paths, scene.groups


def _render_premultiplied(scene: _Scene, premultiplied: bool = True) -> torch.Tensor:
    """``(4, H, W)`` RGBA of the scene: premultiplied, or straight (colour / alpha) when asked."""
    strokes = _open_strokes(scene) if scene.groups else None
    if strokes is not None:
        paths, groups = strokes
        points = torch.cat([s.points for s in paths]).to(get_device())
        segments = [s.points.shape[0] // 3 for s in paths]
        widths = torch.stack([_width(s) for s in paths]).to(points)
        colors = torch.stack([g.stroke_color for g in groups]).to(points)
        return rasterize_strokes(points, segments, widths, colors, scene.height, scene.width, None,
                                 premultiplied=premultiplied)
    layers = []
    for group in scene.groups:
        ids = torch.as_tensor(group.shape_ids).reshape(-1).tolist()
        fill, stroke = _color(group.fill_color, "fill_color"), _color(group.stroke_color, "stroke_color")
        outlines = [_transform(_outline(scene.shape(i))[0].to(get_device()), group.shape_to_canvas) for i in ids]
        if fill is not None and outlines:
            # one fill over all the group's outlines: the winding number sums over them (holes)
            segments = torch.cat(outlines)
            contour = torch.repeat_interleave(torch.arange(len(outlines), device=segments.device),
                                              torch.tensor([o.shape[0] for o in outlines], device=segments.device))
            layers.append(Layer(segments, contour, fill_color=fill.to(segments),
                                even_odd=bool(group.use_even_odd_rule)))
        if stroke is not None:
            for index, segments in zip(ids, outlines, strict=True):  # each shape keeps its own stroke width
                layers.append(Layer(segments, torch.zeros(segments.shape[0], dtype=torch.long, device=segments.device),
                                    stroke_width=_width(scene.shape(index)).to(segments),
                                    stroke_color=stroke.to(segments)))
    out = rasterize_layers(layers, scene.height, scene.width, device=get_device())
    return out if premultiplied else _straight(out)


def _straight(premultiplied: torch.Tensor) -> torch.Tensor:
    """Colour divided by alpha where the alpha is above 1e-6 (pydiffvg's output), alpha kept."""
    color, alpha = premultiplied[:3], premultiplied[3:]
    covered = alpha > 1e-6
    color = torch.where(covered, color / torch.where(covered, alpha, torch.ones_like(alpha)), 0.0)
    return torch.cat([color, alpha])


class RenderFunction:
    """pydiffvg's entry point: ``serialize_scene`` then ``apply`` (autograd comes from PyTorch ops)."""

    @staticmethod
    def serialize_scene(canvas_width: int, canvas_height: int, shapes: Sequence[Any], shape_groups: Sequence[Any],
                        filter: Any = None, output_type: Any = None, use_prefiltering: bool = False,
                        eval_positions: Any = None) -> list:
        """The scene as the argument list ``apply`` takes (here: one object holding the shapes).

        Args:
            canvas_width: width in pixels.
            canvas_height: height in pixels.
            shapes: Path, Polygon, Rect, Circle or Ellipse objects.
            shape_groups: ShapeGroup objects referring to ``shapes`` by index.
            filter: accepted and ignored (edges are box-filtered analytically).
            output_type: accepted; only colour output is supported.
            use_prefiltering: accepted and ignored.
            eval_positions: accepted and ignored.

        Returns:
            ``[scene]``, to be passed on as ``*scene_args``.
        """
        return [_Scene(int(canvas_width), int(canvas_height), shapes, shape_groups)]

    @staticmethod
    def apply(width: int, height: int, num_samples_x: int, num_samples_y: int, seed: int,
              background_image: Optional[torch.Tensor], *scene_args: Any) -> torch.Tensor:
        """Render; returns ``(height, width, 4)`` straight RGB + alpha, as pydiffvg does.

        Args:
            width: canvas width in pixels.
            height: canvas height in pixels.
            num_samples_x: accepted and ignored (analytic anti-aliasing).
            num_samples_y: accepted and ignored.
            seed: accepted and ignored (rendering is deterministic).
            background_image: ``(H, W, 4)`` straight RGBA under the scene, or None (transparent).
            scene_args: what :meth:`serialize_scene` returned.

        Returns:
            ``(H, W, 4)``: colour divided by alpha where alpha > 1e-6, then alpha.
        """
        if len(scene_args) != 1 or not isinstance(scene_args[0], _Scene):
            raise TypeError("pydiffvg (clipag): pass the list serialize_scene returned, as *scene_args")
        scene = scene_args[0]
        if (scene.width, scene.height) != (int(width), int(height)):
            scene = _Scene(int(width), int(height), scene.shapes, scene.groups)
        if background_image is None:
            return _render_premultiplied(scene, premultiplied=False).permute(1, 2, 0)
        premultiplied = _render_premultiplied(scene)
        color, alpha = premultiplied[:3], premultiplied[3:]
        bg = background_image.to(premultiplied).permute(2, 0, 1)
        bg_alpha = bg[3:] if bg.shape[0] == 4 else torch.ones_like(alpha)
        color = color + bg[:3] * bg_alpha * (1.0 - alpha)
        alpha = alpha + bg_alpha * (1.0 - alpha)
        return _straight(torch.cat([color, alpha])).permute(1, 2, 0)


def imwrite(img: Any, filename: str, gamma: float = 2.2, normalize: bool = False) -> None:
    """Write an ``H x W x C`` image in [0, 1] (tensor or array) as 8-bit, colour raised to ``1 / gamma``.

    Args:
        img: the image; 3 or 4 channels, or 2-D for grey.
        filename: where to write (folders are created).
        gamma: display gamma applied to the colour channels (not alpha).
        normalize: stretch the values to [0, 1] first.
    """
    import numpy as np
    from PIL import Image

    array = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    array = array.astype(np.float32)
    if normalize and array.max() > array.min():
        array = (array - array.min()) / (array.max() - array.min())
    array = np.clip(array, 0.0, 1.0)
    if array.ndim == 2:
        array = array[..., None]
    array[..., :3] = array[..., :3] ** (1.0 / gamma)
    folder = os.path.dirname(filename)
    if folder:
        os.makedirs(folder, exist_ok=True)
    data = (array * 255).astype(np.uint8)
    Image.fromarray(data[..., 0] if data.shape[-1] == 1 else data).save(filename)


def _svg_rgb(color: torch.Tensor) -> tuple[str, str]:
    c = color.detach().cpu().clamp(0, 1).tolist()
    return _rgb(c[:3]), _svg_number(c[3])


def save_svg(filename: str, width: int, height: int, shapes: Sequence[Any], shape_groups: Sequence[Any],
             use_gamma: bool = False, background: Optional[str] = None) -> None:
    """Write the scene as SVG: one ``<path>`` per shape, groups' fill and stroke as attributes.

    Stroke widths are written as twice pydiffvg's ``stroke_width`` (a half thickness), as
    pydiffvg's own ``save_svg`` does.

    Args:
        filename: where to write.
        width: canvas width in pixels.
        height: canvas height in pixels.
        shapes: the scene's shapes.
        shape_groups: the scene's groups.
        use_gamma: accepted for compatibility.
        background: an SVG colour painted under everything, or None (transparent).
    """
    lines = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{int(width)}" height="{int(height)}" '
             f'viewBox="0 0 {int(width)} {int(height)}">']
    if background is not None:
        lines.append(f'  <rect width="100%" height="100%" fill={quoteattr(background)}/>')
    for group in shape_groups:
        fill = _color(group.fill_color, "fill_color")
        stroke = _color(group.stroke_color, "stroke_color")
        attrs = []
        if fill is None:
            attrs.append('fill="none"')
        else:
            rgb, opacity = _svg_rgb(fill)
            rule = "evenodd" if group.use_even_odd_rule else "nonzero"
            attrs.append(f'fill="{rgb}" fill-opacity="{opacity}" fill-rule="{rule}"')
        for index in torch.as_tensor(group.shape_ids).reshape(-1).tolist():
            shape = shapes[index]
            segments, closed = _outline(shape)
            segments = _transform(segments.detach().cpu(), group.shape_to_canvas)
            parts = []
            for k, seg in enumerate(segments.tolist()):
                if k == 0:
                    parts.append(f"M {_svg_number(seg[0][0])} {_svg_number(seg[0][1])}")
                parts.append("C " + " ".join(f"{_svg_number(x)} {_svg_number(y)}" for x, y in seg[1:]))
            if closed:
                parts.append("Z")
            stroke_attr = ""
            if stroke is not None:
                rgb, opacity = _svg_rgb(stroke)
                stroke_attr = (f' stroke="{rgb}" stroke-opacity="{opacity}" stroke-width='
                               f'"{_svg_number(2 * float(_width(shape).detach()))}" stroke-linecap="round" '
                               f'stroke-linejoin="round"')
            lines.append(f'  <path d="{" ".join(parts)}" {" ".join(attrs)}{stroke_attr}/>')
    lines.append("</svg>")
    folder = os.path.dirname(filename)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(filename, "w") as handle:
        handle.write("\n".join(lines) + "\n")
