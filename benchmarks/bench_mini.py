"""Mini world: load time and a 100-step generation on CPU, mini vs mini-vanilla side by side.

    python benchmarks/bench_mini.py [--steps 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    import clipag
    from clipag_plugin.mini import pag

    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    prompt = ["a red triangle at the top, blue background"]
    init = pag.sample_init(pag.fit_init(n=1000), 1, torch.Generator().manual_seed(0))
    cfg = pag.SynthConfig(steps=args.steps)
    for name in ("mini-vanilla", "mini"):  # warm-up: imports and file cache
        clipag.load(name, device="cpu")
    rows = {}
    for name in ("mini-vanilla", "mini"):
        load_s = _best(lambda name=name: clipag.load(name, device="cpu"), args.repeats)
        model = clipag.load(name, device="cpu")[0].requires_grad_(False)
        gen_s = _best(lambda model=model: pag.synthesize(model.inner, prompt, init, cfg), args.repeats)
        rows[name] = (load_s, gen_s)
        print(f"{name:13s} load {load_s * 1e3:7.1f} ms   {args.steps}-step generation {gen_s:6.2f} s")
    print(f"ratio mini / mini-vanilla: load {rows['mini'][0] / rows['mini-vanilla'][0]:.2f}, "
          f"generation {rows['mini'][1] / rows['mini-vanilla'][1]:.2f}")


if __name__ == "__main__":
    main()
