"""Differentiable rendering of open cubic-Bezier strokes (pure PyTorch; pydiffvg optional).

``render/`` knows nothing of CLIP: scenes in, RGB images out, gradients back to control points,
widths and colours. Quick start::

    from clipag_plugin.render import StrokeScene, render
    scene = StrokeScene.from_paths([pts], [torch.tensor(1.0)], [torch.tensor([1., 0, 0, 1])], 224, 224)
    image = render(scene)            # (3, 224, 224), white background
    scene.save_svg("strokes.svg")
"""

from .backends import BACKENDS as BACKENDS
from .backends import HAS_DIFFVG as HAS_DIFFVG
from .backends import resolve_backend as resolve_backend
from .bezier import cubic_point as cubic_point
from .raster import rasterize_strokes as rasterize_strokes
from .scene import StrokeScene as StrokeScene
from .scene import render as render
from .svg import strokes_to_svg as strokes_to_svg

__all__ = [
    "BACKENDS", "HAS_DIFFVG", "StrokeScene", "cubic_point", "rasterize_strokes", "render", "resolve_backend",
    "strokes_to_svg",
]
