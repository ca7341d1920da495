"""VQGAN+CLIP per-step time and peak memory: the reference's cutout trick vs switched off.

One step = decode the latents (straight-through VQ), make the cutouts, encode them with CLIP,
spherical-distance loss, backward, Adam. Each configuration runs in a fresh subprocess (so its
peak memory is its own), the subprocesses alternate over ``--repeats`` rounds, and the table
reports medians and ratios to the switched-off configuration.

    python benchmarks/bench_vqgan.py                       # tiny VQGAN + tiny CLIP, CPU, 64 px
    python benchmarks/bench_vqgan.py --full --device cuda  # f16-16384 + ViT-B/32 architectures, 512 px

Weights are random (timing does not depend on them), so nothing is downloaded.
Memory: the peak of tensor memory a step needs beyond the models (on CUDA ``max_memory_allocated``
over the timed steps; on CPU the running sum of allocations and frees that ``torch.profiler``
records for one step).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

# name -> (cutout mode, cutn, augmentation "default"/None, noise None=mode default / 0)
CONFIGS = {
    "latest cutn32 +aug +noise (reference default)": ("latest", 32, "default", None),
    "original cutn32 crops": ("original", 32, "default", None),
    "updated cutn32 crops +aug +noise": ("updated", 32, "default", None),
    "off: 1 whole-image cutout": ("none", 1, None, 0.0),
}
BASELINE = "off: 1 whole-image cutout"

FULL_VQGAN = {
    "n_embed": 16384, "embed_dim": 256,
    "ddconfig": {"double_z": False, "z_channels": 256, "resolution": 256, "in_channels": 3, "out_ch": 3,
                 "ch": 128, "ch_mult": [1, 1, 2, 2, 4], "num_res_blocks": 2, "attn_resolutions": [16],
                 "dropout": 0.0},
}
TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def _cpu_step_peak(step) -> int:
    """Peak bytes of tensors alive at once during one step, from the profiler's allocation record
    (running sum of every op's own allocations and frees, in time order)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    current = peak = 0
    for event in events:
        current += event.self_cpu_memory_usage
        peak = max(peak, current)
    return peak


def worker(name: str, args: argparse.Namespace) -> dict:
    """Build the models, warm up, time ``args.steps`` steps of one configuration."""
    import torch

    torch.set_num_threads(args.threads)
    from open_clip.model import CLIP

    from clipag_plugin import vqgan as vq
    from clipag_plugin.guidance.cutouts import Cutouts
    from clipag_plugin.guidance.losses import prompt_loss
    from clipag_plugin.model import ClipagModel
    from clipag_plugin.vqgan.build import config_from_dict

    device = torch.device(args.device)
    torch.manual_seed(0)
    if args.full:
        import open_clip

        inner = open_clip.create_model("ViT-B-32", pretrained=None)
        size = 224
        model = vq.random_vqgan(config_from_dict(FULL_VQGAN))
    else:
        inner = CLIP(**TINY_CLIP)
        size = 32
        model = vq.random_vqgan()
    clip_model = ClipagModel(inner.eval(), size, (0.5,) * 3, (0.5,) * 3).to(device).requires_grad_(False)
    model = model.to(device)
    mode, cutn, augment, noise = CONFIGS[name]
    cutouts = Cutouts(size, cutn, 1.0, mode=mode, augment=augment, noise=noise)
    f = vq.downsample_factor(model)
    generator = torch.Generator().manual_seed(0)
    z = vq.random_code_latents(model, args.size // f, args.size // f, generator).requires_grad_(True)
    z_min, z_max = vq.codebook_bounds(model)
    target = torch.randn(1, clip_model.visual.output_dim, device=device)
    opt = torch.optim.Adam([z], lr=0.1)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        out = vq.synth(model, z)
        embeds = clip_model.encode_image(clip_model.normalize(cutouts(out, generator=generator))).float()
        prompt_loss(embeds, target, [1.0], distance="spherical").sum().backward()
        opt.step()
        with torch.no_grad():
            z.copy_(z.maximum(z_min).minimum(z_max))

    step()  # warm-up (allocator, kernels)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        peak = _cpu_step_peak(step)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    return {"name": name, "step_s": statistics.median(times), "peak_bytes": peak}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--full", action="store_true", help="full-size architectures (use with a GPU)")
    parser.add_argument("--size", type=int, default=None, help="image side (default 64; 512 with --full)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per run")
    parser.add_argument("--repeats", type=int, default=2, help="rounds over all configurations")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.size = args.size or (512 if args.full else 64)
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return 0
    results: dict[str, list[dict]] = {name: [] for name in CONFIGS}
    passthrough = ["--device", args.device, "--size", str(args.size), "--steps", str(args.steps),
                   "--threads", str(args.threads)] + (["--full"] if args.full else [])
    for _ in range(args.repeats):
        for name in CONFIGS:
            proc = subprocess.run([sys.executable, __file__, "--worker", name, *passthrough],
                                  capture_output=True, text=True, check=True)
            results[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    base_t = statistics.median(r["step_s"] for r in results[BASELINE])
    base_m = statistics.median(r["peak_bytes"] for r in results[BASELINE])
    kind = "f16-16384 VQGAN + ViT-B/32" if args.full else "tiny VQGAN (1M) + tiny ViT CLIP (32 px)"
    print(f"{kind}, {args.size} px, {args.device}, {args.threads} thread(s), median of {args.repeats} runs x "
          f"{args.steps} steps")
    print(f"{'configuration':48s} {'ms/step':>9s} {'x off':>7s} {'peak MiB':>9s} {'x off':>7s}")
    for name, runs in results.items():
        t = statistics.median(r["step_s"] for r in runs)
        m = statistics.median(r["peak_bytes"] for r in runs)
        ratio_m = f"{m / base_m:7.1f}" if base_m > 0 else "      -"
        print(f"{name:48s} {t * 1e3:9.1f} {t / base_t:7.1f} {m / 2**20:9.1f} {ratio_m}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
