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
    """The first ``n`` captions of the demo's seeded draw of the 600 mini-world captions."""
    from clipag_plugin.mini.pag import seeded_prompts

    return seeded_prompts(n, seed=seed)[0]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipag demo",
        description="Robust vs vanilla: both embedded mini CLIPs paint the same mini-world prompts with every "
                    "augmentation off; writes a labelled grid scored by the mini world's judge (offline, CPU).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  clipag demo                                  # 8 prompts, clipag-demo.png + .json\n"
               "  clipag demo --prompts 4 --out quick.png      # fewer prompts, faster\n"
               '  clipag demo --prompt "a red circle on the left, blue background"',
    )
    parser.add_argument("--prompts", type=int, default=8, help="how many seeded mini-world captions (default 8)")
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
    if args.texts is None and not 1 <= args.prompts <= 600:
        print(f"clipag demo: error: --prompts {args.prompts}: choose between 1 and 600", file=sys.stderr)
        return 2
    prompts = args.texts if args.texts is not None else demo_prompts(args.prompts, args.prompt_seed)
    forwarded = [*prompts, "--models", *MODELS, "--judge", "--out", args.out, "--seed", str(args.seed),
                 "--device", args.device, "--cell", "128"]
    if args.quiet:
        forwarded.append("--quiet")
    return compare.main(forwarded, command="demo")
