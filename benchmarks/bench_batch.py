"""Throughput of batch generation against one process per prompt (the mini preset, CPU).

    python benchmarks/bench_batch.py --captions 8 --batches 1 2 4 8

The same ``--captions`` mini-world captions are painted (a) by one ``clipag generate "caption"``
process each, as a shell loop over a caption file does, and (b) by one ``clipag generate --prompts
FILE --out-dir DIR --batch N`` process for each ``N`` in ``--batches``. Every run uses the model's
preset and the same seeds (``caption_seed``); each is timed from process start to exit. Printed:
pictures per hour of each, and its ratio to one process per prompt.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from clipag_plugin.mini import pag
from clipag_plugin.synthesis.batch import caption_seed


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--captions", type=int, default=8)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--model", default="mini")
    parser.add_argument("--steps", type=int, default=None, help="override the preset's steps")
    args = parser.parse_args()
    prompts = pag.seeded_prompts(args.captions, seed=2024)[0]
    extra = ["--steps", str(args.steps)] if args.steps else []
    clipag = [sys.executable, "-m", "clipag", "generate", "--model", args.model, "--device", "cpu", "--quiet", *extra]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "captions.txt").write_text("\n".join(prompts) + "\n")
        single = sum(timed([*clipag, prompt, "--seed", str(caption_seed(f"{i + 1:06d}")), "--out",
                            str(root / f"one_{i}.png")]) for i, prompt in enumerate(prompts))
        rate = 3600 * len(prompts) / single
        print(f"| one process per prompt | {single:.0f} s | {rate:.0f} pictures/h | 1.00x |", flush=True)
        for batch in args.batches:
            seconds = timed([*clipag, "--prompts", str(root / "captions.txt"), "--out-dir", str(root / f"b{batch}"),
                             "--batch", str(batch)])
            print(f"| --prompts, --batch {batch} | {seconds:.0f} s | {3600 * len(prompts) / seconds:.0f} pictures/h | "
                  f"{single / seconds:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
