"""Generation cost: per-step time of the plain switch (V=1, P=0, no augmentation) against the
notebook recipe (V=32 views + P=32 crops), side by side, and peak memory of a 224 px CPU run.

Uses a randomly initialized model (no downloads): ``--arch vit-b-32`` is open_clip's ViT-B-32
shape at 224 px (what CLIPAG uses), ``--arch tiny`` a small ViT at 32 px for a quick check. Each
configuration runs in a fresh subprocess so its peak RSS (``resource.ru_maxrss``) is its own.

    python benchmarks/bench_generate.py --arch vit-b-32 --steps 3 --threads 1
    python benchmarks/bench_generate.py --quality 12 --steps 100   # mini world: judge accuracy
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CONFIGS = {
    "plain (V=1, P=0, no augment)": dict(views=1, crops=0, augment=False),
    "recipe (V=32, P=32, augment)": dict(views=32, crops=32, augment=True),
}

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def build_model(arch: str):
    """A random ClipagModel of the given shape (eval mode, fp32, CPU)."""
    import open_clip
    from open_clip.model import CLIP

    from clipag_plugin.model import ClipagModel
    from clipag_plugin.preprocess import OPENAI_MEAN, OPENAI_STD

    if arch == "vit-b-32":
        inner = open_clip.create_model("ViT-B-32", pretrained=None)
    else:
        inner = CLIP(**TINY)
    size = inner.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    return ClipagModel(inner.eval(), size, OPENAI_MEAN, OPENAI_STD, name=f"random-{arch}")


def child(arch: str, steps: int, options: dict, threads: int) -> dict:
    """Run one configuration; report seconds per step (first step excluded when steps > 1) and peak RSS."""
    import resource

    import torch

    torch.set_num_threads(threads)
    from clipag_plugin.synthesis.api import generate_tensor

    model = build_model(arch)
    rss_model = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stamps: list[float] = []

    import clipag_plugin.synthesis.loop as loop

    original = loop.clip_grad_per_image

    def timed(grad, max_norm):  # called once per step, after backward
        stamps.append(time.perf_counter())
        return original(grad, max_norm)

    loop.clip_grad_per_image = timed
    start = time.perf_counter()
    generate_tensor("a watercolor of a fox", model, steps=steps, init="gray", progress=False, **options)
    total = time.perf_counter() - start
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    per_step = sum(gaps) / len(gaps) if gaps else total / steps
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds_per_step": per_step, "peak_rss_mib": peak / 1024, "model_rss_mib": rss_model / 1024,
            "encoder_images_per_step": options["views"] + options["crops"]}


def gmm_child(arch: str, candidates: int, threads: int) -> dict:
    """Time of the GMM initialization (scoring ``candidates`` samples) at the model's resolution."""
    import torch

    torch.set_num_threads(threads)
    from clipag_plugin.guidance.prompts import parse_prompts
    from clipag_plugin.synthesis.api import load_guides, make_init
    from clipag_plugin.synthesis.loop import GenerateConfig

    model = build_model(arch)
    guides = load_guides(model, parse_prompts("a watercolor of a fox"))
    config = GenerateConfig(gmm_candidates=candidates)
    start = time.perf_counter()
    make_init(guides, config, model.visual.input_resolution, seed=0)
    seconds = time.perf_counter() - start
    return {"candidates": candidates, "seconds": seconds, "seconds_per_candidate": seconds / candidates}


