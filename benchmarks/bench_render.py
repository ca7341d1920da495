"""Stroke rasterizer speed: forward + backward of CLIPDraw's reference scene (256 paths, 224 px).

Times, side by side in one run, the PyTorch rasterizer at several tile sizes, the same scene
through clipag's pydiffvg interface (the notebook's calls: serialize_scene, apply, compositing
over white) and, when pydiffvg is installed, pydiffvg's CPU build on the same scene (2x2 samples
per pixel, as CLIPDraw renders).
Three scenes: the notebook's random start (width 1, short curves), a "drawn" one (longer curves,
widths 1-8, like a CLIPDraw run a few hundred steps in) and a "wide" one (widths 10-20). Reports medians of process CPU
time (steadier than wall time on a shared machine) and of wall time, and ratios to the default (tile 8).

    python benchmarks/bench_render.py [--repeats 7] [--threads 1] [--device cpu] [--step]

``--step`` also times one whole CLIPDraw step (render, 4 augmented copies, a randomly initialized
ViT-B/32 image tower, backward) to show the rasterizer's share of it.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clipag_plugin.render import HAS_DIFFVG  # noqa: E402
from clipag_plugin.render.backends import render_with  # noqa: E402


def clipdraw_scene(seed: int, paths: int, size: int, spread: float, min_width: float, max_width: float, device: str):
    """The notebook's initialization (``spread`` 0.1, width 1); larger values mimic a later stage."""
    rng = random.Random(seed)
    points, segments = [], []
    for _ in range(paths):
        n = rng.randint(1, 3)
        segments.append(n)
        p = (rng.random(), rng.random())
        points.append(p)
        for _ in range(3 * n):
            p = (p[0] + spread * (rng.random() - 0.5), p[1] + spread * (rng.random() - 0.5))
            points.append(p)
    pts = (torch.tensor(points) * size).to(device)
    widths = torch.tensor([min_width + (max_width - min_width) * rng.random() for _ in range(paths)], device=device)
    colors = torch.tensor([[rng.random() for _ in range(4)] for _ in range(paths)], device=device)
    return pts, segments, widths, colors


def _per_path_leaves(pts, segments, widths, colors):
    """Every path's points, width and colour as leaves of their own, as CLIPDraw creates them."""
    leaf = lambda t: t.detach().clone().requires_grad_()  # noqa: E731
    paths = [leaf(p) for p in torch.split(pts.detach(), [3 * n + 1 for n in segments])]
    return paths, [leaf(w) for w in widths], [leaf(c) for c in colors]


def _scene_render(pts, segments, widths, colors, size: int):
    """The bundled CLIPDraw example's path: per-path leaves packed by StrokeScene.from_paths, then render."""
    from clipag_plugin.render import StrokeScene, render

    paths, path_widths, path_colors = _per_path_leaves(pts, segments, widths, colors)
    return lambda: render(StrokeScene.from_paths(paths, path_widths, path_colors, size, size), backend="torch")


def _compat_render(pts, segments, widths, colors, size: int):
    """The CLIPDraw notebook's calls through clipag's pydiffvg interface, composited over white as
    the notebook does; the per-path objects are built before the clock starts (they persist in a run)."""
    from clipag_plugin.render import pydiffvg_compat as pydiffvg

    paths, path_widths, path_colors = _per_path_leaves(pts, segments, widths, colors)
    shapes = [pydiffvg.Path(num_control_points=torch.full((n,), 2, dtype=torch.int32), points=p, stroke_width=w,
                            is_closed=False) for n, p, w in zip(segments, paths, path_widths, strict=True)]
    groups = [pydiffvg.ShapeGroup(shape_ids=torch.tensor([k]), fill_color=None, stroke_color=c)
              for k, c in enumerate(path_colors)]

    def render():
        args = pydiffvg.RenderFunction.serialize_scene(size, size, shapes, groups)
        img = pydiffvg.RenderFunction.apply(size, size, 2, 2, 0, None, *args)
        return img[:, :, 3:4] * img[:, :, :3] + torch.ones(size, size, 3, device=img.device) * (1 - img[:, :, 3:4])

    return render


