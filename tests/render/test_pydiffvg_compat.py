"""pydiffvg's interface over clipag's rasterizer: the calls the CLIPDraw notebook and its forks make."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from PIL import Image

import clipag_plugin.render.pydiffvg_compat as pydiffvg
from clipag_plugin.render import StrokeScene, render

W = H = 64


def _stroke_scene(n_paths: int = 12, seed: int = 0):
    """A CLIPDraw-style start scene: open cubic paths of 1-3 segments, random RGBA strokes."""
    g = torch.Generator().manual_seed(seed)
    shapes, groups = [], []
    for _ in range(n_paths):
        n = int(torch.randint(1, 4, (1,), generator=g))
        start = torch.rand(1, 2, generator=g) * W
        steps = (torch.rand(3 * n, 2, generator=g) - 0.5) * 12
        points = torch.cat([start, start + torch.cumsum(steps, 0)])
        shapes.append(pydiffvg.Path(num_control_points=torch.zeros(n, dtype=torch.int32) + 2, points=points,
                                    stroke_width=torch.tensor(1.5), is_closed=False))
        groups.append(pydiffvg.ShapeGroup(shape_ids=torch.tensor([len(shapes) - 1]), fill_color=None,
                                          stroke_color=torch.rand(4, generator=g)))
    return shapes, groups


def _render(shapes, groups, width=W, height=H, background=None):
    args = pydiffvg.RenderFunction.serialize_scene(width, height, shapes, groups)
    return pydiffvg.RenderFunction.apply(width, height, 2, 2, 0, background, *args)


def test_rgba_layout_range_and_the_notebooks_compositing_match_the_stroke_renderer():
    shapes, groups = _stroke_scene()
    img = _render(shapes, groups)
    assert img.shape == (H, W, 4) and float(img.min()) >= 0 and float(img.max()) <= 1 + 1e-6
    assert float(img[..., 3].min()) == 0.0 and float(img[..., 3].max()) > 0.5  # transparent where nothing is
    # straight colour: where alpha is 0 the colour is 0, as pydiffvg returns it
    assert float(img[..., :3][img[..., 3] == 0].abs().max()) == 0.0
    over_white = img[:, :, 3:4] * img[:, :, :3] + torch.ones(H, W, 3) * (1 - img[:, :, 3:4])
    scene = StrokeScene.from_paths([s.points for s in shapes], [s.stroke_width for s in shapes],
                                   [g.stroke_color for g in groups], H, W)
    torch.testing.assert_close(over_white.permute(2, 0, 1), render(scene, backend="torch"), atol=1e-5, rtol=0)


def test_gradients_reach_points_widths_and_colours():
    shapes, groups = _stroke_scene()
    for shape in shapes:
        shape.points.requires_grad_(True)
        shape.stroke_width.requires_grad_(True)
    for group in groups:
        group.stroke_color.requires_grad_(True)
    img = _render(shapes, groups)
    (img[..., :3] * img[..., 3:]).sum().backward()
    assert all(s.points.grad is not None and float(s.points.grad.abs().sum()) > 0 for s in shapes)
    assert all(float(s.stroke_width.grad.abs()) > 0 for s in shapes)
    assert all(float(g.stroke_color.grad.abs().sum()) > 0 for g in groups)


def test_filled_shapes_cover_their_area():
    circle = pydiffvg.Circle(radius=torch.tensor(20.0), center=torch.tensor([32.3, 31.7]))
    rect = pydiffvg.Rect(p_min=torch.tensor([5.25, 6.5]), p_max=torch.tensor([25.25, 16.5]))
    red = torch.tensor([1.0, 0.0, 0.0, 1.0])
    for shape, area in ((circle, math.pi * 400), (rect, 200.0)):
        img = _render([shape], [pydiffvg.ShapeGroup(shape_ids=torch.tensor([0]), fill_color=red)])
        assert abs(float(img[..., 3].sum()) - area) < 0.01 * area
        inside = img[img[..., 3] > 0.99][:, :3]
        assert inside.shape[0] > 0.8 * area and torch.allclose(inside, red[:3].expand_as(inside))


def test_fill_rules_on_nested_outlines():
    """Two nested squares drawn the same way round: even-odd leaves a hole, nonzero fills it."""
    outer = [[8.3, 8.3], [56.3, 8.3], [56.3, 56.3], [8.3, 56.3]]
    inner = [[20.3, 20.3], [44.3, 20.3], [44.3, 44.3], [20.3, 44.3]]
    path = pydiffvg.Path(num_control_points=torch.zeros(4, dtype=torch.int32), points=torch.tensor(outer),
                         is_closed=True)
    hole = pydiffvg.Path(num_control_points=torch.zeros(4, dtype=torch.int32), points=torch.tensor(inner),
                         is_closed=True)
    both = torch.tensor([0, 1])
    white = torch.ones(4)
    even = _render([path, hole], [pydiffvg.ShapeGroup(shape_ids=both, fill_color=white, use_even_odd_rule=True)])
    nonzero = _render([path, hole], [pydiffvg.ShapeGroup(shape_ids=both, fill_color=white, use_even_odd_rule=False)])
    assert float(even[12, 12, 3]) == pytest.approx(1.0) and float(even[32, 32, 3]) == 0.0  # a hole
    assert float(nonzero[12, 12, 3]) == pytest.approx(1.0) and float(nonzero[32, 32, 3]) == pytest.approx(1.0)


def test_lines_quadratics_and_closed_paths_are_elevated_exactly():
    from clipag_plugin.render.shapes import cubic_segments

    pts = torch.tensor([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]], dtype=torch.float64)
    segs = cubic_segments(pts, [0, 1], closed=True)  # a line to (10, 0), then a quadratic back to the start
    assert segs.shape == (2, 4, 2)
    torch.testing.assert_close(segs[0, 1], torch.tensor([10 / 3, 0.0], dtype=torch.float64))
    torch.testing.assert_close(segs[1, 3], pts[0])
    # the elevated quadratic passes through the quadratic's midpoint
    from clipag_plugin.render import cubic_point

    mid = cubic_point(segs[1], torch.tensor(0.5, dtype=torch.float64))
    torch.testing.assert_close(mid, 0.25 * pts[1] + 0.5 * pts[2] + 0.25 * pts[0])
    with pytest.raises(ValueError, match="needs 3 points"):
        cubic_segments(torch.cat([pts, pts[:1]]), [0, 1], closed=True)
    with pytest.raises(ValueError, match="0 \\(line\\)"):
        cubic_segments(pts, [3], closed=False)


def test_fill_gradcheck_on_the_boundary():
    from clipag_plugin.render.shapes import Layer, cubic_segments, rasterize_layers

    def area(points):
        segs = cubic_segments(points, [0, 0, 0], closed=True)
        layer = Layer(segs, torch.zeros(3, dtype=torch.long), stroke_width=torch.tensor(0.75, dtype=torch.float64),
                      stroke_color=torch.tensor([0.0, 0.0, 1.0, 0.5], dtype=torch.float64),
                      fill_color=torch.tensor([1.0, 0.0, 0.0, 0.8], dtype=torch.float64))
        return rasterize_layers([layer], 24, 24)[:, 4:20, 4:20].sum(dim=(1, 2))

    pts = torch.tensor([[5.3, 6.1], [18.7, 7.4], [10.2, 17.9]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(area, (pts,), eps=1e-4, atol=2e-2, rtol=2e-2)


def test_background_image_and_straight_colour():
    shapes, groups = _stroke_scene(3)
    bg = torch.zeros(H, W, 4)
    bg[..., 1] = 1.0
    bg[..., 3] = 1.0
    img = _render(shapes, groups, background=bg)
    assert torch.allclose(img[..., 3], torch.ones(H, W))  # an opaque background leaves nothing transparent
    corner = img[0, 0] if float(_render(shapes, groups)[0, 0, 3]) == 0 else img[-1, -1]
    assert torch.allclose(corner, torch.tensor([0.0, 1.0, 0.0, 1.0]))


def test_save_svg_and_imwrite(tmp_path):
    shapes, groups = _stroke_scene(3)
    shapes.append(pydiffvg.Circle(radius=torch.tensor(5.0), center=torch.tensor([10.0, 10.0])))
    groups.append(pydiffvg.ShapeGroup(shape_ids=torch.tensor([3]), fill_color=torch.tensor([0.0, 1.0, 0.0, 1.0])))
    pydiffvg.save_svg(str(tmp_path / "out" / "scene.svg"), W, H, shapes, groups)
    root = ET.parse(tmp_path / "out" / "scene.svg").getroot()
    paths = [e for e in root.iter() if e.tag.endswith("path")]
    assert len(paths) == 4
    assert paths[0].get("stroke-width") == "3" and paths[0].get("fill") == "none"  # twice the half-width
    assert paths[3].get("fill") == "rgb(0, 255, 0)" and paths[3].get("d").endswith("Z")
    img = _render(shapes, groups)
    pydiffvg.imwrite(img, str(tmp_path / "img.png"), gamma=1.0)
    saved = np.asarray(Image.open(tmp_path / "img.png"))
    assert saved.shape == (H, W, 4)
    assert np.abs(saved.astype(float) / 255 - img.detach().numpy()).max() <= 1 / 255 + 1e-6


def test_unsupported_input_is_named():
    shapes, groups = _stroke_scene(1)
    groups[0].stroke_color = pydiffvg.LinearGradient()
    with pytest.raises(NotImplementedError, match="LinearGradient"):
        _render(shapes, groups)
    with pytest.raises(IndexError, match="shape 5"):
        _render(shapes, [pydiffvg.ShapeGroup(torch.tensor([5]), None, stroke_color=torch.ones(4))])
    with pytest.raises(IndexError, match="shape 5"):
        _render(shapes, [pydiffvg.ShapeGroup(torch.tensor([5]), torch.ones(4))])
    with pytest.raises(TypeError, match="serialize_scene"):
        pydiffvg.RenderFunction.apply(W, H, 2, 2, 0, None, "not a scene")


def test_device_helpers_fall_back_to_the_cpu_without_cuda():
    pydiffvg.set_print_timing(False)
    pydiffvg.set_use_gpu(torch.cuda.is_available())
    if not torch.cuda.is_available():
        with pytest.warns(UserWarning, match="no CUDA"):
            pydiffvg.set_device(torch.device("cuda"))
        assert pydiffvg.get_device() == torch.device("cpu") and not pydiffvg.get_use_gpu()
    pydiffvg.set_device(torch.device("cpu"))
    assert pydiffvg.get_device().type == "cpu"


def test_real_pydiffvg_detection_ignores_the_stand_in(monkeypatch):
    import sys

    from clipag_plugin.render import backends

    monkeypatch.setitem(sys.modules, "pydiffvg", pydiffvg)
    assert backends._real_diffvg_installed() is False


def _on_cuda(monkeypatch):
    """Render "on CUDA": pydiffvg's device is CUDA and tensors moved there are marked (tests/virtual_cuda.py)."""
    from tests.virtual_cuda import CUDA, VirtualCuda

    monkeypatch.setitem(pydiffvg._state, "device", CUDA)
    return VirtualCuda()


