"""Judge the project's generator on the mini world: vanilla vs robust, per attribute.

    python benchmarks/pag_generate.py --prompts 60 \
        --settings "views=1,crops=0,augment=false,optimizer=l2,lr=1,threshold=none" \
        "views=1,crops=0,augment=false"

Prompts: the first N of ``mini.pag.seeded_prompts(N, seed=2024)`` (``--prompt-seed`` for another set); seed ``i`` for prompt ``i``;
the ``miniworld`` Gaussian prior with best-of-``--candidates`` starts. ``--steps 0`` judges the
selected start as it is (one step at lr 1e-9). Each ``--settings`` entry is ``clipag compare``'s
``name=value,...`` syntax over :class:`GenerateConfig`. Results: docs/mini-world.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

import clipag
from clipag_plugin.cli.compare import parse_setting
from clipag_plugin.mini import judge as J
from clipag_plugin.mini import pag
from clipag_plugin.synthesis.api import generate_tensor
from clipag_plugin.synthesis.loop import GenerateConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=24, help="how many seeded prompts (default 24)")
    parser.add_argument("--skip", type=int, default=0,
                        help="leave out the first K prompts of the seeded draw (--prompts 60 --skip 60: prompts 61-120)")
    parser.add_argument("--models", nargs="+", default=["mini-vanilla", "mini"], help="names or folders")
    parser.add_argument("--settings", nargs="+", default=["views=1,crops=0,augment=false,optimizer=l2,lr=1,threshold=none"])
    parser.add_argument("--steps", default="100", help="comma-separated step counts (0: the start alone)")
    parser.add_argument("--candidates", type=int, default=100, help="GMM candidates per start")
    parser.add_argument("--prompt-seed", type=int, default=2024,
                        help="seed of the prompt set (2024: the headline's; 7: the second set of docs/mini-world.md)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--confusions", action="store_true",
                        help="also print the judge's most frequent misreadings of colour and shape per row")
    parser.add_argument("--failures", action="store_true",
                        help="also split the judge's colour and shape misreadings by what the model itself reads "
                             "(fooled: the model reads the prompt; not reached: it does not)")
    parser.add_argument("--save", default=None, help="save the images of every row to this folder (.pt)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    prompts, _ = pag.seeded_prompts(args.skip + args.prompts, seed=args.prompt_seed)
    prompts = prompts[args.skip:]
    judge = J.load_judge()
    for name in args.models:
        model, _ = clipag.load(name, device="cpu")
        for k, spec in enumerate(args.settings):
            for steps in (int(s) for s in args.steps.split(",")):
                base = GenerateConfig(gmm_path="miniworld", gmm_candidates=args.candidates)
                cfg = dataclasses.replace(base, **parse_setting(spec))
                cfg = dataclasses.replace(cfg, steps=max(steps, 1), lr=cfg.lr if steps else 1e-9)
                start = time.time()
                images = torch.cat([
                    generate_tensor(p, model, seeds=[i], device="cpu", progress=False, config=cfg).images
                    for i, p in enumerate(prompts, start=args.skip)
                ])
                scores = {k: round(float(v), 3) for k, v in J.score(images, prompts, judge).items()}
                scores["confidence"] = round(J.confidence(images, prompts, judge), 3)
                scores["hf"] = round(pag.high_frequency_energy(images), 4)
                print(f"{name} | {spec} | steps {steps} | {scores} | {time.time() - start:.0f}s", flush=True)
                if args.confusions:
                    for attribute, counts in J.confusions(images, prompts, judge).items():
                        if attribute in ("colour", "shape"):
                            top = ", ".join(f"{a}->{r} {n}" for (a, r), n in list(counts.items())[:5])
                            print(f"    {attribute} misread (asked->read): {top or 'none'}", flush=True)
                if args.failures:
                    for attribute, split in pag.failure_split(model.inner, images, prompts, judge).items():
                        if attribute in ("colour", "shape"):
                            print(f"    {attribute}: " + ", ".join(f"{k} {v:.2f}" for k, v in split.items()), flush=True)
                if args.save:
                    Path(args.save).mkdir(parents=True, exist_ok=True)
                    torch.save(images, Path(args.save) / f"{Path(name).name}_setting{k}_steps{steps}.pt")


if __name__ == "__main__":
    main()
