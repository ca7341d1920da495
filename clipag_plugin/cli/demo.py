"""``clipag demo``: the robust and the vanilla mini CLIP paint the same prompts; one judged grid.

Offline and on the CPU in a few minutes: both embedded mini models (``mini``, CLIPAG-fine-tuned,
and ``mini-vanilla``, its plain twin) generate from the same mini-world captions with their shared
preset (every augmentation off), so the only difference between the columns is the encoder's
gradients. The mini world's independent judge reads each picture back. It is ``clipag compare``
with its arguments filled in.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

__all__ = ["main", "build_parser", "demo_prompts", "DEMO_PROMPT_SEED"]

DEMO_PROMPT_SEED = 31  # a seeded draw of captions that played no part in choosing the mini preset
MODELS = ("mini-vanilla", "mini")


def demo_prompts(n: int, seed: int = DEMO_PROMPT_SEED) -> list[str]:
    """``n`` captions of a seeded draw of the 600 mini-world captions, the four shapes taking turns.

    Shapes take turns (circle, square, triangle, cross, circle, ...) so that a short demo shows
    every shape and no shape's share tilts the judged numbers; within a shape, captions come in
    the order of the seeded draw.
    """
    from clipag_plugin.mini import world
    from clipag_plugin.mini.pag import seeded_prompts

    if not 1 <= n <= 600:
        raise ValueError(f"--prompts {n}: choose between 1 and 600")
    draw = seeded_prompts(600, seed=seed)[0]
    by_shape = {shape: [c for c in draw if world.parse_caption(c)["shape"] == shape] for shape in world.SHAPES}
    return [by_shape[world.SHAPES[i % len(world.SHAPES)]][i // len(world.SHAPES)] for i in range(n)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipag demo",
        description="Robust vs vanilla: both embedded mini CLIPs paint the same mini-world prompts with every "
                    "augmentation off; writes a labelled grid scored by the mini world's judge (offline, CPU).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  clipag demo                                  # 16 prompts, clipag-demo.png + .json\n"
               "  clipag demo --prompts 4 --out quick.png      # fewer prompts, faster\n"
               '  clipag demo --prompt "a red circle on the left, blue background"',
    )
    parser.add_argument("--prompts", type=int, default=16,
                        help="how many seeded mini-world captions, the four shapes taking turns (default 16)")
    parser.add_argument("--prompt", dest="texts", nargs="+", default=None, metavar="CAPTION",
                        help="your own mini-world captions instead, e.g. 'a red circle on the left, blue background'")
    parser.add_argument("--prompt-seed", type=int, default=DEMO_PROMPT_SEED, help="seed of the caption draw")
    parser.add_argument("--seed", type=int, default=0, help="generation seed (default 0)")
    parser.add_argument("--out", default="clipag-demo.png", help="grid image (a .json summary is written beside it)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, mps")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or status lines")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``clipag demo``; returns the exit status (2 for bad input)."""
    from . import compare

    args = build_parser().parse_args(argv)
    try:
        prompts = args.texts if args.texts is not None else demo_prompts(args.prompts, args.prompt_seed)
    except ValueError as err:
        print(f"clipag demo: error: {err}", file=sys.stderr)
        return 2
    forwarded = [*prompts, "--models", *MODELS, "--judge", "--out", args.out, "--seed", str(args.seed),
                 "--device", args.device, "--cell", "128", "--across", "8"]
    if args.quiet:
        forwarded.append("--quiet")
    return compare.main(forwarded, command="demo")