def test_the_notebooks_scene_renders_on_the_device_with_cpu_parameters(monkeypatch):
    """The CLIPDraw notebook keeps its points and colours on the CPU and composites the output with
    ``torch.ones(..., device=pydiffvg.get_device())``: the output must be on that device."""
    shapes, groups = _stroke_scene()
    reference = _render(shapes, groups)
    with _on_cuda(monkeypatch):
        img = _render(shapes, groups)
        assert img.device.type == "cuda"
        over_white = img[:, :, 3:4] * img[:, :, :3] + torch.ones(H, W, 3, device=pydiffvg.get_device()) * (
            1 - img[:, :, 3:4])
        assert over_white.device.type == "cuda"
    torch.testing.assert_close(img, reference)


def test_transforms_fills_and_empty_scenes_stay_on_the_device(monkeypatch):
    shapes = [pydiffvg.Rect(p_min=torch.tensor([8.0, 8.0]), p_max=torch.tensor([24.0, 20.0])),
              pydiffvg.Circle(radius=torch.tensor(6.0), center=torch.tensor([40.0, 40.0]))]
    color = torch.tensor([0.9, 0.2, 0.1, 1.0])
    with _on_cuda(monkeypatch):
        device = pydiffvg.get_device()
        moved = torch.tensor([[1.0, 0.0, 10.0], [0.0, 1.0, 5.0], [0.0, 0.0, 1.0]], device=device)
        groups = [pydiffvg.ShapeGroup(shape_ids=torch.tensor([0]), fill_color=color.to(device),
                                      shape_to_canvas=torch.eye(3, device=device)),
                  pydiffvg.ShapeGroup(shape_ids=torch.tensor([1]), fill_color=None, stroke_color=color.to(device),
                                      shape_to_canvas=moved)]
        img = _render(shapes, groups)
        strokes, stroke_groups = _stroke_scene(3)
        for group in stroke_groups:
            group.shape_to_canvas = torch.eye(3, device=device)  # identity on the device: still the fast path
        assert pydiffvg._open_strokes(pydiffvg._Scene(W, H, strokes, stroke_groups)) is not None
        empty = _render([], [])
        assert img.device.type == "cuda" and empty.device.type == "cuda"
    assert float(img[14, 16, 3]) == pytest.approx(1.0) and float(empty.abs().max()) == 0.0
    assert float(img[45, 44, 3]) > 0.5 and float(img[40, 34, 3]) < 0.5  # the circle's stroke moved by (10, 5)
