"""The PyTorch stroke rasterizer: shapes, errors, known answers, compositing, gradients."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest
import torch

from clipag_plugin.render import HAS_DIFFVG, StrokeScene, rasterize_strokes, render, resolve_backend
from clipag_plugin.render.bezier import cubic_point, flatten_counts, flatten_cubics


def line(x0, y0, x1, y1, dtype=torch.float32) -> torch.Tensor:
    """A straight cubic from (x0, y0) to (x1, y1) with evenly spaced control points."""
    t = torch.linspace(0, 1, 4, dtype=torch.float64)[:, None]
    return ((1 - t) * torch.tensor([x0, y0], dtype=torch.float64) + t * torch.tensor([x1, y1], dtype=torch.float64)).to(dtype)


def random_scene(n_paths=12, size=32, seed=0, dtype=torch.float32, batch=None):
    g = torch.Generator().manual_seed(seed)
    segs = torch.randint(1, 4, (n_paths,), generator=g).tolist()
    n_points = sum(3 * s + 1 for s in segs)
    shape = (n_points, 2) if batch is None else (batch, n_points, 2)
    start = torch.rand(shape, generator=g, dtype=dtype) * size
    steps = (torch.rand(shape, generator=g, dtype=dtype) - 0.5) * size * 0.3
    points = start  # scatter each path around its first point
    out, i = [], 0
    for s in segs:
        k = 3 * s + 1
        base = start[..., i : i + 1, :]
        out.append(base + torch.cumsum(steps[..., i : i + k, :], -2) - steps[..., i : i + 1, :])
        i += k
    points = torch.cat(out, -2)
    wshape = (n_paths,) if batch is None else (batch, n_paths)
    widths = 0.8 + torch.rand(wshape, generator=g, dtype=dtype) * 2
    colors = torch.rand(*wshape, 4, generator=g, dtype=dtype)
    return points, segs, widths, colors


# --- smoke and cardinality ---------------------------------------------------------------------
def test_unbatched_and_batched_shapes():
    p, s, w, c = random_scene(batch=3)
    out = rasterize_strokes(p, s, w, c, 20, 28, tolerance=0.01)
    assert out.shape == (3, 3, 20, 28)
    single = rasterize_strokes(p[1], s, w[1], c[1], 20, 28, tolerance=0.01)
    assert single.shape == (3, 20, 28)
    # A batch shares one flattening (the finest any image needs): equal up to the tolerance.
    torch.testing.assert_close(out[1], single, atol=0.011, rtol=0)


def test_empty_scene_is_background():
    out = rasterize_strokes(torch.zeros(0, 2), [], torch.zeros(0), torch.zeros(0, 4), 5, 6, background=(0.2, 0.4, 0.6))
    torch.testing.assert_close(out, torch.tensor([0.2, 0.4, 0.6]).view(3, 1, 1).expand(3, 5, 6))


# --- exceptions ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_segments": [2]}, "control points"),
        ({"num_segments": [0]}, "at least one segment"),
        ({"widths": torch.ones(2)}, "widths"),
        ({"colors": torch.ones(1, 3)}, "RGBA"),
        ({"background": "purple"}, "white"),
        ({"background": torch.ones(3, 4, 4)}, "background tensor"),
        ({"tile": 0}, "tile"),
        ({"points": torch.full((4, 2), float("nan"))}, "NaN"),
    ],
)
def test_bad_arguments_name_the_problem(kwargs, match):
    args = {"points": line(1, 1, 5, 5), "num_segments": [1], "widths": torch.ones(1),
            "colors": torch.ones(1, 4), "height": 8, "width": 8}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        rasterize_strokes(**args)


def test_backend_choice():
    assert resolve_backend("torch", torch.device("cpu")) == "torch"
    assert resolve_backend("auto", torch.device("cpu")) == "torch"
    with pytest.raises(ValueError, match="auto"):
        resolve_backend("cairo", torch.device("cpu"))
    if not HAS_DIFFVG:
        with pytest.raises(ValueError, match="pydiffvg"):
            resolve_backend("diffvg", torch.device("cpu"))


# --- known answers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("half", [0.5, 1.0, 2.5, 6.0])
def test_straight_stroke_coverage_matches_analytic_area(half):
    x0, x1, y = 12.3, 52.7, 20.4
    img = rasterize_strokes(line(x0, y, x1, y), [1], torch.tensor([half]), torch.tensor([[0.0, 0, 0, 1]]), 40, 64)
    coverage = 1 - img[0]
    # Away from the caps every column holds exactly the stroke's thickness.
    torch.testing.assert_close(coverage[:, 20:45].sum(0), torch.full((25,), 2 * half), atol=1e-4, rtol=0)
    # Whole stroke: rectangle + round caps (+ pi/12, the one-pixel box filter on a curved rim).
    area = (x1 - x0) * 2 * half + math.pi * half**2
    assert abs(coverage.sum().item() - area) < 0.01 * area + math.pi / 12 + 1e-3


def test_diagonal_stroke_area():
    p = line(6.2, 5.1, 40.6, 33.9)
    half = 1.5
    img = rasterize_strokes(p, [1], torch.tensor([half]), torch.tensor([[0.0, 0, 0, 1]]), 40, 48, tile=5)
    length = math.dist((6.2, 5.1), (40.6, 33.9))
    area = length * 2 * half + math.pi * half**2
    assert abs((1 - img[0]).sum().item() - area) < 0.01 * area


def test_opaque_colour_in_the_middle_and_background_far_away():
    img = rasterize_strokes(line(2, 8, 30, 8), [1], torch.tensor([3.0]), torch.tensor([[1.0, 0.2, 0.0, 1.0]]),
                            16, 32, background=(0.0, 0.0, 1.0))
    torch.testing.assert_close(img[:, 8, 16], torch.tensor([1.0, 0.2, 0.0]))
    torch.testing.assert_close(img[:, 0, 16], torch.tensor([0.0, 0.0, 1.0]))


def test_over_compositing_follows_path_order():
    bg = torch.tensor([0.1, 0.9, 0.5])
    c1, c2 = torch.tensor([1.0, 0.0, 0.0, 0.6]), torch.tensor([0.0, 0.0, 1.0, 0.3])
    pts = torch.cat([line(2, 10, 30, 10), line(16, 1, 16, 19)])  # a horizontal and a vertical stroke
    w = torch.tensor([3.0, 3.0])
    first = rasterize_strokes(pts, [1, 1], w, torch.stack([c1, c2]), 20, 32, background=bg)
    pts_swapped = torch.cat([line(16, 1, 16, 19), line(2, 10, 30, 10)])
    second = rasterize_strokes(pts_swapped, [1, 1], w, torch.stack([c2, c1]), 20, 32, background=bg)

    def over(top, under):
        return top[:3] * top[3] + (1 - top[3]) * under

    torch.testing.assert_close(first[:, 10, 16], over(c2, over(c1, bg)))
    torch.testing.assert_close(second[:, 10, 16], over(c1, over(c2, bg)))
    assert not torch.allclose(first[:, 10, 16], second[:, 10, 16])


def test_image_background_and_tiles_do_not_change_the_picture():
    p, s, w, c = random_scene(n_paths=20, size=30, seed=3)
    bg = torch.rand(3, 27, 30, generator=torch.Generator().manual_seed(1))
    ref = rasterize_strokes(p, s, w, c, 27, 30, background=bg, tile=8)
    for tile in (1, 5, 16, 64):
        torch.testing.assert_close(rasterize_strokes(p, s, w, c, 27, 30, background=bg, tile=tile), ref,
                                   atol=1e-5, rtol=0)


def test_strokes_off_canvas_are_culled():
    pts = torch.cat([line(-40, -30, -10, -20), line(-5, 5, 10, 5)])  # fully outside, half outside
    img = rasterize_strokes(pts, [1, 1], torch.tensor([2.0, 2.0]), torch.tensor([[0.0, 0, 0, 1]] * 2), 12, 12)
    assert img[:, 5, 4].max() < 1e-6 and img[:, 0, 0].min() == 1.0


def test_flattening_stays_within_tolerance():
    ctrl = torch.tensor([[[[0.0, 0.0], [40.0, 80.0], [60.0, -50.0], [100.0, 30.0]]]])
    counts = flatten_counts(ctrl, tolerance=0.1)
    starts, ends, _ = flatten_cubics(ctrl, counts)
    dense = cubic_point(ctrl[0, 0], torch.linspace(0, 1, 2001))
    a, b = starts[0], ends[0]
    v = b - a
    t = (((dense[:, None] - a) * v).sum(-1) / (v * v).sum(-1)).clamp(0, 1)
    dist = (dense[:, None] - (a + t[..., None] * v)).norm(dim=-1).amin(1)
    assert dist.max() <= 0.1
    assert counts.item() < 64
    torch.testing.assert_close(starts[0, 0], ctrl[0, 0, 0])
    torch.testing.assert_close(ends[0, -1], ctrl[0, 0, 3])


# --- gradients -------------------------------------------------------------------------------------
def test_gradcheck_float64_tiny_scene():
    pts = torch.tensor([[1.3, 2.2], [4.1, 7.7], [7.9, 0.6], [10.4, 5.3],
                        [2.6, 6.1], [5.2, 3.4], [8.3, 8.9], [3.1, 8.2]], dtype=torch.float64, requires_grad=True)
    widths = torch.tensor([1.3, 0.9], dtype=torch.float64, requires_grad=True)
    colors = torch.tensor([[0.9, 0.2, 0.1, 0.7], [0.1, 0.5, 0.8, 0.6]], dtype=torch.float64, requires_grad=True)
    bg = torch.rand(3, 9, 11, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_()

    def draw(p, w, c, b):
        return rasterize_strokes(p, [1, 1], w, c, 9, 11, background=b, tile=4)

    assert torch.autograd.gradcheck(draw, (pts, widths, colors, bg), eps=1e-6, atol=1e-5, fast_mode=True)


def test_gradients_reach_every_parameter():
    p, s, w, c = random_scene(n_paths=16, size=32, seed=5)
    p = p.clamp(2, 30).requires_grad_()
    w, c = w.requires_grad_(), c.requires_grad_()
    img = rasterize_strokes(p, s, w, c, 32, 32)
    (img * torch.rand_like(img)).sum().backward()
    per_path = torch.split(p.grad, [3 * k + 1 for k in s])
    assert all(g.abs().sum() > 0 for g in per_path), "a path's control points got no gradient"
    assert (w.grad.abs() > 0).all() and (c.grad.abs() > 0).all()


# --- scene, SVG and the optional diffvg backend ----------------------------------------------------
def test_scene_render_and_svg_round_trip(tmp_path):
    paths = [line(2, 3, 20, 9), torch.tensor([[4.0, 4], [9, 30], [20, -4], [28, 20], [30, 25], [20, 28], [10, 20]])]
    scene = StrokeScene.from_paths(paths, [torch.tensor(1.5), torch.tensor(2.0)],
                                   [torch.tensor([1.0, 0, 0, 0.5]), torch.tensor([0.0, 0.5, 1, 1])], 32, 32)
    assert scene.num_segments == (1, 2)
    img = render(scene, backend="torch")
    torch.testing.assert_close(img, scene.render())
    root = ET.fromstring(scene.save_svg(tmp_path / "s.svg").read_text())
    found = [e for e in root.iter() if e.tag.endswith("path")]
    assert len(found) == 2
    assert found[1].get("stroke-width") == "4" and found[0].get("stroke-opacity") == "0.5"
    numbers = [float(x) for x in found[1].get("d").replace("M", " ").replace("C", " ").split()]
    torch.testing.assert_close(torch.tensor(numbers).view(-1, 2), paths[1])
    with pytest.raises(ValueError, match="control points"):
        StrokeScene.from_paths([torch.zeros(3, 2)], [torch.tensor(1.0)], [torch.ones(4)], 8, 8)


@pytest.mark.skipif(not HAS_DIFFVG, reason="pydiffvg is not installed (optional backend)")
def test_agrees_with_pydiffvg():
    p, s, w, c = random_scene(n_paths=24, size=64, seed=7)
    w = w.clamp_min(1.0)
    scene = StrokeScene(p, tuple(s), w, c, 64, 64)
    ours = render(scene, backend="torch")
    theirs = render(scene, backend="diffvg", samples=4)
    # Both anti-alias edges differently (ramp vs 4x4 box samples): compare images, not pixels.
    assert (ours - theirs).abs().mean() < 0.01
    assert (ours - theirs).abs().max() < 0.35


def test_gradcheck_full_jacobian_one_curve():
    pts = torch.tensor([[1.2, 1.7], [6.3, 0.4], [0.8, 5.1], [5.6, 6.2]], dtype=torch.float64, requires_grad=True)
    half = torch.tensor([1.1], dtype=torch.float64, requires_grad=True)
    color = torch.tensor([[0.2, 0.7, 0.4, 0.8]], dtype=torch.float64)

    def draw(p, w):
        return rasterize_strokes(p, [1], w, color, 7, 7, tile=3)

    assert torch.autograd.gradcheck(draw, (pts, half), eps=1e-6, atol=1e-5)


def test_batch_shares_unbatched_widths_and_colours(tmp_path):
    p, s, w, c = random_scene(batch=2, n_paths=6)
    shared = rasterize_strokes(p, s, w[0], c[0], 16, 16)
    each = rasterize_strokes(p, s, w[0].expand(2, -1), c[0].expand(2, -1, -1), 16, 16)
    torch.testing.assert_close(shared, each)
    scene = StrokeScene(p, tuple(s), w[0], c[0], 16, 16)
    assert scene.render(backend="torch").shape == (2, 3, 16, 16)
    assert scene.to_svg(index=1).count("<path ") == 6


def reference_render(points, segments, widths, colors, height, width):
    """Brute force: every pixel against densely sampled curves, 'over' in order onto white."""
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    pixels = torch.stack([xs, ys], -1).reshape(-1, 1, 2).double()
    image = torch.ones(height * width, 3, dtype=torch.float64)
    start = 0
    for p, n in enumerate(segments):
        ctrl = points[start : start + 3 * n + 1].double()
        start += 3 * n + 1
        dense = torch.cat([cubic_point(ctrl[3 * k : 3 * k + 4], torch.linspace(0, 1, 4001, dtype=torch.float64))
                           for k in range(n)])
        d = (pixels - dense[None]).norm(dim=-1).amin(1)
        alpha = ((widths[p] + 0.5 - d).clamp(0, 1) * colors[p, 3])[:, None]
        image = alpha * colors[p, :3].double() + (1 - alpha) * image
    return image.T.reshape(3, height, width).float()


def test_matches_brute_force_reference_with_wide_strokes():
    p, s, w, c = random_scene(n_paths=5, size=24, seed=11)
    w = torch.tensor([0.7, 2.0, 4.5, 7.0, 11.0])
    ours = rasterize_strokes(p, s, w, c, 24, 24, tolerance=0.02)
    torch.testing.assert_close(ours, reference_render(p, s, w, c, 24, 24), atol=0.03, rtol=0)
