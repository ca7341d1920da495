"""The morph test of the mini models (docs/mini-world.md): do the gradients redraw one attribute?

    python benchmarks/mini_morph.py [--models mini-vanilla mini] [--images 48] [--steps 60]

Start from clean renders of seeded random captions; change the caption's object colour (or
shape) to another valid value; take ``--steps`` L2 steps of 1.0 (in 64 px pixels) towards the new
caption with ``mini.pag.synthesize``; the judge then reads the *target* colour (or shape). A
model whose gradients are perceptually aligned repaints the object; one whose gradients are
adversarial changes its own reading of the picture but not the picture.
"""

from __future__ import annotations

import argparse

import torch

import clipag
from clipag_plugin.mini import judge as J
from clipag_plugin.mini import pag, world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["mini-vanilla", "mini"], help="names or folders")
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(600, (args.images,), generator=g)
    start = world.render_clean(ids, seed=3)
    texts = world.all_captions()
    targets = {a: [texts[i] for i in pag.retarget(ids, a, g).tolist()] for a in ("colour", "shape")}
    judge = J.load_judge()
    cfg = pag.SynthConfig(steps=args.steps, lr=1.0, optimizer="l2")
    print(f"| model | target colour read | target shape read | mean L2 moved |  ({args.images} renders, {args.steps} steps)")
    for name in args.models:
        model, _ = clipag.load(name, device="cpu")
        model.requires_grad_(False)
        row, moved = [], []
        for attribute, prompts in targets.items():
            images = pag.synthesize(model, prompts, start, cfg)
            row.append(J.score(images, prompts, judge)[attribute])
            moved.append(float((images - start).flatten(1).norm(dim=1).mean()))
        print(f"| {name} | {row[0]:.2f} | {row[1]:.2f} | {sum(moved) / len(moved):.1f} |", flush=True)


if __name__ == "__main__":
    main()
