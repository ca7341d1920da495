"""Judge the project's generator on the mini world: start only vs 100 steps, vanilla vs robust.

    python benchmarks/pag_generate.py 24 0,100

Prompts: the first N of ``mini.pag.seeded_prompts(N, seed=2024)``; seed i for prompt i; the
``miniworld`` Gaussian prior with best-of-100 starts. "steps 0" runs one step at lr 1e-9, i.e.
the selected start as it is. Results: docs/mini-world.md.
"""

import sys
import time

import torch

import clipag
from clipag_plugin.mini import judge as J
from clipag_plugin.mini import pag
from clipag_plugin.synthesis.api import generate_tensor
from clipag_plugin.synthesis.loop import GenerateConfig


def main() -> None:
    torch.set_num_threads(2)
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 24
    steps = [int(s) for s in (sys.argv[2] if len(sys.argv) > 2 else "0,100").split(",")]
    prompts, _ = pag.seeded_prompts(n, seed=2024)
    judge = J.load_judge()
    for name in ("mini-vanilla", "mini"):
        model, _ = clipag.load(name, device="cpu")
        for st in steps:
            for aug in (False, True):
                if st == 0 and aug:
                    continue
                cfg = GenerateConfig(steps=max(st, 1), lr=0.0175 if st else 1e-9, views=8 if aug else 1,
                                     crops=8 if aug else 0, augment=aug, gmm_path="miniworld", gmm_candidates=100)
                start = time.time()
                images = torch.cat([
                    generate_tensor(model, p, seeds=[i], device="cpu", progress=False, config=cfg).images
                    for i, p in enumerate(prompts)
                ])
                scores = {k: round(float(v), 3) for k, v in J.score(images, prompts, judge).items()}
                print(name, "steps", st, "aug", aug, scores, f"{time.time() - start:.0f}s", flush=True)


if __name__ == "__main__":
    main()
