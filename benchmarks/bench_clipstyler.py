"""CLIPStyler per-step time with its patch tricks on vs switched off, side by side (tiny models, CPU).

One training step (StyleNet forward, the four losses, backward, Adam) of the bundled example,
timed for each adapter level in round-robin order so that machine noise hits them alike:

* full: 64 random crops, each through a random perspective, threshold 0.7 (the reference);
* a:    64 plain crops (no perspective warp);
* b:    64 plain crops, no threshold rejection;
* c:    no patches, global directional loss only.

    python benchmarks/bench_clipstyler.py [--size 128] [--crops 64] [--repeats 7] [--threads 1]

The CLIP is a tiny random ViT (32 px input) and the VGG a random VGG19-layout stand-in with 1/8
of the channels, so the numbers show the relative cost of the tricks, not real-model timings.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def load_app():
    spec = importlib.util.spec_from_file_location("clipstyler", ROOT / "examples" / "clipstyler" / "clipstyler.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["clipstyler"] = module
    spec.loader.exec_module(module)
    return module


def tiny_clip():
    from open_clip.model import CLIP

    from clipag_plugin.model import ClipagModel
    from clipag_plugin.preprocess import OPENAI_MEAN, OPENAI_STD

    torch.manual_seed(0)
    return ClipagModel(CLIP(**TINY_CFG).eval(), 32, OPENAI_MEAN, OPENAI_STD, name="tiny").eval()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="content image side (px)")
    parser.add_argument("--crops", type=int, default=64, help="patches per step")
    parser.add_argument("--repeats", type=int, default=7, help="timed steps per level")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from clipag_plugin.adapters.clipstyler import LEVELS

    import clipag
    from clipag_plugin import vgg as vgg_lib

    app = load_app()
    model = tiny_clip()
    vgg = vgg_lib.random_vgg19_features(width_divisor=8)
    config = app.StyleConfig(num_crops=args.crops)
    content = app.load_content("astronaut", args.size)
    targets = app.prepare_targets(content, "oil painting", model, clipag.tokenize, vgg, config)
    runs = {}
    for level, tricks in LEVELS.items():
        torch.manual_seed(0)
        net = app.StyleNet()
        runs[level] = (net, torch.optim.Adam(net.parameters(), lr=config.lr), tricks, torch.Generator().manual_seed(0))

    def step(level: str) -> float:
        net, optimizer, tricks, generator = runs[level]
        start = time.perf_counter()
        losses = app.step_losses(net(content), targets, model, vgg, config, tricks, generator)
        total = app.weighted_total(losses, config)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        return time.perf_counter() - start

    for level in runs:  # warm-up
        step(level)
    times: dict[str, list[float]] = {level: [] for level in runs}
    for _ in range(args.repeats):
        for level in runs:
            times[level].append(step(level))
    median = {level: statistics.median(t) for level, t in times.items()}
    crop = app.crop_side(args.size, args.size, config)
    print(f"CLIPStyler step, {args.size} px image, {args.crops} crops of {crop} px, tiny CLIP (32 px), "
          f"VGG19/8 stand-in, {args.threads} thread(s), median of {args.repeats}")
    print(f"{'level':<6} {'tricks':<52} {'ms/step':>8} {'vs full':>8}")
    for level, tricks in LEVELS.items():
        label = f"warp={tricks.perspective} threshold={tricks.threshold} patches={tricks.patch_loss}"
        print(f"{level:<6} {label:<52} {median[level] * 1e3:8.1f} {median[level] / median['full']:8.2f}")
    patch_ms = patch_pipeline(args.repeats)
    print("patches alone at the reference scale: 64 crops of 128 px from a 512 px image, resized to 224, "
          "forward+backward (no CLIP)")
    print(f"  with perspective warp {patch_ms['warp']:.1f} ms, without {patch_ms['plain']:.1f} ms, "
          f"ratio {patch_ms['warp'] / patch_ms['plain']:.2f}")
    print(json.dumps({"step_ms": {k: round(v * 1e3, 2) for k, v in median.items()}, "patch_ms": patch_ms}))
    return 0


def patch_pipeline(repeats: int) -> dict[str, float]:
    """Median ms of sample + apply_patches (+ backward of their sum) with and without the warp."""
    from clipag_plugin.guidance.directional import apply_patches, sample_patch_params

    image = torch.rand(1, 3, 512, 512, requires_grad=True)
    generator = torch.Generator().manual_seed(0)

    def once(perspective: bool) -> float:
        start = time.perf_counter()
        params = sample_patch_params(512, 512, 64, 128, 0.5, perspective=perspective, generator=generator)
        apply_patches(image, params, 224).sum().backward()
        return time.perf_counter() - start

    once(True), once(False)
    times: dict[str, list[float]] = {"warp": [], "plain": []}
    for _ in range(repeats):
        times["warp"].append(once(True))
        times["plain"].append(once(False))
    return {k: round(statistics.median(v) * 1e3, 2) for k, v in times.items()}


if __name__ == "__main__":
    sys.exit(main())
