"""Judge CLIPDraw on the mini world: drawing settings for the mini models, vanilla vs robust.

    python benchmarks/draw_mini.py --prompts 12 --settings notebook-like "paths=32,init_width=4,max_width=12"
    python benchmarks/draw_mini.py --prompts 24 --skip 12 --settings preset      # held-out prompts

Prompts: ``mini.pag.seeded_prompts`` (seed 2024; ``--skip K`` leaves out the first K, so the
prompts that chose a setting are not the ones that report it); seed ``i`` for prompt ``i``. Each
``--settings`` entry is ``name=value,...`` over the ``mini`` drawing preset
(:data:`clipag_plugin.synthesis.strokes.DRAW_PRESETS`); ``preset`` is the preset as it is and
``notebook-like`` the notebook's strokes (256 thin paths, short spread) at the mini canvas with the
augmentation off. Printed per row: the judge's accuracies and confidence, seconds per drawing,
and a markdown table row.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch
from _overrides import parse_overrides

import clipag
from clipag_plugin.mini import judge as J
from clipag_plugin.mini import pag
from clipag_plugin.synthesis.strokes import DRAW_PRESETS, DrawConfig, draw

NAMED = {
    "preset": {},
    "notebook-like": {"paths": 256, "init_width": 1.0, "max_width": 50.0, "spread": 0.1},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--skip", type=int, default=0)
    parser.add_argument("--models", nargs="+", default=["mini-vanilla", "mini"])
    parser.add_argument("--settings", nargs="+", default=["preset"])
    args = parser.parse_args()
    torch.set_num_threads(2)
    prompts = pag.seeded_prompts(args.skip + args.prompts, seed=2024)[0][args.skip:]
    judge = J.load_judge()
    models = {name: clipag.load(name, device="cpu")[0] for name in args.models}
    for setting in args.settings:
        config = dataclasses.replace(DRAW_PRESETS["mini"], **parse_overrides(setting, DrawConfig, NAMED))
        for name, model in models.items():
            start = time.perf_counter()
            images = torch.stack([draw(p, model, dataclasses.replace(config, seed=args.skip + i)).image
                                  for i, p in enumerate(prompts)])
            seconds = (time.perf_counter() - start) / len(prompts)
            score = J.score(images, prompts, judge)
            conf = J.confidence(images, prompts, judge)
            print(f"{setting:<40} {name:<13} colour+shape {score['colour+shape']:.2f} all {score['all']:.2f} "
                  f"colour {score['colour']:.2f} shape {score['shape']:.2f} position {score['position']:.2f} "
                  f"background {score['background']:.2f} conf {conf:.2f} {seconds:.1f} s/drawing", flush=True)
            print(f"| {setting} | {name} | {score['colour+shape']:.2f} | {score['all']:.2f} | {score['colour']:.2f} | "
                  f"{score['shape']:.2f} | {score['position']:.2f} | {score['background']:.2f} | {conf:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