def quality(n_prompts: int, steps: int, threads: int, candidates: int, robust: str = "mini",
            vanilla: str = "mini-vanilla", gmm: str | None = None) -> int:
    """Mini world: judge accuracy of generations, robust vs vanilla, recipe vs plain (same prompts)."""
    import torch

    torch.set_num_threads(threads)
    try:
        import clipag
        from clipag_plugin.mini.judge import load_judge, score
        from clipag_plugin.mini.pag import seeded_prompts
        from clipag_plugin.synthesis.api import generate_tensor

        judge = load_judge()
        models = {label: clipag.load(name, device="cpu")[0] for label, name in (("robust", robust), ("vanilla", vanilla))}
    except (FileNotFoundError, KeyError, ImportError, OSError) as err:
        print(f"quality: skipped, the mini world is not built yet ({err})")
        return 0
    prompts, _ = seeded_prompts(n_prompts)
    print(f"quality: {n_prompts} mini-world prompts, {steps} steps, {candidates} GMM candidates, 64 px; "
          f"robust={robust} vanilla={vanilla} gmm={gmm or 'shipped'}; judge = independent CNN")
    print(f"{'model':<14} {'setting':<30} {'colour+shape':>12} {'all':>6} {'encoder imgs':>13} {'s/image':>8}")
    for name, model in models.items():
        for label, options in CONFIGS.items():
            start = time.perf_counter()
            images = torch.cat([
                generate_tensor(prompt, model, seeds=[i], steps=steps, gmm_candidates=candidates, gmm_path=gmm,
                                progress=False, **options).images
                for i, prompt in enumerate(prompts)
            ])
            seconds = (time.perf_counter() - start) / len(prompts)
            acc = score(images, prompts, judge)
            imgs = steps * (options["views"] + options["crops"]) + candidates
            print(f"{name:<14} {label:<30} {acc['colour+shape']:>12.2f} {acc['all']:>6.2f} {imgs:>13} {seconds:>8.2f}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=["vit-b-32", "tiny"], default="vit-b-32")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--candidates", type=int, default=64, help="GMM candidates to time (0: skip)")
    parser.add_argument("--quality", type=int, default=0, metavar="N",
                        help="instead: judge accuracy on N mini-world prompts (needs the built mini world)")
    parser.add_argument("--robust", default="mini", help="robust model for --quality (name or folder)")
    parser.add_argument("--vanilla", default="mini-vanilla", help="vanilla model for --quality (name or folder)")
    parser.add_argument("--gmm", default=None, help="GMM file for --quality (default: the shipped one)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quality:
        return quality(args.quality, args.steps, args.threads, args.candidates, args.robust, args.vanilla,
                       args.gmm)
    if args.child == "gmm":
        print(json.dumps(gmm_child(args.arch, args.candidates, args.threads)))
        return 0
    if args.child:
        print(json.dumps(child(args.arch, args.steps, CONFIGS[args.child], args.threads)))
        return 0
    results = {}
    for label in CONFIGS:
        cmd = [sys.executable, __file__, "--arch", args.arch, "--steps", str(args.steps),
               "--threads", str(args.threads), "--child", label]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results[label] = json.loads(out.strip().splitlines()[-1])
    plain, recipe = (results[k] for k in CONFIGS)
    print(f"arch={args.arch} steps={args.steps} threads={args.threads}")
    print(f"{'configuration':<32} {'s/step':>9} {'imgs/step':>10} {'peak RSS MiB':>13} {'model RSS MiB':>14}")
    for label, r in results.items():
        print(f"{label:<32} {r['seconds_per_step']:>9.3f} {r['encoder_images_per_step']:>10} "
              f"{r['peak_rss_mib']:>13.0f} {r['model_rss_mib']:>14.0f}")
    print(f"ratio recipe / plain per step: {recipe['seconds_per_step'] / plain['seconds_per_step']:.1f}x")
    if args.candidates:
        cmd = [sys.executable, __file__, "--arch", args.arch, "--threads", str(args.threads),
               "--candidates", str(args.candidates), "--child", "gmm"]
        g = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        print(f"gmm init: {g['candidates']} candidates in {g['seconds']:.2f} s "
              f"({g['seconds_per_candidate'] * 1000:.1f} ms each; 1000 -> ~{g['seconds_per_candidate'] * 1000:.0f} s)"
              f" = {g['seconds_per_candidate'] / plain['seconds_per_step']:.2f} plain steps per candidate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