def time_interleaved(contenders, scene, size: int, repeats: int) -> dict[str, tuple[float, float]]:
    """Median (cpu seconds, wall seconds) of render + backward per contender, runs interleaved.

    The per-path contenders build their objects once and reuse them in every round, as a run
    does over its steps; the order of the contenders alternates between rounds."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in contenders}
    per_path = {"pydiffvg-interface": _compat_render, "scene": _scene_render}
    draws = {name: per_path[backend](*scene, size) for name, backend, _ in contenders if backend in per_path}
    for i in range(repeats + 1):
        for name, backend, options in (contenders if i % 2 == 0 else contenders[::-1]):
            if name not in draws:
                pts, segments, widths, colors = scene
                pts, widths, colors = (t.clone().requires_grad_() for t in (pts, widths, colors))
            c0, w0 = time.process_time(), time.perf_counter()
            if name in draws:
                image = draws[name]()
            else:
                image = render_with(backend, pts[None], segments, widths[None], colors[None], size, size, **options)
            image.sum().backward()
            if scene[0].is_cuda:
                torch.cuda.synchronize()
            if i:  # the first round warms up
                times[name].append((time.process_time() - c0, time.perf_counter() - w0))
    medians = {name: (statistics.median(c for c, _ in t), statistics.median(w for _, w in t))
               for name, t in times.items()}
    per_path_names = [name for name in draws]
    if len(per_path_names) == 2:  # the robust statistic on a noisy machine: the median of per-round ratios
        mine, own = per_path_names[1], per_path_names[0]
        ratios = [a[0] / b[0] for a, b in zip(times[mine], times[own], strict=True)]
        medians["_ratio"] = (statistics.median(ratios), float(len(ratios)))
    return medians


def time_step(scene, size: int, repeats: int, augment: bool) -> tuple[float, float]:
    """Median (cpu, wall) seconds of one CLIPDraw step on a random ViT-B/32 (no download)."""
    import open_clip

    from clipag_plugin.guidance.warp import clipdraw_warp

    model = open_clip.create_model("ViT-B-32", pretrained=None).eval().to(scene[0].device)
    text = torch.nn.functional.normalize(torch.randn(1, 512, device=scene[0].device), dim=-1)
    generator = torch.Generator().manual_seed(0)
    cpu, wall = [], []
    for i in range(repeats + 1):
        pts, widths, colors = (t.clone().requires_grad_() for t in (scene[0], scene[2], scene[3]))
        c0, w0 = time.process_time(), time.perf_counter()
        image = render_with("torch", pts[None], scene[1], widths[None], colors[None], size, size)
        batch = clipdraw_warp(image, 4, 224, generator) if augment else image
        loss = -torch.cosine_similarity(model.encode_image(batch), text).sum()
        loss.backward()
        if i:
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
    return statistics.median(cpu), statistics.median(wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--paths", type=int, default=256)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--step", action="store_true", help="also time a whole CLIPDraw step (random ViT-B/32)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    scenes = {"start (notebook init)": (0.1, 1.0, 1.0), "drawn (long, widths 1-8)": (0.4, 1.0, 8.0),
              "wide (long, widths 10-20)": (0.4, 10.0, 20.0)}
    contenders = [("torch tile 8 (default)", "torch", {"tile": 8}), ("torch tile 4", "torch", {"tile": 4}),
                  ("torch tile 16", "torch", {"tile": 16}),
                  ("per-path leaves: StrokeScene.from_paths + render (the bundled example)", "scene", {}),
                  ("per-path leaves: pydiffvg interface (the notebook's calls)", "pydiffvg-interface", {})]
    if HAS_DIFFVG:
        contenders.append(("pydiffvg 2x2", "diffvg", {"samples": 2}))
    else:
        print("pydiffvg not installed: its column is skipped")
    print(f"{args.paths} paths, {args.size} px, device {args.device}, {args.threads} thread(s), "
          f"median of {args.repeats}, forward+backward")
    print("| scene | renderer | cpu ms | wall ms | cpu ratio to default |\n|---|---|---|---|---|")
    for scene_name, (spread, min_width, max_width) in scenes.items():
        scene = clipdraw_scene(0, args.paths, args.size, spread, min_width, max_width, args.device)
        results = time_interleaved(contenders, scene, args.size, args.repeats)
        ratio = results.pop("_ratio", None)
        base = results[contenders[0][0]][0]
        for name, (cpu, wall) in results.items():
            print(f"| {scene_name} | {name} | {1000 * cpu:.1f} | {1000 * wall:.1f} | {cpu / base:.2f}x |")
        if ratio is not None:
            print(f"| {scene_name} | pydiffvg interface / bundled example, median of {int(ratio[1])} per-round "
                  f"ratios | | | {ratio[0]:.3f} |")
        if args.step and min_width < 10:
            for augment in (True, False):
                cpu, wall = time_step(scene, args.size, max(2, args.repeats // 3), augment)
                label = "4 augmented copies" if augment else "1 plain copy"
                print(f"| {scene_name} | whole step, {label} | {1000 * cpu:.1f} | {1000 * wall:.1f} | "
                      f"{cpu / base:.2f}x |")


if __name__ == "__main__":
    main()
